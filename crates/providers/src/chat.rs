//! `OpenAiChat`: a `ChatBackend` that streams `POST {base_url}/chat/completions`.
//!
//! The request always asks for a stream with `stream_options.include_usage`, so text reaches the
//! sink as the provider produces it and the token counts arrive in a last chunk with empty
//! `choices`. `StreamState` interprets the chunks and is pure; `stream_chat` only moves bytes.
//! Azure OpenAI (`azure`) speaks the same stream and uses `chat_body` and `run_chat` too.

use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, FinishReason, Role, Timings, TokenSink, Usage,
};

use crate::endpoint::{Connection, Endpoint, Flavour, Redacted};
use crate::failure::detail_suffix;
use crate::sse::{Oversized, SseDecoder};
use crate::wire;

/// The context window assumed when the configuration does not give one.
pub const DEFAULT_CONTEXT_TOKENS: usize = 128_000;

/// The largest SSE line or event accepted. A chunk carries a few tokens of text; anything near
/// this size is a broken or hostile server.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// How to build an `OpenAiChat`.
#[derive(Debug, Clone)]
pub struct OpenAiChatOptions {
    /// The backend's configured name, reported by `ChatBackend::name` and used in logs.
    pub name: String,
    /// The model id sent to the provider and reported by `ChatBackend::model`.
    pub model: String,
    pub endpoint: Endpoint,
    /// The model's context window in tokens, reported by `ChatBackend::context_tokens`.
    pub context_tokens: usize,
}

impl OpenAiChatOptions {
    /// Options with `DEFAULT_CONTEXT_TOKENS`.
    pub fn new(name: impl Into<String>, model: impl Into<String>, endpoint: Endpoint) -> Self {
        Self { name: name.into(), model: model.into(), endpoint, context_tokens: DEFAULT_CONTEXT_TOKENS }
    }
}

/// A chat backend served over the OpenAI Chat Completions API.
///
/// Usage comes from the provider's final usage chunk. A server that sends none (or a request
/// the sink cancelled, after which nothing more is read) reports zero tokens: this adapter does
/// not guess counts.
pub struct OpenAiChat {
    name: String,
    model: String,
    context_tokens: usize,
    connection: Connection,
}

impl OpenAiChat {
    pub fn new(options: OpenAiChatOptions) -> Result<Self, crate::BuildError> {
        let connection = Connection::new(&options.endpoint)?;
        Ok(Self { name: options.name, model: options.model, context_tokens: options.context_tokens, connection })
    }
}

impl fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("flavour", &self.connection.flavour)
            .field("base_url", &self.connection.base_url)
            .field("api_key", &self.connection.has_key().then_some(Redacted))
            .field("context_tokens", &self.context_tokens)
            .finish()
    }
}

#[async_trait]
impl ChatBackend for OpenAiChat {
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
        let body = chat_body(Some(&self.model), self.connection.flavour, &request);
        run_chat(&self.connection, "chat/completions", &self.name, &body, sink).await
    }
}

/// Streams one chat completion (`POST {base_url}/{path}`) into `sink` and logs how it went
/// under the backend's `name`.
pub(crate) async fn run_chat(
    connection: &Connection,
    path: &str,
    name: &str,
    body: &wire::ChatBody<'_>,
    mut sink: TokenSink,
) -> Result<ChatOutcome, BackendError> {
    let started = Instant::now();
    let result = stream_chat(connection, path, name, body, started, &mut sink).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(outcome) => tracing::debug!(
            backend = %name,
            elapsed_ms,
            prompt_tokens = outcome.usage.prompt_tokens,
            completion_tokens = outcome.usage.completion_tokens,
            finish = ?outcome.finish_reason,
            "provider chat finished"
        ),
        Err(error) => tracing::warn!(backend = %name, elapsed_ms, %error, "provider chat failed"),
    }
    result
}

