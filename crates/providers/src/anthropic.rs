//! `AnthropicChat`: a `ChatBackend` that streams Anthropic's Messages API,
//! `POST {base_url}/v1/messages`.
//!
//! The HTTP side reuses `Connection` (client, timeouts, retries, TLS settings, error-body cap and
//! the status mapping, which knows Anthropic's 529) with the key in `x-api-key`, marked sensitive,
//! instead of `Authorization: Bearer`; `anthropic-version` is added to each request.
//!
//! Two parts are pure and tested on their own: `messages_body`, which turns the OpenAI-shaped
//! conversation into Anthropic's (system text at the top level, user and assistant turns
//! alternating), and `StreamState`, which interprets the stream's events.
//!
//! Nothing here reads an error's `message`, which can quote the prompt: only `error.type`, and
//! only when it looks like an identifier.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, FinishReason, Role, Timings, TokenSink, Usage,
};
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::endpoint::{sensitive_header_value, BuildError, Connection, Endpoint, Flavour, Redacted};
use crate::sse::{Oversized, SseDecoder};

/// Anthropic's own API, used when the endpoint has no `base_url`. Without the version segment:
/// requests go to `{base_url}/v1/messages`.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header this adapter is written against.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The context window assumed when the configuration does not give one (every current Claude
/// model has at least this much).
pub const ANTHROPIC_CONTEXT_TOKENS: usize = 200_000;

/// The largest SSE line or event accepted; a delta carries a few tokens of text.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// How to build an `AnthropicChat`.
#[derive(Debug, Clone)]
pub struct AnthropicOptions {
    /// The backend's configured name, reported by `ChatBackend::name` and used in logs.
    pub name: String,
    /// The model id sent to Anthropic (`claude-sonnet-4-5`) and reported by `ChatBackend::model`.
    pub model: String,
    /// `base_url` `None` means `ANTHROPIC_BASE_URL`; the key is `api_key`, sent as `x-api-key`.
    /// `flavour` is ignored.
    pub endpoint: Endpoint,
    /// Sent as `anthropic-version`.
    pub version: String,
    /// The model's context window in tokens, reported by `ChatBackend::context_tokens`.
    pub context_tokens: usize,
}

impl AnthropicOptions {
    /// Options with `ANTHROPIC_VERSION` and `ANTHROPIC_CONTEXT_TOKENS`.
    pub fn new(name: impl Into<String>, model: impl Into<String>, endpoint: Endpoint) -> Self {
        Self {
            name: name.into(),
            model: model.into(),
            endpoint,
            version: ANTHROPIC_VERSION.to_string(),
            context_tokens: ANTHROPIC_CONTEXT_TOKENS,
        }
    }
}

/// A chat backend served over Anthropic's Messages API.
///
/// A key is not required at construction, so that a gateway which adds its own can sit in front;
/// without one Anthropic answers 401, reported with the key's variable name.
pub struct AnthropicChat {
    name: String,
    model: String,
    context_tokens: usize,
    connection: Connection,
    version: HeaderValue,
}

impl AnthropicChat {
    pub fn new(options: AnthropicOptions) -> Result<Self, BuildError> {
        // An explicit base URL, so that the flavour's OpenAI default never applies; every other
        // setting (timeouts, retries, TLS) carries over as configured.
        let base_url = options.endpoint.base_url.clone().unwrap_or_else(|| ANTHROPIC_BASE_URL.to_string());
        let endpoint = Endpoint { flavour: Flavour::OpenAiCompatible, base_url: Some(base_url), ..options.endpoint };
        let auth = match &endpoint.api_key {
            Some(key) => Some((HeaderName::from_static("x-api-key"), sensitive_header_value(key)?)),
            None => None,
        };
        let connection = Connection::with_auth(&endpoint, auth)?;
        let version = HeaderValue::from_str(&options.version)
            .map_err(|_| BuildError::Client("the anthropic-version value cannot be sent in an HTTP header".into()))?;
        Ok(Self {
            name: options.name,
            model: options.model,
            context_tokens: options.context_tokens,
            connection,
            version,
        })
    }
}

impl fmt::Debug for AnthropicChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicChat")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("base_url", &self.connection.base_url)
            .field("api_key", &self.connection.has_key().then_some(Redacted))
            .field("version", &self.version)
            .field("context_tokens", &self.context_tokens)
            .finish()
    }
}

