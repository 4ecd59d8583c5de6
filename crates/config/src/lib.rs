//! Configuration: a TOML file parsed into a raw form (`deny_unknown_fields`, every key optional),
//! then validated into a `Config` with no gaps. Errors name the key and the reason.
//!
//! No file means the embedded defaults: both models in-process, loopback listener.

mod audit;
mod costs;
mod guard;
mod limits;

pub use audit::Audit;
pub use costs::Pricing;
pub use guard::Guard;
pub use limits::{Limits, Tls};

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use perimeter_policy::{
    AvailabilitySpec, BackendProfile, Hosting, Policy, PolicyInput, PolicySpec, Provider, Purpose, Retention,
    TenantSpec,
};
use serde::Deserialize;

/// The name of the in-process backend (the embedded chat and embedding models).
pub const EMBEDDED_BACKEND: &str = "embedded";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub models: Models,
    pub runtime: Runtime,
    pub retrieval: Retrieval,
    pub ingest: Ingest,
    pub generation: Generation,
    /// `[limits]`: per-key rate and concurrency limits, request and stream time limits.
    pub limits: Limits,
    /// `[audit]`: flushing and checkpoints of the audit log.
    pub audit: Audit,
    /// `[guard]`: injected instructions in passages, and the output guard.
    pub guard: Guard,
    /// Every backend, the embedded one included, in the order the policy prefers them.
    pub backends: Vec<Backend>,
    /// The backend that embeds documents and queries (`[embedding] backend`).
    pub embedding_backend: String,
    /// The compiled access policy.
    pub policy: Arc<Policy>,
    /// What the policy was built from (for `perimeter policy check` and tests).
    pub policy_input: PolicyInput,
    /// Canary probe suites the server runs on a schedule.
    pub canaries: Vec<Canary>,
    /// `[pricing]`: the price table's sources and self-hosted prices (`costs.rs`).
    pub pricing: Pricing,
    /// `[[budget]]`: monthly spending limits by tenant.
    pub budgets: Vec<perimeter_cost::Budget>,
}

/// `[[canary]]`: probe `backend` with `suite` every `interval_seconds`; a failing run takes the
/// backend out of the allowed set until a run passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub backend: String,
    pub suite: PathBuf,
    pub baseline: Option<PathBuf>,
    pub interval_seconds: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    backend: Option<String>,
    suite: Option<PathBuf>,
    baseline: Option<PathBuf>,
    interval_seconds: Option<u64>,
}

/// How an Azure OpenAI backend authenticates: the variable in `api_key_env` holds either an
/// `api-key` or a Microsoft Entra ID bearer token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureAuthKind {
    #[default]
    ApiKey,
    Entra,
}

