//! The Anthropic adapter against a local server on 127.0.0.1 that speaks the Messages API's
//! documented wire format byte for byte (named SSE events, `ping`s, Anthropic's error JSON) and
//! records every request it gets. A paid API cannot run in tests; this double is the one
//! stand-in, and nothing leaves loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use perimeter_providers::anthropic::{
    AnthropicChat, AnthropicOptions, ANTHROPIC_BASE_URL, ANTHROPIC_CONTEXT_TOKENS, ANTHROPIC_VERSION,
};
use perimeter_providers::{BuildError, Endpoint, Flavour, RetryPolicy};
use perimeter_types::{
    BackendError, ChatBackend, ChatMessage, ChatRequest, FinishReason, GenerationParams, Role, TokenSink, Usage,
};
use serde_json::{json, Value};

const KEY: &str = "sk-ant-api03-DO-NOT-LEAK-7c1e";
const KEY_ENV: &str = "ANTHROPIC_API_KEY";
const SECRET: &str = "SECRET PROMPT";

// ---------------------------------------------------------------------------------------------
// The recording server.

struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Value,
}

type Handler = Arc<dyn Fn(usize, Value) -> BoxFuture<'static, Response> + Send + Sync>;
type Log = Arc<Mutex<Vec<Recorded>>>;

struct Server {
    base_url: String,
    log: Log,
}

impl Server {
    /// Serves every request with `handler(request number, JSON body)`.
    async fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(usize, Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |n, body| handler(n, body).boxed());
        let log: Log = Arc::default();
        let app = Router::new().fallback(record).with_state((handler, log.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // Like `ANTHROPIC_BASE_URL`: no version segment.
        Server { base_url: format!("http://{addr}"), log }
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.log.lock().unwrap()
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            base_url: Some(self.base_url.clone()),
            api_key: Some(KEY.into()),
            api_key_env: Some(KEY_ENV.into()),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            // One attempt, so that each test sees exactly the requests it caused; retries have
            // their own test.
            retry: RetryPolicy::none(),
            // The flavour is ignored: Anthropic is its own dialect.
            ..Endpoint::new(Flavour::OpenAi)
        }
    }

    fn chat(&self) -> AnthropicChat {
        AnthropicChat::new(AnthropicOptions::new("claude", "claude-sonnet-4-5", self.endpoint())).unwrap()
    }
}

async fn record(State((handler, log)): State<(Handler, Log)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Recorded { path: parts.uri.path().to_string(), headers: parts.headers, body: body.clone() });
        log.len() - 1
    };
    handler(n, body).await
}

/// A `text/event-stream` body written as the given parts, one network write each, a little
/// apart so that they arrive as separate reads.
fn sse(parts: Vec<Vec<u8>>) -> Response {
    let stream = futures::stream::iter(parts).then(|part| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, Infallible>(part)
    });
    sse_stream(stream)
}

fn sse_stream<S, E>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Vec<u8>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Anthropic's error JSON, with a message that quotes the prompt and the key, as an error's
/// message can.
fn error_json(kind: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": kind, "message": format!("messages.0: {SECRET} is not allowed; key {KEY}")},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"
    })
}

fn error_response(status: u16, kind: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")
        .body(Body::from(error_json(kind).to_string()))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Anthropic's stream events, as the API sends them: `event: NAME`, `data: JSON`, a blank line.

fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

fn message_start(input_tokens: u32) -> Vec<u8> {
    event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1, "service_tier": "standard"}
        }}),
    )
}

fn block_start() -> Vec<u8> {
    event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    )
}

fn ping() -> Vec<u8> {
    event("ping", &json!({"type": "ping"}))
}

fn text_delta(text: &str) -> Vec<u8> {
    event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
    )
}

fn block_stop() -> Vec<u8> {
    event("content_block_stop", &json!({"type": "content_block_stop", "index": 0}))
}

fn message_delta(stop_reason: &str, output_tokens: u32) -> Vec<u8> {
    event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}}),
    )
}

fn message_stop() -> Vec<u8> {
    event("message_stop", &json!({"type": "message_stop"}))
}

fn error_event(kind: &str) -> Vec<u8> {
    let error = error_json(kind);
    event("error", &json!({"type": "error", "error": error["error"]}))
}

