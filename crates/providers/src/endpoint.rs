//! How to reach a provider: base URL, API key, timeouts, and the HTTP client built from them.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Url;

use crate::failure::{self, Failure};

/// OpenAI's own API, used when an `OpenAi` endpoint has no `base_url`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Used by `Endpoint::new`; the configuration normally sets its own.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Used by `Endpoint::new`; the configuration normally sets its own.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Which dialect of the OpenAI API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// OpenAI itself: `max_completion_tokens`, base URL defaults to `OPENAI_BASE_URL`.
    OpenAi,
    /// vLLM, Ollama, llama.cpp's server and the like: `max_tokens`, base URL required.
    OpenAiCompatible,
}

/// Where a provider lives and how to authenticate to it.
///
/// `Debug` is written by hand and never shows the API key.
#[derive(Clone)]
pub struct Endpoint {
    pub flavour: Flavour,
    /// The URL that `/chat/completions` and `/embeddings` are appended to, version segment
    /// included (`https://api.openai.com/v1`, `http://vllm:8000/v1`). `None` means
    /// `OPENAI_BASE_URL`, and is refused for `OpenAiCompatible`.
    pub base_url: Option<String>,
    /// Sent as `Authorization: Bearer <key>` when set. The caller reads it from the environment.
    pub api_key: Option<String>,
    /// The name of the environment variable the key came from, for error messages only.
    pub api_key_env: Option<String>,
    pub connect_timeout: Duration,
    /// The longest wait for any read: the response head, and each piece of a streamed body.
    pub read_timeout: Duration,
}

impl Endpoint {
    /// An endpoint with no base URL override, no key and the default timeouts.
    pub fn new(flavour: Flavour) -> Self {
        Self {
            flavour,
            base_url: None,
            api_key: None,
            api_key_env: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("flavour", &self.flavour)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| Redacted))
            .field("api_key_env", &self.api_key_env)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// Prints `[redacted]` in place of a secret.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why an adapter could not be built from its options. Never contains the key or the URL (a
/// URL may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("base_url {0}")]
    BaseUrl(&'static str),
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    ApiKey,
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// A validated endpoint: the HTTP client, the base URL and the prepared auth header.
pub(crate) struct Connection {
    client: reqwest::Client,
    pub base_url: String,
    auth: Option<HeaderValue>,
    pub api_key_env: Option<String>,
    pub flavour: Flavour,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Connection {
    pub fn new(endpoint: &Endpoint) -> Result<Self, BuildError> {
        let base_url = match (&endpoint.base_url, endpoint.flavour) {
            (Some(url), _) => validate_base_url(url)?,
            (None, Flavour::OpenAi) => OPENAI_BASE_URL.to_string(),
            (None, Flavour::OpenAiCompatible) => return Err(BuildError::BaseUrl("is required for openai_compatible")),
        };
        let auth = match &endpoint.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| BuildError::ApiKey)?;
                // Keeps the value out of hyper's and reqwest's own `Debug` output.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        if auth.is_some() && base_url.starts_with("http://") && !is_loopback(&base_url) {
            tracing::warn!(
                "base_url uses plain http to a non-loopback host; the API key crosses the network unencrypted"
            );
        }
        // No redirects: an API endpoint has no reason to send us elsewhere, and following one
        // would re-send the request body (the prompt) to another URL. Proxies come from
        // HTTPS_PROXY/HTTP_PROXY/NO_PROXY, as for curl, so an egress proxy can be required.
        let client = reqwest::Client::builder()
            .connect_timeout(endpoint.connect_timeout)
            .read_timeout(endpoint.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("perimeter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            base_url,
            auth,
            api_key_env: endpoint.api_key_env.clone(),
            flavour: endpoint.flavour,
            connect_timeout: endpoint.connect_timeout,
            read_timeout: endpoint.read_timeout,
        })
    }

    /// A POST to `{base_url}/{path}` with the auth header and a JSON body.
    pub fn post(&self, path: &str, body: &impl serde::Serialize) -> reqwest::RequestBuilder {
        let mut request = self.client.post(format!("{}/{path}", self.base_url)).json(body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        request
    }

    pub fn has_key(&self) -> bool {
        self.auth.is_some()
    }

    /// Phrases a transport error from this endpoint's client.
    pub fn transport_failure(&self, error: &reqwest::Error) -> Failure {
        failure::from_transport(error, self.connect_timeout, self.read_timeout)
    }

    /// Sends a request and turns every non-success status into a failure, reading at most
    /// `ERROR_BODY_LIMIT` bytes of the error body.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let response = request.send().await.map_err(|e| self.transport_failure(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_capped(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        let failure = failure::from_status(status.as_u16(), &body, self.api_key_env.as_deref());
        if let Failure::Overloaded(status, details) = &failure {
            // `BackendError::Overloaded` carries no details; an operator needs to tell a rate
            // limit from an exhausted quota (`code insufficient_quota`).
            tracing::warn!(status, details = %details.trim_start_matches(", "), "provider overloaded");
        }
        Err(failure)
    }
}

/// How much of an error body is read: enough for any JSON error object.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Why `read_capped` returned no body.
pub(crate) enum ReadError {
    TooLong,
    Transport(reqwest::Error),
}

/// Reads a whole body, refusing one longer than `limit` bytes.
pub(crate) async fn read_capped(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Transport)?;
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks the URL's shape and returns it without a trailing slash. Credentials, queries and
/// fragments are refused: they would end up in logs, or be silently dropped by the path join.
fn validate_base_url(raw: &str) -> Result<String, BuildError> {
    let url = Url::parse(raw).map_err(|_| BuildError::BaseUrl("is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BuildError::BaseUrl("must start with https:// or http://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BuildError::BaseUrl("must not contain credentials; set the API key through its variable"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(BuildError::BaseUrl("must not contain a query string or fragment"));
    }
    if url.host_str().is_none() {
        return Err(BuildError::BaseUrl("has no host"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

fn is_loopback(url: &str) -> bool {
    match Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)) {
        Some(host) => {
            host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(validate_base_url("http://127.0.0.1:8000/v1/").as_deref(), Ok("http://127.0.0.1:8000/v1"));
        assert_eq!(validate_base_url("https://api.openai.com/v1").as_deref(), Ok("https://api.openai.com/v1"));
        assert!(validate_base_url("ftp://example.com/v1").is_err());
        assert!(validate_base_url("https://user:pw@example.com/v1").is_err());
        assert!(validate_base_url("https://example.com/v1?key=abc").is_err());
        assert!(validate_base_url("not a url").is_err());
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8000/v1"));
        assert!(is_loopback("http://localhost:8000/v1"));
        assert!(is_loopback("http://[::1]:8000/v1"));
        assert!(!is_loopback("http://10.0.0.5:8000/v1"));
    }
}
