//! `BedrockChat`: a `ChatBackend` that streams Bedrock's ConverseStream API,
//! `POST /model/{modelId}/converse-stream`.
//!
//! The body is the Converse request (`messages`, `system`, `inferenceConfig`); the answer is an
//! event stream (`eventstream`) of `messageStart`, `contentBlockDelta`, `contentBlockStop`,
//! `messageStop` and `metadata` events, or an exception. `converse_body` and `StreamState` are
//! pure; `chat` only moves bytes.

use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, FinishReason, Role, Timings, TokenSink, Usage,
};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::eventstream::{DecodeError, Decoder, Message};
use super::BedrockOptions;

/// A chat backend served by Amazon Bedrock's Converse API.
///
/// Usage comes from the stream's final `metadata` event; a stream without one (or a request the
/// sink cancelled) reports zero tokens. `GenerationParams::seed` is not sent: Converse has no
/// seed.
pub struct BedrockChat {
    name: String,
    model_id: String,
    context_tokens: usize,
    client: Client,
}

impl BedrockChat {
    pub fn new(options: BedrockOptions) -> Result<Self, crate::BuildError> {
        let client = Client::new(&options)?;
        Ok(Self { name: options.name, model_id: options.model_id, context_tokens: options.context_tokens, client })
    }
}

impl fmt::Debug for BedrockChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockChat")
            .field("name", &self.name)
            .field("model_id", &self.model_id)
            .field("url", &self.client.model_url())
            .field("context_tokens", &self.context_tokens)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ChatBackend for BedrockChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model_id
    }

    fn context_tokens(&self) -> usize {
        self.context_tokens
    }

    async fn chat(&self, request: ChatRequest, mut sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        let started = Instant::now();
        let result = self.stream(&request, started, &mut sink).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(outcome) => tracing::debug!(
                backend = %self.name,
                elapsed_ms,
                prompt_tokens = outcome.usage.prompt_tokens,
                completion_tokens = outcome.usage.completion_tokens,
                finish = ?outcome.finish_reason,
                "bedrock chat finished"
            ),
            Err(error) => tracing::warn!(backend = %self.name, elapsed_ms, %error, "bedrock chat failed"),
        }
        result
    }
}

impl BedrockChat {
    async fn stream(
        &self,
        request: &ChatRequest,
        started: Instant,
        sink: &mut TokenSink,
    ) -> Result<ChatOutcome, BackendError> {
        let body = converse_body(request)?;
        let response = self.client.post("converse-stream", body, "application/vnd.amazon.eventstream").await?;
        let mut bytes = response.bytes_stream();
        let mut decoder = Decoder::new();
        let mut state = StreamState::default();
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
            let chunk = chunk.map_err(|e| self.client.transport_failure(&e))?;
            let messages = decoder.push(&chunk).map_err(StreamError::Decode)?;
            for message in &messages {
                let Some(piece) = state.on_message(message)? else { continue };
                first_content.get_or_insert_with(Instant::now);
                text.push_str(&piece);
                if !sink(&piece) {
                    // Dropping the response closes the connection, which stops generation.
                    return Ok(ChatOutcome {
                        text,
                        usage: Usage::default(),
                        finish_reason: FinishReason::Cancelled,
                        timings: timings(first_content),
                    });
                }
            }
        }
        decoder.finish().map_err(StreamError::Decode)?;
        let (finish_reason, usage) = state.finish()?;
        if usage.is_none() {
            tracing::debug!(backend = %self.name, "bedrock sent no usage metadata; reporting zero tokens");
        }
        Ok(ChatOutcome { text, usage: usage.unwrap_or_default(), finish_reason, timings: timings(first_content) })
    }
}

#[derive(Serialize)]
struct ConverseBody<'a> {
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Text<'a>>,
    #[serde(rename = "inferenceConfig")]
    inference_config: InferenceConfig<'a>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<Text<'a>>,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
}

