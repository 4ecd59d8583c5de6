//! Limits and TLS on the real router: per-key rate limits (429 with `Retry-After`), the burst
//! refilling, separate buckets per key, the in-flight limit (freed when a stream ends or the
//! client goes away), body size (413), the request time limit (504) and the stream time limit
//! (an error event and `[DONE]`). Slow answers come from an OpenAI-compatible stand-in on
//! loopback that streams one token every 250 ms, as many as the request's `max_tokens`.
//!
//! The failed-authentication throttle: key guessing from one address (over a real socket) turns
//! into 429 `auth_throttled` after the burst, with one audit record instead of one per guess;
//! a valid key from that address still works, open routes and other addresses are unaffected,
//! the bucket refills at its rate, and a router without a client address never throttles.
//!
//! TLS: a self-signed certificate made in the test with rcgen, a real HTTPS request over
//! loopback with reqwest (rustls) trusting it, plain HTTP against the TLS port failing, and
//! start-up errors that name the missing or mismatched file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::BodyExt;
use perimeter_audit::{Filter, Record, RecordKind};
use perimeter_auth::{NewKey, Role};
use perimeter_config::Config;
use perimeter_server::limits::ClientAddr;
use perimeter_server::{app, load_models, open_index, AppState, Engines};
use perimeter_store::audit_file;
use perimeter_types::{ChatBackend, Embedder};
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY_VAR: &str = "PERIMETER_TEST_LIMITS_KEY";
/// One streamed token of the stand-in: long, so that the output guard's look-ahead (a few hundred
/// bytes) lets text through after a few tokens.
const SENTENCE: &str = "The Alder Bridge clinic opens at eight and closes at six on weekdays, says the note. ";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"))
}

/// An OpenAI-compatible upstream that streams `max_tokens` chunks of [`SENTENCE`], one every 250 ms.
fn slow_upstream() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let router = axum::Router::new().route(
            "/v1/chat/completions",
            post(|body: axum::Json<Value>| async move {
                let n = body.0["max_tokens"].as_u64().or(body.0["max_completion_tokens"].as_u64()).unwrap_or(4);
                let chunks = futures::stream::unfold(0u64, move |i| async move {
                    if i > n {
                        return None;
                    }
                    let data = if i == n {
                        let done = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "slow", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                        format!("data: {done}\n\ndata: [DONE]\n\n")
                    } else {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "slow", "choices": [{"index": 0, "delta": {"content": SENTENCE}, "finish_reason": null}]});
                        format!("data: {chunk}\n\n")
                    };
                    Some((Ok::<_, std::convert::Infallible>(data), i + 1))
                });
                ([("content-type", "text/event-stream")], Body::from_stream(chunks)).into_response()
            }),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, router).await.unwrap();
            });
        });
        format!("http://{}/v1", rx.recv().unwrap())
    })
    .clone()
}

fn models() -> (Arc<dyn Embedder>, Arc<dyn ChatBackend>) {
    static MODELS: OnceLock<(Arc<dyn Embedder>, Arc<dyn ChatBackend>)> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            // SAFETY-free in edition 2021; set before any backend reads it.
            std::env::set_var(KEY_VAR, "sk-test-limits");
            let mut c = Config::default();
            c.models.dir = models_dir();
            let (e, chat) = load_models(&c, Engines::All).expect("models load (run `make models`)");
            (e, chat.unwrap())
        })
        .clone()
}

