//! The configured backends at run time: the adapter behind each name and its health, which is
//! the policy's health input.
//!
//! Health has two sources. Static: a backend whose API key variable is unset, or whose provider
//! has no adapter in this build, is never healthy. Dynamic: a simple circuit breaker opens after
//! `FAILURE_THRESHOLD` consecutive failures and lets a request through again after `COOL_DOWN`.
//! Health only ever removes backends from the allowed set; it never adds one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perimeter_config::{Backend, Config};
use perimeter_policy::{Health, Provider, Unhealthy};
use perimeter_types::{ChatBackend, Embedder};

/// Consecutive failures that open a backend's circuit.
pub const FAILURE_THRESHOLD: u32 = 3;
/// How long an open circuit keeps a backend out of the allowed set.
pub const COOL_DOWN: Duration = Duration::from_secs(30);

struct Slot {
    config: Backend,
    chat: Option<Arc<dyn ChatBackend>>,
    /// A reason this backend can never be used in this process.
    static_problem: Option<Unhealthy>,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open (0: closed).
    open_until_ms: AtomicU64,
    /// The last canary run failed.
    canary_failed: std::sync::atomic::AtomicBool,
    /// The last re-verification of its model files failed.
    model_unverified: std::sync::atomic::AtomicBool,
}

/// The backends in policy order, with their adapters and health.
pub struct Backends {
    slots: Vec<Slot>,
    epoch: Instant,
    /// The embedder of `[embedding] backend`.
    pub embedder: Arc<dyn Embedder>,
    /// Position of the embedding backend in policy order.
    pub embedding_index: usize,
}

/// Builds an API adapter for a backend, given its key (read from the environment by the caller).
/// An error says what health the backend gets and why.
pub type ApiFactory<'a> = dyn Fn(&Backend, Option<String>) -> Result<Arc<dyn ChatBackend>, (Unhealthy, String)> + 'a;

