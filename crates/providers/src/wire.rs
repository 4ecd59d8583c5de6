//! OpenAI's JSON, as far as this crate sends and reads it. Converted by hand to and from
//! `perimeter_types`; nothing outside the crate sees these types.
//!
//! Responses are read leniently: unknown fields are ignored, and fields that compatible servers
//! omit or send as `null` (vLLM's `"choices": null` in the usage chunk) default to empty.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct ChatBody<'a> {
    /// `None` for Azure OpenAI, where the deployment in the URL names the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub stop: &'a [String],
    pub stream: bool,
    pub stream_options: StreamOptions,
}

#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

#[derive(Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

/// One `data:` event of a streamed chat completion.
#[derive(Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    pub choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    /// Some servers report a failure inside the stream instead of with a status.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
pub(crate) struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Option<Delta>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct EmbedBody<'a> {
    /// `None` for Azure OpenAI, where the deployment in the URL names the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    pub input: &'a [String],
}

#[derive(Deserialize)]
pub(crate) struct EmbedResponse {
    pub data: Vec<EmbeddingItem>,
    #[serde(default)]
    pub usage: Option<EmbedUsage>,
}

#[derive(Deserialize)]
pub(crate) struct EmbeddingItem {
    pub index: usize,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub(crate) struct EmbedUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
}

/// `{"error": {"message", "type", "param", "code"}}`, and at Azure OpenAI an inner error.
/// `message` is deliberately not read: it may quote the prompt.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Deserialize, Default)]
pub(crate) struct ErrorDetail {
    #[serde(default, rename = "type")]
    pub kind: Option<serde_json::Value>,
    /// A string at OpenAI; a number at some compatible servers.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// Azure OpenAI's `innererror` (`inner_error` in its API specification), whose code says
    /// whether the content filter refused the prompt.
    #[serde(default, rename = "innererror", alias = "inner_error")]
    pub inner: Option<InnerError>,
}

#[derive(Deserialize, Default)]
pub(crate) struct InnerError {
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}
