//! Shared fixture of the authorisation and tenant tests: a server state with three declared
//! tenants (`default`, `north`, `south`), documents per tenant and group that each carry unique
//! marker strings, the real embedder (so BM25 and the vector scan both run), and a chat backend
//! double that records every prompt it is sent and answers with that prompt — so anything that
//! reached the model would also show in the answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use perimeter_auth::{KeyStore, NewKey, Role};
use perimeter_config::Config;
use perimeter_index::{ingest_bytes, EmbedGate, FileOutcome, IngestOptions};
use perimeter_server::{app, load_models, open_index, AppState, Engines};
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, Embedder, FinishReason, Timings, TokenSink, Usage,
};
use serde_json::Value;
use tower::ServiceExt;

/// Records every prompt and answers with all of it.
pub struct Recorder {
    pub prompts: Mutex<Vec<String>>,
}

impl Recorder {
    /// The prompts sent since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.prompts.lock().unwrap())
    }
}

#[async_trait]
impl ChatBackend for Recorder {
    fn name(&self) -> &str {
        "embedded"
    }
    fn model(&self) -> &str {
        "smollm2-135m-instruct"
    }
    fn context_tokens(&self) -> usize {
        8192
    }
    async fn chat(&self, request: ChatRequest, mut sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        let all: String = request.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
        self.prompts.lock().unwrap().push(all.clone());
        sink(&all);
        Ok(ChatOutcome {
            text: all,
            usage: Usage { prompt_tokens: 1, completion_tokens: 1 },
            finish_reason: FinishReason::Stop,
            timings: Timings::default(),
        })
    }
}

/// One fixture document: tenant, groups (empty: the whole tenant), source, its unique markers
/// and its text (which contains every marker).
pub struct Doc {
    pub tenant: &'static str,
    pub groups: &'static [&'static str],
    pub source: &'static str,
    pub markers: &'static [&'static str],
    pub text: &'static str,
}

/// Every document shares vocabulary with the others (ferry, payroll, budget, protocol), so that
/// a paraphrase or a generic question would match across tenants if the filter did not hold.
pub const DOCS: &[Doc] = &[
    Doc {
        tenant: "north",
        groups: &[],
        source: "north-ferry.md",
        markers: &["ALBATROSS-7731", "albatross protocol"],
        text: "# Ferry protocol\n\nThe albatross protocol governs every ferry crossing of the company. Reference ALBATROSS-7731. Crossings leave at seven in the morning and the captain signs the ferry log.\n",
    },
    Doc {
        tenant: "north",
        groups: &["hr"],
        source: "north-payroll.md",
        markers: &["BASILISK-4410", "basilisk payroll ledger"],
        text: "# Payroll\n\nThe basilisk payroll ledger records the salaries of all staff. Reference BASILISK-4410. Payroll runs on the last working day of each month and the ledger is kept by human resources.\n",
    },
    Doc {
        tenant: "north",
        groups: &["finance"],
        source: "north-budget.md",
        markers: &["CORMORANT-9025", "cormorant budget"],
        text: "# Budget\n\nThe cormorant budget covers capital spending on ferries and buildings. Reference CORMORANT-9025. The finance team approves every budget line above ten thousand euros.\n",
    },
    Doc {
        tenant: "south",
        groups: &[],
        source: "south-ferry.md",
        markers: &["DUGONG-3318", "dugong protocol"],
        text: "# Ferry protocol\n\nThe dugong protocol governs every ferry crossing of the company. Reference DUGONG-3318. Crossings leave at seven in the morning and the captain signs the ferry log.\n",
    },
    Doc {
        tenant: "south",
        groups: &["hr"],
        source: "south-payroll.md",
        markers: &["EGRET-6652", "egret payroll ledger"],
        text: "# Payroll\n\nThe egret payroll ledger records the salaries of all staff. Reference EGRET-6652. Payroll runs on the last working day of each month and the ledger is kept by human resources.\n",
    },
    Doc {
        tenant: "south",
        groups: &["finance"],
        source: "south-budget.md",
        markers: &["FALCON-2287", "falcon budget"],
        text: "# Budget\n\nThe falcon budget covers capital spending on ferries and buildings. Reference FALCON-2287. The finance team approves every budget line above ten thousand euros.\n",
    },
];

