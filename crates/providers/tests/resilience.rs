//! Retries, against a local server on 127.0.0.1 that answers each request as the test says
//! (statuses and error JSON as OpenAI sends them, `Retry-After` as RFC 9110 writes it) and
//! records when every request arrived. Nothing leaves loopback.
//!
//! The rules under test (`retry.rs`): a request is sent again after a refused connection, a
//! response head that did not come within the read timeout, or a 408/429/500/502/503/504/529;
//! never after a 4xx that says the request is wrong, and never once a response has begun.
//! `Retry-After` is obeyed exactly, or, when longer than `max_retry_after`, ends the request at
//! once as overloaded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use perimeter_providers::{
    Endpoint, Flavour, OpenAiChat, OpenAiChatOptions, OpenAiEmbedder, OpenAiEmbedderOptions, RetryPolicy,
};
use perimeter_types::{
    BackendError, ChatBackend, ChatMessage, ChatRequest, EmbedError, Embedder, FinishReason, GenerationParams, Role,
    TokenSink,
};
use serde_json::{json, Value};

const SECRET: &str = "secret prompt text";

// ---------------------------------------------------------------------------------------------
// The recording server.

struct Recorded {
    at: Instant,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, handler)
    }

    fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F) -> Server
    where
        F: Fn(usize, Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |n, body| handler(n, body).boxed());
        let log: Log = Arc::default();
        let app = Router::new().fallback(record).with_state((handler, log.clone()));
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { base_url: format!("http://{addr}/v1"), log }
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn times(&self) -> Vec<Instant> {
        self.log.lock().unwrap().iter().map(|r| r.at).collect()
    }

    fn endpoint(&self) -> Endpoint {
        endpoint(&self.base_url)
    }

    fn chat(&self) -> OpenAiChat {
        chat(self.endpoint())
    }
}

fn endpoint(base_url: &str) -> Endpoint {
    Endpoint {
        base_url: Some(base_url.to_string()),
        api_key: Some("sk-test".into()),
        api_key_env: Some("OPENAI_API_KEY".into()),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        ..Endpoint::new(Flavour::OpenAi)
    }
}

fn chat(endpoint: Endpoint) -> OpenAiChat {
    OpenAiChat::new(OpenAiChatOptions::new("openai-test", "gpt-4o-mini", endpoint)).unwrap()
}

async fn record(State((handler, log)): State<(Handler, Log)>, request: Request) -> Response {
    let at = Instant::now();
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Recorded { at, body: body.clone() });
        log.len() - 1
    };
    handler(n, body).await
}

/// OpenAI's error JSON with the given status and extra headers. The message quotes the prompt,
/// as OpenAI's can.
fn error(status: u16, headers: &[(&str, &str)]) -> Response {
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    let (kind, code) = match status {
        429 => ("requests", "rate_limit_exceeded"),
        400 => ("invalid_request_error", "invalid_value"),
        _ => ("server_error", "server_error"),
    };
    let body = json!({"error": {"message": format!("failed on {SECRET}"), "type": kind, "param": null, "code": code}});
    response.header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

fn event(json: &Value) -> Vec<u8> {
    format!("data: {json}\n\n").into_bytes()
}

fn content(text: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741570283, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]})
}

fn finish() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741570283, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]})
}

/// A successful streamed answer, "Paris".
fn answer() -> Response {
    let parts: Vec<Result<Vec<u8>, Infallible>> = vec![
        Ok(event(&content("Par"))),
        Ok(event(&content("is"))),
        Ok(event(&finish())),
        Ok(b"data: [DONE]\n\n".to_vec()),
    ];
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(futures::stream::iter(parts)))
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new(Role::User, format!("What is the capital of France? ({SECRET})"))],
        params: GenerationParams { max_tokens: 16, ..GenerationParams::default() },
    }
}

fn sink() -> TokenSink {
    Box::new(|_: &str| true)
}

async fn ask(chat: &OpenAiChat) -> Result<String, BackendError> {
    chat.chat(request(), sink()).await.map(|outcome| outcome.text)
}

// ---------------------------------------------------------------------------------------------
// Statuses.

#[tokio::test]
async fn retry_after_is_waited_out_exactly() {
    let server = Server::start(|n, _| async move {
        if n == 0 {
            error(429, &[("retry-after", "1")])
        } else {
            answer()
        }
    })
    .await;
    assert_eq!(ask(&server.chat()).await.unwrap(), "Paris");
    let times = server.times();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_secs(1) && gap < Duration::from_secs(2), "{gap:?}");
}

