//! Start-up: verify and load the embedded models, open the store and indexes, and hold them in
//! the state every request shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use perimeter_config::Config;
use perimeter_detect::Detector;
use perimeter_index::Index;
use perimeter_runtime::{builtin_manifest, verify, BertEmbedder, EmbeddedChat, LlmOptions, LoadError};
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
}

/// Which engines to load: ingestion needs only the embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engines {
    EmbeddingOnly,
    All,
}

/// The embedder and, when asked for, the chat model.
pub type LoadedModels = (Arc<dyn Embedder>, Option<Arc<dyn ChatBackend>>);

/// The embedder and (optionally) the chat model, each verified against its pin first.
pub fn load_models(config: &Config, engines: Engines) -> Result<LoadedModels, LoadError> {
    let manifest =
        builtin_manifest().map_err(|e| LoadError::Engine { model: "manifest".into(), reason: e.to_string() })?;
    let verified = |name: &str| -> Result<_, LoadError> {
        let entry =
            manifest.model(name).map_err(|e| LoadError::Engine { model: name.to_string(), reason: e.to_string() })?;
        verify(entry, &config.models.dir).map_err(|source| LoadError::Verify { model: name.to_string(), source })
    };
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
        let (embedder, chat) = load_models(&config, Engines::All)?;
        let chat =
            chat.ok_or_else(|| LoadError::Engine { model: config.models.chat.clone(), reason: "not loaded".into() })?;
        let index = open_index(data_dir, embedder.as_ref())?;
        Ok(Self::new(config, data_dir, Arc::new(index), embedder, chat, Arc::new(Detector::new()?)))
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
        for warning in perimeter_policy::lint(&config.policy) {
            tracing::warn!(%warning, "policy");
        }
        let backends = Backends::new(&config, Some(embedded_chat), embedder.clone(), make_api);
        Self {
            config: Arc::new(config),
            data_dir: data_dir.to_path_buf(),
            index,
            embedder,
            backends: Arc::new(backends),
            detector,
            metrics: Arc::new(Metrics::default()),
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
