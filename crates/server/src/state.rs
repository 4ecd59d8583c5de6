//! Start-up: verify and load the embedded models, open the store and indexes, and hold them in
//! the state every request shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use perimeter_config::Config;
use perimeter_detect::Detector;
use perimeter_index::Index;
use perimeter_runtime::{verify, BertEmbedder, EmbeddedChat, LlmOptions, LoadError};
use perimeter_store::{SqliteStore, Store};
use perimeter_types::{ChatBackend, Embedder};

use crate::backends::{ApiFactory, Backends};
use crate::metrics::Metrics;

pub use perimeter_config::EMBEDDED_BACKEND;

/// Everything a request needs, shared behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub data_dir: PathBuf,
    pub index: Arc<Index>,
    /// The embedder of the embedding backend (`[embedding] backend`).
    pub embedder: Arc<dyn Embedder>,
    /// Every configured backend with its adapter and health, in policy order.
    pub backends: Arc<Backends>,
    pub detector: Arc<Detector>,
    pub metrics: Arc<Metrics>,
    /// API keys (`<data>/keys.sqlite3`), read on every request.
    pub keys: Arc<perimeter_auth::KeyStore>,
    /// The audit log (`<data>/audit/`): every decision, refusal and model verification.
    pub audit: Arc<crate::audit::Auditor>,
    /// Prices, this month's spend per tenant, budgets.
    pub meter: Arc<crate::costs::Meter>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Index(#[from] perimeter_index::IndexError),
    #[error("{0}")]
    Store(#[from] perimeter_store::StoreError),
    #[error("the sensitive-data detector could not start: {0}")]
    Detect(#[from] perimeter_detect::DetectError),
    #[error("{0}")]
    Backend(String),
    #[error("the audit log: {0}")]
    Audit(String),
    #[error("{0}")]
    Pricing(String),
}

/// Which engines to load: ingestion needs only the embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engines {
    EmbeddingOnly,
    All,
}

/// What the state is made of, besides its configuration.
struct Parts {
    index: Arc<Index>,
    embedder: Arc<dyn Embedder>,
    embedded_chat: Arc<dyn ChatBackend>,
    detector: Arc<Detector>,
}

/// `[audit]` as the sink's options.
fn audit_options(config: &Config, new_segment: bool) -> perimeter_store::audit_file::AuditOptions {
    use perimeter_store::audit_file::{AuditOptions, Fsync};
    AuditOptions {
        fsync: if config.audit.fsync { Fsync::Always } else { Fsync::Never },
        checkpoint_every: config.audit.checkpoint_every,
        checkpoint_seconds: config.audit.checkpoint_seconds,
        new_segment,
    }
}

/// The text of `[pricing] file`, if one is configured.
fn read_pricing_file(config: &Config) -> Result<Option<String>, StartError> {
    match &config.pricing.file {
        None => Ok(None),
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| StartError::Pricing(format!("pricing.file {}: {}", path.display(), e.kind()))),
    }
}

/// The embedder and, when asked for, the chat model.
pub type LoadedModels = (Arc<dyn Embedder>, Option<Arc<dyn ChatBackend>>);

/// Verifies one embedded model by name: its pins (from the built-in manifest or the operator's
/// `[models] manifest`), a clean scan of its weights and adapter, and, when `[models] signature`
/// is set, a signed statement by a trusted key that vouches for every file. The server's
/// re-verification runs the same function.
pub fn verify_embedded(config: &Config, name: &str) -> Result<perimeter_runtime::VerifiedModel, LoadError> {
    let failed = |source| LoadError::Verify { model: name.to_string(), source };
    let manifest = perimeter_runtime::manifest(config.models.manifest.as_deref()).map_err(failed)?;
    let entry =
        manifest.model(name).map_err(|e| LoadError::Engine { model: name.to_string(), reason: e.to_string() })?;
    match &config.models.signature {
        None => verify(entry, &config.models.dir).map_err(failed),
        Some(signature) => {
            let (statement, keyid) =
                perimeter_runtime::signed_statement(signature, &config.models.trusted_keys).map_err(failed)?;
            let verified = perimeter_runtime::verify_signed(entry, &config.models.dir, &statement).map_err(failed)?;
            tracing::info!(model = %name, %keyid, "embedded model vouched for by a signed manifest");
            Ok(verified)
        }
    }
}

