//! Limits and TLS on the real router: per-key rate limits (429 with `Retry-After`), the burst
//! refilling, separate buckets per key, the in-flight limit (freed when a stream ends or the
//! client goes away), body size (413), the request time limit (504) and the stream time limit
//! (an error event and `[DONE]`). Slow answers come from an OpenAI-compatible stand-in on
//! loopback that streams one token every 250 ms, as many as the request's `max_tokens`.
//!
//! TLS: a self-signed certificate made in the test with rcgen, a real HTTPS request over
//! loopback with reqwest (rustls) trusting it, plain HTTP against the TLS port failing, and
//! start-up errors that name the missing or mismatched file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::BodyExt;
use perimeter_config::Config;
use perimeter_server::limits::ClientAddr;
use perimeter_server::{app, load_models, open_index, AppState, Engines};
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
    let err = Config::parse("[server]\ntls_cert = \"c.pem\"", "t.toml").unwrap_err().to_string();
    assert!(err.contains("`server.tls_key` is required"), "{err}");
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
    let state = tls_state(&pki, "key.pem");
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
    let addr = bound_rx.await.unwrap();

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
