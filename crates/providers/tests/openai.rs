//! The OpenAI adapters against a local server on 127.0.0.1 that speaks OpenAI's documented wire
//! format byte for byte (SSE framing, chunk and error JSON) and records every request it gets.
//! A paid API cannot run in tests; this double is the one stand-in, and nothing leaves loopback.
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
use perimeter_providers::{
    BuildError, Endpoint, Flavour, OpenAiChat, OpenAiChatOptions, OpenAiEmbedder, OpenAiEmbedderOptions,
};
use perimeter_types::{
    BackendError, ChatBackend, ChatMessage, ChatRequest, EmbedError, Embedder, FinishReason, GenerationParams, Role,
    TokenSink, Usage,
};
use serde_json::{json, Value};

const KEY: &str = "sk-test-DO-NOT-LEAK-4f1c2b9e";
const KEY_ENV: &str = "OPENAI_API_KEY";
const SECRET: &str = "secret prompt text";

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
        Server { base_url: format!("http://{addr}/v1"), log }
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.log.lock().unwrap()
    }

    fn endpoint(&self, flavour: Flavour) -> Endpoint {
        Endpoint {
            base_url: Some(self.base_url.clone()),
            api_key: Some(KEY.into()),
            api_key_env: Some(KEY_ENV.into()),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            ..Endpoint::new(flavour)
        }
    }

    fn chat(&self, flavour: Flavour) -> OpenAiChat {
        OpenAiChat::new(OpenAiChatOptions::new("openai-test", "gpt-4o-mini", self.endpoint(flavour))).unwrap()
    }

    fn embedder(&self, dimensions: usize) -> OpenAiEmbedder {
        let options = OpenAiEmbedderOptions::new(
            "openai-embed",
            "text-embedding-3-small",
            self.endpoint(Flavour::OpenAi),
            dimensions,
        );
        OpenAiEmbedder::new(options).unwrap()
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
        .body(Body::from_stream(stream))
        .unwrap()
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_string_pretty(&body).unwrap()))
        .unwrap()
}

/// OpenAI's error object, with a message that quotes the prompt as OpenAI's messages can.
fn error_body(kind: &str, code: Option<&str>) -> Value {
    json!({"error": {
        "message": format!("This request ({SECRET}) failed; key {KEY} was used."),
        "type": kind,
        "param": null,
        "code": code,
    }})
}

// ---------------------------------------------------------------------------------------------
// OpenAI's chunk JSON, as the API sends it.

fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "usage": null
    })
    .to_string()
}

fn role_chunk() -> String {
    chunk(json!({"role": "assistant", "content": "", "refusal": null}), None)
}

fn content_chunk(text: &str) -> String {
    chunk(json!({"content": text}), None)
}

fn finish_chunk(reason: &str) -> String {
    chunk(json!({}), Some(reason))
}

fn usage_chunk(prompt: u32, completion: u32) -> String {
    json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        }
    })
    .to_string()
}