/// A state whose chat goes to the slow stand-in, with `limits` as the `[limits]` section.
fn state(name: &str, limits: &str) -> AppState {
    let text = format!(
        "[limits]\n{limits}\n\n[[backend]]\nname = \"slow\"\nprovider = \"openai_compatible\"\nhosting = \"api\"\nmodel = \"slow\"\nbase_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\njurisdiction = \"eu\"\nretention = \"none\"\ntrains_on_data = false\nread_timeout_ms = 5000\n\n[[tenant]]\nname = \"default\"\nresidency = [\"eu\"]\n",
        slow_upstream()
    );
    let mut config = Config::parse(&text, "limits-test.toml").unwrap();
    config.models.dir = models_dir();
    config.server.max_body_bytes = 4096;
    let (embedder, chat) = models();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("limits-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = Arc::new(open_index(&dir, embedder.as_ref()).unwrap());
    let detector = Arc::new(perimeter_detect::Detector::new().unwrap());
    AppState::new(config, &dir, index, embedder, chat, detector)
}

fn get(path: &str, from: Option<[u8; 4]>) -> Request<Body> {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    if let Some(ip) = from {
        req.extensions_mut().insert(ConnectInfo(ClientAddr(SocketAddr::from((ip, 40000)))));
    }
    req
}

fn chat(stream: bool, max_tokens: u32) -> Request<Body> {
    let body = json!({"model": "perimeter", "stream": stream, "max_tokens": max_tokens, "perimeter": {"retrieval": false},
        "messages": [{"role": "user", "content": "Say a few words."}]});
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(router: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn assert_rate_limited(status: StatusCode, headers: &axum::http::HeaderMap, body: &Value, message: &str) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After is whole seconds, at least 1");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains(message), "{body}");
}

#[tokio::test]
async fn a_key_past_its_burst_gets_429_with_retry_after_and_other_keys_do_not() {
    // 120 a minute: one token every 0.5 s; three at once.
    let router = app(state("rate", "requests_per_minute = 120\nburst = 3\nmax_concurrent_requests = 0"));
    let a = Some([10, 0, 0, 1]);
    for _ in 0..3 {
        assert_eq!(send(&router, get("/v1/models", a)).await.0, StatusCode::OK);
    }
    let (status, headers, body) = send(&router, get("/v1/models", a)).await;
    assert_rate_limited(status, &headers, &body, "rate limit reached");
    assert_eq!(headers["retry-after"], "1");

    // Another client has its own bucket; probes and metrics are never limited.
    assert_eq!(send(&router, get("/v1/models", Some([10, 0, 0, 2]))).await.0, StatusCode::OK);
    assert_eq!(send(&router, get("/healthz", a)).await.0, StatusCode::OK);
    assert_eq!(send(&router, get("/openapi.json", a)).await.0, StatusCode::OK);

    // The bucket refills at the rate: one request after half a second, not two.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(send(&router, get("/v1/models", a)).await.0, StatusCode::OK);
    assert_eq!(send(&router, get("/v1/models", a)).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn requests_without_a_known_client_share_one_anonymous_bucket() {
    let router = app(state("anon", "requests_per_minute = 60\nburst = 2"));
    assert_eq!(send(&router, get("/v1/models", None)).await.0, StatusCode::OK);
    assert_eq!(send(&router, get("/v1/models", None)).await.0, StatusCode::OK);
    let (status, headers, body) = send(&router, get("/v1/models", None)).await;
    assert_rate_limited(status, &headers, &body, "rate limit reached");
}

#[tokio::test]
async fn a_rate_of_zero_turns_the_rate_limit_off() {
    let router = app(state("off", "requests_per_minute = 0\nburst = 1"));
    for _ in 0..50 {
        assert_eq!(send(&router, get("/v1/models", None)).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn in_flight_limit_holds_until_the_stream_ends_or_the_client_goes_away() {
    let router =
        app(state("concurrency", "requests_per_minute = 0\nmax_concurrent_requests = 1\nstream_timeout_seconds = 60"));
    let c = Some([10, 0, 0, 3]);

    // A stream holds the key's one place while its body is open.
    let mut req = chat(true, 40);
    req.extensions_mut().insert(ConnectInfo(ClientAddr(SocketAddr::from(([10, 0, 0, 3], 40001)))));
    let open = router.clone().oneshot(req).await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let (status, headers, body) = send(&router, get("/v1/models", c)).await;
    assert_rate_limited(status, &headers, &body, "too many requests in flight");
    assert_eq!(
        send(&router, get("/v1/models", Some([10, 0, 0, 4]))).await.0,
        StatusCode::OK,
        "other clients are not held up"
    );
    assert_eq!(send(&router, get("/healthz", c)).await.0, StatusCode::OK);

    // The client goes away: the server drops the body, and the place is free again.
    drop(open);
    assert_eq!(send(&router, get("/v1/models", c)).await.0, StatusCode::OK);

    // A stream read to its end frees the place too.
    let mut req = chat(true, 2);
    req.extensions_mut().insert(ConnectInfo(ClientAddr(SocketAddr::from(([10, 0, 0, 3], 40002)))));
    let done = router.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(done.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(send(&router, get("/v1/models", c)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_its_time_limit_gets_504() {
    let router = app(state("timeout", "request_timeout_seconds = 1\nstream_timeout_seconds = 2"));
    let started = Instant::now();
    // 20 tokens at 250 ms each: 5 s, past the 1 s limit.
    let (status, _, body) = send(&router, chat(false, 20)).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(body["error"]["message"], "the request took longer than the 1-second limit");
    assert!(took < Duration::from_secs(3), "cut at the limit, not when the answer ended: {took:?}");
}

#[tokio::test]
async fn a_stream_past_its_time_limit_ends_with_an_error_event_and_done() {
    // The request limit leaves room for the first token on a busy machine.
    let router = app(state("stream-timeout", "request_timeout_seconds = 10\nstream_timeout_seconds = 3"));
    let started = Instant::now();
    // The first token comes at once; 40 tokens take 10 s, past the 3 s stream limit.
    let response = router.clone().oneshot(chat(true, 40)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_millis(8000), "{took:?}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    assert!(events.len() >= 3, "some tokens came before the cut: {text}");
    assert_eq!(events[events.len() - 1].trim(), "data: [DONE]");
    let error: Value = serde_json::from_str(events[events.len() - 2].trim().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "timeout", "{text}");
    assert_eq!(error["error"]["message"], "the stream took longer than the 3-second limit");
    assert!(text.contains("Alder Bridge"), "the tokens before the cut were delivered");
}

#[tokio::test]
async fn an_oversized_body_gets_413_with_a_clear_message() {
    let router = app(state("size", ""));
    let big = json!({"model": "perimeter", "messages": [{"role": "user", "content": "x".repeat(8192)}]});
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(big.to_string()))
        .unwrap();
    let (status, _, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(body["error"]["message"], "the request body is larger than the 4096-byte limit");
}

#[test]
fn bad_limits_are_refused_naming_the_key() {
    let err = Config::parse("[limits]\nburst = 0", "t.toml").unwrap_err().to_string();
    assert!(err.contains("`limits.burst`"), "{err}");
    let err = Config::parse("[limits]\nauth_failure_burst = 0", "t.toml").unwrap_err().to_string();
    assert!(err.contains("`limits.auth_failure_burst`") && err.contains("between 1 and 1000000"), "{err}");
    let err = Config::parse("[limits]\nauth_failures_per_minute = 2000000", "t.toml").unwrap_err().to_string();
    assert!(err.contains("`limits.auth_failures_per_minute`"), "{err}");
    let err = Config::parse("[server]\ntls_cert = \"c.pem\"", "t.toml").unwrap_err().to_string();
    assert!(err.contains("`server.tls_key` is required"), "{err}");
}

/// The real server (`serve_until`) on a loopback port: its address, the switch that stops it,
/// and its task.
async fn serve(
    state: AppState,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(perimeter_server::serve_until(
        state,
        "127.0.0.1:0".parse().unwrap(),
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    (bound_rx.await.unwrap(), stop_tx, server)
}

// --- Failed authentication ---------------------------------------------------------------------

/// Creates a key in `state`'s store (the server is open until one exists); returns its text.
fn create_key(state: &AppState, role: Role) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let new = NewKey { tenant: "default".into(), role, groups: vec![], expires_at: None };
    state.keys.create(&new, now).unwrap().0.expose()
}

/// A well-formed key that is not in any store.
fn guess(i: u32) -> String {
    format!("prm_{i:016x}_{i:064x}")
}

fn with_key(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

/// The `access_denied` records in the data directory's audit log, oldest first.
fn denied(dir: &Path) -> Vec<Record> {
    let records = audit_file::export(dir, &Filter::default()).unwrap().records;
    records.into_iter().filter(|r| r.kind == RecordKind::AccessDenied).collect()
}

fn assert_auth_throttled(status: StatusCode, headers: &axum::http::HeaderMap, body: &Value, max_wait: u64) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=max_wait).contains(&retry), "Retry-After {retry} not in 1..={max_wait}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "auth_throttled");
    assert!(body["error"]["message"].as_str().unwrap().contains("failed authentication attempts"), "{body}");
    assert!(!headers.contains_key("www-authenticate"), "a 429, not a challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_keys_over_a_socket_turns_into_429_after_the_burst_with_one_audit_record() {
    // One token back a minute, so nothing refills while the test runs; the default burst (20).
    let state = state("auth-guess", "auth_failures_per_minute = 1");
    let key = create_key(&state, Role::User);
    let dir = state.data_dir.clone();
    let (addr, stop, server) = serve(state).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    for i in 0..20 {
        let response = client.get(url("/v1/models")).bearer_auth(guess(i)).send().await.unwrap();
        assert_eq!(response.status(), 401, "guess {i} is within the burst");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(denied(&dir).len(), 20, "one record per 401");

    // Past the burst: guesses, malformed keys and no key at all, on every protected route.
    let mut sent = Vec::new();
    for i in 20..80u32 {
        let path = ["/v1/models", "/v1/documents", "/metrics", "/v1/audit"][i as usize % 4];
        let request = match i % 3 {
            0 => {
                sent.push(guess(i));
                client.get(url(path)).bearer_auth(guess(i))
            }
            1 => client.get(url(path)).bearer_auth("not-a-key"),
            _ => client.get(url(path)),
        };
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body: Value = response.json().await.unwrap();
        assert_auth_throttled(status, &headers, &body, 60);
    }
    let records = denied(&dir);
    assert_eq!(records.len(), 21, "60 refused guesses left one record, not 60: {records:#?}");
    assert!(records[..20].iter().all(|r| r.outcome.as_deref() == Some("401")));
    let throttled = &records[20];
    assert_eq!(throttled.outcome.as_deref(), Some("429"));
    assert_eq!(throttled.reasons, vec!["auth_throttled".to_string()]);
    assert_eq!(throttled.detail.get("client").map(String::as_str), Some("127.0.0.1"));
    assert_eq!(throttled.detail.get("refused").map(String::as_str), Some("1"), "recorded when it started");
    assert_eq!(throttled.detail.get("route").map(String::as_str), Some("/v1/models"));
    assert_eq!(throttled.principal, None);

    // A valid key from the throttled address still works, again and again.
    for _ in 0..3 {
        let response = client.get(url("/v1/models")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Open routes are never throttled.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(client.get(url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    // Another address has its own bucket: 127.0.0.2 is loopback too.
    let other = reqwest::Client::builder().local_address(IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let response = other.get(url("/v1/models")).bearer_auth(guess(999)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let records = denied(&dir);
    assert_eq!(records.len(), 22);
    assert_eq!(records[21].outcome.as_deref(), Some("401"));

    // Still throttled, and nothing more on record for it.
    let response = client.get(url("/v1/models")).bearer_auth(guess(1000)).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(denied(&dir).len(), 22);
    let log: String = audit_file::segments(&dir).unwrap().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(sent.iter().all(|k| !log.contains(k.as_str())) && !log.contains(&key), "a key is in the audit log");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_address_refills_at_the_rate_and_is_on_record_once_a_minute() {
    // 30 a minute: a token every 2 s; two at once.
    let state = state("auth-refill", "auth_failures_per_minute = 30\nauth_failure_burst = 2");
    let key = create_key(&state, Role::User);
    let router = app(state.clone());
    let from = Some([10, 0, 0, 9]);
    // Successful authentication takes no token.
    for _ in 0..5 {
        assert_eq!(send(&router, with_key(get("/v1/models", from), &key)).await.0, StatusCode::OK);
    }
    let bad = |i| with_key(get("/v1/models", from), &guess(i));
    assert_eq!(send(&router, bad(1)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&router, bad(2)).await.0, StatusCode::UNAUTHORIZED);
    let (status, headers, body) = send(&router, bad(3)).await;
    assert_auth_throttled(status, &headers, &body, 2);
    assert_eq!(headers["retry-after"], "2");

    // One token back after two seconds: one more 401, then 429 again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(send(&router, bad(4)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&router, bad(5)).await.0, StatusCode::TOO_MANY_REQUESTS);

    let records = denied(&state.data_dir);
    let outcomes: Vec<_> = records.iter().map(|r| r.outcome.as_deref().unwrap()).collect();
    // Throttled twice within a minute: on record once.
    assert_eq!(outcomes, ["401", "401", "429", "401"], "{records:#?}");
    assert_eq!(records[2].detail.get("client").map(String::as_str), Some("10.0.0.9"));
}

#[tokio::test]
async fn without_a_client_address_or_with_the_throttle_off_failures_are_not_throttled() {
    let throttled = state("auth-no-address", "auth_failures_per_minute = 60\nauth_failure_burst = 1");
    create_key(&throttled, Role::User);
    let router = app(throttled);
    // A router driven without a socket knows no address: never throttled, never a panic.
    for i in 0..30 {
        assert_eq!(send(&router, with_key(get("/v1/models", None), &guess(i))).await.0, StatusCode::UNAUTHORIZED);
    }
    // The same router with an address throttles after the burst of one.
    let from = Some([10, 0, 0, 10]);
    assert_eq!(send(&router, with_key(get("/v1/models", from), &guess(0))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&router, get("/v1/models", from)).await.0, StatusCode::TOO_MANY_REQUESTS);

    let off = state("auth-off", "auth_failures_per_minute = 0");
    create_key(&off, Role::Admin);
    let router = app(off.clone());
    for i in 0..30 {
        let from = Some([10, 0, 0, 11]);
        assert_eq!(send(&router, with_key(get("/v1/models", from), &guess(i))).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(denied(&off.data_dir).len(), 30, "with the throttle off every 401 is on record");
}

#[test]
fn every_operation_that_needs_a_key_documents_429() {
    let spec: Value = serde_json::from_str(include_str!("../src/openapi.json")).unwrap();
    let mut protected = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let security = op.get("security").unwrap_or(&spec["security"]);
            if security.as_array().is_some_and(|s| s.is_empty()) {
                continue;
            }
            protected += 1;
            assert!(op["responses"].get("429").is_some(), "{method} {path} does not document 429");
        }
    }
    assert!(protected >= 10, "{protected}");
    let described = spec["components"]["responses"]["RateLimited"]["description"].as_str().unwrap();
    assert!(described.contains("auth_throttled"), "{described}");
}

// --- TLS ---------------------------------------------------------------------------------------

struct Pki {
    dir: tempfile::TempDir,
    cert_pem: String,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
fn pki() -> Pki {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("other-key.pem"), other.serialize_pem()).unwrap();
    Pki { cert_pem: cert.pem(), dir }
}

fn tls_state(pki: &Pki, key_file: &str) -> AppState {
    let state = state("tls", "");
    let mut config = (*state.config).clone();
    config.server.tls =
        Some(perimeter_config::Tls { cert: pki.dir.path().join("cert.pem"), key: pki.dir.path().join(key_file) });
    let mut state = state;
    state.config = Arc::new(config);
    state
}

#[tokio::test]
async fn https_on_loopback_with_a_trusted_self_signed_certificate() {
    let pki = pki();
    let (addr, stop_tx, server) = serve(tls_state(&pki, "key.pem")).await;

    let ca = reqwest::Certificate::from_pem(pki.cert_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let response = client.get(format!("https://localhost:{}/healthz", addr.port())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let models: Value =
        client.get(format!("https://127.0.0.1:{}/v1/models", addr.port())).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["object"], "list");

    // A client that does not trust the certificate is refused by its own TLS check.
    let untrusting = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).build().unwrap();
    assert!(untrusting.get(format!("https://localhost:{}/healthz", addr.port())).send().await.is_err());

    // Plain HTTP against the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let result = plain.get(format!("http://127.0.0.1:{}/healthz", addr.port())).send().await;
    assert!(result.is_err(), "plain HTTP must not be served on the TLS port: {result:?}");

    // Still serving after the failed handshakes; then a graceful stop.
    assert_eq!(client.get(format!("https://localhost:{}/healthz", addr.port())).send().await.unwrap().status(), 200);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}

async fn start_error(state: AppState) -> String {
    perimeter_server::serve_until(state, "127.0.0.1:0".parse().unwrap(), async {}, |_| {})
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn tls_start_up_errors_name_the_file() {
    let pki = pki();
    let missing = pki.dir.path().join("missing-key.pem");
    let err = start_error(tls_state(&pki, "missing-key.pem")).await;
    assert_eq!(err, format!("server.tls_key {}: does not exist", missing.display()));

    let err = start_error(tls_state(&pki, "other-key.pem")).await;
    assert!(err.contains("is not the private key of the certificate in server.tls_cert"), "{err}");
    assert!(err.contains("other-key.pem"), "{err}");

    // A key file that holds a certificate instead of a key.
    let err = start_error(tls_state(&pki, "cert.pem")).await;
    assert!(err.starts_with("server.tls_key ") && err.contains("holds no usable PRIVATE KEY section"), "{err}");
    assert!(!err.contains("BEGIN"), "the file's content is never quoted: {err}");

    let mut state = tls_state(&pki, "key.pem");
    let mut config = (*state.config).clone();
    config.server.tls.as_mut().unwrap().cert = pki.dir.path().join("nope.pem");
    state.config = Arc::new(config);
    let err = start_error(state).await;
    assert!(err.starts_with("server.tls_cert ") && err.ends_with("nope.pem: does not exist"), "{err}");
}
