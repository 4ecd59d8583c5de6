//! End to end: the access decision on the real request path. Perimeter runs with the real
//! embedded models and one or more API backends that point at a recording HTTP server on
//! loopback speaking OpenAI's wire format. The recording server is the proof: what it did not
//! receive did not leave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::BodyExt;
use perimeter_config::Config;
use perimeter_index::{ingest_bytes, EmbedGate, FileOutcome, IngestOptions};
use perimeter_server::{app, load_models, open_index, AppState, Engines};
use perimeter_types::{ChatBackend, Embedder, Level};
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY_VAR: &str = "PERIMETER_TEST_ROUTING_KEY";
const MISSING_KEY_VAR: &str = "PERIMETER_TEST_ROUTING_KEY_THAT_IS_NOT_SET";
const SECRET_KEY: &str = "sk-test-routing-0123456789";

const PUBLIC_DOC: &str = "---\nlabel: public\ncollection: public\n---\n# Opening hours\n\nThe Alder Bridge clinic is open from eight in the morning until six in the evening on weekdays, and from nine until one on Saturdays.\n";
const RESTRICTED_DOC: &str = "---\nlabel: restricted\ncollection: restricted\n---\n# Ward supply codes\n\nThe night ward uses supply code LAVENDER-17 for sterile dressings and code OAK-4 for saline.\n";
const CONFIDENTIAL_DOC: &str = "---\nlabel: internal\ncollection: contacts\n---\n# Duty manager\n\nThe duty manager for the Alder Bridge clinic can be reached on 020 7946 0321 for urgent staffing questions.\n";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the stand-in received: path, headers and body of every request.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

impl Recorder {
    fn requests(&self) -> Vec<(String, HeaderMap, Value)> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, path_suffix: &str) -> usize {
        self.requests().iter().filter(|(p, _, _)| p.ends_with(path_suffix)).count()
    }
    fn bodies(&self) -> String {
        self.requests().iter().map(|(_, _, b)| b.to_string()).collect::<Vec<_>>().join("\n")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers normally.
    Answer,
    /// Every request is a 500.
    Fail,
    /// Streams the first words, then the connection ends without `[DONE]`.
    Break,
}

/// An OpenAI-compatible stand-in on 127.0.0.1 that records what it receives.
fn stand_in(mode: Mode) -> (String, Recorder) {
    let fail = mode == Mode::Fail;
    let recorder = Recorder::default();
    let chat_rec = recorder.clone();
    let embed_rec = recorder.clone();
    let router = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let rec = chat_rec.clone();
                async move {
                    rec.0.lock().unwrap().push(("/v1/chat/completions".into(), headers, body.0.clone()));
                    if fail {
                        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}))).into_response();
                    }
                    // Echo a placeholder if the prompt carries one, so restoration can be checked.
                    let prompt = body.0["messages"].to_string();
                    let answer = match prompt.find("<PHONE_") {
                        Some(i) => {
                            let end = prompt[i..].find('>').unwrap() + i + 1;
                            format!("Call the duty manager on {}.", &prompt[i..end])
                        }
                        None => "The answer from the API stand-in.".to_string(),
                    };
                    let mut sse = String::new();
                    let pieces: Vec<String> = answer.split_inclusive(' ').map(String::from).collect();
                    for (i, p) in pieces.iter().enumerate() {
                        let role = if i == 0 { json!({"role": "assistant", "content": p}) } else { json!({"content": p}) };
                        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-stand-in", "choices": [{"index": 0, "delta": role, "finish_reason": null}]});
                        sse.push_str(&format!("data: {chunk}\n\n"));
                    }
                    if mode == Mode::Break {
                        return ([("content-type", "text/event-stream")], sse).into_response();
                    }
                    let done = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-stand-in", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                    sse.push_str(&format!("data: {done}\n\n"));
                    let usage = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-stand-in", "choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": pieces.len(), "total_tokens": 42 + pieces.len()}});
                    sse.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
                    ([("content-type", "text/event-stream")], sse).into_response()
                }
            }),
        )
        .route(
            "/v1/embeddings",
            post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let rec = embed_rec.clone();
                async move {
                    rec.0.lock().unwrap().push(("/v1/embeddings".into(), headers, body.0.clone()));
                    let inputs = body.0["input"].as_array().cloned().unwrap_or_default();
                    // A deterministic 8-dimensional vector per text (bytes folded into buckets).
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut v = [1.0f32; 8];
                            for (j, b) in t.as_str().unwrap_or("").bytes().enumerate() {
                                v[(j + b as usize) % 8] += f32::from(b) / 255.0;
                            }
                            json!({"object": "embedding", "index": i, "embedding": v})
                        })
                        .collect();
                    axum::Json(json!({"object": "list", "data": data, "model": "embed-stand-in", "usage": {"prompt_tokens": 7, "total_tokens": 7}})).into_response()
                }
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
    let addr = rx.recv().unwrap();
    (format!("http://{addr}/v1"), recorder)
}