#[tokio::test]
async fn retry_after_ms_is_preferred_and_an_http_date_is_understood() {
    let server = Server::start(|n, _| async move {
        match n {
            0 => error(429, &[("retry-after-ms", "300"), ("retry-after", "10")]),
            // A date in the past: no wait at all.
            1 => error(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            _ => answer(),
        }
    })
    .await;
    assert_eq!(ask(&server.chat()).await.unwrap(), "Paris");
    let times = server.times();
    assert_eq!(times.len(), 3);
    let first = times[1] - times[0];
    assert!(first >= Duration::from_millis(300) && first < Duration::from_secs(2), "{first:?}");
    assert!(times[2] - times[1] < Duration::from_millis(500), "{:?}", times[2] - times[1]);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_limit_fails_at_once_as_overloaded() {
    let server = Server::start(|_, _| async { error(429, &[("retry-after", "3600")]) }).await;
    let started = Instant::now();
    assert_eq!(ask(&server.chat()).await.unwrap_err(), BackendError::Overloaded);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(server.count(), 1);

    // A 500 that asks for as long is overloaded too: the pipeline should move on.
    let server = Server::start(|_, _| async { error(500, &[("retry-after", "3600")]) }).await;
    assert_eq!(ask(&server.chat()).await.unwrap_err(), BackendError::Overloaded);
    assert_eq!(server.count(), 1);

    // Embeddings say how long was asked.
    let server = Server::start(|_, _| async { error(429, &[("retry-after", "3600")]) }).await;
    let embedder = embedder(&server, RetryPolicy::default());
    let error = embedder.embed(vec!["t0".into()]).await.unwrap_err();
    assert_eq!(
        error,
        EmbedError::Internal(
            "the provider is overloaded (status 429, type requests, code rate_limit_exceeded, asked to wait 3600s); \
             try again later"
                .into()
        )
    );
}

#[tokio::test]
async fn unavailable_twice_then_fine_succeeds_on_the_third_attempt() {
    let server = Server::start(|n, _| async move {
        if n < 2 {
            error(503, &[])
        } else {
            answer()
        }
    })
    .await;
    assert_eq!(ask(&server.chat()).await.unwrap(), "Paris");
    assert_eq!(server.count(), 3);
    // The same request each time.
    let log = server.log.lock().unwrap();
    assert!(log.iter().all(|r| r.body == log[0].body));
    assert_eq!(log[0].body["messages"][0]["role"], "user");
}

#[tokio::test]
async fn a_server_error_that_persists_fails_after_max_attempts() {
    for attempts in [3, 1, 5] {
        let server = Server::start(|_, _| async { error(500, &[]) }).await;
        let policy =
            RetryPolicy { max_attempts: attempts, base_delay: Duration::from_millis(20), ..RetryPolicy::default() };
        let chat = chat(Endpoint { retry: policy, ..server.endpoint() });
        let error = ask(&chat).await.unwrap_err();
        assert_eq!(
            error,
            BackendError::Internal("provider error status 500, type server_error, code server_error".into())
        );
        assert!(!error.to_string().contains(SECRET));
        assert_eq!(server.count(), attempts as usize);
    }
}

#[tokio::test]
async fn every_retryable_status_is_retried() {
    for status in [408, 429, 500, 502, 503, 504, 529] {
        let server = Server::start(move |n, _| async move {
            if n == 0 {
                error(status, &[])
            } else {
                answer()
            }
        })
        .await;
        assert_eq!(ask(&server.chat()).await.unwrap(), "Paris", "{status}");
        assert_eq!(server.count(), 2, "{status}");
    }
}

#[tokio::test]
async fn a_request_the_provider_rejects_is_never_retried() {
    for status in [400, 401, 403, 404, 422] {
        let server = Server::start(move |_, _| async move { error(status, &[("retry-after", "1")]) }).await;
        let started = Instant::now();
        ask(&server.chat()).await.unwrap_err();
        assert_eq!(server.count(), 1, "{status}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}

#[tokio::test]
async fn the_backoff_without_retry_after_stays_within_its_cap() {
    // Full jitter below 300 ms, then below 600 ms.
    let server = Server::start(|n, _| async move {
        if n < 2 {
            error(502, &[])
        } else {
            answer()
        }
    })
    .await;
    let policy = RetryPolicy { base_delay: Duration::from_millis(300), ..RetryPolicy::default() };
    assert_eq!(ask(&chat(Endpoint { retry: policy, ..server.endpoint() })).await.unwrap(), "Paris");
    let times = server.times();
    // The caps plus generous room for a loaded machine.
    assert!(times[1] - times[0] < Duration::from_millis(300 + 400), "{:?}", times[1] - times[0]);
    assert!(times[2] - times[1] < Duration::from_millis(600 + 400), "{:?}", times[2] - times[1]);
}

// ---------------------------------------------------------------------------------------------
// Transport.

#[tokio::test]
async fn a_stream_that_breaks_after_the_first_token_is_not_retried() {
    let server = Server::start(|_, _| async {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            vec![Ok(event(&content("Par"))), Err(std::io::Error::other("the server fell over"))];
        let parts = futures::stream::iter(parts).then(|part| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            part
        });
        Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(parts)).unwrap()
    })
    .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pieces = seen.clone();
    let sink: TokenSink = Box::new(move |piece: &str| {
        pieces.lock().unwrap().push(piece.to_string());
        true
    });
    let error = server.chat().chat(request(), sink).await.unwrap_err();
    let BackendError::Internal(message) = &error else { panic!("{error:?}") };
    assert!(message.starts_with("the connection to the provider broke during the response"), "{message}");
    assert_eq!(*seen.lock().unwrap(), ["Par"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_response_head_that_does_not_come_in_time_is_retried() {
    let server = Server::start(|n, _| async move {
        if n == 0 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        answer()
    })
    .await;
    let endpoint = Endpoint { read_timeout: Duration::from_millis(300), ..server.endpoint() };
    let started = Instant::now();
    assert_eq!(ask(&chat(endpoint)).await.unwrap(), "Paris");
    assert_eq!(server.count(), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported_clearly() {
    let port = free_port();
    let started = Instant::now();
    let error = ask(&chat(endpoint(&format!("http://127.0.0.1:{port}/v1")))).await.unwrap_err();
    assert_eq!(error, BackendError::Internal("could not connect to the provider (connection refused)".into()));
    // Two backoffs, below 200 ms and 400 ms.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_server_that_comes_up_during_the_retries_is_reached() {
    // Nothing listens at first; the server starts 150 ms later. Nineteen retries with waits
    // below 50, 100, 100, … ms take far longer than that, so only a retry can reach it.
    let port = free_port();
    let started = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Server::serve(listener, |_, _| async { answer() })
    });
    let policy = RetryPolicy {
        max_attempts: 20,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    let endpoint = Endpoint { retry: policy, ..endpoint(&format!("http://127.0.0.1:{port}/v1")) };
    let outcome = chat(endpoint).chat(request(), sink()).await.unwrap();
    assert_eq!((outcome.text.as_str(), outcome.finish_reason), ("Paris", FinishReason::Stop));
    assert_eq!(started.await.unwrap().count(), 1);
}

/// A loopback port with nothing listening on it.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// Embeddings.

fn embedder(server: &Server, retry: RetryPolicy) -> OpenAiEmbedder {
    let endpoint = Endpoint { retry, ..server.endpoint() };
    OpenAiEmbedder::new(OpenAiEmbedderOptions::new("embed", "text-embedding-3-small", endpoint, 2)).unwrap()
}

fn embeddings(body: &Value) -> Response {
    let inputs = body["input"].as_array().unwrap();
    let data: Vec<Value> =
        (0..inputs.len()).map(|i| json!({"object": "embedding", "index": i, "embedding": [1.0, i as f32]})).collect();
    let body = json!({"object": "list", "data": data, "model": "text-embedding-3-small",
                      "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}});
    Response::builder().header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn each_embedding_batch_is_retried_on_its_own() {
    // 3000 inputs are two batches; each is refused once.
    let server = Server::start(|n, body| async move {
        if n % 2 == 0 {
            error(503, &[])
        } else {
            embeddings(&body)
        }
    })
    .await;
    let inputs: Vec<String> = (0..3000).map(|i| format!("t{i}")).collect();
    let result = embedder(&server, RetryPolicy::default()).embed(inputs).await.unwrap();
    assert_eq!(result.vectors.len(), 3000);
    assert_eq!(result.prompt_tokens, 3000);
    let log = server.log.lock().unwrap();
    let sizes: Vec<usize> = log.iter().map(|r| r.body["input"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [2048, 2048, 952, 952]);
}

#[tokio::test]
async fn no_retries_when_the_policy_says_none() {
    let server = Server::start(|_, _| async { error(503, &[]) }).await;
    let error = embedder(&server, RetryPolicy::none()).embed(vec!["t0".into()]).await.unwrap_err();
    assert!(matches!(error, EmbedError::Internal(m) if m.starts_with("the provider is overloaded (status 503")));
    assert_eq!(server.count(), 1);
}