#[async_trait]
impl ChatBackend for AnthropicChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn context_tokens(&self) -> usize {
        self.context_tokens
    }

    async fn chat(&self, request: ChatRequest, mut sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        let started = Instant::now();
        let body = messages_body(&self.model, &request).map_err(|e| BackendError::InvalidRequest(e.to_string()))?;
        let result = self.stream(&body, started, &mut sink).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(outcome) => tracing::debug!(
                backend = %self.name,
                elapsed_ms,
                prompt_tokens = outcome.usage.prompt_tokens,
                completion_tokens = outcome.usage.completion_tokens,
                finish = ?outcome.finish_reason,
                "provider chat finished"
            ),
            Err(error) => tracing::warn!(backend = %self.name, elapsed_ms, %error, "provider chat failed"),
        }
        result
    }
}

impl AnthropicChat {
    async fn stream(
        &self,
        body: &MessagesBody<'_>,
        started: Instant,
        sink: &mut TokenSink,
    ) -> Result<ChatOutcome, BackendError> {
        let request = self.connection.post("v1/messages", body).header("anthropic-version", self.version.clone());
        let response = self.connection.send(request).await?;
        let mut bytes = response.bytes_stream();
        let mut decoder = SseDecoder::new(MAX_EVENT_BYTES);
        let mut state = StreamState::default();
        let mut events = Vec::new();
        let mut text = String::new();
        let mut first_content: Option<Instant> = None;
        let timings = |first: Option<Instant>| {
            let end = Instant::now();
            let first = first.unwrap_or(end);
            Timings {
                prompt_ms: (first - started).as_secs_f64() * 1000.0,
                generation_ms: (end - first).as_secs_f64() * 1000.0,
            }
        };
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| self.connection.transport_failure(&e))?;
            decoder.feed(&chunk, &mut events).map_err(StreamError::from)?;
            for event in events.drain(..) {
                if state.stopped {
                    break;
                }
                let Some(piece) = state.on_event(&event)? else { continue };
                first_content.get_or_insert_with(Instant::now);
                text.push_str(&piece);
                if !sink(&piece) {
                    // Dropping the response closes the connection, which stops generation at
                    // Anthropic. The final output count is never read: usage is what
                    // `message_start` reported (the whole prompt, the first output tokens).
                    return Ok(ChatOutcome {
                        text,
                        usage: state.usage(),
                        finish_reason: FinishReason::Cancelled,
                        timings: timings(first_content),
                    });
                }
            }
            if state.stopped {
                break;
            }
        }
        if decoder.finish() {
            tracing::debug!(backend = %self.name, "provider stream ended inside an event");
        }
        let (finish_reason, usage) = state.finish()?;
        Ok(ChatOutcome { text, usage, finish_reason, timings: timings(first_content) })
    }
}

// ---------------------------------------------------------------------------------------------
// The request body.

/// The JSON body of a streamed `POST /v1/messages`.
#[derive(Debug, Serialize)]
struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Message<'a>>,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
    stream: bool,
}

#[derive(Debug, Serialize, PartialEq)]
struct Message<'a> {
    role: &'static str,
    content: Cow<'a, str>,
}

/// Why a conversation cannot be put in Anthropic's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ShapeError {
    #[error("the conversation has no user message")]
    NoUserMessage,
    #[error("the conversation starts with an assistant message, but Anthropic models need a user message first")]
    StartsWithAssistant,
}

