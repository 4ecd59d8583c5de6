//! What went wrong talking to a provider, decided from the HTTP status, the error body and the
//! transport error, and turned into the `BackendError`/`EmbedError` the pipeline understands.
//!
//! Only identifiers leave the provider's error body: `error.type` and `error.code`, and only
//! when they look like identifiers. `error.message` can quote the prompt, so it is never read.

use std::fmt::Write as _;
use std::time::Duration;

use perimeter_types::{BackendError, EmbedError};

use crate::retry::Outcome;
use crate::wire::{ErrorBody, ErrorDetail};

/// A provider failure, before it is phrased for chat or for embeddings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The provider refused this request (4xx that retrying will not fix).
    Rejected(String),
    /// 401/403: the key is missing, wrong or lacks access.
    Auth(u16, Option<String>),
    /// 429/503/529: rate-limited or out of capacity; retrying later may work. Also any
    /// retryable status whose `Retry-After` was longer than the retry policy waits.
    Overloaded(u16, String),
    /// Anything else: the provider or the connection failed.
    Provider(String),
}

impl From<Failure> for BackendError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected(message) => BackendError::InvalidRequest(message),
            Failure::Overloaded(..) => BackendError::Overloaded,
            Failure::Auth(..) | Failure::Provider(_) => BackendError::Internal(failure.message()),
        }
    }
}

impl From<Failure> for EmbedError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected(message) => EmbedError::InvalidInput(message),
            _ => EmbedError::Internal(failure.message()),
        }
    }
}

impl Failure {
    /// The failure in words, as `BackendError`/`EmbedError` carry it.
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Rejected(message) | Failure::Provider(message) => message.clone(),
            Failure::Auth(status, env) => {
                let key = match env {
                    Some(env) => format!("the API key in {env}"),
                    None => "the backend's API key".to_string(),
                };
                format!("authentication failed (status {status}); check {key}")
            }
            Failure::Overloaded(status, details) => {
                format!("the provider is overloaded (status {status}{details}); try again later")
            }
        }
    }
}

/// Maps a non-success response to a failure. `body` is the start of the response body.
pub(crate) fn from_status(status: u16, body: &[u8], api_key_env: Option<&str>) -> Failure {
    let details = error_details(body);
    match status {
        400 if is_content_filter(body) => {
            Failure::Rejected(format!("the provider's content filter blocked the request (status {status}{details})"))
        }
        400 | 413 | 422 => Failure::Rejected(format!("the provider rejected the request (status {status}{details})")),
        401 | 403 => Failure::Auth(status, api_key_env.map(str::to_owned)),
        404 => Failure::Provider(format!(
            "the provider answered 404 (not found{details}); check the backend's base_url and model"
        )),
        429 | 503 | 529 => Failure::Overloaded(status, details),
        _ => Failure::Provider(format!("provider error status {status}{details}")),
    }
}

/// A retryable status whose `Retry-After` asked for longer than the policy waits: overloaded,
/// whatever the status, so that the pipeline moves on to another backend.
pub(crate) fn wait_too_long(status: u16, body: &[u8], wait: Duration) -> Failure {
    let details = error_details(body);
    let wait = if wait == Duration::MAX { "indefinitely".to_string() } else { format!("{}s", wait.as_secs()) };
    Failure::Overloaded(status, format!("{details}, asked to wait {wait}"))
}

/// `, type T, code C` from an OpenAI error body, keeping only values that look like identifiers.
pub(crate) fn error_details(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => detail_suffix(&body.error),
        Err(_) => String::new(),
    }
}

/// Azure OpenAI's refusal of a prompt by its content filter: `error.code` `content_filter`, or
/// an inner error coded `ResponsibleAIPolicyViolation`.
fn is_content_filter(body: &[u8]) -> bool {
    let Ok(body) = serde_json::from_slice::<ErrorBody>(body) else { return false };
    let is = |value: Option<&serde_json::Value>, expected: &str| value.and_then(|v| v.as_str()) == Some(expected);
    is(body.error.code.as_ref(), "content_filter")
        || is(body.error.inner.as_ref().and_then(|inner| inner.code.as_ref()), "ResponsibleAIPolicyViolation")
}

pub(crate) fn detail_suffix(detail: &ErrorDetail) -> String {
    let mut out = String::new();
    for (name, value) in [("type", &detail.kind), ("code", &detail.code)] {
        if let Some(value) = value.as_ref().and_then(identifier) {
            let _ = write!(out, ", {name} {value}");
        }
    }
    out
}

/// A string that is safe to repeat in an error: short, and made only of identifier characters,
/// so it cannot carry prompt text. Every adapter passes provider error types through this.
pub(crate) fn safe_identifier(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then(|| text.to_string())
}

/// A JSON string or number that is safe to repeat (see [`safe_identifier`]).
fn identifier(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => safe_identifier(s),
        serde_json::Value::Number(n) => safe_identifier(&n.to_string()),
        _ => None,
    }
}

/// Phrases a transport error without the URL (it could carry a query string) or anything the
/// server sent.
pub(crate) fn from_transport(error: &reqwest::Error, connect_timeout: Duration, read_timeout: Duration) -> Failure {
    if let Some(tls) = tls_cause(error) {
        return Failure::Provider(tls_message(tls));
    }
    let cause = io_cause(error).map(|kind| format!(" ({kind})")).unwrap_or_default();
    let message = if error.is_connect() {
        if error.is_timeout() {
            format!("could not connect to the provider within the connect timeout of {connect_timeout:?}")
        } else {
            format!("could not connect to the provider{cause}")
        }
    } else if error.is_timeout() {
        format!("the provider sent nothing for longer than the read timeout of {read_timeout:?}")
    } else if error.is_body() || error.is_decode() {
        format!("the connection to the provider broke during the response{cause}")
    } else {
        format!("the request to the provider failed{cause}")
    };
    Failure::Provider(message)
}

