//! How to reach a provider: base URL, API key, timeouts, retries, TLS trust and client
//! certificate, and the HTTP client built from them. `Connection::send` is where every request
//! to a provider goes out, and where failed ones are retried (`retry` decides when).

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::Url;

use crate::failure::{self, Failure};
use crate::retry::{self, Next, Outcome, RetryPolicy};

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
    /// When a request that failed before its response began is sent again.
    pub retry: RetryPolicy,
    /// Extra trusted root certificates, PEM (one or more `CERTIFICATE` sections), for a
    /// self-hosted server whose certificate comes from a private CA. Mozilla's roots stay trusted.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain (leaf first) and its private key, PEM, for servers that
    /// require mutual TLS. Never printed.
    pub client_identity_pem: Option<Vec<u8>>,
}

impl Endpoint {
    /// An endpoint with no base URL override, no key, the default timeouts and retries, and
    /// the built-in roots only.
    pub fn new(flavour: Flavour) -> Self {
        Self {
            flavour,
            base_url: None,
            api_key: None,
            api_key_env: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            retry: RetryPolicy::default(),
            ca_pem: None,
            client_identity_pem: None,
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
            .field("retry", &self.retry)
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| Bytes(pem.len())))
            .field("client_identity_pem", &self.client_identity_pem.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Prints the size of a value whose content is long and uninteresting.
struct Bytes(usize);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
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
    /// `ca_pem` or `client_identity_pem` cannot be used; says which and why, never its content.
    #[error("{0}")]
    Tls(String),
    /// Azure OpenAI's `resource_endpoint`, checked as `base_url` is.
    #[error("resource_endpoint {0}")]
    ResourceEndpoint(&'static str),
    /// Another setting that would be put into the URL, with what it may contain.
    #[error("{field} {reason}")]
    Setting { field: &'static str, reason: &'static str },
}

/// A validated endpoint: the HTTP client, the base URL and the prepared auth header.
pub(crate) struct Connection {
    client: reqwest::Client,
    pub base_url: String,
    auth: Option<(HeaderName, HeaderValue)>,
    pub api_key_env: Option<String>,
    pub flavour: Flavour,
    connect_timeout: Duration,
    read_timeout: Duration,
    retry: RetryPolicy,
}

impl Connection {
    /// A connection that sends the endpoint's key as `Authorization: Bearer <key>`.
    pub fn new(endpoint: &Endpoint) -> Result<Self, BuildError> {
        let auth = match &endpoint.api_key {
            Some(key) => Some((AUTHORIZATION, sensitive_header_value(&format!("Bearer {key}"))?)),
            None => None,
        };
        Self::with_auth(endpoint, auth)
    }

    /// A connection that sends `auth` (a header name and a value made by
    /// `sensitive_header_value`) with every request, whatever `endpoint.api_key` holds. For
    /// providers with their own header, such as Azure OpenAI's `api-key`.
    pub fn with_auth(endpoint: &Endpoint, auth: Option<(HeaderName, HeaderValue)>) -> Result<Self, BuildError> {
        let base_url = match (&endpoint.base_url, endpoint.flavour) {
            (Some(url), _) => validate_base_url(url)?,
            (None, Flavour::OpenAi) => OPENAI_BASE_URL.to_string(),
            (None, Flavour::OpenAiCompatible) => return Err(BuildError::BaseUrl("is required for openai_compatible")),
        };
        if auth.is_some() && base_url.starts_with("http://") && !is_loopback(&base_url) {
            tracing::warn!(
                "base_url uses plain http to a non-loopback host; the API key crosses the network unencrypted"
            );
        }
        // No redirects: an API endpoint has no reason to send us elsewhere, and following one
        // would re-send the request body (the prompt) to another URL. Proxies come from
        // HTTPS_PROXY/HTTP_PROXY/NO_PROXY, as for curl, so an egress proxy can be required.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(endpoint.connect_timeout)
            .read_timeout(endpoint.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("perimeter/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &endpoint.ca_pem {
            for certificate in trusted_roots(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let identity = match &endpoint.client_identity_pem {
            Some(pem) => Some(client_identity(pem)?),
            None => None,
        };
        let has_identity = identity.is_some();
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| match failure::tls_cause(&e) {
            // rustls checks the key against the certificate only now.
            Some(tls) if has_identity => {
                BuildError::Tls(format!("client_identity_pem cannot be used as a client certificate: {tls}"))
            }
            _ => BuildError::Client(e.without_url().to_string()),
        })?;
        Ok(Self {
            client,
            base_url,
            auth,
            api_key_env: endpoint.api_key_env.clone(),
            flavour: endpoint.flavour,
            connect_timeout: endpoint.connect_timeout,
            read_timeout: endpoint.read_timeout,
            retry: endpoint.retry,
        })
    }

    /// A POST to `{base_url}/{path}` with the auth header and a JSON body.
    pub fn post(&self, path: &str, body: &impl serde::Serialize) -> reqwest::RequestBuilder {
        let mut request = self.client.post(format!("{}/{path}", self.base_url)).json(body);
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.clone());
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

    /// Sends a request and returns the response once its head says success; turns every other
    /// status into a failure, reading at most `ERROR_BODY_LIMIT` bytes of the error body.
    ///
    /// Failures before the response head (no connection, no head within the read timeout, a
    /// retryable status) are retried as the endpoint's `RetryPolicy` says, with a copy of the
    /// request; a request whose body cannot be copied (a stream) is sent once. Once a success
    /// head is returned nothing is retried: the caller may already have passed output on.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let mut request = request;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let spare = if attempts < self.retry.max_attempts { request.try_clone() } else { None };
            let (outcome, next, failure) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let wait = retry_after(response.headers(), SystemTime::now());
                    // Read whole (within the cap) so that the connection can be reused.
                    let body = read_capped(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
                    let outcome = Outcome::Status { status, retry_after: wait };
                    let next = retry::next(&self.retry, attempts, outcome, retry::random());
                    let failure = match next {
                        Next::WaitTooLong(wait) => failure::wait_too_long(status, &body, wait),
                        _ => failure::from_status(status, &body, self.api_key_env.as_deref()),
                    };
                    (outcome, next, failure)
                }
                Err(error) => {
                    let outcome = failure::transport_outcome(&error);
                    (
                        outcome,
                        retry::next(&self.retry, attempts, outcome, retry::random()),
                        self.transport_failure(&error),
                    )
                }
            };
            let delay = match (next, spare) {
                (Next::Retry(delay), Some(spare)) => {
                    request = spare;
                    delay
                }
                _ => return Err(self.give_up(failure, attempts)),
            };
            // The status, or the transport failure's own words; never the URL or the body.
            match outcome {
                Outcome::Status { status, .. } => tracing::warn!(
                    status,
                    attempt = attempts,
                    max_attempts = self.retry.max_attempts,
                    delay_ms = delay.as_millis() as u64,
                    "provider request failed; retrying"
                ),
                _ => tracing::warn!(
                    error = %failure.message(),
                    attempt = attempts,
                    max_attempts = self.retry.max_attempts,
                    delay_ms = delay.as_millis() as u64,
                    "provider request failed; retrying"
                ),
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Logs what an operator needs about the final failure, and returns it.
    fn give_up(&self, failure: Failure, attempts: u32) -> Failure {
        if let Failure::Overloaded(status, details) = &failure {
            // `BackendError::Overloaded` carries no details; an operator needs to tell a rate
            // limit from an exhausted quota (`code insufficient_quota`).
            tracing::warn!(status, attempts, details = %details.trim_start_matches(", "), "provider overloaded");
        } else if attempts > 1 {
            tracing::warn!(attempts, "provider request failed after retries");
        }
        failure
    }
}

/// A header value that hyper and reqwest keep out of their `Debug` output; refused when it
/// cannot be sent in a header.
pub(crate) fn sensitive_header_value(value: &str) -> Result<HeaderValue, BuildError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| BuildError::ApiKey)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The wait a response asks for in `retry-after-ms` or `Retry-After`.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    retry::retry_after(text("retry-after-ms"), headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()), now)
}

/// The roots in `ca_pem`, each checked to be a certificate rustls can use.
fn trusted_roots(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, BuildError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let bad = |why: &str| BuildError::Tls(format!("ca_pem {why}"));
    let ders =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|_| bad("is not valid PEM"))?;
    if ders.is_empty() {
        return Err(bad("holds no CERTIFICATE section"));
    }
    let mut store = rustls::RootCertStore::empty();
    let mut roots = Vec::with_capacity(ders.len());
    for (i, der) in ders.into_iter().enumerate() {
        store.add(der.clone()).map_err(|_| bad(&format!("certificate {} cannot be parsed", i + 1)))?;
        roots.push(reqwest::Certificate::from_der(&der).map_err(|_| bad("cannot be used"))?);
    }
    Ok(roots)
}

/// The client certificate chain and key in `client_identity_pem`.
fn client_identity(pem: &[u8]) -> Result<reqwest::Identity, BuildError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let bad = |why: &str| BuildError::Tls(format!("client_identity_pem {why}"));
    let certificates =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|_| bad("is not valid PEM"))?;
    if certificates.is_empty() {
        return Err(bad("holds no CERTIFICATE section; it needs the client certificate chain and its private key"));
    }
    if PrivateKeyDer::from_pem_slice(pem).is_err() {
        return Err(bad(
            "holds no usable PRIVATE KEY section; it needs the client certificate chain and its private key",
        ));
    }
    reqwest::Identity::from_pem(pem).map_err(|_| bad("cannot be read as a certificate chain and private key"))
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

pub(crate) fn is_loopback(url: &str) -> bool {
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