/// Turns the conversation into Anthropic's body.
///
/// - System messages, wherever they are, are joined (blank line between) into the top-level
///   `system` field: Anthropic has no system role.
/// - Empty messages are dropped (Anthropic refuses empty text), and consecutive messages of one
///   role are joined with a blank line, because Anthropic wants user and assistant to alternate.
/// - A conversation that starts with an assistant turn is refused rather than reshaped: putting
///   the assistant's words in a user turn, or inventing a user turn, would change what the model
///   is told. Anthropic refuses it too (Bedrock's Claude always does).
/// - A final assistant turn is a prefill the model continues; Anthropic refuses one that ends in
///   whitespace, so trailing whitespace is trimmed.
/// - `temperature` is capped at 1.0, Anthropic's maximum (OpenAI's goes to 2). `top_p` is sent
///   only when it narrows sampling (below 1.0, the default): recent Claude models refuse a
///   request that sets both. `seed` has no Anthropic counterpart and is not sent.
fn messages_body<'a>(model: &'a str, request: &'a ChatRequest) -> Result<MessagesBody<'a>, ShapeError> {
    let params = &request.params;
    let mut system: Vec<&str> = Vec::new();
    let mut messages: Vec<Message<'a>> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::System => {
                if !message.content.is_empty() {
                    system.push(&message.content);
                }
                continue;
            }
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        if message.content.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                let joined = last.content.to_mut();
                joined.push_str("\n\n");
                joined.push_str(&message.content);
            }
            _ => messages.push(Message { role, content: Cow::Borrowed(&message.content) }),
        }
    }
    if let Some(last) = messages.last_mut().filter(|m| m.role == "assistant") {
        let trimmed = last.content.trim_end();
        if trimmed.len() != last.content.len() {
            last.content = Cow::Owned(trimmed.to_string());
        }
        if last.content.is_empty() {
            messages.pop();
        }
    }
    match messages.first() {
        None => return Err(ShapeError::NoUserMessage),
        Some(first) if first.role == "assistant" => return Err(ShapeError::StartsWithAssistant),
        Some(_) => {}
    }
    Ok(MessagesBody {
        model,
        max_tokens: params.max_tokens,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        temperature: params.temperature.clamp(0.0, 1.0),
        top_p: (params.top_p < 1.0).then_some(params.top_p),
        stop_sequences: &params.stop,
        stream: true,
    })
}

// ---------------------------------------------------------------------------------------------
// The stream.

/// What can go wrong inside a stream that started well.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamError {
    Malformed,
    Oversized,
    EndedEarly,
    /// `stop_reason: "refusal"`: the model declined for safety reasons.
    Refused,
    /// An `error` event of type `overloaded_error` or `rate_limit_error`.
    Overloaded,
    /// Any other `error` event: `, type T` when the type looks like an identifier.
    Reported(String),
}

impl From<Oversized> for StreamError {
    fn from(_: Oversized) -> Self {
        StreamError::Oversized
    }
}

impl From<StreamError> for BackendError {
    fn from(error: StreamError) -> Self {
        let internal = |m: &str| BackendError::Internal(m.to_string());
        match error {
            StreamError::Malformed => internal("the provider sent a malformed stream event (not the expected JSON)"),
            StreamError::Oversized => internal("the provider sent a stream event larger than 1 MiB"),
            StreamError::EndedEarly => internal("the provider's stream ended early, before message_stop"),
            StreamError::Refused => {
                BackendError::InvalidRequest("the model refused to answer (stop_reason refusal)".to_string())
            }
            StreamError::Overloaded => BackendError::Overloaded,
            StreamError::Reported(details) => {
                BackendError::Internal(format!("the provider reported an error mid-stream{details}"))
            }
        }
    }
}

/// One event's `data`, as far as this adapter reads it. The SSE `event:` name repeats `type`
/// (the shared decoder keeps only `data`), so `type` decides. Unknown fields and event types are
/// ignored, as Anthropic's versioning policy asks of clients.
#[derive(Deserialize)]
struct StreamEvent {
    #[serde(rename = "type")]
    kind: String,
    /// `message_start`.
    #[serde(default)]
    message: Option<StartMessage>,
    /// `content_block_start`.
    #[serde(default)]
    content_block: Option<Block>,
    /// `content_block_delta` (a `Block`-shaped delta) and `message_delta` (`stop_reason`).
    #[serde(default)]
    delta: Option<serde_json::Value>,
    /// `message_delta`: cumulative counts.
    #[serde(default)]
    usage: Option<WireUsage>,
    /// `error`.
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A content block or a content block delta: `{"type": "text"|"text_delta", "text": …}`, or
/// another type (`thinking_delta`, `input_json_delta`, …) that carries no answer text.
#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

impl WireUsage {
    /// Every prompt token, cached or not: `input_tokens` counts only those after the last cache
    /// breakpoint. `None` when the event gives no input count at all.
    fn prompt_tokens(&self) -> Option<u32> {
        let parts = [self.input_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens];
        parts.iter().any(Option::is_some).then(|| parts.iter().flatten().fold(0u32, |a, b| a.saturating_add(*b)))
    }
}

/// `{"type": "error", "error": {"type": "overloaded_error", "message": …}}`; `message` is not
/// read.
#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default, rename = "type")]
    kind: Option<serde_json::Value>,
}

/// How a stream ended.
type Ended = (FinishReason, Usage);