fn event(json: &str) -> Vec<u8> {
    format!("data: {json}\n\n").into_bytes()
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// A complete, ordinary stream for `pieces`.
fn plain_stream(pieces: &[&str], finish: &str) -> Vec<Vec<u8>> {
    let mut parts = vec![event(&role_chunk())];
    parts.extend(pieces.iter().map(|p| event(&content_chunk(p))));
    parts.push(event(&finish_chunk(finish)));
    parts.push(event(&usage_chunk(12, pieces.len() as u32)));
    parts.push(DONE.to_vec());
    parts
}

// ---------------------------------------------------------------------------------------------
// Helpers on the client side.

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "Answer from the sources."),
            ChatMessage::new(Role::User, format!("What is the capital of France? ({SECRET})")),
        ],
        params: GenerationParams {
            max_tokens: 64,
            temperature: 0.2,
            top_p: 0.9,
            seed: 7,
            stop: vec!["\n\nUser:".into()],
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

async fn chat_error(server: &Server, flavour: Flavour) -> BackendError {
    let (sink, _) = sink(None);
    server.chat(flavour).chat(request(), sink).await.unwrap_err()
}

/// The error's text must not carry the key, its prefix, the prompt or the provider's message.
fn assert_clean(message: &str) {
    for leak in [KEY, "DO-NOT-LEAK", SECRET, "This request", "capital of France"] {
        assert!(!message.contains(leak), "{message:?} contains {leak:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Chat.

#[tokio::test]
async fn a_streamed_answer_arrives_piece_by_piece_however_the_bytes_are_cut() {
    let pieces = ["The", " capital", " of", " France", " is", " Paris", " —", " a", " café", " city", "."];
    let mut parts: Vec<Vec<u8>> =
        vec![b": keep-alive\r\n\r\n".to_vec(), format!("data: {}\r\n\r\n", role_chunk()).into_bytes()];
    for (i, piece) in pieces.iter().enumerate() {
        let json = content_chunk(piece);
        match i {
            // One event cut in the middle of its JSON, across two writes.
            1 => {
                let bytes = event(&json);
                let (a, b) = bytes.split_at(bytes.len() / 2);
                parts.extend([a.to_vec(), b.to_vec()]);
            }
            // `\r\n` line endings cut between the `\r` and the `\n`.
            2 => {
                let bytes = format!("data: {json}\r\n\r\n").into_bytes();
                let cut = bytes.iter().position(|&b| b == b'\r').unwrap() + 1;
                parts.extend([bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            }
            // The JSON spread over two `data:` lines, and a keep-alive comment before it.
            4 => {
                let at = json.find("\"choices\":").unwrap() + "\"choices\":".len();
                parts.push(format!(": keep-alive\n\ndata: {}\ndata: {}\n\n", &json[..at], &json[at..]).into_bytes());
            }
            // A UTF-8 character cut across writes.
            8 => {
                let bytes = event(&json);
                let cut = bytes.iter().position(|&b| b == 0xC3).unwrap() + 1;
                parts.extend([bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            }
            // Two events in one write.
            9 => {
                let mut both = event(&json);
                both.extend(event(&content_chunk(pieces[10])));
                parts.push(both);
            }
            10 => {}
            _ => parts.push(event(&json)),
        }
    }
    // The finish chunk, the usage chunk and [DONE] in one write, as OpenAI often sends them.
    let mut tail = event(&finish_chunk("stop"));
    tail.extend(event(&usage_chunk(25, 11)));
    tail.extend_from_slice(DONE);
    parts.push(tail);

    let server = Server::start(move |_, _| {
        let parts = parts.clone();
        async move { sse(parts) }
    })
    .await;
    let (sink, seen) = sink(None);
    let outcome = server.chat(Flavour::OpenAi).chat(request(), sink).await.unwrap();

    assert_eq!(*seen.lock().unwrap(), pieces);
    assert_eq!(outcome.text, pieces.concat());
    assert_eq!(outcome.usage, Usage { prompt_tokens: 25, completion_tokens: 11 });
    assert_eq!(outcome.finish_reason, FinishReason::Stop);
    assert!(outcome.timings.prompt_ms >= 0.0 && outcome.timings.generation_ms > 0.0, "{:?}", outcome.timings);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let recorded = &requests[0];
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(recorded.headers["content-type"], "application/json");
    assert_eq!(
        recorded.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Answer from the sources."},
                {"role": "user", "content": format!("What is the capital of France? ({SECRET})")}
            ],
            "max_completion_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "stop": ["\n\nUser:"],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[tokio::test]
async fn an_openai_compatible_server_gets_max_tokens_and_no_key_header_when_none_is_set() {
    // vLLM sends the usage chunk with `"choices": null`, and some servers send no [DONE].
    let server = Server::start(|_, _| async {
        let mut parts = vec![event(&content_chunk("ok")), event(&finish_chunk("stop"))];
        parts.push(event(r#"{"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":null,"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#));
        sse(parts)
    })
    .await;
    let endpoint = Endpoint { api_key: None, api_key_env: None, ..server.endpoint(Flavour::OpenAiCompatible) };
    let chat =
        OpenAiChat::new(OpenAiChatOptions { context_tokens: 8192, ..OpenAiChatOptions::new("vllm", "qwen", endpoint) })
            .unwrap();
    assert_eq!((chat.name(), chat.model(), chat.context_tokens()), ("vllm", "qwen", 8192));
    let (sink, _) = sink(None);
    let outcome = chat.chat(request(), sink).await.unwrap();
    assert_eq!(outcome.text, "ok");
    assert_eq!(outcome.usage, Usage { prompt_tokens: 3, completion_tokens: 1 });

    let requests = server.requests();
    assert!(requests[0].headers.get("authorization").is_none());
    assert_eq!(requests[0].body["max_tokens"], 64);
    assert!(requests[0].body.get("max_completion_tokens").is_none());
}

#[tokio::test]
async fn the_length_finish_reason_is_reported() {
    let server = Server::start(|_, _| async { sse(plain_stream(&["Once", " upon", " a"], "length")) }).await;
    let (sink, _) = sink(None);
    let outcome = server.chat(Flavour::OpenAi).chat(request(), sink).await.unwrap();
    assert_eq!(outcome.finish_reason, FinishReason::Length);
    assert_eq!(outcome.text, "Once upon a");
    assert_eq!(outcome.usage, Usage { prompt_tokens: 12, completion_tokens: 3 });
}

#[tokio::test]
async fn a_sink_that_says_stop_cancels_and_drops_the_connection() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let server = Server::start(move |_, _| {
        let guard = DropFlag(flag.clone());
        async move {
            // An endless answer; the guard lives as long as the server is writing it.
            let stream = futures::stream::unfold((guard, 0u64), |(guard, n)| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((Ok(event(&content_chunk(&format!(" w{n}")))), (guard, n + 1)))
            });
            sse_stream::<_, Infallible>(stream)
        }
    })
    .await;
    let (sink, seen) = sink(Some(3));
    let outcome = server.chat(Flavour::OpenAi).chat(request(), sink).await.unwrap();
    assert_eq!(outcome.finish_reason, FinishReason::Cancelled);
    assert_eq!(outcome.text, " w0 w1 w2");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(outcome.usage, Usage::default());

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
async fn a_400_becomes_invalid_request_without_the_providers_message() {
    let server = Server::start(|_, _| async {
        json_response(400, error_body("invalid_request_error", Some("context_length_exceeded")))
    })
    .await;
    let error = chat_error(&server, Flavour::OpenAi).await;
    let BackendError::InvalidRequest(message) = &error else { panic!("{error:?}") };
    assert_eq!(
        message,
        "the provider rejected the request (status 400, type invalid_request_error, code context_length_exceeded)"
    );
    assert_clean(&error.to_string());
}

#[tokio::test]
async fn a_401_names_the_variable_but_not_the_key() {
    let server = Server::start(|_, _| async {
        json_response(401, error_body("invalid_request_error", Some("invalid_api_key")))
    })
    .await;
    let error = chat_error(&server, Flavour::OpenAi).await;
    assert_eq!(
        error,
        BackendError::Internal("authentication failed (status 401); check the API key in OPENAI_API_KEY".into())
    );
    assert_clean(&error.to_string());
}

#[tokio::test]
async fn rate_limits_and_unavailability_mean_overloaded() {
    for status in [429, 503] {
        let server = Server::start(move |_, _| async move {
            json_response(status, error_body("requests", Some("rate_limit_exceeded")))
        })
        .await;
        assert_eq!(chat_error(&server, Flavour::OpenAi).await, BackendError::Overloaded);
    }
}

#[tokio::test]
async fn a_500_is_an_internal_error_with_the_status() {
    let server = Server::start(|_, _| async { json_response(500, error_body("server_error", None)) }).await;
    let error = chat_error(&server, Flavour::OpenAi).await;
    assert_eq!(error, BackendError::Internal("provider error status 500, type server_error".into()));
    assert_clean(&error.to_string());
}

#[tokio::test]
async fn a_stream_that_ends_before_done_is_an_error() {
    // Ends cleanly at a boundary, then ends in the middle of an event.
    for tail in [&b""[..], &b"data: {\"id\":\"chatcmpl-B9MH"[..]] {
        let server = Server::start(move |_, _| async move {
            let mut parts = vec![event(&role_chunk()), event(&content_chunk("Par"))];
            parts.push(tail.to_vec());
            sse(parts)
        })
        .await;
        let error = chat_error(&server, Flavour::OpenAi).await;
        assert_eq!(
            error,
            BackendError::Internal("the provider's stream ended early, before a finish reason or [DONE]".into())
        );
    }
}

#[tokio::test]
async fn a_connection_that_breaks_mid_stream_is_an_error() {
    let server = Server::start(|_, _| async {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            vec![Ok(event(&content_chunk("Par"))), Err(std::io::Error::other("the server fell over"))];
        let parts = futures::stream::iter(parts).then(|part| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            part
        });
        sse_stream(parts)
    })
    .await;
    let error = chat_error(&server, Flavour::OpenAi).await;
    let BackendError::Internal(message) = &error else { panic!("{error:?}") };
    assert!(message.starts_with("the connection to the provider broke during the response"), "{message}");
}

#[tokio::test]
async fn garbage_in_a_data_line_is_an_error() {
    let server = Server::start(|_, _| async {
        sse(vec![event(&content_chunk("Par")), b"data: {\"choices\": [nope\n\n".to_vec(), DONE.to_vec()])
    })
    .await;
    let error = chat_error(&server, Flavour::OpenAi).await;
    assert_eq!(
        error,
        BackendError::Internal("the provider sent a malformed stream event (not the expected JSON)".into())
    );
}

#[tokio::test]
async fn a_content_filter_stop_and_an_error_event_are_errors() {
    let server = Server::start(|_, _| async { sse(plain_stream(&["I"], "content_filter")) }).await;
    assert_eq!(
        chat_error(&server, Flavour::OpenAi).await,
        BackendError::InvalidRequest("the provider's content filter stopped the answer".into())
    );

    let server = Server::start(|_, _| async {
        let error = json!({"error": {"message": format!("failed on {SECRET}"), "type": "server_error", "param": null, "code": null}});
        sse(vec![event(&content_chunk("I")), event(&error.to_string())])
    })
    .await;
    let error = chat_error(&server, Flavour::OpenAi).await;
    assert_eq!(error, BackendError::Internal("the provider reported an error mid-stream, type server_error".into()));
}

#[tokio::test]
async fn a_stalled_server_fails_within_the_read_timeout() {
    // Stalls after the first event, then before sending any response at all.
    let stall_in_body = |_, _| async {
        let first = futures::stream::iter([Ok(event(&content_chunk("Par")))]);
        sse_stream::<_, Infallible>(first.chain(futures::stream::pending()))
    };
    let stall_before_head = |_, _| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        sse(vec![])
    };
    let servers = [Server::start(stall_in_body).await, Server::start(stall_before_head).await];
    for server in servers {
        let endpoint = Endpoint { read_timeout: Duration::from_millis(300), ..server.endpoint(Flavour::OpenAi) };
        let chat = OpenAiChat::new(OpenAiChatOptions::new("t", "m", endpoint)).unwrap();
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

#[tokio::test]
async fn a_refused_connection_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = Endpoint {
        base_url: Some(format!("http://{addr}/v1")),
        api_key: Some(KEY.into()),
        ..Endpoint::new(Flavour::OpenAiCompatible)
    };
    let chat = OpenAiChat::new(OpenAiChatOptions::new("t", "m", endpoint)).unwrap();
    let (sink, _) = sink(None);
    let error = chat.chat(request(), sink).await.unwrap_err();
    assert_eq!(error, BackendError::Internal("could not connect to the provider (connection refused)".into()));
}

// ---------------------------------------------------------------------------------------------
// Embeddings.

/// The vector the fake provider returns for input `text` ("t{i}"): not unit length.
fn raw_vector(text: &str) -> Vec<f32> {
    let i: f32 = text[1..].parse().unwrap();
    vec![i + 1.0, 2.0, -1.0]
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// Answers like OpenAI (pretty-printed, with `object` fields), but in reverse order.
async fn embeddings_reversed(_: usize, body: Value) -> Response {
    let inputs: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap();
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": raw_vector(text)}))
        .collect();
    data.reverse();
    let tokens = 2 * inputs.len();
    json_response(
        200,
        json!({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

fn inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

#[tokio::test]
async fn embeddings_come_back_in_input_order_and_unit_length() {
    let server = Server::start(embeddings_reversed).await;
    let embedder = server.embedder(3);
    assert_eq!((embedder.model(), embedder.dimensions(), embedder.max_tokens()), ("text-embedding-3-small", 3, 8191));
    let result = embedder.embed(inputs(5)).await.unwrap();
    assert_eq!(result.prompt_tokens, 10);
    for (i, vector) in result.vectors.iter().enumerate() {
        let expected = unit(raw_vector(&format!("t{i}")));
        assert!(vector.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "{i}: {vector:?}");
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
    }

    let requests = server.requests();
    assert_eq!(requests[0].path, "/v1/embeddings");
    assert_eq!(requests[0].headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(requests[0].body, json!({"model": "text-embedding-3-small", "input": inputs(5)}));
}

#[tokio::test]
async fn large_inputs_are_sent_in_batches_of_at_most_2048() {
    let server = Server::start(embeddings_reversed).await;
    let result = server.embedder(3).embed(inputs(3000)).await.unwrap();
    assert_eq!(result.vectors.len(), 3000);
    assert_eq!(result.prompt_tokens, 6000);
    for i in [0, 2047, 2048, 2999] {
        let expected = unit(raw_vector(&format!("t{i}")));
        assert!(result.vectors[i].iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "{i}");
    }

    let requests = server.requests();
    let sizes: Vec<usize> = requests.iter().map(|r| r.body["input"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [2048, 952]);
    assert_eq!(requests[1].body["input"][0], "t2048");
}

#[tokio::test]
async fn embedding_errors_are_mapped_without_content() {
    let internal = |m: &str| EmbedError::Internal(m.into());
    let cases = [
        (
            400,
            EmbedError::InvalidInput(
                "the provider rejected the request (status 400, type invalid_request_error, code invalid_value)".into(),
            ),
        ),
        (401, internal("authentication failed (status 401); check the API key in OPENAI_API_KEY")),
        (429, internal("the provider is overloaded (status 429, type invalid_request_error, code invalid_value); try again later")),
        (500, internal("provider error status 500, type invalid_request_error, code invalid_value")),
    ];
    for (status, expected) in cases {
        let server = Server::start(move |_, _| async move {
            json_response(status, error_body("invalid_request_error", Some("invalid_value")))
        })
        .await;
        let error = server.embedder(3).embed(inputs(2)).await.unwrap_err();
        assert_eq!(error, expected);
        assert_clean(&error.to_string());
    }
}

#[tokio::test]
async fn inconsistent_embedding_responses_are_refused() {
    let server = Server::start(embeddings_reversed).await;
    let error = server.embedder(4).embed(inputs(2)).await.unwrap_err();
    assert_eq!(
        error,
        EmbedError::Internal("the provider returned 3 dimensions but the backend is configured for 4".into())
    );

    let server = Server::start(|_, _| async { json_response(200, json!({"object": "list", "data": "oops"})) }).await;
    let error = server.embedder(3).embed(inputs(2)).await.unwrap_err();
    assert_eq!(error, EmbedError::Internal("the provider's embedding response is not the expected JSON".into()));
}

#[tokio::test]
async fn empty_inputs_are_refused_before_any_request() {
    let server = Server::start(embeddings_reversed).await;
    let embedder = server.embedder(3);
    let error = embedder.embed(vec!["t0".into(), String::new()]).await.unwrap_err();
    assert!(matches!(error, EmbedError::InvalidInput(m) if m.starts_with("input 1 is empty")));
    let nothing = embedder.embed(Vec::new()).await.unwrap();
    assert!(nothing.vectors.is_empty());
    assert!(server.requests().is_empty());
    assert_eq!(embedder.count_tokens("abcdefg"), 3);
}

// ---------------------------------------------------------------------------------------------
// Construction and Debug.

#[tokio::test]
async fn debug_output_never_shows_the_key() {
    let server = Server::start(embeddings_reversed).await;
    let endpoint = server.endpoint(Flavour::OpenAi);
    let chat_options = OpenAiChatOptions::new("c", "m", endpoint.clone());
    let embed_options = OpenAiEmbedderOptions::new("e", "m", endpoint.clone(), 3);
    let outputs = [
        format!("{endpoint:?}"),
        format!("{chat_options:?}"),
        format!("{embed_options:?}"),
        format!("{:?}", OpenAiChat::new(chat_options.clone()).unwrap()),
        format!("{:?}", OpenAiEmbedder::new(embed_options.clone()).unwrap()),
        format!("{:#?}", OpenAiChat::new(chat_options).unwrap()),
    ];
    for output in outputs {
        assert!(!output.contains("DO-NOT-LEAK"), "{output}");
        assert!(output.contains("[redacted]"), "{output}");
    }
}

#[test]
fn bad_endpoints_are_refused_at_construction() {
    let build = |endpoint: Endpoint| OpenAiChat::new(OpenAiChatOptions::new("c", "m", endpoint)).map(|_| ());
    assert_eq!(
        build(Endpoint::new(Flavour::OpenAiCompatible)),
        Err(BuildError::BaseUrl("is required for openai_compatible"))
    );
    let with_url = |url: &str| Endpoint { base_url: Some(url.into()), ..Endpoint::new(Flavour::OpenAi) };
    let error = build(with_url("https://user:hunter2@example.com/v1")).unwrap_err();
    assert!(!error.to_string().contains("hunter2"));
    assert!(build(with_url("https://example.com/v1?api-key=abc")).is_err());
    let bad_key = Endpoint { api_key: Some("sk\nx".into()), ..Endpoint::new(Flavour::OpenAi) };
    assert_eq!(build(bad_key), Err(BuildError::ApiKey));
    assert!(build(Endpoint::new(Flavour::OpenAi)).is_ok());
}