/// A complete, ordinary stream for `pieces`.
fn plain_stream(pieces: &[&str], stop_reason: &str) -> Vec<Vec<u8>> {
    let mut parts = vec![message_start(12), block_start(), ping()];
    parts.extend(pieces.iter().map(|p| text_delta(p)));
    parts.extend([block_stop(), message_delta(stop_reason, pieces.len() as u32), message_stop()]);
    parts
}

// ---------------------------------------------------------------------------------------------
// Helpers on the client side.

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "Answer from the sources."),
            ChatMessage::new(Role::User, "Sources: [1] Paris is the capital of France."),
            ChatMessage::new(Role::User, format!("What is the capital of France? ({SECRET})")),
        ],
        params: GenerationParams {
            max_tokens: 64,
            temperature: 0.2,
            top_p: 0.9,
            seed: 7,
            stop: vec!["\n\nHuman:".into()],
        },
    }
}

/// A sink that records the pieces and answers `false` once it has `stop_after` of them.
fn sink(stop_after: Option<usize>) -> (TokenSink, Arc<Mutex<Vec<String>>>) {
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let seen = pieces.clone();
    let sink: TokenSink = Box::new(move |piece: &str| {
        let mut seen = seen.lock().unwrap();
        seen.push(piece.to_string());
        stop_after.is_none_or(|n| seen.len() < n)
    });
    (sink, pieces)
}

async fn chat_error(server: &Server) -> BackendError {
    let (sink, _) = sink(None);
    server.chat().chat(request(), sink).await.unwrap_err()
}

