//! The one HTTP error type. Every variant maps to a status code here, and every body has the
//! OpenAI error shape `{"error": {"message", "type", "param", "code"}}`. Messages never contain
//! prompt text, document text or secrets; 5xx messages stay generic and the detail goes to the
//! log without request content.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use perimeter_types::BackendError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, param: Option<&'static str>, code: &'static str },
    #[error("the request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the model is busy; retry shortly")]
    Overloaded,
    /// A per-key limit (`[limits]`): the request rate, or requests in flight when `concurrent`.
    #[error("{}", if *concurrent { "too many requests in flight for this key; retry when one finishes" } else { "rate limit reached for this key; retry after the time in the Retry-After header" })]
    RateLimited { retry_after_secs: u64, concurrent: bool },
    /// Too many failed authentications from the client's address (`[limits]
    /// auth_failures_per_minute`): a request that does not authenticate gets this, not 401.
    #[error(
        "too many failed authentication attempts from this address; retry after the time in the Retry-After header"
    )]
    AuthThrottled { retry_after_secs: u64 },
    /// The request (time until the response starts) or the stream ran past its time limit.
    #[error("the {} took longer than the {limit_secs}-second limit", if *streaming { "stream" } else { "request" })]
    TimedOut { limit_secs: u64, streaming: bool },
    /// No valid API key (missing, malformed, unknown, revoked or expired): 401. The message
    /// never says which, nor echoes the key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid key whose role may not use the route: 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("internal error")]
    Internal(String),
    /// The audit record could not be written, so nothing was sent anywhere (fail closed).
    #[error("the audit log is unavailable; the request was not processed")]
    AuditUnavailable,
    /// The backends the policy allowed all failed. The message names backends, never text.
    #[error("{0}")]
    Upstream(String),
    /// The policy allows no backend for this request. `perimeter` is the decision object
    /// (levels, kinds, backend names and reasons; never text).
    #[error("{message}")]
    PolicyDenied { message: String, perimeter: Box<serde_json::Value> },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError::BadRequest { message: message.into(), param, code: "invalid_request" }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } | ApiError::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::PolicyDenied { .. } => StatusCode::FORBIDDEN,
        }
    }

    fn kind(&self) -> (&'static str, Option<&'static str>, &'static str) {
        match self {
            ApiError::BadRequest { param, code, .. } => ("invalid_request_error", *param, code),
            ApiError::TooLarge { .. } => ("invalid_request_error", None, "request_too_large"),
            ApiError::ModelNotFound(_) => ("invalid_request_error", Some("model"), "model_not_found"),
            ApiError::NotFound(_) => ("invalid_request_error", None, "not_found"),
            ApiError::Unprocessable(_) => ("invalid_request_error", None, "unprocessable"),
            ApiError::Overloaded => ("server_error", None, "overloaded"),
            // OpenAI's type and code for both; the message says which limit.
            ApiError::RateLimited { .. } => ("rate_limit_error", None, "rate_limit_exceeded"),
            // OpenAI's type, so clients back off as for any 429; our own code says why.
            ApiError::AuthThrottled { .. } => ("rate_limit_error", None, "auth_throttled"),
            ApiError::TimedOut { .. } => ("timeout_error", None, "timeout"),
            // OpenAI's shapes: `invalid_api_key` for 401; a permission error for the role.
            ApiError::Unauthorized(_) => ("invalid_request_error", None, "invalid_api_key"),
            ApiError::Forbidden(_) => ("permission_error", None, "insufficient_permissions"),
            ApiError::Internal(_) => ("server_error", None, "internal_error"),
            ApiError::AuditUnavailable => ("server_error", None, "audit_unavailable"),
            ApiError::Upstream(_) => ("server_error", None, "upstream_error"),
            ApiError::PolicyDenied { .. } => ("policy_denied_error", None, "policy_denied"),
        }
    }

    /// The JSON error object (also sent as an SSE event when a stream fails).
    pub fn body(&self) -> serde_json::Value {
        let (kind, param, code) = self.kind();
        let mut body = json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}});
        if let ApiError::PolicyDenied { perimeter, .. } = self {
            body["perimeter"] = (**perimeter).clone();
        }
        body
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::ContextTooLong { .. } => ApiError::BadRequest {
                message: e.to_string(),
                param: Some("messages"),
                code: "context_length_exceeded",
            },
            BackendError::InvalidRequest(m) => ApiError::bad_request(m, None),
            BackendError::Overloaded => ApiError::Overloaded,
            BackendError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::Overloaded) {
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited { retry_after_secs, .. } | ApiError::AuthThrottled { retry_after_secs } = &self {
            // Whole seconds, at least 1 (RFC 9110 delay-seconds; what OpenAI's clients read).
            let secs = (*retry_after_secs).max(1).to_string();
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs) {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}