async fn stream_chat(
    connection: &Connection,
    path: &str,
    name: &str,
    body: &wire::ChatBody<'_>,
    started: Instant,
    sink: &mut TokenSink,
) -> Result<ChatOutcome, BackendError> {
    let response = connection.send(connection.post(path, body)).await?;
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
        let chunk = chunk.map_err(|e| connection.transport_failure(&e))?;
        decoder.feed(&chunk, &mut events).map_err(StreamError::from)?;
        for event in events.drain(..) {
            if state.done {
                break;
            }
            let Some(piece) = state.on_event(&event)? else { continue };
            first_content.get_or_insert_with(Instant::now);
            text.push_str(&piece);
            if !sink(&piece) {
                // Dropping the response closes the connection, which stops generation at
                // the provider. Nothing more is read, so usage is unknown.
                return Ok(ChatOutcome {
                    text,
                    usage: Usage::default(),
                    finish_reason: FinishReason::Cancelled,
                    timings: timings(first_content),
                });
            }
        }
        if state.done {
            break;
        }
    }
    if decoder.finish() {
        tracing::debug!(backend = %name, "provider stream ended inside an event");
    }
    let (finish_reason, usage) = state.finish()?;
    if usage.is_none() {
        tracing::debug!(backend = %name, "provider sent no usage; reporting zero tokens");
    }
    Ok(ChatOutcome { text, usage: usage.unwrap_or_default(), finish_reason, timings: timings(first_content) })
}

/// The JSON body for a streamed chat completion. `model` is `None` where the URL names it.
pub(crate) fn chat_body<'a>(model: Option<&'a str>, flavour: Flavour, request: &'a ChatRequest) -> wire::ChatBody<'a> {
    let params = &request.params;
    let (max_completion_tokens, max_tokens) = match flavour {
        Flavour::OpenAi => (Some(params.max_tokens), None),
        Flavour::OpenAiCompatible => (None, Some(params.max_tokens)),
    };
    wire::ChatBody {
        model,
        messages: request
            .messages
            .iter()
            .map(|m| wire::Message {
                role: match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                },
                content: &m.content,
            })
            .collect(),
        max_completion_tokens,
        max_tokens,
        temperature: params.temperature,
        top_p: params.top_p,
        seed: params.seed,
        stop: &params.stop,
        stream: true,
        stream_options: wire::StreamOptions { include_usage: true },
    }
}

/// What can go wrong inside a stream that started well.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamError {
    Malformed,
    Oversized,
    EndedEarly,
    ContentFilter,
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
            StreamError::EndedEarly => internal("the provider's stream ended early, before a finish reason or [DONE]"),
            StreamError::ContentFilter => {
                BackendError::InvalidRequest("the provider's content filter stopped the answer".to_string())
            }
            StreamError::Reported(details) => {
                BackendError::Internal(format!("the provider reported an error mid-stream{details}"))
            }
        }
    }
}

/// How a stream ended: the finish reason, and the usage if the provider sent it.
type Ended = (FinishReason, Option<Usage>);

/// Interprets the `data` of each SSE event of a chat completion stream.
#[derive(Debug, Default)]
struct StreamState {
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    /// `data: [DONE]` arrived; nothing more will.
    done: bool,
}

