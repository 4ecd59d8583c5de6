//! Builds the adapter for an API or self-hosted backend from its configuration.

use std::sync::Arc;
use std::time::Duration;

use perimeter_config::Backend;
use perimeter_policy::Provider;
use perimeter_providers::{Endpoint, Flavour, OpenAiChat, OpenAiChatOptions, OpenAiEmbedder, OpenAiEmbedderOptions};
use perimeter_types::{ChatBackend, Embedder};

fn endpoint(backend: &Backend, key: Option<String>) -> Result<Endpoint, String> {
    let flavour = match backend.profile.provider {
        Provider::Openai => Flavour::OpenAi,
        Provider::OpenaiCompatible => Flavour::OpenAiCompatible,
        other => return Err(format!("provider {other} has no adapter in this build yet")),
    };
    Ok(Endpoint {
        flavour,
        base_url: backend.base_url.clone(),
        api_key: key,
        api_key_env: backend.api_key_env.clone(),
        connect_timeout: Duration::from_millis(backend.connect_timeout_ms),
        read_timeout: Duration::from_millis(backend.read_timeout_ms),
    })
}

/// The chat adapter for `backend`, or why there is none. `key` is the value of its `api_key_env`.
pub fn build(backend: &Backend, key: Option<String>) -> Result<Arc<dyn ChatBackend>, String> {
    let mut options =
        OpenAiChatOptions::new(backend.profile.name.clone(), backend.profile.model.clone(), endpoint(backend, key)?);
    options.context_tokens = backend.context_tokens as usize;
    Ok(Arc::new(OpenAiChat::new(options).map_err(|e| e.to_string())?))
}

/// The embedding adapter for an API or self-hosted `backend`.
pub fn build_embedder(backend: &Backend, key: Option<String>) -> Result<Arc<dyn Embedder>, String> {
    let dimensions = backend.dimensions.ok_or("no `dimensions` configured")?;
    let mut options = OpenAiEmbedderOptions::new(
        backend.profile.name.clone(),
        backend.profile.model.clone(),
        endpoint(backend, key)?,
        dimensions,
    );
    options.max_tokens = backend.max_input_tokens;
    Ok(Arc::new(OpenAiEmbedder::new(options).map_err(|e| e.to_string())?))
}