/// The JSON body of a Converse request. System messages become `system` blocks; consecutive
/// messages of one role become one message with several text blocks (Converse requires the
/// roles to alternate); empty texts are left out (Converse refuses blank blocks).
pub(crate) fn converse_body(request: &ChatRequest) -> Result<Vec<u8>, BackendError> {
    let mut system = Vec::new();
    let mut messages: Vec<WireMessage<'_>> = Vec::new();
    for message in request.messages.iter().filter(|m| !m.content.is_empty()) {
        let text = Text { text: &message.content };
        let role = match message.role {
            Role::System => {
                system.push(text);
                continue;
            }
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.push(text),
            _ => messages.push(WireMessage { role, content: vec![text] }),
        }
    }
    if messages.is_empty() {
        return Err(BackendError::InvalidRequest(
            "Bedrock needs at least one non-empty user or assistant message".into(),
        ));
    }
    let params = &request.params;
    let body = ConverseBody {
        messages,
        system,
        inference_config: InferenceConfig {
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            // 1.0 means no nucleus cut, the same as leaving it out; and some models (recent
            // Claude) refuse a request that sets both temperature and top_p.
            top_p: (params.top_p < 1.0).then_some(params.top_p),
            stop_sequences: &params.stop,
        },
    };
    serde_json::to_vec(&body).map_err(|_| BackendError::Internal("the request could not be encoded".into()))
}