/// The embedded models, loaded once for all tests.
fn models() -> (Arc<dyn Embedder>, Arc<dyn ChatBackend>) {
    static MODELS: OnceLock<(Arc<dyn Embedder>, Arc<dyn ChatBackend>)> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            // SAFETY-free in edition 2021; set before any backend reads it.
            std::env::set_var(KEY_VAR, SECRET_KEY);
            let mut c = Config::default();
            c.models.dir = models_dir();
            let (e, chat) = load_models(&c, Engines::All).expect("models load (run `make models`)");
            (e, chat.unwrap())
        })
        .clone()
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"))
}

fn api_backend(name: &str, url: &str, key_var: &str, priority: i32) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nprovider = \"openai_compatible\"\nhosting = \"api\"\nmodel = \"gpt-stand-in\"\nbase_url = \"{url}\"\napi_key_env = \"{key_var}\"\njurisdiction = \"eu\"\nretention = \"none\"\ntrains_on_data = false\npriority = {priority}\nread_timeout_ms = 5000\n\n"
    )
}

fn config(text: &str) -> Config {
    let mut c =
        Config::parse(&format!("{text}\n[[tenant]]\nname = \"default\"\nresidency = [\"eu\"]\n"), "test.toml").unwrap();
    c.models.dir = models_dir();
    c.generation.max_tokens = 16;
    c
}