/// What a transport error means for retrying. TLS failures are not retried: a certificate
/// that was refused once is refused again.
pub(crate) fn transport_outcome(error: &reqwest::Error) -> Outcome {
    if tls_cause(error).is_some() {
        Outcome::Other
    } else if error.is_connect() {
        Outcome::Connect
    } else if error.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Other
    }
}

/// The rustls error behind a transport error, if TLS is what failed. rustls' errors reach
/// reqwest wrapped in `io::Error`s (sometimes one inside another), whose `source` skips the
/// wrapped error itself, so each `io::Error` in the chain is opened with `get_ref`.
pub(crate) fn tls_cause(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        source = match current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

/// Says what failed in the TLS handshake and which setting usually fixes it. rustls' own
/// descriptions name the problem, never data from the connection.
fn tls_message(error: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => "the provider's TLS certificate is not signed by a \
            trusted CA; for a server with a private CA, set the backend's CA certificate (ca_pem)"
            .to_string(),
        rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "the provider's TLS certificate is not valid for the host in base_url".to_string()
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the provider's TLS certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(_) => format!("the provider's TLS certificate was refused ({error})"),
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::AccessDenied
            | Alert::HandshakeFailure),
        ) => format!(
            "the provider refused the TLS handshake ({alert:?}); it may require a client certificate \
             (client_identity_pem) signed by a CA it trusts"
        ),
        _ => format!("the TLS connection to the provider failed ({error})"),
    }
}

/// The kind of the innermost I/O error, e.g. "connection refused".
pub(crate) fn io_cause(error: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut kind = None;
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
        }
        source = current.source();
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"error": {"message": "secret prompt text", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;

    #[test]
    fn a_400_names_type_and_code_but_not_the_message() {
        let Failure::Rejected(message) = from_status(400, BODY, None) else { panic!("not rejected") };
        assert_eq!(
            message,
            "the provider rejected the request (status 400, type invalid_request_error, code context_length_exceeded)"
        );
    }

    #[test]
    fn identifiers_that_could_carry_text_are_dropped() {
        let body = br#"{"error": {"message": "x", "type": "secret prompt text", "code": 400}}"#;
        assert_eq!(error_details(body), ", code 400");
        assert_eq!(error_details(b"<html>bad gateway</html>"), "");
        assert_eq!(error_details(br#"{"error": "plain string"}"#), "");
    }

    #[test]
    fn statuses_map_to_failures() {
        assert_eq!(from_status(401, b"", Some("OPENAI_API_KEY")), Failure::Auth(401, Some("OPENAI_API_KEY".into())));
        assert!(matches!(from_status(429, BODY, None), Failure::Overloaded(429, _)));
        assert!(matches!(from_status(503, b"", None), Failure::Overloaded(503, _)));
        assert_eq!(from_status(502, b"", None), Failure::Provider("provider error status 502".into()));
        assert!(matches!(from_status(422, b"", None), Failure::Rejected(_)));
    }

    #[test]
    fn azure_content_filter_refusals_are_named_as_such() {
        let body = br#"{"error": {"message": "secret prompt text", "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"hate": {"filtered": true, "severity": "high"}}}}}"#;
        assert_eq!(
            from_status(400, body, None),
            Failure::Rejected(
                "the provider's content filter blocked the request (status 400, code content_filter)".into()
            )
        );
        // The inner code alone is enough, under either spelling.
        for inner in ["innererror", "inner_error"] {
            let body = format!(
                r#"{{"error": {{"code": "BadRequest", "{inner}": {{"code": "ResponsibleAIPolicyViolation"}}}}}}"#
            );
            let Failure::Rejected(message) = from_status(400, body.as_bytes(), None) else { panic!("not rejected") };
            assert!(message.starts_with("the provider's content filter blocked the request"), "{message}");
        }
        // Elsewhere it is an ordinary rejection.
        let Failure::Rejected(message) = from_status(422, body, None) else { panic!("not rejected") };
        assert!(message.starts_with("the provider rejected the request"), "{message}");
    }

    #[test]
    fn a_wait_too_long_is_overloaded_whatever_the_status() {
        let failure = wait_too_long(500, br#"{"error":{"type":"server_error"}}"#, Duration::from_secs(3600));
        assert_eq!(failure, Failure::Overloaded(500, ", type server_error, asked to wait 3600s".into()));
        assert_eq!(BackendError::from(failure), BackendError::Overloaded);
        assert_eq!(
            wait_too_long(429, b"", Duration::MAX),
            Failure::Overloaded(429, ", asked to wait indefinitely".into())
        );
        assert!(matches!(from_status(529, b"", None), Failure::Overloaded(529, _)));
    }

    #[test]
    fn auth_messages_name_the_variable() {
        let error = BackendError::from(from_status(403, b"", Some("OPENAI_API_KEY")));
        assert_eq!(
            error,
            BackendError::Internal("authentication failed (status 403); check the API key in OPENAI_API_KEY".into())
        );
        let error = EmbedError::from(from_status(429, br#"{"error":{"code":"insufficient_quota"}}"#, None));
        assert_eq!(
            error,
            EmbedError::Internal(
                "the provider is overloaded (status 429, code insufficient_quota); try again later".into()
            )
        );
    }
}
