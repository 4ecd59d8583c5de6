//! End to end (issue 7): every request leaves evidence in the audit log — the routing record
//! before any byte goes to the backend, the completion record with usage and cost after — and
//! spend is metered from it, against monthly budgets. Real embedded models; the API backend is
//! a recording stand-in on loopback speaking OpenAI's wire format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::BodyExt;
use perimeter_audit::{Filter, Record, RecordKind};
use perimeter_config::Config;
use perimeter_server::{app, load_models, open_index, AppState, Engines};
use perimeter_store::audit_file;
use perimeter_types::{ChatBackend, Embedder};
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY_VAR: &str = "PERIMETER_TEST_AUDIT_KEY";
const QUESTION: &str = "When does the Larkspur depot open on Sundays?";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"))
}

fn models() -> (Arc<dyn Embedder>, Arc<dyn ChatBackend>) {
    static MODELS: OnceLock<(Arc<dyn Embedder>, Arc<dyn ChatBackend>)> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            std::env::set_var(KEY_VAR, "sk-test-audit-0123456789");
            let mut c = Config::default();
            c.models.dir = models_dir();
            let (e, chat) = load_models(&c, Engines::All).expect("models load (run `make models`)");
            (e, chat.unwrap())
        })
        .clone()
}

/// Chat requests the stand-in received (their bodies).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Value>>>);

/// An OpenAI-compatible chat stand-in: streams "Open from ten until four." in four pieces and
/// reports usage of 40 prompt and 4 completion tokens.
fn stand_in() -> (String, Recorder) {
    let recorder = Recorder::default();
    let rec = recorder.clone();
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::Json<Value>| {
            let rec = rec.clone();
            async move {
                rec.0.lock().unwrap().push(body.0.clone());
                let mut sse = String::new();
                for p in ["Open ", "from ten ", "until ", "four."] {
                    let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
                    sse.push_str(&format!("data: {chunk}\n\n"));
                }
                let done = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                let usage = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}});
                sse.push_str(&format!("data: {done}\n\ndata: {usage}\n\ndata: [DONE]\n\n"));
                ([("content-type", "text/event-stream")], sse).into_response()
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
    (format!("http://{}/v1", rx.recv().unwrap()), recorder)
}

/// One API backend (priced at $1 and $2 per million tokens) and the embedded one.
fn config(url: &str, extra: &str) -> Config {
    let text = format!(
        "[[backend]]\nname = \"api-eu\"\nprovider = \"openai\"\nhosting = \"api\"\nmodel = \"gpt-stand-in\"\nbase_url = \"{url}\"\napi_key_env = \"{KEY_VAR}\"\njurisdiction = \"eu\"\nretention = \"none\"\ntrains_on_data = false\npriority = 10\nread_timeout_ms = 5000\n\n\
         [pricing.models.\"gpt-stand-in\"]\ninput_cost_per_token = \"0.000001\"\noutput_cost_per_token = \"0.000002\"\n\n\
         [[tenant]]\nname = \"default\"\nresidency = [\"eu\"]\n\n\
         [[policy.entity]]\nkinds = [\"secrets\"]\naction = \"deny\"\n\n{extra}"
    );
    let mut c = Config::parse(&text, "test.toml").unwrap();
    c.models.dir = models_dir();
    c.generation.max_tokens = 8;
    c
}

fn data_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn state(config: Config, dir: &Path) -> AppState {
    let (embedder, chat) = models();
    let index = Arc::new(open_index(dir, embedder.as_ref()).unwrap());
    AppState::new(config, dir, index, embedder, chat, Arc::new(perimeter_detect::Detector::new().unwrap()))
}

async fn call(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    let req = req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
    let response = app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())))
}

fn ask(text: &str) -> Value {
    json!({"model": "perimeter", "messages": [{"role": "user", "content": text}], "perimeter": {"retrieval": false}})
}

fn records(dir: &Path) -> Vec<Record> {
    audit_file::export(dir, &Filter::default()).unwrap().records
}

