//! OpenAI wire types, converted by hand into Perimeter's core types. Unknown request fields are
//! accepted and ignored, as OpenAI clients send many optional ones.

use std::collections::BTreeMap;

use perimeter_types::{ChatMessage, Citation, EntityKind, Level, Role, Usage};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<WireMessage>>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopField>,
    pub n: Option<u32>,
    pub perimeter: Option<PerimeterExtension>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

/// Perimeter's request extension: `"perimeter": {"collection", "retrieval", "top_k"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerimeterExtension {
    pub collection: Option<String>,
    pub retrieval: Option<bool>,
    pub top_k: Option<usize>,
    /// Pseudonymise the prompt before the backend sees it (a client may ask for more
    /// protection, never less).
    pub redact: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: String,
    pub content: Option<WireContent>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WireContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl WireMessage {
    /// Converts to a core message. `developer` is OpenAI's newer name for `system`; only text
    /// content is supported.
    pub fn into_core(self, index: usize) -> Result<ChatMessage, ApiError> {
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::bad_request(
                    format!(
                        "messages[{index}].role: unsupported role {:?} (expected system, developer, user or assistant)",
                        truncate(other, 32)
                    ),
                    Some("messages"),
                ))
            }
        };
        let content = match self.content {
            None => String::new(),
            Some(WireContent::Text(t)) => t,
            Some(WireContent::Parts(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.into_iter().enumerate() {
                    if p.kind != "text" {
                        return Err(ApiError::bad_request(
                            format!("messages[{index}].content[{j}]: only text parts are supported"),
                            Some("messages"),
                        ));
                    }
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&p.text.unwrap_or_default());
                }
                text
            }
        };
        Ok(ChatMessage { role, content })
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[derive(Debug, Serialize)]
pub struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        Self { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total() }
    }
}

/// The `perimeter` object on every chat response: what was decided, why, and what was cited.
#[derive(Debug, Serialize)]
pub struct PerimeterInfo {
    pub level: Level,
    /// Kinds and counts of sensitive data found (never the values).
    pub entities: Entities,
    /// How many distinct values were replaced by placeholders before the backend saw the
    /// prompt (0 when the request was not pseudonymised).
    pub pseudonymised: usize,
    /// `route` or `deny`.
    pub decision: &'static str,
    /// The backend that served the request (or was chosen; absent on a deny).
    pub backend: Option<String>,
    /// Whether the prompt was pseudonymised before the backend saw it.
    pub redact: bool,
    /// Allowed backends tried after the chosen one, if any (only from the allowed set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    pub reasons: Vec<String>,
    /// Every backend considered and why it was allowed or rejected.
    pub trace: Vec<perimeter_policy::TraceEntry>,
    pub citations: Vec<Citation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
    /// What the guards did; absent when no passage was quarantined or allowed with a flag and
    /// nothing was redacted from the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardInfo>,
    /// What the answer cost in USD (decimal string), from its usage and the backend's price;
    /// absent before the answer, and when the backend's price is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// The request's id in the audit log (its routing, completion or refusal records).
    pub request_id: String,
}

/// `perimeter.guard`: passages with instruction-like content that were quarantined or used
/// (`[guard] injection = "allow"`; dropped ones are only audited), and what the output guard
/// redacted. Kinds and counts, never text.
#[derive(Debug, Serialize)]
pub struct GuardInfo {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passages: Vec<GuardedPassage>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redacted: BTreeMap<EntityKind, u32>,
}

#[derive(Debug, Serialize)]
pub struct GuardedPassage {
    pub chunk_id: String,
    pub document_id: String,
    pub kinds: BTreeMap<perimeter_types::InjectionKind, u32>,
    /// `quarantine` or `allow`.
    pub action: &'static str,
}

/// Sensitive data in the request: in what the caller sent, and in the retrieved passages.
#[derive(Debug, Serialize)]
pub struct Entities {
    pub query: BTreeMap<EntityKind, u32>,
    pub passages: BTreeMap<EntityKind, u32>,
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: Option<String>,
    pub input: Option<EmbeddingInput>,
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    /// Token arrays (OpenAI accepts them); refused with a clear error.
    Tokens(#[allow(dead_code)] Vec<serde_json::Value>),
}

/// `POST /v1/documents`: one document as text or base64 bytes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// A name for the document (shown in citations), e.g. `handbook/leave.md`. Its extension
    /// selects the format unless `format` is given.
    pub source: String,
    pub content: Option<String>,
    pub content_base64: Option<String>,
    pub format: Option<String>,
    pub collection: Option<String>,
    pub label: Option<String>,
    pub groups: Option<Vec<String>>,
}
