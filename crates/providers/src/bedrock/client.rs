//! The HTTP side of the Bedrock adapters: one signed `POST` to `/model/{modelId}/{action}`,
//! and what a failed one means.
//!
//! Each request is signed just before it is sent, over the exact URL string, headers and body
//! bytes that go on the wire; `host` is set explicitly so that the signed value is the sent one.
//! Error bodies are read only for the error *type* (`x-amzn-errortype`, or `__type`/`code`);
//! the `message` can quote the prompt and is never read.

use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use perimeter_types::{BackendError, EmbedError};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use super::credentials::Credentials;
use super::sigv4::{Request, Signer};
use super::BedrockOptions;
use crate::BuildError;

/// Everything but RFC 3986's unreserved characters is encoded: a model id is one path segment,
/// so `:` in `anthropic.claude-3-haiku-20240307-v1:0` and `/` in an ARN become `%3A` and `%2F`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How much of an error body is read: enough for any JSON error object.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A Bedrock failure, before it is phrased for chat or for embeddings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request was refused and retrying will not help (400 ValidationException).
    Rejected(String),
    /// 429/503: throttled or out of capacity. Carries the status and error type for the log.
    Overloaded(String),
    /// Credentials refused, model missing, the model or the connection failed.
    Provider(String),
}

impl From<Failure> for BackendError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected(message) => BackendError::InvalidRequest(message),
            Failure::Overloaded(_) => BackendError::Overloaded,
            Failure::Provider(message) => BackendError::Internal(message),
        }
    }
}

impl From<Failure> for EmbedError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected(message) => EmbedError::InvalidInput(message),
            Failure::Overloaded(details) => {
                EmbedError::Internal(format!("the provider is overloaded ({details}); try again later"))
            }
            Failure::Provider(message) => EmbedError::Internal(message),
        }
    }
}

/// A validated Bedrock endpoint for one model: the HTTP client, the URL prefix and the signer.
pub(crate) struct Client {
    http: reqwest::Client,
    /// `https://bedrock-runtime.{region}.amazonaws.com/model/{encoded model id}`.
    model_url: String,
    host: String,
    signer: Signer,
    credentials: Credentials,
    connect_timeout: Duration,
    read_timeout: Duration,
    retry: crate::RetryPolicy,
}