/// The error's text must not carry the key, its prefix, the prompt or the provider's message.
fn assert_clean(message: &str) {
    for leak in [KEY, "DO-NOT-LEAK", SECRET, "is not allowed", "capital of France"] {
        assert!(!message.contains(leak), "{message:?} contains {leak:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming.

#[tokio::test]
async fn a_streamed_answer_arrives_piece_by_piece_with_the_documented_request() {
    let pieces = ["The", " capital", " of", " France", " is", " Paris", " —", " a", " café", " city", "."];
    let mut parts = vec![message_start(25), block_start(), ping()];
    for (i, piece) in pieces.iter().enumerate() {
        let bytes = text_delta(piece);
        match i {
            // One event cut in the middle of its JSON, across two writes.
            1 => {
                let (a, b) = bytes.split_at(bytes.len() / 2);
                parts.extend([a.to_vec(), b.to_vec()]);
            }
            // Cut between its `event:` line and its `data:` line.
            3 => {
                let cut = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
                parts.extend([bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            }
            // A UTF-8 character cut across writes.
            8 => {
                let cut = bytes.iter().position(|&b| b == 0xC3).unwrap() + 1;
                parts.extend([bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            }
            // A ping between deltas, in the same write.
            5 => {
                let mut both = ping();
                both.extend(bytes);
                parts.push(both);
            }
            _ => parts.push(bytes),
        }
    }
    // The end of the message in one write, as Anthropic often sends it.
    let mut tail = block_stop();
    tail.extend(message_delta("end_turn", 11));
    tail.extend(message_stop());
    parts.push(tail);

    let server = Server::start(move |_, _| {
        let parts = parts.clone();
        async move { sse(parts) }
    })
    .await;
    let chat = server.chat();
    assert_eq!(
        (chat.name(), chat.model(), chat.context_tokens()),
        ("claude", "claude-sonnet-4-5", ANTHROPIC_CONTEXT_TOKENS)
    );
    let (sink, seen) = sink(None);
    let outcome = chat.chat(request(), sink).await.unwrap();

    assert_eq!(*seen.lock().unwrap(), pieces);
    assert_eq!(outcome.text, pieces.concat());
    assert_eq!(outcome.usage, Usage { prompt_tokens: 25, completion_tokens: 11 });
    assert_eq!(outcome.finish_reason, FinishReason::Stop);
    assert!(outcome.timings.prompt_ms >= 0.0 && outcome.timings.generation_ms > 0.0, "{:?}", outcome.timings);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let recorded = &requests[0];
    assert_eq!(recorded.path, "/v1/messages");
    assert_eq!(recorded.headers["x-api-key"], KEY);
    assert_eq!(recorded.headers["anthropic-version"], ANTHROPIC_VERSION);
    assert_eq!(recorded.headers["content-type"], "application/json");
    assert!(recorded.headers.get("authorization").is_none());
    assert_eq!(
        recorded.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "system": "Answer from the sources.",
            "messages": [{
                "role": "user",
                "content": format!("Sources: [1] Paris is the capital of France.\n\nWhat is the capital of France? ({SECRET})")
            }],
            "temperature": 0.2,
            "top_p": 0.9,
            "stop_sequences": ["\n\nHuman:"],
            "stream": true
        })
    );
}

#[tokio::test]
async fn the_max_tokens_stop_reason_is_a_length_finish() {
    let server = Server::start(|_, _| async { sse(plain_stream(&["Once", " upon", " a"], "max_tokens")) }).await;
    let (sink, _) = sink(None);
    let outcome = server.chat().chat(request(), sink).await.unwrap();
    assert_eq!(outcome.finish_reason, FinishReason::Length);
    assert_eq!(outcome.text, "Once upon a");
    assert_eq!(outcome.usage, Usage { prompt_tokens: 12, completion_tokens: 3 });
}

#[tokio::test]
async fn a_multi_turn_conversation_alternates_and_options_are_sent() {
    let server = Server::start(|_, _| async { sse(plain_stream(&["ok"], "stop_sequence")) }).await;
    let endpoint = Endpoint { api_key: None, ..server.endpoint() };
    let options = AnthropicOptions {
        version: "2023-01-01".into(),
        context_tokens: 1_000_000,
        ..AnthropicOptions::new("claude-long", "claude-sonnet-4-5", endpoint)
    };
    let chat = AnthropicChat::new(options).unwrap();
    assert_eq!(chat.context_tokens(), 1_000_000);
    let request = ChatRequest {
        messages: vec![
            ChatMessage::new(Role::User, "Hi"),
            ChatMessage::new(Role::Assistant, "Hello."),
            ChatMessage::new(Role::Assistant, "How can I help?"),
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Capital of France?"),
        ],
        params: GenerationParams { max_tokens: 5, temperature: 1.7, ..GenerationParams::default() },
    };
    let (sink, _) = sink(None);
    let outcome = chat.chat(request, sink).await.unwrap();
    assert_eq!((outcome.text.as_str(), outcome.finish_reason), ("ok", FinishReason::Stop));

    let requests = server.requests();
    let recorded = &requests[0];
    assert!(recorded.headers.get("x-api-key").is_none());
    assert!(recorded.headers.get("authorization").is_none());
    assert_eq!(recorded.headers["anthropic-version"], "2023-01-01");
    assert_eq!(
        recorded.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 5,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello.\n\nHow can I help?"},
                {"role": "user", "content": "Capital of France?"}
            ],
            "temperature": 1.0,
            "stream": true
        })
    );
}

#[tokio::test]
async fn a_sink_that_says_stop_cancels_and_drops_the_connection() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let server = Server::start(move |_, _| {
        let guard = DropFlag(flag.clone());
        async move {
            // An endless answer; the guard lives as long as the server is writing it.
            let head = futures::stream::iter([Ok(message_start(9)), Ok(block_start())]);
            let deltas = futures::stream::unfold((guard, 0u64), |(guard, n)| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let part = if n % 4 == 3 { ping() } else { text_delta(&format!(" w{n}")) };
                Some((Ok(part), (guard, n + 1)))
            });
            sse_stream::<_, Infallible>(head.chain(deltas))
        }
    })
    .await;
    let (sink, seen) = sink(Some(3));
    let outcome = server.chat().chat(request(), sink).await.unwrap();
    assert_eq!(outcome.finish_reason, FinishReason::Cancelled);
    assert_eq!(outcome.text, " w0 w1 w2");
    assert_eq!(seen.lock().unwrap().len(), 3);
    // What `message_start` said: the prompt is billed whole, the output count is a lower bound.
    assert_eq!(outcome.usage, Usage { prompt_tokens: 9, completion_tokens: 1 });

    let deadline = Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the server kept streaming to a cancelled request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_overloaded_error_event_mid_stream_means_overloaded() {
    let server = Server::start(|_, _| async {
        sse(vec![message_start(9), block_start(), text_delta("Par"), ping(), error_event("overloaded_error")])
    })
    .await;
    assert_eq!(chat_error(&server).await, BackendError::Overloaded);
    // Mid-stream failures are not retried: text may already have reached the client.
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn other_error_events_give_the_type_but_not_the_message() {
    let server = Server::start(|_, _| async {
        sse(vec![message_start(9), block_start(), text_delta("Par"), error_event("api_error")])
    })
    .await;
    let error = chat_error(&server).await;
    assert_eq!(error, BackendError::Internal("the provider reported an error mid-stream, type api_error".into()));
    assert_clean(&error.to_string());
}

#[tokio::test]
async fn a_refusal_is_an_invalid_request() {
    let server = Server::start(|_, _| async { sse(plain_stream(&["I"], "refusal")) }).await;
    assert_eq!(
        chat_error(&server).await,
        BackendError::InvalidRequest("the model refused to answer (stop_reason refusal)".into())
    );
}

#[tokio::test]
async fn a_stream_that_ends_before_message_stop_is_an_error() {
    // Ends cleanly after the stop reason, at a boundary, and in the middle of an event.
    let tails: [&[u8]; 3] =
        [b"", b"event: message_stop\n", b"event: content_block_delta\ndata: {\"type\":\"content_bl"];
    for (i, tail) in tails.into_iter().enumerate() {
        let server = Server::start(move |_, _| async move {
            let mut parts = vec![message_start(9), block_start(), text_delta("Par")];
            if i == 0 {
                parts.extend([block_stop(), message_delta("end_turn", 1)]);
            }
            parts.push(tail.to_vec());
            sse(parts)
        })
        .await;
        let error = chat_error(&server).await;
        assert_eq!(error, BackendError::Internal("the provider's stream ended early, before message_stop".into()));
    }
}

#[tokio::test]
async fn garbage_in_a_data_line_is_an_error() {
    let server = Server::start(|_, _| async {
        let mut parts = vec![message_start(9), b"event: content_block_delta\ndata: {\"type\": [nope\n\n".to_vec()];
        parts.push(message_stop());
        sse(parts)
    })
    .await;
    assert_eq!(
        chat_error(&server).await,
        BackendError::Internal("the provider sent a malformed stream event (not the expected JSON)".into())
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP errors.

#[tokio::test]
async fn a_400_becomes_invalid_request_without_the_providers_message() {
    let server = Server::start(|_, _| async { error_response(400, "invalid_request_error") }).await;
    let error = chat_error(&server).await;
    let BackendError::InvalidRequest(message) = &error else { panic!("{error:?}") };
    assert_eq!(message, "the provider rejected the request (status 400, type invalid_request_error)");
    assert_clean(&error.to_string());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_401_names_the_variable_but_not_the_key() {
    for (status, kind) in [(401, "authentication_error"), (403, "permission_error")] {
        let server = Server::start(move |_, _| async move { error_response(status, kind) }).await;
        let error = chat_error(&server).await;
        assert_eq!(
            error,
            BackendError::Internal(format!(
                "authentication failed (status {status}); check the API key in ANTHROPIC_API_KEY"
            ))
        );
        assert_clean(&error.to_string());
    }
}

#[tokio::test]
async fn rate_limits_and_overload_mean_overloaded() {
    for (status, kind) in [(429, "rate_limit_error"), (529, "overloaded_error")] {
        let server = Server::start(move |_, _| async move { error_response(status, kind) }).await;
        assert_eq!(chat_error(&server).await, BackendError::Overloaded, "{status}");
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn an_overloaded_answer_is_retried_with_the_same_request() {
    let server = Server::start(|n, _| async move {
        match n {
            0 => error_response(529, "overloaded_error"),
            1 => error_response(429, "rate_limit_error"),
            _ => sse(plain_stream(&["Paris"], "end_turn")),
        }
    })
    .await;
    let retry = RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(20), ..RetryPolicy::DEFAULT };
    let chat =
        AnthropicChat::new(AnthropicOptions::new("c", "claude-sonnet-4-5", Endpoint { retry, ..server.endpoint() }))
            .unwrap();
    let (sink, _) = sink(None);
    let outcome = chat.chat(request(), sink).await.unwrap();
    assert_eq!(outcome.text, "Paris");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for recorded in requests.iter() {
        assert_eq!(recorded.path, "/v1/messages");
        assert_eq!(recorded.headers["x-api-key"], KEY);
        assert_eq!(recorded.headers["anthropic-version"], ANTHROPIC_VERSION);
        assert_eq!(recorded.body, requests[0].body);
    }
}

#[tokio::test]
async fn a_500_is_an_internal_error_with_the_status() {
    let server = Server::start(|_, _| async { error_response(500, "api_error") }).await;
    let error = chat_error(&server).await;
    assert_eq!(error, BackendError::Internal("provider error status 500, type api_error".into()));
    assert_clean(&error.to_string());
}

#[tokio::test]
async fn a_conversation_that_starts_with_the_assistant_is_refused_before_sending() {
    let server = Server::start(|_, _| async { sse(plain_stream(&["x"], "end_turn")) }).await;
    let request = ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "s"),
            ChatMessage::new(Role::Assistant, "Hello! How can I help?"),
            ChatMessage::new(Role::User, SECRET),
        ],
        params: GenerationParams::default(),
    };
    let (sink, _) = sink(None);
    let error = server.chat().chat(request, sink).await.unwrap_err();
    assert_eq!(
        error,
        BackendError::InvalidRequest(
            "the conversation starts with an assistant message, but Anthropic models need a user message first".into()
        )
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_stalled_server_fails_within_the_read_timeout() {
    // Stalls after the first events, then before sending any response at all.
    let stall_in_body = |_, _| async {
        let first = futures::stream::iter([Ok(message_start(9)), Ok(text_delta("Par"))]);
        sse_stream::<_, Infallible>(first.chain(futures::stream::pending()))
    };
    let stall_before_head = |_, _| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        sse(vec![])
    };
    let servers = [Server::start(stall_in_body).await, Server::start(stall_before_head).await];
    for server in servers {
        let endpoint = Endpoint { read_timeout: Duration::from_millis(300), ..server.endpoint() };
        let chat = AnthropicChat::new(AnthropicOptions::new("t", "m", endpoint)).unwrap();
        let started = Instant::now();
        let (sink, _) = sink(None);
        let error = chat.chat(request(), sink).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(
            error,
            BackendError::Internal("the provider sent nothing for longer than the read timeout of 300ms".into())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Construction and Debug.

#[tokio::test]
async fn debug_output_never_shows_the_key() {
    let server = Server::start(|_, _| async { sse(vec![]) }).await;
    let options = AnthropicOptions::new("c", "m", server.endpoint());
    let chat = AnthropicChat::new(options.clone()).unwrap();
    for output in [format!("{options:?}"), format!("{chat:?}"), format!("{chat:#?}")] {
        assert!(!output.contains("DO-NOT-LEAK"), "{output}");
        assert!(output.contains("[redacted]"), "{output}");
    }
}

#[test]
fn defaults_and_bad_endpoints_at_construction() {
    let options = AnthropicOptions::new("c", "m", Endpoint::new(Flavour::OpenAi));
    assert_eq!((options.version.as_str(), options.context_tokens), (ANTHROPIC_VERSION, 200_000));
    let chat = AnthropicChat::new(options).unwrap();
    assert!(format!("{chat:?}").contains(&format!("base_url: {ANTHROPIC_BASE_URL:?}")), "{chat:?}");

    let build = |endpoint: Endpoint| AnthropicChat::new(AnthropicOptions::new("c", "m", endpoint)).map(|_| ());
    let with_url = |url: &str| Endpoint { base_url: Some(url.into()), ..Endpoint::new(Flavour::OpenAiCompatible) };
    let error = build(with_url("https://user:hunter2@example.com")).unwrap_err();
    assert!(!error.to_string().contains("hunter2"));
    assert!(build(with_url("https://example.com?key=abc")).is_err());
    assert!(build(with_url("https://example.com/")).is_ok());
    let bad_key = Endpoint { api_key: Some("sk\nx".into()), ..Endpoint::new(Flavour::OpenAi) };
    assert_eq!(build(bad_key), Err(BuildError::ApiKey));
    let bad_version = AnthropicOptions {
        version: "2023\n06".into(),
        ..AnthropicOptions::new("c", "m", Endpoint::new(Flavour::OpenAi))
    };
    assert!(matches!(AnthropicChat::new(bad_version), Err(BuildError::Client(_))));
}