/// The embedder and (optionally) the chat model, each verified against its pin first.
pub fn load_models(config: &Config, engines: Engines) -> Result<LoadedModels, LoadError> {
    let verified = |name: &str| verify_embedded(config, name);
    let embedding = config.backends.iter().find(|b| b.profile.name == config.embedding_backend).ok_or_else(|| {
        LoadError::Engine { model: config.embedding_backend.clone(), reason: "not configured".into() }
    })?;
    let embedder: Arc<dyn Embedder> = if embedding.profile.provider == perimeter_policy::Provider::Embedded {
        Arc::new(BertEmbedder::load(&verified(&config.models.embedding)?)?)
    } else {
        // An API or self-hosted embedder: every text sent to it passes the policy first.
        let key = match &embedding.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| LoadError::Engine {
                model: embedding.profile.name.clone(),
                reason: format!("the embedding backend's API key variable {var} is not set"),
            })?),
            None => None,
        };
        crate::adapters::build_embedder(embedding, key)
            .map_err(|(_, reason)| LoadError::Engine { model: embedding.profile.name.clone(), reason })?
    };
    let chat: Option<Arc<dyn ChatBackend>> = match engines {
        Engines::EmbeddingOnly => None,
        Engines::All => {
            let options = LlmOptions {
                context_tokens: config.runtime.context_tokens,
                threads: config.runtime.threads,
                queue_depth: config.runtime.queue_depth,
                gpu_layers: config.runtime.gpu_layers,
                adapter_scale: config.models.adapter_scale,
            };
            Some(Arc::new(EmbeddedChat::load(EMBEDDED_BACKEND, &verified(&config.models.chat)?, &options)?))
        }
    };
    Ok((embedder, chat))
}

/// The chat adapter of one configured backend, outside a server (for `perimeter model canary`):
/// the embedded model is loaded (after verification), an API or self-hosted backend is built
/// with its key from the environment.
pub fn chat_backend(config: &Config, name: &str) -> Result<Arc<dyn ChatBackend>, StartError> {
    let b = config
        .backends
        .iter()
        .find(|b| b.profile.name == name)
        .ok_or_else(|| StartError::Backend(format!("no backend named {name:?} is configured")))?;
    if b.profile.provider == perimeter_policy::Provider::Embedded {
        let (_, chat) = load_models(config, Engines::All)?;
        return chat.ok_or_else(|| StartError::Backend("the embedded chat model did not load".into()));
    }
    let key = match &b.api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| StartError::Backend(format!("backend {name}: the variable {var} is not set")))?,
        ),
        None => None,
    };
    crate::adapters::build(b, key).map_err(|(_, reason)| StartError::Backend(format!("backend {name}: {reason}")))
}

/// Opens the store and indexes under `data_dir`, bound to the embedder's model.
pub fn open_index(data_dir: &Path, embedder: &dyn Embedder) -> Result<Index, StartError> {
    let store = SqliteStore::open(data_dir)?;
    store.bind_embedder(embedder.model(), embedder.dimensions())?;
    let store: Arc<dyn Store> = Arc::new(store);
    Ok(Index::open(data_dir, store)?)
}

impl AppState {
    /// Loads everything the server needs. Fails (with a message naming the cause) rather than
    /// starting half-ready.
    pub fn load(config: Config, data_dir: &Path) -> Result<Self, StartError> {
        Self::load_with(config, data_dir, false)
    }

    /// [`AppState::load`]; with `new_audit_segment`, an audit log that does not verify is
    /// continued in a new, linked segment (the break stays on record) instead of refusing to start.
    pub fn load_with(config: Config, data_dir: &Path, new_audit_segment: bool) -> Result<Self, StartError> {
        // The audit log first: a server that cannot keep its record does not start.
        let auditor = crate::audit::Auditor::open(data_dir, audit_options(&config, new_audit_segment))
            .map_err(|e| StartError::Audit(e.to_string()))?;
        let meter =
            crate::costs::Meter::new(&config, read_pricing_file(&config)?.as_deref()).map_err(StartError::Pricing)?;
        crate::audit::record_policy(&auditor, &config);
        let models = load_models(&config, Engines::All);
        crate::audit::record_model_verification(&auditor, &config, models.as_ref().err());
        let (embedder, chat) = models?;
        let chat =
            chat.ok_or_else(|| LoadError::Engine { model: config.models.chat.clone(), reason: "not loaded".into() })?;
        let index = open_index(data_dir, embedder.as_ref())?;
        let detector = Arc::new(Detector::new()?);
        let parts = Parts { index: Arc::new(index), embedder, embedded_chat: chat, detector };
        Ok(Self::assemble(config, data_dir, parts, &crate::adapters::build, Some((auditor, meter))))
    }