pub struct Fixture {
    pub state: AppState,
    pub recorder: Arc<Recorder>,
    pub dir: PathBuf,
    /// Document id of each of `DOCS`, in order.
    pub ids: Vec<String>,
}

fn embedder() -> Arc<dyn Embedder> {
    static EMBEDDER: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let mut c = Config::default();
            c.models.dir = models_dir();
            load_models(&c, Engines::EmbeddingOnly).expect("models load (run `make models`)").0
        })
        .clone()
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

pub fn config() -> Config {
    let text = "[[tenant]]\nname = \"default\"\nresidency = [\"any\"]\n\n[[tenant]]\nname = \"north\"\nresidency = [\"any\"]\n\n[[tenant]]\nname = \"south\"\nresidency = [\"any\"]\n";
    let mut c = Config::parse(text, "tenants.toml").unwrap();
    c.models.dir = models_dir();
    c.generation.max_tokens = 16;
    c
}

/// A fresh store under `name` with every document of `DOCS` ingested.
pub fn fixture(name: &str) -> Fixture {
    let config = config();
    let embedder = embedder();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tenancy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = Arc::new(open_index(&dir, embedder.as_ref()).unwrap());
    let detector = Arc::new(perimeter_detect::Detector::new().unwrap());
    let gate = EmbedGate { policy: config.policy.clone(), backend: config.embedding_backend.clone(), audit: None };
    let ids = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            DOCS.iter()
                .map(|d| {
                    let options = IngestOptions {
                        tenant: d.tenant.into(),
                        groups: Some(d.groups.iter().map(|g| g.to_string()).collect()),
                        embed_gate: Some(gate.clone()),
                        ..IngestOptions::default()
                    };
                    let outcome = rt
                        .block_on(ingest_bytes(
                            &index,
                            embedder.as_ref(),
                            &detector,
                            d.source,
                            perimeter_extract::Format::Markdown,
                            d.text.as_bytes(),
                            &options,
                        ))
                        .unwrap();
                    match outcome {
                        FileOutcome::Ingested { document_id, .. } => document_id.0,
                        other => panic!("{}: {other:?}", d.source),
                    }
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    });
    let recorder = Arc::new(Recorder { prompts: Mutex::new(Vec::new()) });
    let state = AppState::new(config, &dir, index, embedder, recorder.clone(), detector);
    Fixture { state, recorder, dir, ids }
}

impl Fixture {
    /// Creates a key in this fixture's store, as `perimeter keys create` does.
    pub fn key(&self, tenant: &str, role: Role, groups: &[&str]) -> String {
        self.key_expiring(tenant, role, groups, None)
    }

    pub fn key_expiring(&self, tenant: &str, role: Role, groups: &[&str], expires_at: Option<i64>) -> String {
        let new =
            NewKey { tenant: tenant.into(), role, groups: groups.iter().map(|g| g.to_string()).collect(), expires_at };
        KeyStore::at(&self.dir).create(&new, now()).unwrap().0.expose()
    }

    /// Sends one request through the real router.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let response = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Which documents (indexes into `DOCS`) a principal may reach.
    pub fn reachable(tenant: &str, role: Role, groups: &[&str]) -> Vec<usize> {
        DOCS.iter()
            .enumerate()
            .filter(|(_, d)| {
                d.tenant == tenant
                    && (role == Role::Admin || d.groups.is_empty() || d.groups.iter().any(|g| groups.contains(g)))
            })
            .map(|(i, _)| i)
            .collect()
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}
