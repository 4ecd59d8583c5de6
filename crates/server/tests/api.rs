//! HTTP API tests: the real router (`app(state).oneshot(..)`, no socket) over the real embedded
//! models and a real store with two documents from the sample corpus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use perimeter_config::Config;
use perimeter_index::{ingest_paths, IngestOptions};
use perimeter_server::{app, load_models, open_index, AppState, Engines};
use serde_json::{json, Value};
use tower::ServiceExt;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config() -> Config {
    let mut c = Config::default();
    c.models.dir =
        std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"));
    c.server.max_body_bytes = 64 * 1024;
    c.generation.max_tokens = 24;
    c
}

/// One state for all tests: loading the models once keeps the suite fast.
fn state() -> AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let config = config();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("api-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let (embedder, chat) = load_models(&config, Engines::All).expect("models load (run `make models`)");
            let index = std::sync::Arc::new(open_index(&dir, embedder.as_ref()).unwrap());
            let detector = std::sync::Arc::new(perimeter_detect::Detector::new().unwrap());
            let corpus = repo_root().join("examples/corpus");
            let paths = vec![corpus.join("internal/annual-leave.md"), corpus.join("public/clinic-locations.html")];
            // Tests run inside a runtime; ingest on a thread of its own with its own runtime.
            let report = std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(ingest_paths(
                        &index,
                        embedder.as_ref(),
                        &detector,
                        &paths,
                        &IngestOptions::default(),
                        &(),
                    ))
                    .unwrap()
                })
                .join()
                .unwrap()
            });
            assert_eq!(report.ingested, 2, "{report:?}");
            AppState::new(config, &dir, index, embedder, chat.unwrap(), detector)
        })
        .clone()
}

async fn call(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app(state()).oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

async fn post(path: &str, body: Value) -> (StatusCode, Value) {
    let req =
        Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    let (status, _, bytes) = call(req).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn get(path: &str) -> (StatusCode, Vec<u8>) {
    let (status, _, bytes) = call(Request::get(path).body(Body::empty()).unwrap()).await;
    (status, bytes)
}

fn ask(question: &str) -> Value {
    json!({"model": "perimeter", "messages": [{"role": "user", "content": question}]})
}

fn assert_error(status: StatusCode, body: &Value, expect_status: StatusCode, code: &str) {
    assert_eq!(status, expect_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
}

#[tokio::test]
async fn chat_answers_with_citations_and_a_decision() {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(ask("How many days of annual leave do full-time staff get?").to_string()))
        .unwrap();
    let (status, headers, bytes) = call(req).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "smollm2-135m-instruct");
    assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().trim().is_empty());
    let p = &body["perimeter"];
    assert_eq!(p["decision"], "route");
    assert_eq!(p["backend"], "embedded");
    let citations = p["citations"].as_array().unwrap();
    assert!(!citations.is_empty());
    assert!(citations[0]["source"].as_str().unwrap().ends_with("internal/annual-leave.md"), "{citations:?}");
    for c in citations {
        assert!(c["chunk_id"].as_str().unwrap().starts_with("chk_"));
        assert!(c["document_id"].as_str().unwrap().starts_with("doc_"));
    }
    // The level is the highest label among the cited passages (internal > public here).
    assert_eq!(p["level"], "internal");
    assert_eq!(headers["x-perimeter-level"], "internal");
    assert_eq!(headers["x-perimeter-decision"], "route");
    assert_eq!(
        body["usage"]["total_tokens"],
        body["usage"]["prompt_tokens"].as_u64().unwrap() + body["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 100, "sources are in the prompt");
}

#[tokio::test]
async fn streaming_sends_role_then_content_then_done() {
    let mut request = ask("Where is the clinic and when is it open?");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(request.to_string()))
        .unwrap();
    let (status, headers, bytes) = call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let events: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(!events[0]["perimeter"]["citations"].as_array().unwrap().is_empty());
    let content: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(!content.trim().is_empty());
    let finish = events.iter().find_map(|e| e["choices"][0]["finish_reason"].as_str()).unwrap();
    assert!(finish == "stop" || finish == "length");
    let usage = events.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    for e in &events {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], events[0]["id"]);
    }
}