/// Interprets the `data` of each event of a Messages stream: `message_start`, then per content
/// block `content_block_start`, `content_block_delta`s and `content_block_stop`, then
/// `message_delta` (stop reason, usage) and `message_stop`; `ping` and `error` anywhere.
#[derive(Debug, Default)]
struct StreamState {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    finish: Option<FinishReason>,
    /// `message_stop` arrived; nothing more will.
    stopped: bool,
}

impl StreamState {
    /// Returns the answer text the event adds, if any.
    fn on_event(&mut self, data: &[u8]) -> Result<Option<String>, StreamError> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(None);
        }
        let event: StreamEvent = serde_json::from_slice(data).map_err(|_| StreamError::Malformed)?;
        match event.kind.as_str() {
            "message_start" => {
                let usage = event.message.ok_or(StreamError::Malformed)?.usage.unwrap_or_default();
                self.take_usage(&usage);
                Ok(None)
            }
            "content_block_start" => {
                let block = event.content_block.ok_or(StreamError::Malformed)?;
                // A text block starts empty; anything it does carry is answer text.
                Ok((block.kind == "text").then_some(block.text).flatten().filter(|t| !t.is_empty()))
            }
            "content_block_delta" => {
                let delta = event.delta.ok_or(StreamError::Malformed)?;
                let delta: Block = serde_json::from_value(delta).map_err(|_| StreamError::Malformed)?;
                Ok((delta.kind == "text_delta").then_some(delta.text).flatten().filter(|t| !t.is_empty()))
            }
            "message_delta" => {
                if let Some(usage) = &event.usage {
                    self.take_usage(usage);
                }
                let delta: MessageDelta = match event.delta {
                    Some(delta) => serde_json::from_value(delta).map_err(|_| StreamError::Malformed)?,
                    None => MessageDelta { stop_reason: None },
                };
                if let Some(reason) = delta.stop_reason.as_deref() {
                    self.finish = Some(match reason {
                        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
                        "refusal" => return Err(StreamError::Refused),
                        // "end_turn", "stop_sequence", and "tool_use"/"pause_turn", which need
                        // tools this adapter never offers.
                        _ => FinishReason::Stop,
                    });
                }
                Ok(None)
            }
            "message_stop" => {
                self.stopped = true;
                Ok(None)
            }
            "error" => {
                let kind = event.error.and_then(|e| e.kind).and_then(|k| identifier(&k));
                match kind.as_deref() {
                    Some("overloaded_error" | "rate_limit_error") => Err(StreamError::Overloaded),
                    Some(kind) => Err(StreamError::Reported(format!(", type {kind}"))),
                    None => Err(StreamError::Reported(String::new())),
                }
            }
            // "ping", "content_block_stop", and event types added after this was written.
            _ => Ok(None),
        }
    }

    /// `message_start` gives the prompt count and a first output count; `message_delta` gives
    /// cumulative counts, which replace earlier ones.
    fn take_usage(&mut self, usage: &WireUsage) {
        if let Some(prompt) = usage.prompt_tokens() {
            self.prompt_tokens = Some(prompt);
        }
        if let Some(output) = usage.output_tokens {
            self.completion_tokens = Some(output);
        }
    }

    /// The counts reported so far; zero for a count not yet reported.
    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_tokens.unwrap_or(0), completion_tokens: self.completion_tokens.unwrap_or(0) }
    }

    /// The finish reason and usage once the stream has ended.
    fn finish(self) -> Result<Ended, StreamError> {
        if !self.stopped {
            return Err(StreamError::EndedEarly);
        }
        Ok((self.finish.unwrap_or(FinishReason::Stop), self.usage()))
    }
}