fn log_text(dir: &Path) -> String {
    audit_file::segments(dir).unwrap().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_request_is_on_record_before_and_after_with_its_exact_cost() {
    let (url, rec) = stand_in();
    let dir = data_dir("routed");
    let state = state(config(&url, ""), &dir);

    let (status, body) = call(&state, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["perimeter"]["backend"], "api-eu");
    // 40 × $0.000001 + 4 × $0.000002, in decimal.
    assert_eq!(body["perimeter"]["cost"], "0.000048");
    let request_id = body["perimeter"]["request_id"].as_str().unwrap().to_string();
    assert_eq!(rec.0.lock().unwrap().len(), 1);

    let all = records(&dir);
    let mine: Vec<&Record> = all.iter().filter(|r| r.request_id.as_deref() == Some(request_id.as_str())).collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let (decision, completion) = (mine[0], mine[1]);
    assert_eq!(decision.kind, RecordKind::Decision);
    assert!(decision.seq < completion.seq, "the routing record comes first");
    assert_eq!(decision.decision.as_deref(), Some("route"));
    assert_eq!(decision.backend.as_deref(), Some("api-eu"));
    assert_eq!(decision.jurisdiction.as_deref(), Some("eu"));
    assert_eq!(decision.level.as_deref(), Some("public"));
    assert_eq!(decision.tenant.as_deref(), Some("default"));
    assert_eq!(decision.redaction, Some(false));
    assert!(decision.query_hmac.as_deref().is_some_and(|h| h.len() == 64));
    assert_eq!(completion.kind, RecordKind::Completion);
    assert_eq!(completion.outcome.as_deref(), Some("ok"));
    assert_eq!((completion.tokens_in, completion.tokens_out), (Some(40), Some(4)));
    assert_eq!(completion.cost.as_deref(), Some("0.000048"));
    assert!(completion.latency_ms.is_some());
    // No prompt text, answer text or key in the log.
    let text = log_text(&dir);
    for needle in ["Larkspur", "Open from ten", "sk-test-audit"] {
        assert!(!text.contains(needle), "{needle:?} is in the audit log");
    }
    // The same question gets the same HMAC (a join key for auditors), another does not.
    let (_, again) = call(&state, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    let (_, other) = call(&state, "POST", "/v1/chat/completions", Some(ask("Another question entirely."))).await;
    let hmac_of = |body: &Value| {
        let id = body["perimeter"]["request_id"].as_str().unwrap().to_string();
        records(&dir).into_iter().find(|r| r.request_id.as_deref() == Some(id.as_str())).unwrap().query_hmac
    };
    assert_eq!(hmac_of(&again), decision.query_hmac);
    assert_ne!(hmac_of(&other), decision.query_hmac);

    // The log verifies, and /v1/costs and /v1/audit read it back.
    let key = audit_file::load_public_key(&dir).unwrap();
    assert!(audit_file::verify_log(&dir, key.as_ref()).unwrap().iter().all(|s| s.is_intact()));
    let (status, costs) = call(&state, "GET", "/v1/costs?group_by=backend", None).await;
    assert_eq!(status, StatusCode::OK, "{costs}");
    assert_eq!(costs["total"]["requests"], 3);
    assert_eq!(costs["total"]["cost_usd"], "0.000144");
    assert_eq!(costs["data"][0]["backend"], "api-eu");
    let (status, audit) = call(&state, "GET", "/v1/audit?kind=decision&backend=api-eu", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert_eq!(audit["data"].as_array().unwrap().len(), 3);
    let (status, metrics) = call(&state, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("perimeter_spend_usd_total{tenant=\"default\",backend=\"api-eu\"} 0.000144"), "{metrics}");
    let (status, bad) = call(&state, "GET", "/v1/audit?kind=whatever", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, _) = call(&state, "GET", "/v1/costs?group_by=colour", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_on_record_and_nothing_is_sent() {
    let (url, rec) = stand_in();
    let dir = data_dir("refusal");
    let state = state(config(&url, ""), &dir);
    let (status, body) =
        call(&state, "POST", "/v1/chat/completions", Some(ask("Use the key AKIAZ7QK3M2P8R4T6W1X for the upload.")))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(rec.0.lock().unwrap().is_empty());
    let refusal = records(&dir).into_iter().find(|r| r.kind == RecordKind::Refusal).expect("a refusal record");
    assert_eq!(refusal.decision.as_deref(), Some("deny"));
    assert_eq!(refusal.entities.get("AWS_ACCESS_KEY"), Some(&1));
    assert!(refusal.reasons.iter().any(|r| r.contains("AWS_ACCESS_KEY")), "{:?}", refusal.reasons);
    assert!(!log_text(&dir).contains("AKIAZ7QK3M2P8R4T6W1X"), "the key value is in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_keeps_requests_off_the_api_or_refuses_them() {
    let (url, rec) = stand_in();
    // A budget smaller than one request: the first request spends it.
    let budget = "[[budget]]\ntenant = \"default\"\nmonthly_usd = \"0.00004\"\non_exhausted = \"self_hosted_only\"\n";
    let dir = data_dir("budget");
    let state = state(config(&url, budget), &dir);
    let (_, first) = call(&state, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    assert_eq!(first["perimeter"]["backend"], "api-eu");
    let (status, second) = call(&state, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["perimeter"]["backend"], "embedded", "{second}");
    assert_eq!(second["perimeter"]["cost"], "0.00");
    assert_eq!(rec.0.lock().unwrap().len(), 1, "the API was called after the budget ran out");
    let (_, costs) = call(&state, "GET", "/v1/costs", None).await;
    assert_eq!(costs["budget"]["state"], "self_hosted_only", "{costs}");

    // The spend survives a restart: it is read back from the audit log.
    drop(state);
    let deny = "[[budget]]\ntenant = \"default\"\nmonthly_usd = \"0.00004\"\non_exhausted = \"deny\"\n";
    let restarted = self::state(config(&url, deny), &dir);
    let (status, body) = call(&restarted, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("budget"), "{body}");
    assert_eq!(rec.0.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_does_not_verify_refuses_requests_before_anything_is_sent() {
    let (url, rec) = stand_in();
    let dir = data_dir("tampered");
    {
        let state = state(config(&url, ""), &dir);
        let (status, _) = call(&state, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(rec.0.lock().unwrap().len(), 1);
    // Change one byte of a record (the backend's name).
    let path = audit_file::segments(&dir).unwrap().pop().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"backend\":\"api-eu\"", "\"backend\":\"api-us\"", 1)).unwrap();

    let state = state(config(&url, ""), &dir);
    let (status, body) = call(&state, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "audit_unavailable");
    assert_eq!(rec.0.lock().unwrap().len(), 1, "a request went out without a record");

    // `serve --new-audit-segment` continues in a linked segment; the break stays on record.
    let resumed = AppState::load_with(config(&url, ""), &dir, true);
    // (load_with also loads the models; only the audit part matters here.)
    let resumed = resumed.unwrap();
    let (status, body) = call(&resumed, "POST", "/v1/chat/completions", Some(ask(QUESTION))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reports = audit_file::verify_log(&dir, audit_file::load_public_key(&dir).unwrap().as_ref()).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(!reports[0].is_intact() && reports[1].is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_and_roles_are_on_record_without_the_key() {
    let (url, _rec) = stand_in();
    let dir = data_dir("access");
    let state = state(config(&url, ""), &dir);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let new = perimeter_auth::NewKey {
        tenant: "default".into(),
        role: perimeter_auth::Role::User,
        groups: vec![],
        expires_at: None,
    };
    let (key, record) = state.keys.create(&new, now).unwrap();
    let send = |uri: &str, bearer: Option<String>| {
        let mut req = Request::get(uri);
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        app(state.clone()).oneshot(req.body(Body::empty()).unwrap())
    };
    assert_eq!(send("/v1/models", None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let wrong = format!("{}x", key.expose());
    assert_eq!(send("/v1/models", Some(wrong.clone())).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // A user may not read the audit log.
    assert_eq!(send("/v1/audit", Some(key.expose())).await.unwrap().status(), StatusCode::FORBIDDEN);

    let denied: Vec<Record> = records(&dir).into_iter().filter(|r| r.kind == RecordKind::AccessDenied).collect();
    assert_eq!(denied.len(), 3, "{denied:#?}");
    assert_eq!(denied[0].outcome.as_deref(), Some("401"));
    assert_eq!(denied[2].outcome.as_deref(), Some("403"));
    assert_eq!(denied[2].principal.as_deref(), Some(record.id.as_str()));
    assert_eq!(denied[2].detail.get("route").map(String::as_str), Some("/v1/audit"));
    let text = log_text(&dir);
    assert!(!text.contains(&key.expose()) && !text.contains(&wrong), "a key is in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_for_an_api_embedder_are_on_record_before_they_are_sent() {
    use perimeter_index::{ingest_bytes, EmbedGate, FileOutcome, IngestOptions};
    let (url, _rec) = stand_in();
    let dir = data_dir("ingest");
    // An API backend that embeds; the vectors come from the local embedder (the gate only
    // decides, by name, whether the text may go).
    let extra = format!(
        "[[backend]]\nname = \"api-embed\"\nprovider = \"openai_compatible\"\nhosting = \"api\"\nmodel = \"embed-stand-in\"\nbase_url = \"{url}\"\napi_key_env = \"{KEY_VAR}\"\njurisdiction = \"eu\"\nretention = \"none\"\ntrains_on_data = false\nserves = [\"embeddings\"]\ndimensions = 384\n\n[embedding]\nbackend = \"api-embed\"\n"
    );
    let config = config(&url, &extra);
    let state = state(config.clone(), &dir);
    let (embedder, _) = models();
    let detector = perimeter_detect::Detector::new().unwrap();
    let ingest = |audit, round: u32| {
        let options = IngestOptions {
            embed_gate: Some(EmbedGate {
                policy: config.policy.clone(),
                backend: config.embedding_backend.clone(),
                audit: Some(audit),
            }),
            ..IngestOptions::default()
        };
        let (index, embedder, detector) = (state.index.clone(), embedder.clone(), &detector);
        async move {
            let mut out = Vec::new();
            for (source, text) in [
                (
                    "open.md",
                    format!("---\nlabel: public\n---\n# Depot hours\n\nThe depot opens at ten (edition {round}).\n"),
                ),
                (
                    "closed.md",
                    format!("---\nlabel: restricted\n---\n# Vault\n\nThe vault code list (edition {round}).\n"),
                ),
            ] {
                let o = ingest_bytes(
                    &index,
                    embedder.as_ref(),
                    detector,
                    source,
                    perimeter_extract::Format::Markdown,
                    text.as_bytes(),
                    &options,
                )
                .await
                .unwrap();
                out.push(o);
            }
            out
        }
    };
    let outcomes = ingest(perimeter_server::audit::embed_audit(state.audit.clone(), None), 1).await;
    assert!(matches!(outcomes[0], FileOutcome::Ingested { .. }), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[1], FileOutcome::Refused { .. }), "{:?}", outcomes[1]);
    let all = records(&dir);
    let routed: Vec<&Record> =
        all.iter().filter(|r| r.detail.get("purpose").map(String::as_str) == Some("ingestion_embedding")).collect();
    assert_eq!(routed.len(), 2, "{routed:#?}");
    assert_eq!((routed[0].kind, routed[0].decision.as_deref()), (RecordKind::Decision, Some("route")));
    assert_eq!(routed[0].backend.as_deref(), Some("api-embed"));
    assert_eq!((routed[1].kind, routed[1].decision.as_deref()), (RecordKind::Refusal, Some("deny")));
    assert_eq!(routed[1].level.as_deref(), Some("restricted"));
    assert!(!log_text(&dir).contains("depot opens"), "document text in the audit log");

    // Without a log, nothing goes: the document is refused before any chunk is embedded.
    let broken = std::sync::Arc::new(perimeter_server::audit::Auditor::unavailable("test".into()));
    let outcomes = ingest(perimeter_server::audit::embed_audit(broken, None), 2).await;
    match &outcomes[0] {
        FileOutcome::Refused { reasons } => assert!(reasons[0].contains("audit record"), "{reasons:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