#[tokio::test]
async fn level_header_raises_but_never_lowers() {
    let req = |level: &str| {
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("x-perimeter-level", level)
            .body(Body::from(ask("annual leave carry over").to_string()))
            .unwrap()
    };
    let (_, headers, _) = call(req("restricted")).await;
    assert_eq!(headers["x-perimeter-level"], "restricted");
    let (_, headers, _) = call(req("public")).await;
    assert_eq!(headers["x-perimeter-level"], "internal");
    let (status, _, bytes) = call(req("top-secret")).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn retrieval_off_is_a_plain_gateway() {
    let mut request = ask("Say hello.");
    request["perimeter"] = json!({"retrieval": false});
    let (status, body) = post("/v1/chat/completions", request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["perimeter"]["citations"], json!([]));
    assert_eq!(body["perimeter"]["level"], "public");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() < 60, "no sources in the prompt: {body}");
}

#[tokio::test]
async fn bad_chat_requests_get_specific_errors() {
    let raw = |body: &'static str| {
        Request::post("/v1/chat/completions").header("content-type", "application/json").body(Body::from(body)).unwrap()
    };
    for (body, expect) in [("", "invalid_request"), ("{\"model\": ", "invalid_request"), ("[1,2]", "invalid_request")] {
        let (status, _, bytes) = call(raw(body)).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_error(status, &v, StatusCode::BAD_REQUEST, expect);
    }
    let (s, b) =
        post("/v1/chat/completions", json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "model_not_found");
    assert_eq!(b["error"]["param"], "model");
    let (s, b) = post("/v1/chat/completions", json!({"model": "perimeter"})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(b["error"]["param"], "messages");
    let (s, b) = post("/v1/chat/completions", json!({"model": "perimeter", "messages": []})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, b) =
        post("/v1/chat/completions", json!({"model": "perimeter", "messages": [{"role": "wizard", "content": "x"}]}))
            .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");
    let mut r = ask("x");
    r["temperature"] = json!(5);
    let (s, b) = post("/v1/chat/completions", r).await;
    assert_eq!(b["error"]["param"], "temperature");
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut r = ask("x");
    r["n"] = json!(2);
    assert_eq!(post("/v1/chat/completions", r).await.0, StatusCode::BAD_REQUEST);
    let mut r = ask("x");
    r["perimeter"] = json!({"colection": "typo"});
    assert_eq!(post("/v1/chat/completions", r).await.0, StatusCode::BAD_REQUEST);
    let mut r = ask("x");
    r["max_tokens"] = json!(0);
    assert_eq!(post("/v1/chat/completions", r).await.1["error"]["param"], "max_tokens");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let big = "x".repeat(70 * 1024);
    let (s, b) = post("/v1/chat/completions", ask(&big)).await;
    assert_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");
    assert!(!b.to_string().contains("xxxxxxxx"), "the error must not echo the body");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_clear_400() {
    // ~20,000 tokens of distinct words: far beyond the 4,096-token context, within the body limit.
    let words: Vec<String> = (0..9_000).map(|i| format!("w{i}")).collect();
    let mut r = ask(&words.join(" "));
    r["perimeter"] = json!({"retrieval": false});
    let (s, b) = post("/v1/chat/completions", r).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "context_length_exceeded");
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let (s, f) =
        post("/v1/embeddings", json!({"model": "all-minilm-l6-v2", "input": ["annual leave", "clinic hours"]})).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["object"], "list");
    let v0: Vec<f32> = serde_json::from_value(f["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(v0.len(), 384);
    assert!((v0.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-3);
    assert_eq!(f["data"][1]["index"], 1);
    let (_, b) =
        post("/v1/embeddings", json!({"model": "perimeter", "input": "annual leave", "encoding_format": "base64"}))
            .await;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert!(v.iter().zip(&v0).all(|(a, b)| (a - b).abs() < 1e-5), "same text, same vector, whatever the batch");
    assert!(b["usage"]["prompt_tokens"].as_u64().unwrap() >= 3);

    for bad in [
        json!({"model": "all-minilm-l6-v2", "input": [[1, 2, 3]]}),
        json!({"model": "all-minilm-l6-v2", "input": []}),
        json!({"model": "all-minilm-l6-v2", "input": ""}),
        json!({"model": "all-minilm-l6-v2"}),
        json!({"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "hex"}),
        json!({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 64}),
    ] {
        let (s, b) = post("/v1/embeddings", bad.clone()).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (s, b) = post("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "x"})).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "model_not_found");
}

#[tokio::test]
async fn documents_can_be_added_listed_used_and_deleted() {
    let doc = json!({"source": "policies/parking.md", "collection": "facilities", "label": "confidential", "groups": ["Staff"],
                     "content": "---\ntitle: Staff parking\n---\n# Parking\n\nStaff park in the Wren Street car park. Permits cost 14 pounds a month and are issued by the facilities desk."});
    let (s, created) = post("/v1/documents", doc.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "ingested");
    assert_eq!(created["title"], "Staff parking");
    assert_eq!(created["label"], "confidential");
    assert_eq!(created["groups"], json!(["staff"]));
    let id = created["id"].as_str().unwrap().to_string();
    let (s, again) = post("/v1/documents", doc).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["status"], "unchanged");

    let (s, list) = get("/v1/documents?collection=facilities").await;
    assert_eq!(s, StatusCode::OK);
    let list: Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], id.as_str());
    let (s, one) = get(&format!("/v1/documents/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&one).unwrap()["chunks"], 1);

    // Retrieval restricted to the collection finds only it, and the level follows its label.
    let mut r = ask("How much does a parking permit cost?");
    r["perimeter"] = json!({"collection": "facilities"});
    let (s, answer) = post("/v1/chat/completions", r).await;
    assert_eq!(s, StatusCode::OK);
    let cites = answer["perimeter"]["citations"].as_array().unwrap();
    assert_eq!(cites.len(), 1);
    assert_eq!(cites[0]["document_id"], id.as_str());
    assert_eq!(answer["perimeter"]["level"], "confidential");

    let (s, _, bytes) = call(Request::delete(format!("/v1/documents/{id}")).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["deleted"], true);
    let (s, _, _) = call(Request::delete(format!("/v1/documents/{id}")).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("/v1/documents/{id}")).await.0, StatusCode::NOT_FOUND);
    // Deleted means gone from search too.
    let mut r = ask("How much does a parking permit cost?");
    r["perimeter"] = json!({"collection": "facilities"});
    let (_, answer) = post("/v1/chat/completions", r).await;
    assert_eq!(answer["perimeter"]["citations"], json!([]));
}

#[tokio::test]
async fn bad_documents_are_refused_and_nothing_is_stored() {
    let before: Value = serde_json::from_slice(&get("/v1/documents").await.1).unwrap();
    let cases = [
        (json!({"source": "a.md", "content": "x", "label": "secret"}), StatusCode::BAD_REQUEST),
        (json!({"source": "a.exe", "content": "x"}), StatusCode::BAD_REQUEST),
        (json!({"source": "a.md"}), StatusCode::BAD_REQUEST),
        (json!({"source": "a.md", "content": "x", "content_base64": "eA=="}), StatusCode::BAD_REQUEST),
        (json!({"source": "a.pdf", "content_base64": "not base64!"}), StatusCode::BAD_REQUEST),
        (json!({"source": "", "content": "x"}), StatusCode::BAD_REQUEST),
        (json!({"source": "a.md", "content": "x", "owner": "me"}), StatusCode::BAD_REQUEST),
        (
            json!({"source": "broken.docx", "content_base64": base64::engine::general_purpose::STANDARD.encode(b"PK\x03\x04garbage")}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"source": "broken.pdf", "content_base64": base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7\n1 0 obj <<")}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"source": "blank.md", "content": "   \n\n  "}), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (doc, expect) in cases {
        let (s, b) = post("/v1/documents", doc.clone()).await;
        assert_eq!(s, expect, "{doc} -> {b}");
        assert!(b["error"]["message"].is_string(), "{b}");
    }
    let after: Value = serde_json::from_slice(&get("/v1/documents").await.1).unwrap();
    let ids =
        |v: &Value| v["data"].as_array().unwrap().iter().map(|d| d["id"].clone()).filter(|i| i.is_string()).count();
    assert!(ids(&after) <= ids(&before) + 1, "only concurrent tests' documents may appear");
    assert!(!after.to_string().contains("broken"), "{after}");
    let (s, b) = get("/v1/documents?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
}

#[tokio::test]
async fn health_metrics_models_and_openapi() {
    let (s, b) = get("/healthz").await;
    assert_eq!((s, serde_json::from_slice::<Value>(&b).unwrap()["status"].clone()), (StatusCode::OK, json!("ok")));
    let (s, b) = get("/readyz").await;
    let ready: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(ready["chunks"].as_u64().unwrap() >= 2);
    let (_, b) = get("/v1/models").await;
    let models: Value = serde_json::from_slice(&b).unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["perimeter", "smollm2-135m-instruct", "all-minilm-l6-v2"]);
    let (s, b) = get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let spec: Value = serde_json::from_slice(&b).unwrap();
    for path in [
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/documents",
        "/v1/documents/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing from openapi.json");
    }
    let _ = get("/healthz").await;
    let (s, b) = get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(b).unwrap();
    assert!(text.contains("perimeter_http_requests_total{route=\"/healthz\",status=\"200\"}"), "{text}");
    assert!(text.contains("perimeter_chunks "));
    let (s, b) = get("/v2/nothing").await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
}