/// A string that is safe to repeat: short, and made only of identifier characters, so it cannot
/// carry prompt text.
fn identifier(value: &serde_json::Value) -> Option<String> {
    value.as_str().and_then(crate::failure::safe_identifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_types::{ChatMessage, GenerationParams};
    use proptest::prelude::*;
    use serde_json::json;

    fn run(events: &[&str]) -> (Vec<String>, Result<Ended, StreamError>) {
        let mut state = StreamState::default();
        let mut pieces = Vec::new();
        for event in events {
            match state.on_event(event.as_bytes()) {
                Ok(Some(piece)) => pieces.push(piece),
                Ok(None) => {}
                Err(e) => return (pieces, Err(e)),
            }
        }
        (pieces, state.finish())
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;
    const BLOCK_START: &str = r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
    const PING: &str = r#"{"type": "ping"}"#;
    const BLOCK_STOP: &str = r#"{"type":"content_block_stop","index":0}"#;
    const STOP: &str = r#"{"type":"message_stop"}"#;

    fn text_delta(text: &str) -> String {
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}).to_string()
    }

    fn message_delta(reason: &str, output: u32) -> String {
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null}, "usage": {"output_tokens": output}})
            .to_string()
    }

    #[test]
    fn a_normal_stream_yields_text_finish_and_usage() {
        let (hello, world, end) = (text_delta("Hello"), text_delta(" world"), message_delta("end_turn", 15));
        let (pieces, ended) = run(&[START, BLOCK_START, PING, &hello, &world, BLOCK_STOP, &end, STOP]);
        assert_eq!(pieces, ["Hello", " world"]);
        assert_eq!(ended, Ok((FinishReason::Stop, Usage { prompt_tokens: 25, completion_tokens: 15 })));
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (reason, expected) in [
            ("end_turn", Ok(FinishReason::Stop)),
            ("stop_sequence", Ok(FinishReason::Stop)),
            ("max_tokens", Ok(FinishReason::Length)),
            ("model_context_window_exceeded", Ok(FinishReason::Length)),
            ("refusal", Err(StreamError::Refused)),
        ] {
            let end = message_delta(reason, 3);
            let (_, ended) = run(&[START, &end, STOP]);
            assert_eq!(ended.map(|(finish, _)| finish), expected, "{reason}");
        }
    }

    #[test]
    fn other_deltas_and_unknown_events_carry_no_text() {
        let thinking =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"secret"}}"#;
        let json =
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#;
        let tool = r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}}"#;
        let future = r#"{"type":"something_new","payload":[1,2]}"#;
        let a = text_delta("a");
        let end = message_delta("end_turn", 2);
        let (pieces, ended) = run(&[START, thinking, tool, json, future, &a, &end, STOP]);
        assert_eq!(pieces, ["a"]);
        assert!(ended.is_ok());
    }

    #[test]
    fn cached_prompt_tokens_count_and_later_usage_replaces_earlier() {
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":0,"output_tokens":1}}}"#;
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#;
        assert_eq!(
            run(&[start, end, STOP]).1,
            Ok((FinishReason::Stop, Usage { prompt_tokens: 105, completion_tokens: 9 }))
        );
    }

    #[test]
    fn error_events_give_only_the_type() {
        let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(run(&[START, overloaded]).1, Err(StreamError::Overloaded));
        let api = r#"{"type":"error","error":{"type":"api_error","message":"failed on secret prompt text"}}"#;
        assert_eq!(run(&[START, api]).1, Err(StreamError::Reported(", type api_error".into())));
        let odd = r#"{"type":"error","error":{"type":"secret prompt text","message":"x"}}"#;
        assert_eq!(run(&[START, odd]).1, Err(StreamError::Reported(String::new())));
        let error = BackendError::from(StreamError::Reported(", type api_error".into()));
        assert_eq!(error, BackendError::Internal("the provider reported an error mid-stream, type api_error".into()));
    }

    #[test]
    fn broken_streams_are_errors() {
        let a = text_delta("a");
        let end = message_delta("end_turn", 2);
        assert_eq!(run(&[START, &a, &end]).1, Err(StreamError::EndedEarly));
        assert_eq!(run(&[]).1, Err(StreamError::EndedEarly));
        assert_eq!(run(&["{not json"]).1, Err(StreamError::Malformed));
        assert_eq!(run(&[r#"{"no_type":1}"#]).1, Err(StreamError::Malformed));
        assert_eq!(run(&[r#"{"type":"content_block_delta","delta":"text"}"#]).1, Err(StreamError::Malformed));
        // A stream that stops without a stop reason is complete, and ended normally.
        assert_eq!(run(&[START, STOP]).1, Ok((FinishReason::Stop, Usage { prompt_tokens: 25, completion_tokens: 1 })));
    }

    fn conversation(messages: &[(Role, &str)]) -> ChatRequest {
        ChatRequest {
            messages: messages.iter().map(|(role, text)| ChatMessage::new(*role, *text)).collect(),
            params: GenerationParams::default(),
        }
    }

    #[test]
    fn the_body_has_top_level_system_and_alternating_roles() {
        let mut request = conversation(&[
            (Role::System, "Answer from the sources."),
            (Role::User, "Sources: A."),
            (Role::User, "Question?"),
            (Role::System, "Be brief."),
            (Role::Assistant, "Partial"),
            (Role::Assistant, ""),
            (Role::Assistant, "answer."),
            (Role::User, "More?"),
            (Role::Assistant, "Well, "),
        ]);
        request.params = GenerationParams {
            max_tokens: 100,
            temperature: 1.5,
            top_p: 0.9,
            seed: 3,
            stop: vec!["\n\nHuman:".into()],
        };
        let body = serde_json::to_value(messages_body("claude-x", &request).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-x",
                "max_tokens": 100,
                "system": "Answer from the sources.\n\nBe brief.",
                "messages": [
                    {"role": "user", "content": "Sources: A.\n\nQuestion?"},
                    {"role": "assistant", "content": "Partial\n\nanswer."},
                    {"role": "user", "content": "More?"},
                    {"role": "assistant", "content": "Well,"}
                ],
                "temperature": 1.0,
                "top_p": 0.9f32,
                "stop_sequences": ["\n\nHuman:"],
                "stream": true
            })
        );
    }

    #[test]
    fn defaults_leave_out_optional_fields() {
        let request = conversation(&[(Role::User, "Hi"), (Role::Assistant, "  ")]);
        let body = serde_json::to_value(messages_body("m", &request).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.0, "stream": true})
        );
    }

    #[test]
    fn conversations_anthropic_cannot_take_are_refused() {
        let starts_with_assistant =
            conversation(&[(Role::System, "s"), (Role::Assistant, "Hello!"), (Role::User, "Hi")]);
        assert_eq!(messages_body("m", &starts_with_assistant).unwrap_err(), ShapeError::StartsWithAssistant);
        for empty in [conversation(&[]), conversation(&[(Role::System, "s"), (Role::User, "")])] {
            assert_eq!(messages_body("m", &empty).unwrap_err(), ShapeError::NoUserMessage);
        }
    }

    /// A whole, valid stream for `pieces`, in Anthropic's framing (`event:` then `data:` lines).
    fn stream_bytes(pieces: &[String], crlf: bool) -> Vec<u8> {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut events = vec![START.to_string(), BLOCK_START.to_string(), PING.to_string()];
        events.extend(pieces.iter().map(|p| text_delta(p)));
        events.extend([BLOCK_STOP.to_string(), message_delta("max_tokens", pieces.len() as u32), STOP.to_string()]);
        let mut out = String::new();
        for data in events {
            let name: serde_json::Value = serde_json::from_str(&data).unwrap();
            out.push_str(&format!("event: {}{end}data: {data}{end}{end}", name["type"].as_str().unwrap()));
        }
        out.into_bytes()
    }

    /// Feeds `chunks` through the decoder and the interpreter, as `AnthropicChat::stream` does.
    fn interpret(chunks: &[&[u8]]) -> (String, Result<Ended, StreamError>) {
        let mut decoder = SseDecoder::new(MAX_EVENT_BYTES);
        let mut state = StreamState::default();
        let mut events = Vec::new();
        let mut text = String::new();
        for chunk in chunks {
            if let Err(e) = decoder.feed(chunk, &mut events) {
                return (text, Err(e.into()));
            }
            for event in events.drain(..) {
                match state.on_event(&event) {
                    Ok(piece) => text.extend(piece),
                    Err(e) => return (text, Err(e)),
                }
            }
        }
        (text, state.finish())
    }

    proptest! {
        /// However the bytes are cut into reads, the same text, finish and usage come out.
        #[test]
        fn splitting_does_not_change_the_answer(
            pieces in proptest::collection::vec("[a-zé \"\\\\\n{}:]{1,8}", 0..8),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let bytes = stream_bytes(&pieces, crlf);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&bytes[start..point]);
                start = point;
            }
            chunks.push(&bytes[start..]);
            let (whole_text, whole_end) = interpret(&[&bytes]);
            prop_assert_eq!(&whole_text, &pieces.concat());
            prop_assert_eq!(
                whole_end.clone(),
                Ok((FinishReason::Length, Usage { prompt_tokens: 25, completion_tokens: pieces.len() as u32 }))
            );
            let (text, end) = interpret(&chunks);
            prop_assert_eq!(text, whole_text);
            prop_assert_eq!(end, whole_end);
        }

        /// Whatever bytes a server sends, decoding and interpreting them returns, never panics.
        #[test]
        fn arbitrary_streams_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..8)
        ) {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let _ = interpret(&chunks);
        }
    }
}
