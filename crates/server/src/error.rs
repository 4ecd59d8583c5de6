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
    #[error("internal error")]
    Internal(String),
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
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            ApiError::Internal(_) => ("server_error", None, "internal_error"),
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
        response
    }
}
