//! The Azure OpenAI adapters against a local server on 127.0.0.1 that speaks Azure OpenAI's
//! data-plane API (version 2024-10-21) byte for byte: the deployment path, the `api-version`
//! query, `api-key` or Entra ID bearer auth, the stream with its empty-`choices` first chunk
//! carrying `prompt_filter_results` and `content_filter_results` in every choice, and the
//! content filter's 400. It records every request; nothing leaves loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use futures::FutureExt;
use perimeter_providers::azure::{AzureAuth, AzureChat, AzureEmbedder, AzureOptions};
use perimeter_providers::RetryPolicy;
use perimeter_types::{
    BackendError, ChatBackend, ChatMessage, ChatRequest, EmbedError, Embedder, FinishReason, GenerationParams, Role,
    TokenSink, Usage,
};
use serde_json::{json, Value};

const KEY: &str = "azure-key-DO-NOT-LEAK-0c1d";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-DO-NOT-LEAK";
const DEPLOYMENT: &str = "gpt4o-prod";
const SECRET: &str = "secret prompt text";

// ---------------------------------------------------------------------------------------------
// The recording server.

struct Recorded {
    at: Instant,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Value,
}

type Handler = Arc<dyn Fn(usize, Value) -> BoxFuture<'static, Response> + Send + Sync>;
type Log = Arc<Mutex<Vec<Recorded>>>;

struct Server {
    resource_endpoint: String,
    log: Log,
}

impl Server {
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
        Server { resource_endpoint: format!("http://{addr}"), log }
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.log.lock().unwrap()
    }

    fn options(&self, auth: AzureAuth) -> AzureOptions {
        AzureOptions {
            api_key_env: Some("AZURE_OPENAI_API_KEY".into()),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            ..AzureOptions::new("azure-test", "gpt-4o", &self.resource_endpoint, DEPLOYMENT, auth)
        }
    }

    fn chat(&self) -> AzureChat {
        AzureChat::new(self.options(AzureAuth::ApiKey(KEY.into()))).unwrap()
    }

    fn embedder(&self) -> AzureEmbedder {
        AzureEmbedder::new(self.options(AzureAuth::ApiKey(KEY.into())), 3, 8191).unwrap()
    }
}

async fn record(State((handler, log)): State<(Handler, Log)>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Recorded {
            at,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body: body.clone(),
        });
        log.len() - 1
    };
    handler(n, body).await
}

fn sse(parts: Vec<String>) -> Response {
    let parts: Vec<Result<Vec<u8>, Infallible>> = parts.into_iter().map(|p| Ok(p.into_bytes())).collect();
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(futures::stream::iter(parts)))
        .unwrap()
}

fn json_response(status: u16, headers: &[(&str, &str)], body: Value) -> Response {
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Azure's stream, as the service sends it.

fn event(json: &Value) -> String {
    format!("data: {json}\n\n")
}

fn safe() -> Value {
    json!({
        "hate": {"filtered": false, "severity": "safe"},
        "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"},
        "violence": {"filtered": false, "severity": "safe"}
    })
}

/// The first chunk: no choices, only the prompt's filter results.
fn prompt_filter_chunk() -> Value {
    let mut results = safe();
    results["jailbreak"] = json!({"filtered": false, "detected": false});
    json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": results}]
    })
}

fn chunk(delta: Value, finish_reason: Option<&str>, filter: Value) -> Value {
    json!({
        "choices": [{
            "content_filter_results": filter,
            "delta": delta,
            "finish_reason": finish_reason,
            "index": 0,
            "logprobs": null
        }],
        "created": 1741570283,
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "model": "gpt-4o-2024-11-20",
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_b705f0c291"
    })
}

fn usage_chunk(prompt: u32, completion: u32) -> Value {
    json!({
        "choices": [],
        "created": 1741570283,
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "model": "gpt-4o-2024-11-20",
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_b705f0c291",
        "usage": {
            "completion_tokens": completion,
            "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 0, "rejected_prediction_tokens": 0},
            "prompt_tokens": prompt,
            "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
            "total_tokens": prompt + completion
        }
    })
}

/// A whole answer made of `pieces`, ending with `finish`.
fn stream(pieces: &[&str], finish: &str) -> Response {
    let mut parts = vec![
        event(&prompt_filter_chunk()),
        event(&chunk(json!({"content": "", "refusal": null, "role": "assistant"}), None, json!({}))),
    ];
    parts.extend(pieces.iter().map(|p| event(&chunk(json!({"content": p}), None, safe()))));
    parts.push(event(&chunk(json!({}), Some(finish), json!({}))));
    parts.push(event(&usage_chunk(19, pieces.len() as u32)));
    parts.push("data: [DONE]\n\n".to_string());
    sse(parts)
}

