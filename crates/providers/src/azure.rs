//! `AzureChat` and `AzureEmbedder`: Azure OpenAI Service, whose data-plane API is OpenAI's with
//! a different address and authentication.
//!
//! - Chat: `POST {resource_endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V`
//! - Embeddings: `POST {resource_endpoint}/openai/deployments/{deployment}/embeddings?api-version=V`
//! - Auth: `api-key: <key>`, or `Authorization: Bearer <Microsoft Entra ID token>`.
//!
//! The deployment in the URL names the model, so the bodies carry no `model`. The stream is
//! OpenAI's and is read by the same code (`chat::run_chat`), which accepts Azure's extras: a first
//! chunk with empty `choices` and only `prompt_filter_results`, and `content_filter_results` in
//! each choice. The content filter refuses a prompt with a 400 coded `content_filter` (inner code
//! `ResponsibleAIPolicyViolation`) and stops an answer with `finish_reason: "content_filter"`;
//! both become `BackendError::InvalidRequest` without any of the text (`failure`, `chat`).
//!
//! Deployment and API version are checked to be plain identifiers, so that configuration cannot
//! change the path or add to the query.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, EmbedError, Embedder, Embeddings, TokenSink,
};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};

use crate::chat::{chat_body, run_chat, DEFAULT_CONTEXT_TOKENS};
use crate::embed::{estimate_tokens, EmbedClient};
use crate::endpoint::{
    sensitive_header_value, BuildError, Connection, Endpoint, Flavour, Redacted, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
};
use crate::RetryPolicy;

/// The GA data-plane API version this adapter is written against.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// How requests are authenticated. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureAuth {
    /// A resource key, sent as `api-key`.
    ApiKey(String),
    /// A Microsoft Entra ID access token, sent as `Authorization: Bearer`.
    EntraToken(String),
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureAuth::ApiKey(_) => f.debug_tuple("ApiKey").field(&Redacted).finish(),
            AzureAuth::EntraToken(_) => f.debug_tuple("EntraToken").field(&Redacted).finish(),
        }
    }
}

/// How to build an `AzureChat` or an `AzureEmbedder`.
#[derive(Debug, Clone)]
pub struct AzureOptions {
    /// The backend's configured name, reported by `ChatBackend::name` and used in logs.
    pub name: String,
    /// The model behind the deployment, reported by `ChatBackend::model`/`Embedder::model`.
    /// Not sent: the deployment names it.
    pub model: String,
    /// `https://NAME.openai.azure.com` (a path prefix is kept, for a gateway in front).
    pub resource_endpoint: String,
    /// The deployment's name: letters, digits, `-`, `_` and `.` only.
    pub deployment: String,
    /// Sent as `api-version`, e.g. `DEFAULT_API_VERSION` or `2025-01-01-preview`.
    pub api_version: String,
    pub auth: AzureAuth,
    /// The environment variable the key or token came from, for error messages only.
    pub api_key_env: Option<String>,
    pub connect_timeout: Duration,
    /// The longest wait for any read: the response head, and each piece of a streamed body.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    /// The model's context window in tokens, reported by `ChatBackend::context_tokens`.
    pub context_tokens: usize,
}

impl AzureOptions {
    /// Options with `DEFAULT_API_VERSION`, the default timeouts and retries, and
    /// `DEFAULT_CONTEXT_TOKENS`.
    pub fn new(
        name: impl Into<String>,
        model: impl Into<String>,
        resource_endpoint: impl Into<String>,
        deployment: impl Into<String>,
        auth: AzureAuth,
    ) -> Self {
        Self {
            name: name.into(),
            model: model.into(),
            resource_endpoint: resource_endpoint.into(),
            deployment: deployment.into(),
            api_version: DEFAULT_API_VERSION.to_string(),
            auth,
            api_key_env: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            retry: RetryPolicy::default(),
            context_tokens: DEFAULT_CONTEXT_TOKENS,
        }
    }
}

/// A chat backend served by an Azure OpenAI deployment.
pub struct AzureChat {
    name: String,
    model: String,
    context_tokens: usize,
    target: Target,
}

impl AzureChat {
    pub fn new(options: AzureOptions) -> Result<Self, BuildError> {
        let target = Target::new(&options, "chat/completions")?;
        Ok(Self { name: options.name, model: options.model, context_tokens: options.context_tokens, target })
    }
}

impl fmt::Debug for AzureChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureChat")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("target", &self.target)
            .field("context_tokens", &self.context_tokens)
            .finish()
    }
}

#[async_trait]
impl ChatBackend for AzureChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn context_tokens(&self) -> usize {
        self.context_tokens
    }

    async fn chat(&self, request: ChatRequest, sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        // Azure's current API takes `max_completion_tokens`, as OpenAI's does.
        let body = chat_body(None, Flavour::OpenAi, &request);
        run_chat(&self.target.connection, &self.target.path, &self.name, &body, sink).await
    }
}

/// An embedder served by an Azure OpenAI deployment, in batches within OpenAI's limits.
pub struct AzureEmbedder {
    client: EmbedClient,
    deployment: String,
    api_version: String,
}

impl AzureEmbedder {
    /// `dimensions`: the length of the vectors the deployment returns; `max_tokens`: the longest
    /// input, reported by `Embedder::max_tokens`.
    pub fn new(options: AzureOptions, dimensions: usize, max_tokens: usize) -> Result<Self, BuildError> {
        let Target { connection, path, deployment, api_version, .. } = Target::new(&options, "embeddings")?;
        let client = EmbedClient {
            name: options.name,
            model: options.model,
            send_model: false,
            path,
            dimensions,
            max_tokens,
            connection,
        };
        Ok(Self { client, deployment, api_version })
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        &self.client.name
    }
}