/// What can go wrong inside a stream that started well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamError {
    Decode(DecodeError),
    /// An event whose payload is not the JSON its type promises; carries the event type.
    Malformed(&'static str),
    /// A message whose `:message-type` is missing or unknown.
    UnknownMessage,
    /// The stream ended without `messageStop`.
    EndedEarly,
    /// `messageStop` with `content_filtered` or `guardrail_intervened`.
    Filtered(&'static str),
    /// `messageStop` with `malformed_model_output` or `malformed_tool_use`.
    MalformedOutput(&'static str),
    /// An `exception` message: its `:exception-type`, when it looks like an identifier.
    Exception(Option<String>),
    /// An `error` message: its `:error-code`, when it looks like an identifier.
    Error(Option<String>),
}

impl From<StreamError> for BackendError {
    fn from(error: StreamError) -> Self {
        let internal = |m: String| BackendError::Internal(m);
        let suffix = |kind: &Option<String>| kind.as_ref().map(|k| format!(" ({k})")).unwrap_or_default();
        match &error {
            StreamError::Decode(DecodeError::Truncated(n)) => {
                internal(format!("the provider's stream ended inside an event ({n} bytes of it received)"))
            }
            StreamError::Decode(e) => internal(format!("the provider's event stream is corrupt: {e}")),
            StreamError::Malformed(event) => {
                internal(format!("the provider sent a malformed {event} event (not the expected JSON)"))
            }
            StreamError::UnknownMessage => {
                internal("the provider sent an event-stream message of no known type".into())
            }
            StreamError::EndedEarly => internal("the provider's stream ended early, before messageStop".into()),
            StreamError::Filtered(reason) => {
                BackendError::InvalidRequest(format!("the provider's content filter stopped the answer ({reason})"))
            }
            StreamError::MalformedOutput(reason) => internal(format!("the model produced malformed output ({reason})")),
            StreamError::Exception(kind) => match kind.as_deref() {
                Some("throttlingException" | "serviceUnavailableException") => BackendError::Overloaded,
                Some("validationException") => BackendError::InvalidRequest(format!(
                    "the provider rejected the request mid-stream{}",
                    suffix(kind)
                )),
                _ => internal(format!("the provider reported an error mid-stream{}", suffix(kind))),
            },
            StreamError::Error(code) => internal(format!("the provider reported an error mid-stream{}", suffix(code))),
        }
    }
}

/// How a stream ended: the finish reason, and the usage if the provider sent it.
type Ended = (FinishReason, Option<Usage>);

#[derive(Deserialize)]
struct DeltaEvent {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopEvent {
    stop_reason: String,
}

#[derive(Deserialize)]
struct MetadataEvent {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

/// Interprets the messages of a ConverseStream response.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamState {
    /// Returns the text the message adds, if any.
    pub(crate) fn on_message(&mut self, message: &Message) -> Result<Option<String>, StreamError> {
        match message.header_str(":message-type") {
            Some("event") => {}
            Some("exception") => return Err(StreamError::Exception(identifier(message.header_str(":exception-type")))),
            Some("error") => return Err(StreamError::Error(identifier(message.header_str(":error-code")))),
            _ => return Err(StreamError::UnknownMessage),
        }
        match message.header_str(":event-type") {
            Some("contentBlockDelta") => {
                let event: DeltaEvent = parse(&message.payload, "contentBlockDelta")?;
                // Reasoning and tool-use deltas carry no answer text.
                Ok(event.delta.and_then(|d| d.text).filter(|t| !t.is_empty()))
            }
            Some("messageStop") => {
                let event: StopEvent = parse(&message.payload, "messageStop")?;
                self.finish = Some(match event.stop_reason.as_str() {
                    "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
                    "content_filtered" => return Err(StreamError::Filtered("content_filtered")),
                    "guardrail_intervened" => return Err(StreamError::Filtered("guardrail_intervened")),
                    "malformed_model_output" => return Err(StreamError::MalformedOutput("malformed_model_output")),
                    "malformed_tool_use" => return Err(StreamError::MalformedOutput("malformed_tool_use")),
                    // "end_turn", "stop_sequence", "tool_use" (never asked for), and reasons
                    // added after this was written.
                    _ => FinishReason::Stop,
                });
                Ok(None)
            }
            Some("metadata") => {
                let event: MetadataEvent = parse(&message.payload, "metadata")?;
                if let Some(usage) = event.usage {
                    self.usage = Some(Usage {
                        prompt_tokens: usage.input_tokens.unwrap_or(0),
                        completion_tokens: usage.output_tokens.unwrap_or(0),
                    });
                }
                Ok(None)
            }
            // messageStart, contentBlockStart, contentBlockStop, and event types added later.
            _ => Ok(None),
        }
    }

    /// The finish reason and usage once the stream has ended.
    pub(crate) fn finish(self) -> Result<Ended, StreamError> {
        match self.finish {
            Some(reason) => Ok((reason, self.usage)),
            None => Err(StreamError::EndedEarly),
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8], event: &'static str) -> Result<T, StreamError> {
    serde_json::from_slice(payload).map_err(|_| StreamError::Malformed(event))
}

/// A header value that is safe to repeat in an error: short and made of identifier characters.
fn identifier(value: Option<&str>) -> Option<String> {
    value.and_then(crate::failure::safe_identifier)
}

#[cfg(test)]
mod tests {
    use super::super::eventstream::{encode, Header};
    use super::*;
    use perimeter_types::{ChatMessage, GenerationParams};

    fn event(kind: &str, payload: &str) -> Message {
        Message {
            headers: vec![
                Header::string(":event-type", kind),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn run(messages: &[Message]) -> (Vec<String>, Result<Ended, StreamError>) {
        let mut state = StreamState::default();
        let mut pieces = Vec::new();
        for message in messages {
            match state.on_message(message) {
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
            event(
                "messageStart",
                r#"{"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0","role":"assistant"}"#,
            ),
            event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hel"},"p":"abcd"}"#),
            event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"lo"},"p":"abcdefgh"}"#),
            event("contentBlockStop", r#"{"contentBlockIndex":0,"p":"abcdefghijk"}"#),
            event("messageStop", r#"{"p":"abcdefghijklm","stopReason":"end_turn"}"#),
            event(
                "metadata",
                r#"{"metrics":{"latencyMs":412},"p":"abc","usage":{"inputTokens":9,"outputTokens":2,"totalTokens":11}}"#,
            ),
        ]);
        assert_eq!(pieces, ["Hel", "lo"]);
        assert_eq!(end, Ok((FinishReason::Stop, Some(Usage { prompt_tokens: 9, completion_tokens: 2 }))));
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons_or_errors() {
        let stop = |reason: &str| run(&[event("messageStop", &format!(r#"{{"stopReason":"{reason}"}}"#))]).1;
        assert_eq!(stop("end_turn"), Ok((FinishReason::Stop, None)));
        assert_eq!(stop("stop_sequence"), Ok((FinishReason::Stop, None)));
        assert_eq!(stop("max_tokens"), Ok((FinishReason::Length, None)));
        assert_eq!(stop("content_filtered"), Err(StreamError::Filtered("content_filtered")));
        assert_eq!(stop("guardrail_intervened"), Err(StreamError::Filtered("guardrail_intervened")));
        assert_eq!(stop("some_future_reason"), Ok((FinishReason::Stop, None)));
        assert_eq!(run(&[event("contentBlockDelta", r#"{"delta":{"text":"x"}}"#)]).1, Err(StreamError::EndedEarly));
        assert_eq!(run(&[event("contentBlockDelta", "{not json")]).1, Err(StreamError::Malformed("contentBlockDelta")));
    }

    #[test]
    fn exceptions_map_to_backend_errors() {
        let exception = |kind: &str| Message {
            headers: vec![
                Header::string(":exception-type", kind),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "exception"),
            ],
            payload: br#"{"message":"secret prompt text"}"#.to_vec(),
        };
        let error = |kind: &str| BackendError::from(run(&[exception(kind)]).1.unwrap_err());
        assert_eq!(error("throttlingException"), BackendError::Overloaded);
        assert_eq!(error("serviceUnavailableException"), BackendError::Overloaded);
        assert_eq!(
            error("modelStreamErrorException"),
            BackendError::Internal("the provider reported an error mid-stream (modelStreamErrorException)".into())
        );
        assert_eq!(
            error("internalServerException"),
            BackendError::Internal("the provider reported an error mid-stream (internalServerException)".into())
        );
        assert_eq!(
            error("validationException"),
            BackendError::InvalidRequest("the provider rejected the request mid-stream (validationException)".into())
        );
        assert_eq!(
            error("secret prompt text"),
            BackendError::Internal("the provider reported an error mid-stream".into())
        );
        let unknown = Message { headers: vec![], payload: vec![] };
        assert_eq!(run(&[unknown]).1, Err(StreamError::UnknownMessage));
    }

    #[test]
    fn the_body_merges_roles_and_moves_system_text() {
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, "Answer from the sources."),
                ChatMessage::new(Role::User, "Source 1: …"),
                ChatMessage::new(Role::User, "Question?"),
                ChatMessage::new(Role::Assistant, ""),
                ChatMessage::new(Role::System, "Be brief."),
            ],
            params: GenerationParams {
                max_tokens: 7,
                temperature: 0.5,
                stop: vec!["\n\nUser:".into()],
                ..GenerationParams::default()
            },
        };
        let body: serde_json::Value = serde_json::from_slice(&converse_body(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "messages": [{"role": "user", "content": [{"text": "Source 1: …"}, {"text": "Question?"}]}],
                "system": [{"text": "Answer from the sources."}, {"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 7, "temperature": 0.5, "stopSequences": ["\n\nUser:"]}
            })
        );
        let only_system =
            ChatRequest { messages: vec![ChatMessage::new(Role::System, "s")], params: GenerationParams::default() };
        assert!(matches!(converse_body(&only_system), Err(BackendError::InvalidRequest(_))));
    }

    proptest::proptest! {
        /// Whatever bytes a server sends, decoding and interpreting them returns, never panics.
        #[test]
        fn arbitrary_streams_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8),
            payload in ".{0,40}",
        ) {
            let mut decoder = Decoder::with_max_frame(1024);
            let mut state = StreamState::default();
            let valid = encode(&event("contentBlockDelta", &payload).headers, payload.as_bytes());
            for chunk in std::iter::once(&valid).chain(&chunks) {
                match decoder.push(chunk) {
                    Ok(messages) => for m in &messages { let _ = state.on_message(m); },
                    Err(_) => break,
                }
            }
            let _ = decoder.finish();
            let _ = state.finish();
        }
    }
}