impl Client {
    pub(crate) fn new(options: &BedrockOptions) -> Result<Self, BuildError> {
        if !is_region(&options.region) {
            return Err(BuildError::BaseUrl(
                "cannot be built: region must be lowercase letters, digits and dashes, like us-east-1",
            ));
        }
        if options.model_id.trim().is_empty() || matches!(options.model_id.as_str(), "." | "..") {
            return Err(BuildError::BaseUrl("cannot be built: model_id is empty"));
        }
        if !options.credentials.is_sendable() {
            return Err(BuildError::ApiKey);
        }
        let base = match &options.endpoint_url {
            Some(url) => validate_endpoint_url(url)?,
            None => format!("https://bedrock-runtime.{}.amazonaws.com", options.region),
        };
        let model_url = format!("{base}/model/{}", utf8_percent_encode(&options.model_id, PATH_SEGMENT));
        let parsed = Url::parse(&model_url).map_err(|_| BuildError::BaseUrl("is not a valid URL"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return Err(BuildError::BaseUrl("has no host")),
        };
        if parsed.scheme() == "http" && !crate::endpoint::is_loopback(parsed.as_str()) {
            tracing::warn!(
                "endpoint_url uses plain http to a non-loopback host; prompts and any session token cross the network unencrypted"
            );
        }
        // No redirects: following one would re-send the prompt elsewhere (and a signature is
        // only valid for the host it names). Proxies come from HTTPS_PROXY/NO_PROXY.
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("perimeter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Client(e.without_url().to_string()))?;
        Ok(Self {
            http,
            model_url,
            host,
            signer: Signer::bedrock(&options.region),
            credentials: options.credentials.clone(),
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            retry: options.retry,
        })
    }

    /// The URL the requests of this model go to, without the action (for `Debug`).
    pub(crate) fn model_url(&self) -> &str {
        &self.model_url
    }

    /// Signs and sends `POST {model_url}/{action}` with a JSON `body`, and turns every
    /// non-success status into a failure. Throttling, 5xx and connection failures are retried
    /// with the endpoint's policy (full-jitter backoff, `Retry-After` honoured); each attempt is
    /// signed afresh, since a signature carries its time.
    pub(crate) async fn post(&self, action: &str, body: Vec<u8>, accept: &str) -> Result<reqwest::Response, Failure> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (failure, outcome) = match self.post_once(action, body.clone(), accept).await {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            match crate::retry::next(&self.retry, attempts, outcome, crate::retry::random()) {
                crate::retry::Next::Retry(delay) => {
                    tracing::warn!(
                        attempt = attempts,
                        max_attempts = self.retry.max_attempts,
                        delay_ms = delay.as_millis() as u64,
                        "bedrock request failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(failure),
            }
        }
    }

    async fn post_once(
        &self,
        action: &str,
        body: Vec<u8>,
        accept: &str,
    ) -> Result<reqwest::Response, (Failure, crate::retry::Outcome)> {
        let other = crate::retry::Outcome::Other;
        let url = format!("{}/{action}", self.model_url);
        let content_type = "application/json";
        let signed_headers = [("host", self.host.as_str()), ("content-type", content_type), ("accept", accept)];
        let request = Request { method: "POST", url: &url, headers: &signed_headers, body: &body };
        let signature = self
            .signer
            .sign(&request, &self.credentials, SystemTime::now())
            .map_err(|e| (Failure::Provider(e.to_string()), other))?;

        let mut builder = self.http.post(&url);
        for (name, value) in signed_headers {
            builder = builder.header(name, value);
        }
        for header in signature {
            let unsendable = || (Failure::Provider("a signature header cannot be sent".into()), other);
            let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| unsendable())?;
            let mut value = HeaderValue::from_str(&header.value).map_err(|_| unsendable())?;
            // Keeps the token (and the signature) out of hyper's and reqwest's `Debug` output.
            value.set_sensitive(header.sensitive || header.name == "authorization");
            builder = builder.header(name, value);
        }
        let response = builder
            .body(body)
            .send()
            .await
            .map_err(|e| (self.transport_failure(&e), crate::failure::transport_outcome(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let error_type = header("x-amzn-errortype");
        let wait = crate::retry::retry_after(
            header("retry-after-ms").as_deref(),
            header("retry-after").as_deref(),
            SystemTime::now(),
        );
        let body = read_capped(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        let failure = from_status(status.as_u16(), error_type.as_deref(), &body);
        if let Failure::Overloaded(details) = &failure {
            tracing::warn!(details = %details, "bedrock overloaded");
        }
        Err((failure, crate::retry::Outcome::Status { status: status.as_u16(), retry_after: wait }))
    }

    /// Phrases a transport error without the URL or anything the server sent.
    pub(crate) fn transport_failure(&self, error: &reqwest::Error) -> Failure {
        let cause = crate::failure::io_cause(error).map(|kind| format!(" ({kind})")).unwrap_or_default();
        let message = if error.is_connect() {
            if error.is_timeout() {
                format!("could not connect to the provider within the connect timeout of {:?}", self.connect_timeout)
            } else {
                format!("could not connect to the provider{cause}")
            }
        } else if error.is_timeout() {
            format!("the provider sent nothing for longer than the read timeout of {:?}", self.read_timeout)
        } else if error.is_body() || error.is_decode() {
            format!("the connection to the provider broke during the response{cause}")
        } else {
            format!("the request to the provider failed{cause}")
        };
        Failure::Provider(message)
    }
}

pub(crate) use crate::endpoint::{read_capped, ReadError};

/// Maps a non-success response to a failure. `error_type` is the `x-amzn-errortype` header;
/// `body` is the start of the response body. Only the error type is repeated, never a message.
pub(crate) fn from_status(status: u16, error_type: Option<&str>, body: &[u8]) -> Failure {
    let kind = error_type.and_then(clean_type).or_else(|| body_type(body));
    let details = kind.map(|k| format!(", {k}")).unwrap_or_default();
    match status {
        400 | 413 | 422 => Failure::Rejected(format!("the provider rejected the request (status {status}{details})")),
        401 | 403 => Failure::Provider(format!(
            "AWS refused the request (status {status}{details}); check the AWS credentials, their permission to \
             invoke this model (bedrock:InvokeModel, bedrock:InvokeModelWithResponseStream), the model's access \
             in this region, and the clock"
        )),
        404 => Failure::Provider(format!(
            "the provider answered 404 (not found{details}); check the backend's model_id and region"
        )),
        408 => Failure::Provider(format!("the model timed out (status 408{details})")),
        424 => Failure::Provider(format!("the model failed (status 424{details})")),
        429 | 503 => Failure::Overloaded(format!("status {status}{details}")),
        _ => Failure::Provider(format!("provider error status {status}{details}")),
    }
}

/// `ThrottlingException` from `ThrottlingException:http://internal.amazon.com/coral/...` or
/// `com.amazon.coral#ThrottlingException`, if it looks like an identifier.
fn clean_type(raw: &str) -> Option<String> {
    let name = raw.split(':').next().unwrap_or(raw);
    crate::failure::safe_identifier(name.rsplit('#').next().unwrap_or(name).trim())
}

/// The error type from a JSON error body's `__type` or `code`.
fn body_type(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["__type", "code", "Code"].iter().find_map(|key| value.get(key).and_then(|v| v.as_str()).and_then(clean_type))
}

fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// Checks an `endpoint_url` override and returns it without a trailing slash. Credentials,
/// queries and fragments are refused: they would be logged, or break the path join.
fn validate_endpoint_url(raw: &str) -> Result<String, BuildError> {
    let url = Url::parse(raw).map_err(|_| BuildError::BaseUrl("(endpoint_url) is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BuildError::BaseUrl("(endpoint_url) must start with https:// or http://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BuildError::BaseUrl("(endpoint_url) must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(BuildError::BaseUrl("(endpoint_url) must not contain a query string or fragment"));
    }
    if url.host_str().is_none() {
        return Err(BuildError::BaseUrl("(endpoint_url) has no host"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"message": "secret prompt text was invalid"}"#;

    #[test]
    fn statuses_map_to_failures_with_the_type_only() {
        assert_eq!(
            from_status(400, Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"), BODY),
            Failure::Rejected("the provider rejected the request (status 400, ValidationException)".into())
        );
        assert_eq!(
            from_status(429, Some("ThrottlingException"), BODY),
            Failure::Overloaded("status 429, ThrottlingException".into())
        );
        assert_eq!(from_status(503, None, b""), Failure::Overloaded("status 503".into()));
        assert_eq!(
            from_status(500, None, br#"{"__type": "com.amazon.coral#InternalServerException", "message": "x"}"#),
            Failure::Provider("provider error status 500, InternalServerException".into())
        );
        let Failure::Provider(auth) = from_status(403, Some("UnrecognizedClientException"), BODY) else { panic!() };
        assert!(
            auth.starts_with(
                "AWS refused the request (status 403, UnrecognizedClientException); check the AWS credentials"
            ),
            "{auth}"
        );
        assert!(
            matches!(from_status(404, Some("ResourceNotFoundException"), BODY), Failure::Provider(m) if m.contains("model_id and region"))
        );
        for status in [400, 403, 404, 408, 424, 429, 500, 503] {
            let failure = from_status(status, Some("secret prompt text"), BODY);
            assert!(!format!("{failure:?}").contains("secret"), "{failure:?}");
        }
    }

    #[test]
    fn endpoint_urls_and_regions_are_checked() {
        assert_eq!(validate_endpoint_url("http://127.0.0.1:9/").as_deref(), Ok("http://127.0.0.1:9"));
        assert!(validate_endpoint_url("https://user:pw@example.com").is_err());
        assert!(validate_endpoint_url("https://example.com/?a=b").is_err());
        assert!(validate_endpoint_url("ftp://example.com").is_err());
        assert!(is_region("us-east-1") && is_region("eu-central-2") && is_region("us-gov-west-1"));
        assert!(!is_region("") && !is_region("US-EAST-1") && !is_region("us-east-1.evil.com") && !is_region("a/b"));
    }

    #[test]
    fn model_ids_are_one_encoded_path_segment() {
        let encode = |id: &str| utf8_percent_encode(id, PATH_SEGMENT).to_string();
        assert_eq!(encode("anthropic.claude-3-haiku-20240307-v1:0"), "anthropic.claude-3-haiku-20240307-v1%3A0");
        assert_eq!(
            encode("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0"
        );
        assert_eq!(encode("a b?#"), "a%20b%3F%23");
    }
}