/// Azure's refusal of a prompt by the content filter. The message quotes nothing here, but the
/// result could; it must not reach the error either way.
fn content_filter_400() -> Response {
    json_response(
        400,
        &[],
        json!({"error": {
            "message": format!("The response was filtered due to the prompt triggering Azure OpenAI's content management policy ({SECRET})."),
            "type": null,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": true, "severity": "high"},
                    "jailbreak": {"filtered": false, "detected": false},
                    "self_harm": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": false, "severity": "safe"},
                    "violence": {"filtered": false, "severity": "safe"}
                }
            }
        }}),
    )
}

// ---------------------------------------------------------------------------------------------
// Client side.

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

fn sink() -> (TokenSink, Arc<Mutex<Vec<String>>>) {
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let seen = pieces.clone();
    let sink: TokenSink = Box::new(move |piece: &str| {
        seen.lock().unwrap().push(piece.to_string());
        true
    });
    (sink, pieces)
}

fn assert_clean(message: &str) {
    for leak in [KEY, TOKEN, "DO-NOT-LEAK", SECRET, "capital of France", "content management policy"] {
        assert!(!message.contains(leak), "{message:?} contains {leak:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Chat.

#[tokio::test]
async fn a_streamed_answer_goes_to_the_deployment_with_the_api_key() {
    let server = Server::start(|_, _| async { stream(&["The", " capital", " is", " Paris", "."], "stop") }).await;
    let chat = server.chat();
    assert_eq!((chat.name(), chat.model(), chat.context_tokens()), ("azure-test", "gpt-4o", 128_000));
    let (sink, seen) = sink();
    let outcome = chat.chat(request(), sink).await.unwrap();
    assert_eq!(outcome.text, "The capital is Paris.");
    assert_eq!(*seen.lock().unwrap(), ["The", " capital", " is", " Paris", "."]);
    assert_eq!(outcome.finish_reason, FinishReason::Stop);
    assert_eq!(outcome.usage, Usage { prompt_tokens: 19, completion_tokens: 5 });

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(sent.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(sent.headers["api-key"], KEY);
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(sent.headers["content-type"], "application/json");
    // The deployment names the model: no `model` in the body.
    assert_eq!(
        sent.body,
        json!({
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
async fn an_entra_token_is_sent_as_a_bearer_token() {
    let server = Server::start(|_, _| async { stream(&["ok"], "stop") }).await;
    let options = AzureOptions {
        api_version: "2025-01-01-preview".into(),
        ..server.options(AzureAuth::EntraToken(TOKEN.into()))
    };
    let (sink, _) = sink();
    AzureChat::new(options).unwrap().chat(request(), sink).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert!(requests[0].headers.get("api-key").is_none());
    assert_eq!(requests[0].query.as_deref(), Some("api-version=2025-01-01-preview"));
}

#[tokio::test]
async fn the_content_filter_refusing_the_prompt_is_a_clear_error() {
    let server = Server::start(|_, _| async { content_filter_400() }).await;
    let (sink, _) = sink();
    let error = server.chat().chat(request(), sink).await.unwrap_err();
    assert_eq!(
        error,
        BackendError::InvalidRequest(
            "the provider's content filter blocked the request (status 400, code content_filter)".into()
        )
    );
    assert_clean(&error.to_string());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_content_filter_stopping_the_answer_is_an_error() {
    let server = Server::start(|_, _| async {
        let filtered = json!({"hate": {"filtered": true, "severity": "medium"}});
        sse(vec![
            event(&prompt_filter_chunk()),
            event(&chunk(json!({"content": "Some"}), None, safe())),
            event(&chunk(json!({}), Some("content_filter"), filtered)),
            "data: [DONE]\n\n".to_string(),
        ])
    })
    .await;
    let (sink, _) = sink();
    let error = server.chat().chat(request(), sink).await.unwrap_err();
    assert_eq!(error, BackendError::InvalidRequest("the provider's content filter stopped the answer".into()));
}

#[tokio::test]
async fn azure_rate_limits_are_waited_out_as_retry_after_says() {
    let server = Server::start(|n, _| async move {
        if n == 0 {
            json_response(
                429,
                &[("retry-after", "1"), ("retry-after-ms", "1000"), ("x-ratelimit-remaining-requests", "0")],
                json!({"error": {"code": "429", "message": format!("Requests to the ChatCompletions_Create Operation have exceeded the rate limit ({SECRET}). Please retry after 1 second.")}}),
            )
        } else {
            stream(&["Paris"], "stop")
        }
    })
    .await;
    let (sink, _) = sink();
    let outcome = server.chat().chat(request(), sink).await.unwrap();
    assert_eq!(outcome.text, "Paris");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(1) && gap < Duration::from_secs(2), "{gap:?}");
}

#[tokio::test]
async fn a_long_rate_limit_fails_at_once_and_without_retries_when_asked() {
    let server = Server::start(|_, _| async {
        json_response(429, &[("retry-after", "86400")], json!({"error": {"code": "429", "message": "quota"}}))
    })
    .await;
    let (first, _) = sink();
    let started = Instant::now();
    assert_eq!(server.chat().chat(request(), first).await.unwrap_err(), BackendError::Overloaded);
    assert!(started.elapsed() < Duration::from_secs(1));

    let server = Server::start(|_, _| async { json_response(503, &[], json!({"error": {"code": "503"}})) }).await;
    let options = AzureOptions { retry: RetryPolicy::none(), ..server.options(AzureAuth::ApiKey(KEY.into())) };
    let (second, _) = sink();
    assert_eq!(AzureChat::new(options).unwrap().chat(request(), second).await.unwrap_err(), BackendError::Overloaded);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_wrong_key_names_the_variable_but_not_the_key() {
    let server = Server::start(|_, _| async {
        json_response(
            401,
            &[],
            json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}),
        )
    })
    .await;
    let (sink, _) = sink();
    let error = server.chat().chat(request(), sink).await.unwrap_err();
    assert_eq!(
        error,
        BackendError::Internal("authentication failed (status 401); check the API key in AZURE_OPENAI_API_KEY".into())
    );
    assert_clean(&error.to_string());
}

// ---------------------------------------------------------------------------------------------
// Embeddings.

async fn embeddings(_: usize, body: Value) -> Response {
    let inputs = body["input"].as_array().unwrap().len();
    let data: Vec<Value> = (0..inputs)
        .rev()
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [3.0, 4.0, i as f32]}))
        .collect();
    json_response(
        200,
        &[],
        json!({"object": "list", "data": data, "model": "text-embedding-3-small",
               "usage": {"prompt_tokens": 2 * inputs, "total_tokens": 2 * inputs}}),
    )
}

#[tokio::test]
async fn embeddings_go_to_the_deployment_without_a_model() {
    let server = Server::start(embeddings).await;
    let embedder = server.embedder();
    assert_eq!((embedder.model(), embedder.dimensions(), embedder.max_tokens()), ("gpt-4o", 3, 8191));
    let result = embedder.embed(vec!["a".into(), "b".into()]).await.unwrap();
    assert_eq!(result.prompt_tokens, 4);
    assert_eq!(result.vectors[0], [0.6, 0.8, 0.0]);
    let norm: f32 = result.vectors[1].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-6);

    let requests = server.requests();
    assert_eq!(requests[0].path, "/openai/deployments/gpt4o-prod/embeddings");
    assert_eq!(requests[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(requests[0].headers["api-key"], KEY);
    assert_eq!(requests[0].body, json!({"input": ["a", "b"]}));
}

#[tokio::test]
async fn embedding_refusals_by_the_content_filter_are_invalid_input() {
    let server = Server::start(|_, _| async { content_filter_400() }).await;
    let error = server.embedder().embed(vec!["a".into()]).await.unwrap_err();
    assert_eq!(
        error,
        EmbedError::InvalidInput(
            "the provider's content filter blocked the request (status 400, code content_filter)".into()
        )
    );
    assert_clean(&error.to_string());
}

#[tokio::test]
async fn embedding_batches_are_retried() {
    let server = Server::start(|n, body| async move {
        if n == 0 {
            json_response(503, &[("retry-after-ms", "50")], json!({"error": {"code": "503"}}))
        } else {
            embeddings(n, body).await
        }
    })
    .await;
    let result = server.embedder().embed(vec!["a".into()]).await.unwrap();
    assert_eq!(result.vectors.len(), 1);
    assert_eq!(server.requests().len(), 2);
}
