//! Pseudonymisation end to end through the HTTP router, with a backend double that records what
//! it was sent and answers by echoing the question back in tiny pieces. The double stands in for
//! a model so that the test can check exactly what reached it and how placeholders split across
//! stream chunks come back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use perimeter_config::Config;
use perimeter_server::{app, load_models, open_index, AppState, Engines};
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, FinishReason, Role, Timings, TokenSink, Usage,
};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Records every prompt and answers with the last user message, three bytes at a time.
struct Echo {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl ChatBackend for Echo {
    fn name(&self) -> &str {
        "embedded"
    }
    fn model(&self) -> &str {
        "smollm2-135m-instruct"
    }
    fn context_tokens(&self) -> usize {
        4096
    }
    async fn chat(&self, request: ChatRequest, mut sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        let all: String = request.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
        self.seen.lock().unwrap().push(all);
        let answer =
            request.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.clone()).unwrap_or_default();
        let mut rest = answer.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(3);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            if !sink(&rest[..cut]) {
                break;
            }
            rest = &rest[cut..];
        }
        Ok(ChatOutcome {
            text: answer,
            usage: Usage { prompt_tokens: 1, completion_tokens: 1 },
            finish_reason: FinishReason::Stop,
            timings: Timings::default(),
        })
    }
}

fn setup() -> (AppState, Arc<Echo>) {
    let mut config = Config::default();
    config.models.dir = std::env::var_os("PERIMETER_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "pseudo-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (embedder, _) = load_models(&config, Engines::EmbeddingOnly).unwrap();
    let index = Arc::new(open_index(&dir, embedder.as_ref()).unwrap());
    let echo = Arc::new(Echo { seen: Mutex::new(Vec::new()) });
    let detector = Arc::new(perimeter_detect::Detector::new().unwrap());
    (AppState::new(config, &dir, index, embedder, echo.clone(), detector), echo)
}

const QUESTION: &str =
    "Please email jane.doe@example.com and refund card 4111 1111 1111 1111, then tell jane.doe@example.com.";

async fn post(state: &AppState, body: Value) -> (u16, String) {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_backend_sees_placeholders_and_the_client_gets_values_back() {
    let (state, echo) = setup();
    let (status, body) = post(
        &state,
        json!({"model": "perimeter", "messages": [{"role": "user", "content": QUESTION}],
        "perimeter": {"retrieval": false, "redact": true}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], QUESTION, "the answer is restored");
    assert_eq!(v["perimeter"]["pseudonymised"], 2, "two distinct values");
    assert_eq!(v["perimeter"]["entities"]["query"], json!({"EMAIL": 2, "CREDIT_CARD": 1}));
    assert_eq!(v["perimeter"]["level"], "restricted", "a card number makes the request restricted");
    let seen = echo.seen.lock().unwrap().pop().unwrap();
    assert!(!seen.contains("jane.doe@example.com") && !seen.contains("4111"), "values reached the backend: {seen}");
    assert_eq!(seen.matches("<EMAIL_1>").count(), 2, "{seen}");
    assert!(seen.contains("<CREDIT_CARD_1>"), "{seen}");
}

#[tokio::test]
async fn placeholders_split_across_stream_chunks_are_restored() {
    let (state, echo) = setup();
    let (status, body) = post(
        &state,
        json!({"model": "perimeter", "stream": true, "messages": [{"role": "user", "content": QUESTION}],
        "perimeter": {"retrieval": false, "redact": true}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, QUESTION);
    for e in &events {
        let piece = e["choices"][0]["delta"]["content"].as_str().unwrap_or("");
        assert!(
            !piece.contains('<') && !piece.contains('>'),
            "a placeholder fragment leaked into the stream: {piece:?}"
        );
    }
    assert!(echo.seen.lock().unwrap().iter().all(|p| !p.contains("jane.doe@example.com")));
}

#[tokio::test]
async fn without_redaction_the_backend_sees_the_text_and_levels_still_apply() {
    let (state, echo) = setup();
    let (status, body) = post(
        &state,
        json!({"model": "perimeter", "messages": [{"role": "user", "content": "Call me on 020 7946 0123 please"}],
        "perimeter": {"retrieval": false}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["perimeter"]["pseudonymised"], 0);
    assert_eq!(v["perimeter"]["entities"]["query"], json!({"PHONE": 1}));
    assert_eq!(v["perimeter"]["level"], "confidential");
    assert!(echo.seen.lock().unwrap().pop().unwrap().contains("020 7946 0123"));
}