/// A backend: how to reach it. What the policy needs to know about it is in `profile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub profile: BackendProfile,
    /// Overrides the provider's default endpoint (required for `openai_compatible`).
    pub base_url: Option<String>,
    /// The environment variable that holds the API key. Never the key itself.
    pub api_key_env: Option<String>,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Longest wait for the first byte of a response, and between streamed bytes.
    pub read_timeout_ms: u64,
    /// The model's context window in tokens (API and self-hosted chat backends).
    pub context_tokens: u32,
    /// Vector size of an API or self-hosted embedding model (required when it serves embeddings).
    pub dimensions: Option<usize>,
    /// Longest input an API or self-hosted embedding model accepts, in its tokens.
    pub max_input_tokens: usize,
    /// Azure OpenAI: the deployment that serves `model`.
    pub deployment: Option<String>,
    /// Azure OpenAI: the `api-version` query value; Anthropic: the `anthropic-version` header.
    pub api_version: Option<String>,
    /// Azure OpenAI: what the key variable holds.
    pub auth: AzureAuthKind,
    /// Amazon Bedrock: the profile in the shared AWS files (default: `AWS_PROFILE` or `default`).
    pub aws_profile: Option<String>,
    /// Extra trusted CA certificate(s), PEM, for a server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key, PEM, for mutual TLS.
    pub client_identity_file: Option<PathBuf>,
    /// Attempts per call, retries included, on connection failures, 429 and 5xx.
    pub max_attempts: u32,
    /// Self-hosted: the signed manifest (`perimeter model sign` output) of the model this server
    /// runs, produced in its deployment pipeline; required to verify with `trusted_keys`.
    pub model_signature: Option<PathBuf>,
    /// Public keys (SPKI PEM) trusted to sign `model_signature`.
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// HTTPS on the listener (`tls_cert` and `tls_key`); `None` serves plain HTTP.
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Models {
    /// Where the pinned model files live.
    pub dir: PathBuf,
    pub embedding: String,
    pub chat: String,
    /// How often the server re-hashes and re-scans the embedded models' files (they are also
    /// checked whenever one changes on disk). A failure takes the embedded backend out.
    pub reverify_seconds: u64,
    /// An operator's own model manifest (same format as `models/manifest.toml`), merged with the
    /// built-in one: the embedded engine can then load those models, after the same gate.
    pub manifest: Option<PathBuf>,
    /// A signed statement (`perimeter model sign`) of the models directory. When set, every file
    /// the embedded engine loads must be listed in it with the same digest, and it must verify
    /// with one of `trusted_keys`.
    pub signature: Option<PathBuf>,
    /// Public keys (SPKI PEM) trusted to sign `signature`.
    pub trusted_keys: Vec<PathBuf>,
    /// Strength of a LoRA adapter (a file with role `adapter` in the chat model's manifest entry).
    pub adapter_scale: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub threads: usize,
    pub context_tokens: u32,
    pub queue_depth: usize,
    pub gpu_layers: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrieval {
    pub top_k: usize,
    /// Characters of retrieved text placed in a prompt at most.
    pub max_source_chars: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Default answer length when a request gives no `max_tokens`.
    pub max_tokens: u32,
    /// Upper bound a request may ask for.
    pub max_tokens_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: `{key}` {reason}")]
    Invalid { path: String, key: String, reason: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: Option<RawServer>,
    models: Option<RawModels>,
    runtime: Option<RawRuntime>,
    retrieval: Option<RawRetrieval>,
    ingest: Option<RawIngest>,
    generation: Option<RawGeneration>,
    limits: Option<limits::RawLimits>,
    audit: Option<audit::RawAudit>,
    guard: Option<guard::RawGuard>,
    backend: Option<Vec<RawBackend>>,
    tenant: Option<Vec<TenantSpec>>,
    policy: Option<PolicySpec>,
    availability: Option<Vec<AvailabilitySpec>>,
    embedding: Option<RawEmbedding>,
    canary: Option<Vec<RawCanary>>,
    pricing: Option<costs::RawPricing>,
    budget: Option<Vec<costs::RawBudget>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbedding {
    backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: Option<String>,
    hosting: Option<Hosting>,
    provider: Option<Provider>,
    model: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    region: Option<String>,
    jurisdiction: Option<String>,
    retention: Option<Retention>,
    trains_on_data: Option<bool>,
    certifications: Option<Vec<String>>,
    priority: Option<i32>,
    serves: Option<Vec<Purpose>>,
    connect_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    context_tokens: Option<u32>,
    dimensions: Option<usize>,
    max_input_tokens: Option<usize>,
    deployment: Option<String>,
    api_version: Option<String>,
    auth: Option<AzureAuthKind>,
    aws_profile: Option<String>,
    ca_file: Option<PathBuf>,
    client_identity_file: Option<PathBuf>,
    max_attempts: Option<u32>,
    model_signature: Option<PathBuf>,
    trusted_keys: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    dir: Option<PathBuf>,
    embedding: Option<String>,
    chat: Option<String>,
    reverify_seconds: Option<u64>,
    manifest: Option<PathBuf>,
    signature: Option<PathBuf>,
    trusted_keys: Option<Vec<PathBuf>>,
    adapter_scale: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    threads: Option<usize>,
    context_tokens: Option<u32>,
    queue_depth: Option<usize>,
    gpu_layers: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetrieval {
    top_k: Option<usize>,
    max_source_chars: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    chunk_tokens: Option<usize>,
    chunk_overlap: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneration {
    max_tokens: Option<u32>,
    max_tokens_limit: Option<u32>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Default for Config {
    fn default() -> Self {
        #[expect(clippy::expect_used, reason = "the built-in defaults are valid; a unit test checks it")]
        Config::parse("", "<defaults>").expect("the built-in defaults are valid")
    }
}

impl Config {
    /// Parses and validates configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let raw: Raw =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_string(), reason: e.to_string() })?;
        raw.validate(path)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Parse { path: name.clone(), reason: e.to_string() })?;
        Self::parse(&text, &name)
    }
}

impl Raw {
    fn validate(self, path: &str) -> Result<Config, ConfigError> {
        let invalid =
            |key: &str, reason: String| ConfigError::Invalid { path: path.to_string(), key: key.to_string(), reason };
        let server = self.server.unwrap_or_default();
        let listen_text = server.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| invalid("server.listen", format!("{listen_text:?} is not an address like 127.0.0.1:8080")))?;
        let max_body_bytes = server.max_body_bytes.unwrap_or(8 << 20);
        if max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".into()));
        }
        let tls = limits::validate_tls(server.tls_cert, server.tls_key).map_err(|(k, r)| invalid(&k, r))?;
        let limits = self.limits.unwrap_or_default().validate().map_err(|(k, r)| invalid(&k, r))?;
        let audit = self.audit.unwrap_or_default().validate().map_err(|(k, r)| invalid(&k, r))?;
        let guard = self.guard.unwrap_or_default().validate().map_err(|(k, r)| invalid(&k, r))?;

        let models = self.models.unwrap_or_default();
        let models = Models {
            dir: models.dir.unwrap_or_else(|| PathBuf::from("models")),
            embedding: models.embedding.unwrap_or_else(|| "all-minilm-l6-v2".into()),
            chat: models.chat.unwrap_or_else(|| "smollm2-135m-instruct".into()),
            reverify_seconds: models.reverify_seconds.unwrap_or(3600),
            manifest: models.manifest,
            signature: models.signature,
            trusted_keys: models.trusted_keys.unwrap_or_default(),
            adapter_scale: models.adapter_scale.unwrap_or(1.0),
        };
        if !(60..=604_800).contains(&models.reverify_seconds) {
            return Err(invalid("models.reverify_seconds", "must be between 60 and 604800".into()));
        }
        if models.signature.is_some() == models.trusted_keys.is_empty() {
            return Err(invalid(
                "models.signature",
                "and `models.trusted_keys` go together: a signed manifest is only worth the keys it is checked against"
                    .into(),
            ));
        }
        if !(models.adapter_scale.is_finite() && (0.0..=4.0).contains(&models.adapter_scale)) {
            return Err(invalid("models.adapter_scale", "must be between 0 and 4".into()));
        }

        let rt = self.runtime.unwrap_or_default();
        let threads = rt.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        if threads == 0 || threads > 512 {
            return Err(invalid("runtime.threads", "must be between 1 and 512".into()));
        }
        let context_tokens = rt.context_tokens.unwrap_or(4096);
        if !(512..=131_072).contains(&context_tokens) {
            return Err(invalid("runtime.context_tokens", "must be between 512 and 131072".into()));
        }
        let queue_depth = rt.queue_depth.unwrap_or(64);
        if queue_depth == 0 {
            return Err(invalid("runtime.queue_depth", "must be at least 1".into()));
        }

        let r = self.retrieval.unwrap_or_default();
        let top_k = r.top_k.unwrap_or(5);
        if !(1..=100).contains(&top_k) {
            return Err(invalid("retrieval.top_k", "must be between 1 and 100".into()));
        }
        let max_source_chars = r.max_source_chars.unwrap_or(6000);
        if max_source_chars < 200 {
            return Err(invalid("retrieval.max_source_chars", "must be at least 200".into()));
        }

        let i = self.ingest.unwrap_or_default();
        let chunk_tokens = i.chunk_tokens.unwrap_or(200);
        if !(32..=512).contains(&chunk_tokens) {
            return Err(invalid("ingest.chunk_tokens", "must be between 32 and 512".into()));
        }
        let chunk_overlap = i.chunk_overlap.unwrap_or(40);
        if chunk_overlap >= chunk_tokens / 2 {
            return Err(invalid("ingest.chunk_overlap", "must be less than half of ingest.chunk_tokens".into()));
        }

        let g = self.generation.unwrap_or_default();
        let max_tokens_limit = g.max_tokens_limit.unwrap_or(2048);
        let max_tokens = g.max_tokens.unwrap_or(256);
        if max_tokens == 0 || max_tokens > max_tokens_limit {
            return Err(invalid(
                "generation.max_tokens",
                format!("must be between 1 and generation.max_tokens_limit ({max_tokens_limit})"),
            ));
        }

        let mut backends = Vec::new();
        for (i, raw) in self.backend.unwrap_or_default().into_iter().enumerate() {
            backends.push(raw.validate(i, &models).map_err(|(key, reason)| invalid(&key, reason))?);
        }
        let embedded: Vec<&Backend> = backends.iter().filter(|b| b.profile.provider == Provider::Embedded).collect();
        if embedded.len() > 1 {
            return Err(invalid(
                "backend",
                "declares more than one embedded backend; there is one in-process engine".into(),
            ));
        }
        if embedded.is_empty() {
            backends.push(Backend {
                profile: BackendProfile {
                    name: EMBEDDED_BACKEND.into(),
                    hosting: Hosting::Embedded,
                    provider: Provider::Embedded,
                    model: models.chat.clone(),
                    region: None,
                    jurisdiction: None,
                    retention: Retention::None,
                    trains_on_data: false,
                    certifications: BTreeSet::new(),
                    priority: 1000,
                    purposes: BTreeSet::from([Purpose::Chat, Purpose::Embeddings]),
                },
                base_url: None,
                api_key_env: None,
                connect_timeout_ms: 0,
                read_timeout_ms: 0,
                context_tokens: 0,
                dimensions: None,
                max_input_tokens: 0,
                deployment: None,
                api_version: None,
                auth: AzureAuthKind::ApiKey,
                aws_profile: None,
                ca_file: None,
                client_identity_file: None,
                max_attempts: 1,
                model_signature: None,
                trusted_keys: Vec::new(),
            });
        }
        let embedding_backend = match self.embedding.and_then(|e| e.backend) {
            Some(name) => name,
            None => backends
                .iter()
                .find(|b| b.profile.provider == Provider::Embedded)
                .map(|b| b.profile.name.clone())
                .unwrap_or_else(|| EMBEDDED_BACKEND.into()),
        };
        match backends.iter().find(|b| b.profile.name == embedding_backend) {
            None => {
                return Err(invalid(
                    "embedding.backend",
                    format!("names {embedding_backend:?}, which is not a configured backend"),
                ))
            }
            Some(b) if !b.profile.purposes.contains(&Purpose::Embeddings) => {
                return Err(invalid(
                    "embedding.backend",
                    format!(
                    "names {embedding_backend:?}, which does not serve embeddings (add \"embeddings\" to its `serves`)"
                ),
                ))
            }
            Some(_) => {}
        }
        let policy_input = PolicyInput {
            backends: backends.iter().map(|b| b.profile.clone()).collect(),
            tenants: self.tenant.unwrap_or_default(),
            policy: self.policy.unwrap_or_default(),
            availability: self.availability.unwrap_or_default(),
        };
        let policy = Policy::build(policy_input.clone()).map_err(|e| invalid(&e.key, e.reason))?;
        let backend_names: BTreeSet<String> = backends.iter().map(|b| b.profile.name.clone()).collect();
        let pricing =
            costs::validate_pricing(self.pricing, &backend_names).map_err(|(key, reason)| invalid(&key, reason))?;
        let budgets = costs::validate_budgets(self.budget).map_err(|(key, reason)| invalid(&key, reason))?;
        let mut canaries = Vec::new();
        for (i, c) in self.canary.unwrap_or_default().into_iter().enumerate() {
            let key = |k: &str| format!("canary[{i}].{k}");
            let backend = c.backend.ok_or_else(|| invalid(&key("backend"), "is required".into()))?;
            if !backends.iter().any(|b| b.profile.name == backend) {
                return Err(invalid(&key("backend"), format!("names {backend:?}, which is not a configured backend")));
            }
            let suite = c.suite.ok_or_else(|| invalid(&key("suite"), "is required (a probe suite file)".into()))?;
            let interval_seconds = c.interval_seconds.unwrap_or(3600);
            if !(60..=604_800).contains(&interval_seconds) {
                return Err(invalid(&key("interval_seconds"), "must be between 60 and 604800".into()));
            }
            canaries.push(Canary { backend, suite, baseline: c.baseline, interval_seconds });
        }
        // The policy orders backends by preference; keep the same order here.
        backends.sort_by_key(|b| policy.backend_index(&b.profile.name));

        Ok(Config {
            canaries,
            pricing,
            budgets,
            backends,
            embedding_backend,
            policy: Arc::new(policy),
            policy_input,
            server: Server { listen, max_body_bytes, tls },
            limits,
            audit,
            guard,
            models,
            runtime: Runtime { threads, context_tokens, queue_depth, gpu_layers: rt.gpu_layers.unwrap_or(0) },
            retrieval: Retrieval { top_k, max_source_chars },
            ingest: Ingest { chunk_tokens, chunk_overlap },
            generation: Generation { max_tokens, max_tokens_limit },
        })
    }
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `url`'s host is a loopback address or `localhost`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl RawBackend {
    fn validate(self, i: usize, models: &Models) -> Result<Backend, (String, String)> {
        let key = |k: &str| format!("backend[{i}].{k}");
        let provider = self.provider.ok_or_else(|| {
            (
                key("provider"),
                "is required: openai, azure_openai, bedrock, anthropic, openai_compatible or embedded".into(),
            )
        })?;
        let name = self.name.ok_or_else(|| (key("name"), "is required".to_string()))?;
        let hosting = match (self.hosting, provider) {
            (Some(h), _) => h,
            (None, Provider::Embedded) => Hosting::Embedded,
            (None, Provider::OpenaiCompatible) => {
                return Err((key("hosting"), "is required for openai_compatible: \"api\" or \"self_hosted\"".into()))
            }
            (None, _) => Hosting::Api,
        };
        if hosting == Hosting::SelfHosted && !matches!(provider, Provider::OpenaiCompatible) {
            return Err((key("hosting"), format!("self_hosted needs provider openai_compatible, not {provider}")));
        }
        let model = match (self.model, provider) {
            (Some(m), _) => m,
            (None, Provider::Embedded) => models.chat.clone(),
            (None, _) => return Err((key("model"), "is required".into())),
        };
        if let Some(url) = &self.base_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err((key("base_url"), format!("{url:?} must start with https:// or http://")));
            }
            if hosting == Hosting::Api && lower.starts_with("http://") && !is_loopback_url(url) {
                return Err((
                    key("base_url"),
                    "uses plain http:// to a third party; API keys and prompts would cross the network unencrypted (use https://)"
                        .into(),
                ));
            }
        } else if matches!(provider, Provider::OpenaiCompatible | Provider::AzureOpenai) {
            return Err((key("base_url"), format!("is required for provider {provider}")));
        }
        if provider == Provider::Embedded && self.base_url.is_some() {
            return Err((key("base_url"), "makes no sense for the embedded backend".into()));
        }
        if let Some(env) = &self.api_key_env {
            if !valid_env_name(env) {
                return Err((
                    key("api_key_env"),
                    "must be the NAME of an environment variable (A-Z, 0-9, _), never the key itself".into(),
                ));
            }
        } else if matches!(provider, Provider::Openai | Provider::AzureOpenai | Provider::Anthropic) {
            return Err((
                key("api_key_env"),
                format!("is required for provider {provider}: name the variable holding the key"),
            ));
        }
        let default_priority = match hosting {
            Hosting::Api => 10,
            Hosting::SelfHosted => 50,
            Hosting::Embedded => 1000,
        };
        let purposes: BTreeSet<Purpose> = match self.serves {
            Some(list) => list.into_iter().collect(),
            None if provider == Provider::Embedded => BTreeSet::from([Purpose::Chat, Purpose::Embeddings]),
            None => BTreeSet::from([Purpose::Chat]),
        };
        let connect_timeout_ms = self.connect_timeout_ms.unwrap_or(5_000);
        let read_timeout_ms = self.read_timeout_ms.unwrap_or(120_000);
        if !(10..=600_000).contains(&connect_timeout_ms) {
            return Err((key("connect_timeout_ms"), "must be between 10 and 600000".into()));
        }
        if !(10..=3_600_000).contains(&read_timeout_ms) {
            return Err((key("read_timeout_ms"), "must be between 10 and 3600000".into()));
        }
        let context_tokens = self.context_tokens.unwrap_or(128_000);
        if !(512..=10_000_000).contains(&context_tokens) {
            return Err((key("context_tokens"), "must be between 512 and 10000000".into()));
        }
        if provider != Provider::Embedded && purposes.contains(&Purpose::Embeddings) {
            match self.dimensions {
                Some(d) if (1..=65_536).contains(&d) => {}
                Some(_) => return Err((key("dimensions"), "must be between 1 and 65536".into())),
                None => {
                    return Err((
                        key("dimensions"),
                        "is required for a backend that serves embeddings (the vector size of its model, e.g. 1536)"
                            .into(),
                    ))
                }
            }
        } else if self.dimensions.is_some() {
            return Err((
                key("dimensions"),
                "only applies to API or self-hosted backends that serve embeddings".into(),
            ));
        }
        let only = |field: &str, set: bool, providers: &[Provider]| -> Result<(), (String, String)> {
            if set && !providers.contains(&provider) {
                let names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
                return Err((key(field), format!("only applies to provider {}", names.join(" or "))));
            }
            Ok(())
        };
        only("deployment", self.deployment.is_some(), &[Provider::AzureOpenai])?;
        only("auth", self.auth.is_some(), &[Provider::AzureOpenai])?;
        only("api_version", self.api_version.is_some(), &[Provider::AzureOpenai, Provider::Anthropic])?;
        only("aws_profile", self.aws_profile.is_some(), &[Provider::Bedrock])?;
        only(
            "ca_file",
            self.ca_file.is_some() || self.client_identity_file.is_some(),
            &[Provider::Openai, Provider::OpenaiCompatible, Provider::AzureOpenai, Provider::Anthropic],
        )?;
        if provider == Provider::AzureOpenai && self.deployment.as_deref().is_none_or(|d| d.trim().is_empty()) {
            return Err((
                key("deployment"),
                "is required for azure_openai: the deployment that serves the model".into(),
            ));
        }
        if provider == Provider::Bedrock && self.region.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err((key("region"), "is required for bedrock (e.g. \"eu-central-1\")".into()));
        }
        if provider == Provider::Bedrock && self.api_key_env.is_some() {
            return Err((
                key("api_key_env"),
                "does not apply to bedrock: credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the shared AWS files (aws_profile)".into(),
            ));
        }
        if provider == Provider::Anthropic && purposes.contains(&Purpose::Embeddings) {
            return Err((key("serves"), "anthropic has no embeddings API".into()));
        }
        if self.model_signature.is_some() != self.trusted_keys.as_ref().is_some_and(|k| !k.is_empty()) {
            return Err((
                key("model_signature"),
                "and `trusted_keys` go together: a signed manifest is only worth the keys it is checked against".into(),
            ));
        }
        if self.model_signature.is_some() && hosting != Hosting::SelfHosted {
            return Err((key("model_signature"), "only applies to self_hosted backends".into()));
        }
        let max_attempts = self.max_attempts.unwrap_or(3);
        if !(1..=10).contains(&max_attempts) {
            return Err((key("max_attempts"), "must be between 1 and 10".into()));
        }
        let max_input_tokens = self.max_input_tokens.unwrap_or(8191);
        if !(16..=1_000_000).contains(&max_input_tokens) {
            return Err((key("max_input_tokens"), "must be between 16 and 1000000".into()));
        }
        Ok(Backend {
            profile: BackendProfile {
                name,
                hosting,
                provider,
                model,
                region: self.region,
                jurisdiction: self.jurisdiction.map(|j| j.trim().to_ascii_lowercase()),
                // Unstated terms are assumed to be the least favourable: a third party keeps data
                // as its standard terms say and may train on it, until the operator says otherwise.
                retention: self.retention.unwrap_or(match hosting {
                    Hosting::Api => Retention::ProviderDefault,
                    _ => Retention::None,
                }),
                trains_on_data: self.trains_on_data.unwrap_or(hosting == Hosting::Api),
                certifications: self
                    .certifications
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.trim().to_ascii_lowercase())
                    .collect(),
                priority: self.priority.unwrap_or(default_priority),
                purposes,
            },
            base_url: self.base_url.map(|u| u.trim_end_matches('/').to_string()),
            api_key_env: self.api_key_env,
            connect_timeout_ms,
            read_timeout_ms,
            context_tokens,
            dimensions: self.dimensions,
            max_input_tokens,
            deployment: self.deployment,
            api_version: self.api_version,
            auth: self.auth.unwrap_or_default(),
            aws_profile: self.aws_profile,
            ca_file: self.ca_file,
            client_identity_file: self.client_identity_file,
            max_attempts,
            model_signature: self.model_signature,
            trusted_keys: self.trusted_keys.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.models.embedding, "all-minilm-l6-v2");
        assert_eq!(c.retrieval.top_k, 5);
        assert_eq!(Config::default().ingest.chunk_tokens, 200);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            ("[retrieval]\ntop_k = 0", "retrieval.top_k"),
            ("[ingest]\nchunk_tokens = 100\nchunk_overlap = 60", "ingest.chunk_overlap"),
            ("[generation]\nmax_tokens = 5000", "generation.max_tokens"),
            ("[server]\nlisten = \"127.0.0.1:1\"\nport = 3", "unknown field `port`"),
            ("[serverr]", "unknown field `serverr`"),
            ("[policy]\non_no_backend = \"allow\"", "`policy.on_no_backend` is \"allow\", but the only value is \"deny\""),
            ("[policy.level.restricted]\nhosting = [\"api\"]\n[policy.level.confidential]\nhosting = [\"embedded\"]", "`policy.level.restricted` allows hosting api which level confidential forbids"),
            ("[policy.level.internal]\nallow_training = true", "`policy.level.internal` allows training on data, which level public forbids"),
            ("[[backend]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"", "`backend[0].jurisdiction` is required"),
            ("[[backend]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"sk-live-123\"\njurisdiction = \"eu\"", "`backend[0].api_key_env` must be the NAME"),
            ("[[backend]]\nname = \"a\"\nprovider = \"openai_compatible\"\nhosting = \"api\"\nmodel = \"m\"\nbase_url = \"http://10.0.0.5/v1\"\njurisdiction = \"eu\"", "`backend[0].base_url` uses plain http://"),
            ("[[backend]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\njurisdiction = \"eu\"\n[[backend]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\njurisdiction = \"eu\"", "`backend[1].name` \"a\" is used by another backend"),
            ("[[tenant]]\nname = \"t\"\nresidency = [\"eu\"]\nbackends = [\"nope\"]", "`tenant[0].backends` names \"nope\""),
            ("[[tenant]]\nname = \"t\"\nresidency = []", "`tenant[0].residency` must list"),
            ("[[policy.entity]]\nkinds = [\"SSN\"]\nlevel = \"restricted\"", "`policy.entity[0].kinds` \"SSN\" is neither"),
            ("[[policy.entity]]\nkinds = [\"PHONE\"]", "`policy.entity[0]` does nothing"),
            ("[embedding]\nbackend = \"nope\"", "`embedding.backend` names \"nope\""),
            ("[[backend]]\nname = \"e\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\njurisdiction = \"eu\"\nserves = [\"embeddings\"]", "`backend[0].dimensions` is required"),
            ("[[backend]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\njurisdiction = \"eu\"\nretention = \"forever\"", "unknown variant `forever`"),
        ];
        for (text, expect) in cases {
            let err = Config::parse(text, "t.toml").err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(expect) && err.starts_with("t.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn no_backends_means_the_embedded_one_for_everything() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].profile.name, EMBEDDED_BACKEND);
        assert_eq!(c.embedding_backend, EMBEDDED_BACKEND);
        assert!(c.backends[0].profile.purposes.contains(&Purpose::Embeddings));
    }

    #[test]
    fn unstated_api_terms_are_the_least_favourable() {
        let c = Config::parse(
            "[[backend]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\njurisdiction = \"EU\"",
            "t.toml",
        )
        .unwrap();
        let a = &c.backends[0].profile;
        assert_eq!(a.name, "a", "API backends are preferred over the embedded one by default");
        assert_eq!(a.retention, Retention::ProviderDefault);
        assert!(a.trains_on_data);
        assert_eq!(a.jurisdiction.as_deref(), Some("eu"));
        assert_eq!(c.backends[1].profile.name, EMBEDDED_BACKEND);
    }

    #[test]
    fn the_example_policy_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy/hybrid.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.policy.backends().count(), 4);
    }
}