impl fmt::Debug for AzureEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureEmbedder")
            .field("name", &self.client.name)
            .field("model", &self.client.model)
            .field("base_url", &self.client.connection.base_url)
            .field("deployment", &self.deployment)
            .field("api_version", &self.api_version)
            .field("auth", &Redacted)
            .field("dimensions", &self.client.dimensions)
            .field("max_tokens", &self.client.max_tokens)
            .finish()
    }
}

#[async_trait]
impl Embedder for AzureEmbedder {
    fn model(&self) -> &str {
        &self.client.model
    }

    fn dimensions(&self) -> usize {
        self.client.dimensions
    }

    fn max_tokens(&self) -> usize {
        self.client.max_tokens
    }

    /// `estimate_tokens`: the provider's tokenizer is not available here.
    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        self.client.embed(texts).await
    }
}

/// One operation of one deployment: the connection (base URL up to the deployment, auth
/// header) and the path after it, with the API version.
struct Target {
    connection: Connection,
    path: String,
    deployment: String,
    api_version: String,
    auth_kind: &'static str,
}

impl Target {
    fn new(options: &AzureOptions, operation: &str) -> Result<Self, BuildError> {
        check_identifier("deployment", &options.deployment)?;
        check_identifier("api_version", &options.api_version)?;
        let endpoint = Endpoint {
            base_url: Some(format!(
                "{}/openai/deployments/{}",
                options.resource_endpoint.trim_end_matches('/'),
                options.deployment
            )),
            api_key: None,
            api_key_env: options.api_key_env.clone(),
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            retry: options.retry,
            ..Endpoint::new(Flavour::OpenAi)
        };
        let (auth_kind, header): (_, (HeaderName, HeaderValue)) = match &options.auth {
            AzureAuth::ApiKey(key) => ("api-key", (HeaderName::from_static("api-key"), sensitive_header_value(key)?)),
            AzureAuth::EntraToken(token) => {
                ("entra-token", (AUTHORIZATION, sensitive_header_value(&format!("Bearer {token}"))?))
            }
        };
        let connection = Connection::with_auth(&endpoint, Some(header)).map_err(|error| match error {
            // The composed URL is what was checked; name the setting the operator wrote.
            BuildError::BaseUrl(reason) => BuildError::ResourceEndpoint(reason),
            other => other,
        })?;
        Ok(Self {
            connection,
            path: format!("{operation}?api-version={}", options.api_version),
            deployment: options.deployment.clone(),
            api_version: options.api_version.clone(),
            auth_kind,
        })
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("base_url", &self.connection.base_url)
            .field("path", &self.path)
            .field("auth", &format_args!("{} [redacted]", self.auth_kind))
            .finish()
    }
}

/// Refuses a value that could change the URL it is put into: anything but ASCII letters,
/// digits, `-`, `_` and `.`, and the path segments `.` and `..`.
fn check_identifier(field: &'static str, value: &str) -> Result<(), BuildError> {
    let plain = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if value.is_empty() || !plain || value.bytes().all(|b| b == b'.') || value.len() > 128 {
        return Err(BuildError::Setting {
            field,
            reason: "must be 1 to 128 of the characters A-Z, a-z, 0-9, '-', '_' and '.'",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> AzureOptions {
        AzureOptions::new(
            "azure",
            "gpt-4o",
            "https://example.openai.azure.com/",
            "gpt4o-prod",
            AzureAuth::ApiKey("azure-key-DO-NOT-LEAK".into()),
        )
    }

    #[test]
    fn the_url_is_built_from_resource_deployment_and_version() {
        let target = Target::new(&options(), "chat/completions").unwrap();
        assert_eq!(target.connection.base_url, "https://example.openai.azure.com/openai/deployments/gpt4o-prod");
        assert_eq!(target.path, "chat/completions?api-version=2024-10-21");
    }

    #[test]
    fn values_that_could_change_the_url_are_refused() {
        for deployment in ["", ".", "..", "a/b", "a?b", "a#b", "a b", "a%2Fb", "a&api-version=1", "é"] {
            let options = AzureOptions { deployment: deployment.into(), ..options() };
            let error = AzureChat::new(options).unwrap_err();
            assert!(matches!(error, BuildError::Setting { field: "deployment", .. }), "{deployment:?}: {error}");
        }
        for version in ["", "2024-10-21&x=y", "2024/10", "2024-10-21 "] {
            let options = AzureOptions { api_version: version.into(), ..options() };
            assert!(matches!(
                AzureEmbedder::new(options, 3, 8191).unwrap_err(),
                BuildError::Setting { field: "api_version", .. }
            ));
        }
        for endpoint in ["example.openai.azure.com", "https://u:p@example.openai.azure.com", "https://x?y=1"] {
            let options = AzureOptions { resource_endpoint: endpoint.into(), ..options() };
            assert!(matches!(AzureChat::new(options).unwrap_err(), BuildError::ResourceEndpoint(_)), "{endpoint}");
        }
        let options = AzureOptions { auth: AzureAuth::EntraToken("a\nb".into()), ..options() };
        assert_eq!(AzureChat::new(options).unwrap_err(), BuildError::ApiKey);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let options = options();
        let chat = AzureChat::new(options.clone()).unwrap();
        let embedder = AzureEmbedder::new(options.clone(), 3, 8191).unwrap();
        for text in [format!("{options:?}"), format!("{chat:?}"), format!("{embedder:#?}")] {
            assert!(!text.contains("DO-NOT-LEAK"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
}
