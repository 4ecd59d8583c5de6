//! Builds the adapter for an API or self-hosted backend from its configuration: OpenAI and
//! OpenAI-compatible servers, Azure OpenAI, Anthropic and Amazon Bedrock.

use std::sync::Arc;
use std::time::Duration;

use perimeter_config::{AzureAuthKind, Backend};
use perimeter_policy::{Provider, Unhealthy};
use perimeter_providers::anthropic::{AnthropicChat, AnthropicOptions};
use perimeter_providers::azure::{AzureAuth, AzureChat, AzureEmbedder, AzureOptions};
use perimeter_providers::bedrock::{resolve_credentials, BedrockChat, BedrockEmbedder, BedrockOptions};
use perimeter_providers::{
    Endpoint, Flavour, OpenAiChat, OpenAiChatOptions, OpenAiEmbedder, OpenAiEmbedderOptions, RetryPolicy,
};
use perimeter_types::{ChatBackend, Embedder};

/// Why a backend has no adapter: the health it gets, and a message for the log.
pub type AdapterError = (Unhealthy, String);

fn unavailable(reason: impl ToString) -> AdapterError {
    (Unhealthy::Unavailable, reason.to_string())
}

fn read_pem(path: &Option<std::path::PathBuf>, what: &str) -> Result<Option<Vec<u8>>, AdapterError> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| unavailable(format!("could not read the {what} file {}: {}", p.display(), e.kind()))),
    }
}

fn retry(backend: &Backend) -> RetryPolicy {
    RetryPolicy { max_attempts: backend.max_attempts, ..RetryPolicy::DEFAULT }
}

fn endpoint(backend: &Backend, flavour: Flavour, key: Option<String>) -> Result<Endpoint, AdapterError> {
    Ok(Endpoint {
        base_url: backend.base_url.clone(),
        api_key: key,
        api_key_env: backend.api_key_env.clone(),
        connect_timeout: Duration::from_millis(backend.connect_timeout_ms),
        read_timeout: Duration::from_millis(backend.read_timeout_ms),
        retry: retry(backend),
        ca_pem: read_pem(&backend.ca_file, "CA certificate")?,
        client_identity_pem: read_pem(&backend.client_identity_file, "client identity")?,
        ..Endpoint::new(flavour)
    })
}

fn azure_options(backend: &Backend, key: Option<String>) -> Result<AzureOptions, AdapterError> {
    let key = key.ok_or((Unhealthy::CredentialsMissing, "no key".to_string()))?;
    let auth = match backend.auth {
        AzureAuthKind::ApiKey => AzureAuth::ApiKey(key),
        AzureAuthKind::Entra => AzureAuth::EntraToken(key),
    };
    let mut o = AzureOptions::new(
        backend.profile.name.clone(),
        backend.profile.model.clone(),
        backend.base_url.clone().unwrap_or_default(),
        backend.deployment.clone().unwrap_or_default(),
        auth,
    );
    if let Some(v) = &backend.api_version {
        o.api_version = v.clone();
    }
    o.api_key_env = backend.api_key_env.clone();
    o.connect_timeout = Duration::from_millis(backend.connect_timeout_ms);
    o.read_timeout = Duration::from_millis(backend.read_timeout_ms);
    o.retry = retry(backend);
    o.context_tokens = backend.context_tokens as usize;
    Ok(o)
}

fn bedrock_options(backend: &Backend) -> Result<BedrockOptions, AdapterError> {
    let credentials =
        resolve_credentials(backend.aws_profile.as_deref()).map_err(|e| (Unhealthy::CredentialsMissing, e))?;
    Ok(BedrockOptions {
        name: backend.profile.name.clone(),
        model_id: backend.profile.model.clone(),
        region: backend.profile.region.clone().unwrap_or_default(),
        endpoint_url: backend.base_url.clone(),
        credentials,
        connect_timeout: Duration::from_millis(backend.connect_timeout_ms),
        read_timeout: Duration::from_millis(backend.read_timeout_ms),
        context_tokens: backend.context_tokens as usize,
        retry: retry(backend),
    })
}

/// The chat adapter for `backend`, or why there is none. `key` is the value of its `api_key_env`.
pub fn build(backend: &Backend, key: Option<String>) -> Result<Arc<dyn ChatBackend>, AdapterError> {
    let p = &backend.profile;
    Ok(match p.provider {
        Provider::Openai | Provider::OpenaiCompatible => {
            let flavour = if p.provider == Provider::Openai { Flavour::OpenAi } else { Flavour::OpenAiCompatible };
            let mut options = OpenAiChatOptions::new(p.name.clone(), p.model.clone(), endpoint(backend, flavour, key)?);
            options.context_tokens = backend.context_tokens as usize;
            Arc::new(OpenAiChat::new(options).map_err(unavailable)?)
        }
        Provider::AzureOpenai => Arc::new(AzureChat::new(azure_options(backend, key)?).map_err(unavailable)?),
        Provider::Anthropic => {
            let mut options = AnthropicOptions::new(
                p.name.clone(),
                p.model.clone(),
                endpoint(backend, Flavour::OpenAiCompatible, key)?,
            );
            if let Some(v) = &backend.api_version {
                options.version = v.clone();
            }
            options.context_tokens = backend.context_tokens as usize;
            Arc::new(AnthropicChat::new(options).map_err(unavailable)?)
        }
        Provider::Bedrock => Arc::new(BedrockChat::new(bedrock_options(backend)?).map_err(unavailable)?),
        Provider::Embedded => return Err(unavailable("the embedded backend is built in-process")),
    })
}

/// The embedding adapter for an API or self-hosted `backend`.
pub fn build_embedder(backend: &Backend, key: Option<String>) -> Result<Arc<dyn Embedder>, AdapterError> {
    let p = &backend.profile;
    let dimensions = backend.dimensions.ok_or_else(|| unavailable("no `dimensions` configured"))?;
    Ok(match p.provider {
        Provider::Openai | Provider::OpenaiCompatible => {
            let flavour = if p.provider == Provider::Openai { Flavour::OpenAi } else { Flavour::OpenAiCompatible };
            let mut options = OpenAiEmbedderOptions::new(
                p.name.clone(),
                p.model.clone(),
                endpoint(backend, flavour, key)?,
                dimensions,
            );
            options.max_tokens = backend.max_input_tokens;
            Arc::new(OpenAiEmbedder::new(options).map_err(unavailable)?)
        }
        Provider::AzureOpenai => Arc::new(
            AzureEmbedder::new(azure_options(backend, key)?, dimensions, backend.max_input_tokens)
                .map_err(unavailable)?,
        ),
        Provider::Bedrock => Arc::new(
            BedrockEmbedder::new(bedrock_options(backend)?, dimensions, backend.max_input_tokens)
                .map_err(unavailable)?,
        ),
        Provider::Anthropic | Provider::Embedded => {
            return Err(unavailable(format!("provider {} has no embeddings adapter", p.provider)))
        }
    })
}