impl StreamState {
    /// Returns the text the event adds, if any.
    fn on_event(&mut self, data: &[u8]) -> Result<Option<String>, StreamError> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(None);
        }
        if data == b"[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let chunk: wire::ChatChunk = serde_json::from_slice(data).map_err(|_| StreamError::Malformed)?;
        if let Some(error) = &chunk.error {
            return Err(StreamError::Reported(detail_suffix(error)));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens.unwrap_or(0),
                completion_tokens: usage.completion_tokens.unwrap_or(0),
            });
        }
        // One choice was asked for (`n` defaults to 1); anything else is ignored.
        let Some(choice) = chunk.choices.unwrap_or_default().into_iter().find(|c| c.index == 0) else {
            return Ok(None);
        };
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.finish = Some(match reason {
                "length" => FinishReason::Length,
                "content_filter" => return Err(StreamError::ContentFilter),
                // "stop", and "tool_calls"/"function_call", which this adapter never asks for.
                _ => FinishReason::Stop,
            });
        }
        Ok(choice.delta.and_then(|d| d.content).filter(|c| !c.is_empty()))
    }

    /// The finish reason and usage once the stream has ended.
    fn finish(self) -> Result<Ended, StreamError> {
        match (self.finish, self.done) {
            (Some(reason), _) => Ok((reason, self.usage)),
            (None, true) => Ok((FinishReason::Stop, self.usage)),
            (None, false) => Err(StreamError::EndedEarly),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_types::{ChatMessage, GenerationParams};

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

    #[test]
    fn a_normal_stream_yields_text_finish_and_usage() {
        let (pieces, end) = run(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            "[DONE]",
        ]);
        assert_eq!(pieces, ["Hel", "lo"]);
        assert_eq!(end, Ok((FinishReason::Stop, Some(Usage { prompt_tokens: 9, completion_tokens: 2 }))));
    }

    #[test]
    fn null_choices_and_missing_usage_are_accepted() {
        let (_, end) = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}]}"#,
            r#"{"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        ]);
        assert_eq!(end, Ok((FinishReason::Length, Some(Usage { prompt_tokens: 1, completion_tokens: 1 }))));
        let (_, end) = run(&[r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#]);
        assert_eq!(end, Ok((FinishReason::Stop, None)));
    }

    #[test]
    fn azure_filter_results_are_accepted_and_ignored() {
        let (pieces, end) = run(&[
            r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
            r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Paris"},"finish_reason":null,"index":0,"logprobs":null}],"created":1,"id":"x","model":"gpt-4o","object":"chat.completion.chunk"}"#,
            r#"{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1,"id":"x","model":"gpt-4o","object":"chat.completion.chunk"}"#,
            "[DONE]",
        ]);
        assert_eq!(pieces, ["Paris"]);
        assert_eq!(end, Ok((FinishReason::Stop, None)));
    }

    #[test]
    fn broken_streams_are_errors() {
        assert_eq!(run(&[r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#]).1, Err(StreamError::EndedEarly));
        assert_eq!(run(&["{not json"]).1, Err(StreamError::Malformed));
        assert_eq!(
            run(&[r#"{"choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}"#]).1,
            Err(StreamError::ContentFilter)
        );
        assert_eq!(
            run(&[r#"{"error":{"message":"secret prompt text","type":"server_error","code":null}}"#]).1,
            Err(StreamError::Reported(", type server_error".into()))
        );
    }

    proptest::proptest! {
        /// Whatever bytes a server sends, decoding and interpreting them returns, never panics.
        #[test]
        fn arbitrary_streams_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)
        ) {
            let mut decoder = SseDecoder::new(256);
            let mut state = StreamState::default();
            let mut events = Vec::new();
            for chunk in &chunks {
                if decoder.feed(chunk, &mut events).is_err() {
                    return Ok(());
                }
                for event in events.drain(..) {
                    let _ = state.on_event(&event);
                }
            }
            decoder.finish();
            let _ = state.finish();
        }
    }

    #[test]
    fn the_body_follows_the_flavour() {
        let request = ChatRequest {
            messages: vec![ChatMessage::new(Role::System, "s"), ChatMessage::new(Role::User, "u")],
            params: GenerationParams { max_tokens: 7, temperature: 0.5, stop: vec![], ..GenerationParams::default() },
        };
        let openai = serde_json::to_value(chat_body(Some("m"), Flavour::OpenAi, &request)).unwrap();
        assert_eq!(
            openai,
            serde_json::json!({
                "model": "m",
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "max_completion_tokens": 7,
                "temperature": 0.5,
                "top_p": 1.0,
                "seed": 0,
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
        let compatible = serde_json::to_value(chat_body(Some("m"), Flavour::OpenAiCompatible, &request)).unwrap();
        assert_eq!(compatible["max_tokens"], 7);
        assert!(compatible.get("max_completion_tokens").is_none());
        let azure = serde_json::to_value(chat_body(None, Flavour::OpenAi, &request)).unwrap();
        assert!(azure.get("model").is_none());
        assert_eq!(azure["max_completion_tokens"], 7);
    }
}