    /// Like [`AppState::new`] with an explicit factory for API and self-hosted adapters.
    pub fn with_adapters(
        config: Config,
        data_dir: &Path,
        index: Arc<Index>,
        embedder: Arc<dyn Embedder>,
        embedded_chat: Arc<dyn ChatBackend>,
        detector: Arc<Detector>,
        make_api: &ApiFactory<'_>,
    ) -> Self {
        let parts = Parts { index, embedder, embedded_chat, detector };
        Self::assemble(config, data_dir, parts, make_api, None)
    }

    /// The state from its parts. Without an opened audit log and meter (tests, benchmarks), they
    /// are opened here; a log that cannot be opened refuses every request (fail closed).
    fn assemble(
        config: Config,
        data_dir: &Path,
        parts: Parts,
        make_api: &ApiFactory<'_>,
        opened: Option<(crate::audit::Auditor, crate::costs::Meter)>,
    ) -> Self {
        let Parts { index, embedder, embedded_chat, detector } = parts;
        for warning in perimeter_policy::lint(&config.policy) {
            tracing::warn!(%warning, "policy");
        }
        let backends = Backends::new(&config, Some(embedded_chat), embedder.clone(), make_api);
        let (audit, meter) = match opened {
            Some(both) => both,
            None => {
                let audit = match crate::audit::Auditor::open(data_dir, audit_options(&config, false)) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!(error = %e, "the audit log could not be opened; requests will be refused");
                        crate::audit::Auditor::unavailable(e.to_string())
                    }
                };
                let meter = read_pricing_file(&config)
                    .map_err(|e| e.to_string())
                    .and_then(|text| crate::costs::Meter::new(&config, text.as_deref()))
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "the pricing could not be used; API requests are recorded without a cost");
                        crate::costs::Meter::unpriced(&config)
                    });
                (audit, meter)
            }
        };
        let state = Self {
            config: Arc::new(config),
            data_dir: data_dir.to_path_buf(),
            index,
            embedder,
            backends: Arc::new(backends),
            detector,
            metrics: Arc::new(Metrics::default()),
            keys: Arc::new(perimeter_auth::KeyStore::at(data_dir)),
            audit: Arc::new(audit),
            meter: Arc::new(meter),
        };
        state.seed_spend();
        state
    }

    /// This month's spend per tenant, from the audit log's completion records, so budgets hold
    /// across restarts.
    fn seed_spend(&self) {
        let Some(log) = self.audit.log() else { return };
        let month = crate::costs::this_month();
        let filter = perimeter_audit::Filter {
            since: perimeter_audit::parse_time(&format!("{month}-01")),
            kind: Some(perimeter_audit::RecordKind::Completion),
            ..perimeter_audit::Filter::default()
        };
        match log.export(&filter) {
            Ok(export) => {
                for r in &export.records {
                    if let (Some(tenant), Some(cost)) =
                        (&r.tenant, r.cost.as_deref().and_then(perimeter_cost::Money::parse))
                    {
                        self.meter.record(tenant, &month, cost);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not read this month's spend from the audit log"),
        }
    }

    /// State with `embedded_chat` as the embedded backend and the built-in adapters for the
    /// configured API and self-hosted backends.
    pub fn new(
        config: Config,
        data_dir: &Path,
        index: Arc<Index>,
        embedder: Arc<dyn Embedder>,
        embedded_chat: Arc<dyn ChatBackend>,
        detector: Arc<Detector>,
    ) -> Self {
        Self::with_adapters(config, data_dir, index, embedder, embedded_chat, detector, &crate::adapters::build)
    }

    /// The embedded chat model (for benchmarks and `perimeter ask`'s model name).
    pub fn embedded_chat(&self) -> Option<&Arc<dyn ChatBackend>> {
        self.config
            .backends
            .iter()
            .position(|b| b.profile.provider == perimeter_policy::Provider::Embedded)
            .and_then(|i| self.backends.chat(i))
    }
}