/// Checks a self-hosted backend's signed manifest: a valid signature by a trusted key over a
/// model-signing statement that names the backend's model. Returns the signing key's id.
fn check_signature(b: &Backend, signature: &std::path::Path) -> Result<String, String> {
    use perimeter_provenance::signing::{Envelope, PublicKey};
    let bytes = std::fs::read(signature).map_err(|e| format!("cannot read {}: {}", signature.display(), e.kind()))?;
    let envelope = Envelope::from_json(&bytes).map_err(|e| format!("{}: {e}", signature.display()))?;
    let mut keys = Vec::new();
    for path in &b.trusted_keys {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
        keys.push(PublicKey::from_spki_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let verified = envelope.verify(&keys).map_err(|e| e.to_string())?;
    let name = verified.statement().name();
    if name != b.profile.model {
        return Err(format!("the signed manifest is for model {name:?}, not {:?}", b.profile.model));
    }
    Ok(verified.keyid().to_string())
}

impl Backends {
    /// Matches every configured backend with an adapter. `embedded` is the in-process chat model
    /// (absent when only embeddings were loaded); `make_api` builds API and self-hosted adapters.
    pub fn new(
        config: &Config,
        embedded: Option<Arc<dyn ChatBackend>>,
        embedder: Arc<dyn Embedder>,
        make_api: &ApiFactory<'_>,
    ) -> Backends {
        let mut slots = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            let (chat, static_problem) = match b.profile.provider {
                Provider::Embedded => match &embedded {
                    Some(e) => (Some(e.clone()), None),
                    None => (None, Some(Unhealthy::Unavailable)),
                },
                provider => {
                    let key = b.api_key_env.as_deref().map(std::env::var);
                    match key {
                        Some(Err(_)) => {
                            tracing::warn!(backend = %b.profile.name, env = ?b.api_key_env, "API key variable is not set; the backend will not be used");
                            (None, Some(Unhealthy::CredentialsMissing))
                        }
                        key => match make_api(b, key.and_then(Result::ok)) {
                            Ok(adapter) => (Some(adapter), None),
                            Err((health, reason)) => {
                                tracing::warn!(backend = %b.profile.name, %provider, %reason, "backend unavailable; it will not be used");
                                (None, Some(health))
                            }
                        },
                    }
                }
            };
            let static_problem = match (static_problem, &b.model_signature) {
                (None, Some(signature)) => match check_signature(b, signature) {
                    Ok(keyid) => {
                        tracing::info!(backend = %b.profile.name, %keyid, "signed model manifest verified");
                        None
                    }
                    Err(reason) => {
                        tracing::error!(backend = %b.profile.name, %reason, "signed model manifest did not verify; the backend will not be used");
                        Some(Unhealthy::ModelUnverified)
                    }
                },
                (p, _) => p,
            };
            slots.push(Slot {
                config: b.clone(),
                chat,
                static_problem,
                failures: AtomicU32::new(0),
                open_until_ms: AtomicU64::new(0),
                canary_failed: std::sync::atomic::AtomicBool::new(false),
                model_unverified: std::sync::atomic::AtomicBool::new(false),
            });
        }
        let embedding_index = config.policy.backend_index(&config.embedding_backend).unwrap_or(usize::MAX);
        Backends { slots, epoch: Instant::now(), embedder, embedding_index }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Health of every backend, in policy order.
    pub fn health(&self) -> Vec<Health> {
        let now = self.now_ms();
        self.slots
            .iter()
            .map(|s| match s.static_problem {
                Some(p) => Health::Unhealthy(p),
                None if s.chat.is_none() && s.config.profile.purposes.contains(&perimeter_policy::Purpose::Chat) => {
                    Health::Unhealthy(Unhealthy::Unavailable)
                }
                None if s.model_unverified.load(Ordering::Relaxed) => Health::Unhealthy(Unhealthy::ModelUnverified),
                None if s.canary_failed.load(Ordering::Relaxed) => Health::Unhealthy(Unhealthy::CanaryFailed),
                None if s.open_until_ms.load(Ordering::Relaxed) > now => Health::Unhealthy(Unhealthy::CircuitOpen),
                None => Health::Healthy,
            })
            .collect()
    }

    pub fn chat(&self, index: usize) -> Option<&Arc<dyn ChatBackend>> {
        self.slots.get(index).and_then(|s| s.chat.as_ref())
    }

    pub fn config(&self, index: usize) -> Option<&Backend> {
        self.slots.get(index).map(|s| &s.config)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records a canary run's outcome: a failure keeps the backend out until a run passes.
    pub fn set_canary_failed(&self, index: usize, failed: bool) {
        if let Some(s) = self.slots.get(index) {
            let was = s.canary_failed.swap(failed, Ordering::Relaxed);
            if was != failed {
                tracing::warn!(backend = %s.config.profile.name, failed, "canary state changed");
            }
        }
    }

    /// Records a re-verification's outcome for a backend's model files.
    /// Whether the last verification of this backend's model failed.
    pub fn model_unverified(&self, index: usize) -> bool {
        self.slots.get(index).is_some_and(|s| s.model_unverified.load(Ordering::Relaxed))
    }

    pub fn set_model_unverified(&self, index: usize, failed: bool) {
        if let Some(s) = self.slots.get(index) {
            s.model_unverified.store(failed, Ordering::Relaxed);
        }
    }

    /// A call succeeded: the circuit closes.
    pub fn record_success(&self, index: usize) {
        if let Some(s) = self.slots.get(index) {
            s.failures.store(0, Ordering::Relaxed);
            s.open_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// A call failed before producing output; enough of them in a row open the circuit.
    pub fn record_failure(&self, index: usize) {
        if let Some(s) = self.slots.get(index) {
            let n = s.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= FAILURE_THRESHOLD {
                s.open_until_ms.store(self.now_ms() + COOL_DOWN.as_millis() as u64, Ordering::Relaxed);
                tracing::warn!(backend = %s.config.profile.name, failures = n, "circuit opened");
            }
        }
    }

    /// Name and health of each backend, for `/readyz` and `/v1/models`.
    pub fn summary(&self) -> Vec<(&Backend, Health)> {
        self.slots.iter().map(|s| &s.config).zip(self.health()).collect()
    }
}