/// A fresh store with the three fixture documents, ingested by `embedder` under `config`'s policy.
fn state_with(config: Config, name: &str, embedder: Arc<dyn Embedder>) -> (AppState, Vec<(String, FileOutcome)>) {
    let (_, chat) = models();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("routing-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = Arc::new(open_index(&dir, embedder.as_ref()).unwrap());
    let detector = Arc::new(perimeter_detect::Detector::new().unwrap());
    let gate = EmbedGate { policy: config.policy.clone(), backend: config.embedding_backend.clone(), audit: None };
    let options = IngestOptions { embed_gate: Some(gate), ..IngestOptions::default() };
    let docs = [("public.md", PUBLIC_DOC), ("restricted.md", RESTRICTED_DOC), ("contacts.md", CONFIDENTIAL_DOC)];
    let outcomes = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            docs.iter()
                .map(|(source, text)| {
                    let o = rt
                        .block_on(ingest_bytes(
                            &index,
                            embedder.as_ref(),
                            &detector,
                            source,
                            perimeter_extract::Format::Markdown,
                            text.as_bytes(),
                            &options,
                        ))
                        .unwrap();
                    (source.to_string(), o)
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    });
    (AppState::new(config, &dir, index, embedder, chat, detector), outcomes)
}

async fn chat(state: &AppState, body: Value, level: Option<Level>) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::post("/v1/chat/completions").header("content-type", "application/json");
    if let Some(l) = level {
        req = req.header("x-perimeter-level", l.as_str());
    }
    let response = app(state.clone()).oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

fn question(text: &str, collection: &str) -> Value {
    json!({"model": "perimeter", "messages": [{"role": "user", "content": text}], "perimeter": {"collection": collection, "top_k": 1}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_stays_local_public_goes_to_the_api_and_confidential_is_pseudonymised() {
    let (url, rec) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let (state, _) = state_with(config(&api_backend("api-eu", &url, KEY_VAR, 10)), "main", embedder);

    // Restricted passage: the embedded model answers; the API receives nothing.
    let (status, headers, body) =
        chat(&state, question("Which supply code does the night ward use for dressings?", "restricted"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-perimeter-backend"], "embedded");
    assert_eq!(headers["x-perimeter-level"], "restricted");
    assert_eq!(body["perimeter"]["backend"], "embedded");
    let trace = body["perimeter"]["trace"].as_array().unwrap();
    let api = trace.iter().find(|t| t["backend"] == "api-eu").unwrap();
    assert_eq!(api["verdict"], "rejected");
    assert!(api["reasons"][0].as_str().unwrap().contains("not allowed at level restricted"), "{api}");
    assert_eq!(rec.count("/chat/completions"), 0, "a restricted request reached the API");

    // Public passage: the API answers, with the retrieved passage in its prompt and the key sent.
    let (status, headers, body) =
        chat(&state, question("When is the Alder Bridge clinic open on Saturdays?", "public"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-perimeter-backend"], "api-eu");
    assert_eq!(headers["x-perimeter-level"], "public");
    assert_eq!(body["choices"][0]["message"]["content"], "The answer from the API stand-in.");
    assert_eq!(body["model"], "gpt-stand-in");
    assert_eq!(body["usage"]["prompt_tokens"], 42);
    let requests = rec.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1["authorization"], format!("Bearer {SECRET_KEY}"));
    assert!(requests[0].2.to_string().contains("from nine until one on Saturdays"), "the passage is in the prompt");
    assert!(!rec.bodies().contains("LAVENDER-17"), "restricted text reached the API");

    // A phone number makes the request confidential: the API is allowed only pseudonymised, and
    // the placeholder in its answer comes back as the number.
    let (status, headers, body) =
        chat(&state, question("How do I reach the duty manager for staffing questions?", "contacts"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-perimeter-level"], "confidential");
    assert_eq!(headers["x-perimeter-backend"], "api-eu");
    assert_eq!(body["perimeter"]["redact"], true);
    assert!(body["perimeter"]["pseudonymised"].as_u64().unwrap() >= 1, "{body}");
    let last = rec.requests().pop().unwrap();
    assert!(!last.2.to_string().contains("7946 0321"), "the phone number reached the API");
    assert!(last.2.to_string().contains("<PHONE_1>"));
    assert_eq!(body["choices"][0]["message"]["content"], "Call the duty manager on 020 7946 0321.");

    // Streaming takes the same route and sets the header for the backend that answered.
    let mut q = question("When is the Alder Bridge clinic open on Saturdays?", "public");
    q["stream"] = json!(true);
    let (status, headers, body) = chat(&state, q, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-perimeter-backend"], "api-eu");
    let text = body.as_str().unwrap();
    assert!(text.contains("stand-in") && text.trim_end().ends_with("data: [DONE]"), "{text}");

    // x-perimeter-level raises a public question off the API.
    let before = rec.count("/chat/completions");
    let (status, headers, _) =
        chat(&state, question("When is the Alder Bridge clinic open on Saturdays?", "public"), Some(Level::Restricted))
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-perimeter-backend"], "embedded");
    assert_eq!(rec.count("/chat/completions"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_compliant_backend_is_a_403_and_nothing_is_sent() {
    let (url, rec) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let text = format!(
        "{}[policy.level.restricted]\nhosting = [\"self_hosted\"]\n\n[[policy.entity]]\nkinds = [\"secrets\"]\naction = \"deny\"\n",
        api_backend("api-eu", &url, KEY_VAR, 10)
    );
    let (state, outcomes) = state_with(config(&text), "deny", embedder);
    // Under this policy not even the embedded embedder may take restricted text: the document
    // is refused at ingestion.
    assert!(
        matches!(&outcomes.iter().find(|(s, _)| s == "restricted.md").unwrap().1, FileOutcome::Refused { .. }),
        "{outcomes:?}"
    );

    let (status, headers, body) =
        chat(&state, question("When is the Alder Bridge clinic open on Saturdays?", "public"), Some(Level::Restricted))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "policy_denied");
    assert_eq!(body["error"]["type"], "policy_denied_error");
    assert_eq!(headers["x-perimeter-decision"], "deny");
    assert!(headers.get("x-perimeter-backend").is_none());
    let reasons = body["perimeter"]["reasons"].as_array().unwrap();
    assert!(reasons
        .iter()
        .any(|r| r.as_str().unwrap().contains("no backend may receive chat data at level restricted")));
    assert!(!body.to_string().contains("Saturdays"), "document text in an error body");

    // A secret in the question is refused outright, and its value is not echoed.
    let secret = "aws_secret_access_key = 9fJq2Lr8XvT1mZbN4kWc7PdHs0YgUe3RiAoQtK5n";
    let (status, _, body) = chat(&state, json!({"model": "perimeter", "messages": [{"role": "user", "content": format!("Is this valid? {secret}")}], "perimeter": {"retrieval": false}}), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("AWS_SECRET_KEY"), "{body}");
    assert!(!body.to_string().contains("9fJq2Lr8XvT1"));

    assert_eq!(rec.requests().len(), 0, "a denied request reached the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_unconfigured_backends_are_skipped() {
    let (good_url, good) = stand_in(Mode::Answer);
    let (bad_url, bad) = stand_in(Mode::Fail);
    let (nokey_url, nokey) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let text = format!(
        "{}{}{}",
        // Two attempts per call: each call to the broken backend is a 500, a retry, a 500.
        api_backend("api-broken", &bad_url, KEY_VAR, 1).replace("priority = 1\n", "priority = 1\nmax_attempts = 2\n"),
        api_backend("api-nokey", &nokey_url, MISSING_KEY_VAR, 2),
        api_backend("api-good", &good_url, KEY_VAR, 3)
    );
    let (state, _) = state_with(config(&text), "health", embedder);
    let ask = || question("When is the Alder Bridge clinic open on Saturdays?", "public");
    for i in 1..=perimeter_server::backends::FAILURE_THRESHOLD {
        let (status, headers, body) = chat(&state, ask(), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-perimeter-backend"], "api-good", "request {i} falls back");
        assert_eq!(body["perimeter"]["backend"], "api-good");
        assert!(
            body["perimeter"]["reasons"].to_string().contains("failed before answering, skipped: api-broken"),
            "{body}"
        );
        assert_eq!(bad.count("/chat/completions") as u32, 2 * i, "one retry per call");
    }
    // The circuit is open now: the broken backend is not even tried.
    let (status, _, body) = chat(&state, ask(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trace = body["perimeter"]["trace"].as_array().unwrap();
    let broken = trace.iter().find(|t| t["backend"] == "api-broken").unwrap();
    assert_eq!(broken["verdict"], "rejected");
    assert!(broken["reasons"].to_string().contains("circuit open"), "{broken}");
    let unkeyed = trace.iter().find(|t| t["backend"] == "api-nokey").unwrap();
    assert!(unkeyed["reasons"].to_string().contains("credentials are not configured"), "{unkeyed}");
    assert_eq!(bad.count("/chat/completions") as u32, 2 * perimeter_server::backends::FAILURE_THRESHOLD);
    assert_eq!(nokey.requests().len(), 0);
    assert_eq!(good.count("/chat/completions") as u32, perimeter_server::backends::FAILURE_THRESHOLD + 1);
    // The key never appears in what the client sees.
    assert!(!body.to_string().contains(SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_embedder_never_receives_restricted_documents_or_queries() {
    let (url, rec) = stand_in(Mode::Answer);
    let text = format!(
        "[[backend]]\nname = \"api-embed\"\nprovider = \"openai_compatible\"\nhosting = \"api\"\nmodel = \"embed-stand-in\"\nbase_url = \"{url}\"\napi_key_env = \"{KEY_VAR}\"\njurisdiction = \"eu\"\nretention = \"none\"\ntrains_on_data = false\nserves = [\"embeddings\"]\ndimensions = 8\n\n[embedding]\nbackend = \"api-embed\"\n"
    );
    let _ = models(); // sets the key variable
    let config = config(&text);
    let (embedder, _) = load_models(&config, Engines::EmbeddingOnly).unwrap();
    assert_eq!(embedder.dimensions(), 8);
    let (state, outcomes) = state_with(config, "embed", embedder);
    let outcome = |name: &str| &outcomes.iter().find(|(s, _)| s == name).unwrap().1;
    assert!(matches!(outcome("public.md"), FileOutcome::Ingested { .. }), "{outcomes:?}");
    assert!(matches!(outcome("contacts.md"), FileOutcome::Ingested { .. }), "{outcomes:?}");
    match outcome("restricted.md") {
        FileOutcome::Refused { reasons } => {
            assert!(reasons.iter().any(|r| r.contains("not allowed at level restricted")), "{reasons:?}")
        }
        other => panic!("restricted document was not refused: {other:?}"),
    }
    let bodies = rec.bodies();
    assert!(bodies.contains("Saturdays"), "the public document was embedded by the API");
    assert!(!bodies.contains("LAVENDER"), "restricted text reached the API embedder");
    assert!(!bodies.contains("7946 0321"), "confidential chunks are pseudonymised before embedding");

    // A query raised to restricted is not embedded by the API: keyword search only.
    let before = rec.count("/embeddings");
    let q = json!({"model": "perimeter", "messages": [{"role": "user", "content": "opening hours on Saturdays"}], "perimeter": {"collection": "public", "top_k": 1}, "max_tokens": 4});
    let (status, headers, body) = chat(&state, q.clone(), Some(Level::Restricted)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-perimeter-backend"], "embedded");
    assert_eq!(rec.count("/embeddings"), before, "a restricted query reached the API embedder");
    assert!(body["perimeter"]["reasons"].to_string().contains("keyword search only"), "{body}");
    assert!(!body["perimeter"]["citations"].as_array().unwrap().is_empty(), "BM25 still finds the passage");
    // Without the header the query is public and is embedded by the API.
    let (status, _, _) = chat(&state, q, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rec.count("/embeddings"), before + 1);

    // /v1/embeddings obeys the same decision.
    let req = |level: &str| {
        Request::post("/v1/embeddings")
            .header("content-type", "application/json")
            .header("x-perimeter-level", level)
            .body(Body::from(json!({"model": "perimeter", "input": ["hello"]}).to_string()))
            .unwrap()
    };
    let r = app(state.clone()).oneshot(req("restricted")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app(state.clone()).oneshot(req("public")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-perimeter-backend"], "api-embed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_gets_an_adapter_and_missing_credentials_show_in_readyz() {
    let _ = models(); // sets the key variable
                      // Bedrock reads credentials from the environment or the shared AWS files; point both at
                      // nothing here except what this test sets.
    let aws = tempfile::tempdir().unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", aws.path().join("credentials"));
    std::env::set_var("AWS_CONFIG_FILE", aws.path().join("config"));
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY");
    let text = format!(
        r#"
[[backend]]
name = "openai"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "{KEY_VAR}"
jurisdiction = "eu"

[[backend]]
name = "azure"
provider = "azure_openai"
model = "gpt-4o-mini"
base_url = "https://example-eu.openai.azure.com"
deployment = "gpt4o-mini-prod"
api_key_env = "{KEY_VAR}"
jurisdiction = "eu"

[[backend]]
name = "azure-entra"
provider = "azure_openai"
model = "gpt-4o-mini"
base_url = "https://example-eu.openai.azure.com"
deployment = "gpt4o-mini-prod"
auth = "entra"
api_key_env = "{MISSING_KEY_VAR}"
jurisdiction = "eu"

[[backend]]
name = "claude"
provider = "anthropic"
model = "claude-3-5-haiku-latest"
api_key_env = "{KEY_VAR}"
jurisdiction = "us"

[[backend]]
name = "bedrock"
provider = "bedrock"
model = "anthropic.claude-3-haiku-20240307-v1:0"
region = "eu-central-1"
jurisdiction = "eu"
"#
    );
    let (embedder, _) = models();
    let (state, _) = state_with(config(&text), "providers", embedder);
    let response = app(state.clone()).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let backend = |name: &str| body["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap().clone();
    for name in ["openai", "azure", "claude", "bedrock", "embedded"] {
        assert_eq!(backend(name)["healthy"], true, "{name}: {body}");
    }
    assert_eq!(backend("azure-entra")["healthy"], false);
    assert_eq!(backend("azure-entra")["problem"], "credentials are not configured");
    assert!(!body.to_string().contains(SECRET_KEY) && !body.to_string().contains("EXAMPLEKEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_fails_mid_answer_ends_the_request_without_falling_back() {
    let (break_url, broken) = stand_in(Mode::Break);
    let (good_url, good) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let text = format!(
        "{}{}",
        api_backend("api-breaks", &break_url, KEY_VAR, 1).replace("priority = 1\n", "priority = 1\nmax_attempts = 1\n"),
        api_backend("api-good", &good_url, KEY_VAR, 2)
    );
    let (state, _) = state_with(config(&text), "midstream", embedder);
    let ask = || question("When is the Alder Bridge clinic open on Saturdays?", "public");

    // Streamed: the client gets the words that came, then an error event and [DONE].
    let mut q = ask();
    q["stream"] = json!(true);
    let (status, headers, body) = chat(&state, q, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-perimeter-backend"], "api-breaks");
    let text = body.as_str().unwrap();
    assert!(text.contains("The "), "{text}");
    assert!(text.contains("upstream_error") && text.contains("api-breaks"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // Not streamed: a 502 naming the backend, and no second backend is asked.
    let (status, _, body) = chat(&state, ask(), None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("api-breaks"), "{body}");
    assert_eq!(broken.count("/chat/completions"), 2);
    assert_eq!(good.requests().len(), 0, "a failure mid-answer never continues on another backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_scheduled_canaries_leaves_the_allowed_set() {
    let (url, rec) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.toml");
    std::fs::write(&failing, "name = \"geo\"\n[[probe]]\nid = \"capital\"\nprompt = \"What is the capital of France?\"\ncontains = [\"Paris\"]\n").unwrap();
    let text = format!(
        "{}[[canary]]\nbackend = \"api-eu\"\nsuite = \"{}\"\ninterval_seconds = 60\n",
        api_backend("api-eu", &url, KEY_VAR, 10),
        failing.display()
    );
    let (state, _) = state_with(config(&text), "canary", embedder);
    perimeter_server::canary::spawn_scheduled(&state);
    // The first run starts at once; wait for the probe to reach the stand-in and be judged.
    let started = std::time::Instant::now();
    loop {
        let (_, headers, body) =
            chat(&state, question("When is the Alder Bridge clinic open on Saturdays?", "public"), None).await;
        if headers["x-perimeter-backend"] == "embedded" {
            let api = body["perimeter"]["trace"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["backend"] == "api-eu")
                .unwrap()
                .clone();
            assert!(api["reasons"].to_string().contains("failed its canary probes"), "{api}");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the canary never took the backend out");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rec.bodies().contains("capital of France"), "the probe went to the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_changed_on_disk_takes_the_embedded_backend_out() {
    let (embedder, _) = models();
    // A private models directory: the large files hard-linked, the small config copied so it
    // can be changed without touching the real one.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reverify-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let manifest = perimeter_runtime::builtin_manifest().unwrap();
    for m in &manifest.models {
        for f in &m.files {
            let (src, dst) = (models_dir().join(&f.path), dir.join(&f.path));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            // The config is copied (it will be changed); the rest hard-linked where possible.
            if f.role == "config" || std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }
    let mut cfg = config("[models]\nreverify_seconds = 3600\n");
    cfg.models.dir = dir.clone();
    let (state, _) = state_with(cfg, "reverify", embedder);
    perimeter_server::reverify::spawn(&state);
    let readyz = |state: AppState| async move {
        let r = app(state).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        let body: Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        body["backends"].as_array().unwrap().iter().find(|b| b["name"] == "embedded").unwrap().clone()
    };
    assert_eq!(readyz(state.clone()).await["healthy"], true);
    // Tamper with a pinned file.
    let config_json = dir.join("all-minilm-l6-v2/config.json");
    let mut text = std::fs::read_to_string(&config_json).unwrap();
    text.push(' ');
    std::fs::write(&config_json, text).unwrap();
    let started = std::time::Instant::now();
    loop {
        let b = readyz(state.clone()).await;
        if b["healthy"] == false {
            assert_eq!(b["problem"], "its model files failed verification");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the change was never noticed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A request at any level is now refused rather than served by an unverified model.
    let (status, _, body) =
        chat(&state, json!({"model": "perimeter", "messages": [{"role": "user", "content": "hi"}], "perimeter": {"retrieval": false}}), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_backend_can_be_required_to_present_a_signed_manifest() {
    use perimeter_provenance::signing::{Algorithm, Envelope, SigningKey, Statement};
    let (url, _rec) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let dir = tempfile::tempdir().unwrap();
    let trusted = SigningKey::from_seed(Algorithm::Ed25519, &[7; 32]).unwrap();
    let stranger = SigningKey::from_seed(Algorithm::Ed25519, &[9; 32]).unwrap();
    let statement = Statement::new("llama-3.1-8b", vec![("model.safetensors".into(), [1u8; 32])], Vec::new()).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = write("good.sig.json", Envelope::sign(&statement, &trusted).to_json());
    let forged = write("forged.sig.json", Envelope::sign(&statement, &stranger).to_json());
    let other = Statement::new("something-else", vec![("m".into(), [2u8; 32])], Vec::new()).unwrap();
    let wrong_model = write("other.sig.json", Envelope::sign(&other, &trusted).to_json());
    let key = write("trusted.pub", trusted.public_key().to_spki_pem().unwrap());
    let backend = |name: &str, sig: &std::path::Path| {
        format!(
            "[[backend]]\nname = \"{name}\"\nprovider = \"openai_compatible\"\nhosting = \"self_hosted\"\nmodel = \"llama-3.1-8b\"\nbase_url = \"{url}\"\njurisdiction = \"eu\"\nmodel_signature = \"{}\"\ntrusted_keys = [\"{}\"]\n\n",
            sig.display(),
            key.display()
        )
    };
    let text =
        format!("{}{}{}", backend("signed", &good), backend("forged", &forged), backend("renamed", &wrong_model));
    let (state, _) = state_with(config(&text), "signed", embedder);
    let r = app(state.clone()).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    let body: Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let health = |name: &str| body["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap().clone();
    assert_eq!(health("signed")["healthy"], true, "{body}");
    for name in ["forged", "renamed"] {
        assert_eq!(health(name)["healthy"], false, "{name}: {body}");
        assert_eq!(health(name)["problem"], "its model files failed verification");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_served_by_two_backends_is_listed_once() {
    let (url, _rec) = stand_in(Mode::Answer);
    let (embedder, _) = models();
    let text = format!("{}{}", api_backend("api-a", &url, KEY_VAR, 10), api_backend("api-b", &url, KEY_VAR, 20));
    let (state, _) = state_with(config(&text), "models", embedder);
    let response = app(state.clone()).oneshot(Request::get("/v1/models").body(Body::empty()).unwrap()).await.unwrap();
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().filter(|id| **id == "gpt-stand-in").count(), 1, "{ids:?}");
    let entry = body["data"].as_array().unwrap().iter().find(|m| m["id"] == "gpt-stand-in").unwrap();
    assert_eq!(entry["perimeter"]["backend"], "api-a");
    assert_eq!(entry["perimeter"]["backends"], json!(["api-a", "api-b"]));
}
