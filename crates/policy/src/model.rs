//! What a policy is made of: backends as the policy sees them, level rules, entity rules,
//! tenants and model availability; the TOML shapes they are written in (`*Spec`); and the
//! compiled [`Policy`] that [`crate::decide`] reads, with every set turned into a bit mask so a
//! decision allocates almost nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use perimeter_types::{EntityKind, Level};
use serde::{Deserialize, Serialize};

use crate::KindSet;

/// Where a backend runs, which decides whether text leaves the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hosting {
    /// A third-party API: text leaves the organisation.
    Api,
    /// A model server the organisation runs (vLLM, Ollama, llama.cpp server, TGI).
    SelfHosted,
    /// The model inside the Perimeter process.
    Embedded,
}

impl Hosting {
    pub const ALL: [Hosting; 3] = [Hosting::Api, Hosting::SelfHosted, Hosting::Embedded];

    pub fn as_str(self) -> &'static str {
        match self {
            Hosting::Api => "api",
            Hosting::SelfHosted => "self_hosted",
            Hosting::Embedded => "embedded",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Hosting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire protocol a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Openai,
    AzureOpenai,
    Bedrock,
    Anthropic,
    OpenaiCompatible,
    Embedded,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::AzureOpenai => "azure_openai",
            Provider::Bedrock => "bedrock",
            Provider::Anthropic => "anthropic",
            Provider::OpenaiCompatible => "openai_compatible",
            Provider::Embedded => "embedded",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a provider keeps request data, from least to most. A rule that requires a
/// retention accepts that retention and anything shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Nothing is stored (zero data retention).
    None,
    /// Kept up to 30 days for abuse monitoring only.
    #[serde(rename = "abuse_monitoring_30d", alias = "30d_abuse_monitoring")]
    AbuseMonitoring30d,
    /// Whatever the provider's standard terms say.
    ProviderDefault,
}

impl Retention {
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::None => "none",
            Retention::AbuseMonitoring30d => "abuse_monitoring_30d",
            Retention::ProviderDefault => "provider_default",
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What text is sent to a backend for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Chat,
    Embeddings,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Chat => "chat",
            Purpose::Embeddings => "embeddings",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an entity rule does when its kinds are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityAction {
    /// Refuse the request outright.
    Deny,
    /// Pseudonymise before any API backend sees the text.
    Redact,
}

/// A backend as the policy sees it: where it runs and on what terms. Connection details (URLs,
/// credentials) are not the policy's business and live in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendProfile {
    pub name: String,
    pub hosting: Hosting,
    pub provider: Provider,
    pub model: String,
    pub region: Option<String>,
    /// Lower-case jurisdiction such as `eu` or `us`. Required for API and self-hosted backends;
    /// the embedded model runs where Perimeter runs.
    pub jurisdiction: Option<String>,
    pub retention: Retention,
    pub trains_on_data: bool,
    pub certifications: BTreeSet<String>,
    /// Lower is preferred among the allowed backends; ties go by name.
    pub priority: i32,
    pub purposes: BTreeSet<Purpose>,
}

/// `[policy.level.<level>]`: what a request at this level may use. Every key is optional; a
/// missing key keeps the value from the layer below (built-in defaults ← `[policy]` ← tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRuleSpec {
    pub hosting: Option<Vec<Hosting>>,
    pub require_retention: Option<Retention>,
    pub require_redaction_for_api: Option<bool>,
    pub allow_training: Option<bool>,
    pub require_certifications: Option<Vec<String>>,
}

/// One table per level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelsSpec {
    pub public: Option<LevelRuleSpec>,
    pub internal: Option<LevelRuleSpec>,
    pub confidential: Option<LevelRuleSpec>,
    pub restricted: Option<LevelRuleSpec>,
}

impl LevelsSpec {
    fn get(&self, level: Level) -> Option<&LevelRuleSpec> {
        match level {
            Level::Public => self.public.as_ref(),
            Level::Internal => self.internal.as_ref(),
            Level::Confidential => self.confidential.as_ref(),
            Level::Restricted => self.restricted.as_ref(),
        }
    }
}

/// `[[policy.entity]]`: what the presence of some kinds of sensitive data does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRuleSpec {
    /// Kind names (`IBAN`) or groups: `pii`, `phi`, `payment`, `secrets`, `all`.
    pub kinds: Vec<String>,
    /// The level a finding of these kinds gives the text it is in (replaces the built-in
    /// default; may lower it, e.g. `PHONE` → `internal` for public directories).
    pub level: Option<Level>,
    pub action: Option<EntityAction>,
    /// Certifications a backend must hold to receive these kinds (e.g. `hipaa_baa` for PHI).
    pub require_certifications: Option<Vec<String>>,
}

/// `[policy]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// What happens when no backend is allowed. Only `deny` exists: Perimeter fails closed.
    pub on_no_backend: Option<String>,
    /// Refuse a backend whose provider and model have no `[[availability]]` entry at all.
    pub require_known_availability: Option<bool>,
    pub level: Option<LevelsSpec>,
    pub entity: Option<Vec<EntityRuleSpec>>,
}

/// `[[tenant]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub name: String,
    /// Jurisdictions the tenant's data may be processed in (`["eu"]`), or `["any"]`.
    pub residency: Vec<String>,
    /// Only these backends may serve this tenant (default: all).
    pub backends: Option<Vec<String>>,
    /// Per-level overrides on top of `[policy.level]`.
    pub level: Option<LevelsSpec>,
    /// Entity rules applied after the global ones.
    pub entity: Option<Vec<EntityRuleSpec>>,
}

/// `[[availability]]`: the regions in which a provider offers a model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilitySpec {
    pub provider: Provider,
    pub model: String,
    pub regions: Vec<String>,
}

/// Everything a policy is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyInput {
    pub backends: Vec<BackendProfile>,
    pub tenants: Vec<TenantSpec>,
    pub policy: PolicySpec,
    pub availability: Vec<AvailabilitySpec>,
}

/// A policy that cannot be built, with the configuration key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {reason}")]
pub struct PolicyError {
    pub key: String,
    pub reason: String,
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError { key: key.into(), reason: reason.into() }
}

/// A level rule with every set as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub hosting: u8,
    /// `None`: any retention.
    pub require_retention: Option<Retention>,
    pub redact_api: bool,
    pub allow_training: bool,
    pub certs: u64,
}

/// Whether a backend's model is offered in its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Listed,
    NotInRegion,
    Unknown,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledBackend {
    pub profile: BackendProfile,
    pub name: Arc<str>,
    pub hosting: u8,
    /// 0 for the embedded model, which runs wherever Perimeter runs.
    pub jurisdiction: u64,
    pub certs: u64,
    pub purposes: u8,
    pub availability: Availability,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledTenant {
    pub name: String,
    /// `u64::MAX` for any jurisdiction.
    pub residency: u64,
    pub residency_names: Vec<String>,
    /// Indexed like `Policy::backends`.
    pub allowed: Vec<bool>,
    pub rules: [Rule; 4],
    pub kind_level: [Level; EntityKind::ALL.len()],
    pub kind_certs: [u64; EntityKind::ALL.len()],
    pub deny_kinds: KindSet,
    pub redact_kinds: KindSet,
    pub cert_kinds: KindSet,
}

/// A validated policy, ready for [`crate::decide`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) backends: Vec<CompiledBackend>,
    pub(crate) tenants: Vec<CompiledTenant>,
    pub(crate) tenant_index: BTreeMap<String, usize>,
    pub(crate) certs: Vec<String>,
    pub(crate) require_known_availability: bool,
    pub(crate) availability: Vec<AvailabilitySpec>,
    pub(crate) tenants_declared: bool,
}

/// The tenant every request belongs to until API keys name another.
pub const DEFAULT_TENANT: &str = perimeter_types::DEFAULT_TENANT;

/// The built-in hybrid posture (DESIGN.md): `public` and `internal` may use any hosting in the
/// tenant's jurisdictions; `confidential` only API backends that retain nothing, and only with
/// pseudonymisation; `restricted` never leaves the organisation. No level allows a provider
/// that trains on the data unless the policy says so.
pub fn default_rule(level: Level) -> LevelRuleSpec {
    let all = vec![Hosting::Api, Hosting::SelfHosted, Hosting::Embedded];
    let base = LevelRuleSpec {
        hosting: Some(all),
        require_retention: Some(Retention::ProviderDefault),
        require_redaction_for_api: Some(false),
        allow_training: Some(false),
        require_certifications: Some(Vec::new()),
    };
    match level {
        Level::Public | Level::Internal => base,
        Level::Confidential => {
            LevelRuleSpec { require_retention: Some(Retention::None), require_redaction_for_api: Some(true), ..base }
        }
        Level::Restricted => LevelRuleSpec {
            hosting: Some(vec![Hosting::SelfHosted, Hosting::Embedded]),
            require_retention: Some(Retention::None),
            require_redaction_for_api: Some(true),
            ..base
        },
    }
}

/// The kinds a name in `kinds = [...]` stands for.
pub fn kinds_named(name: &str) -> Option<Vec<EntityKind>> {
    use EntityKind as K;
    let all = EntityKind::ALL.iter().copied();
    let group: Vec<EntityKind> = match name {
        "all" => all.collect(),
        "secrets" => all.filter(|k| k.is_secret()).collect(),
        "phi" => all.filter(|k| k.is_phi()).collect(),
        "payment" => vec![K::CreditCard, K::Iban, K::SwiftBic, K::CryptoWallet],
        "pii" => vec![
            K::Email,
            K::Phone,
            K::Person,
            K::StreetAddress,
            K::DateOfBirth,
            K::UsSsn,
            K::UsItin,
            K::UkNino,
            K::Passport,
            K::IpAddress,
            K::MacAddress,
        ],
        other => return other.parse::<EntityKind>().ok().map(|k| vec![k]),
    };
    Some(group)
}

/// Interns short names into bit positions (at most 64).
struct Interner<'a> {
    what: &'a str,
    names: Vec<String>,
}

impl Interner<'_> {
    fn bit(&mut self, name: &str, key: &str) -> Result<u64, PolicyError> {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                if self.names.len() == 64 {
                    return Err(err(key, format!("more than 64 distinct {} names", self.what)));
                }
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        };
        Ok(1 << i)
    }

    fn mask(&mut self, names: &[String], key: &str) -> Result<u64, PolicyError> {
        let mut m = 0;
        for n in names {
            m |= self.bit(&normalise_name(n), key)?;
        }
        Ok(m)
    }
}

fn normalise_name(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn merge(base: &LevelRuleSpec, over: Option<&LevelRuleSpec>) -> LevelRuleSpec {
    let Some(o) = over else { return base.clone() };
    LevelRuleSpec {
        hosting: o.hosting.clone().or_else(|| base.hosting.clone()),
        require_retention: o.require_retention.or(base.require_retention),
        require_redaction_for_api: o.require_redaction_for_api.or(base.require_redaction_for_api),
        allow_training: o.allow_training.or(base.allow_training),
        require_certifications: o.require_certifications.clone().or_else(|| base.require_certifications.clone()),
    }
}

fn compile_rule(spec: &LevelRuleSpec, certs: &mut Interner<'_>, key: &str) -> Result<Rule, PolicyError> {
    let hosting = spec.hosting.as_deref().unwrap_or_default().iter().fold(0u8, |m, h| m | h.bit());
    let retention = spec.require_retention.unwrap_or(Retention::ProviderDefault);
    Ok(Rule {
        hosting,
        require_retention: (retention != Retention::ProviderDefault).then_some(retention),
        redact_api: spec.require_redaction_for_api.unwrap_or(false),
        allow_training: spec.allow_training.unwrap_or(false),
        certs: certs.mask(
            spec.require_certifications.as_deref().unwrap_or_default(),
            &format!("{key}.require_certifications"),
        )?,
    })
}

/// A higher level may never allow what a lower level forbids; otherwise raising a request's
/// level could widen where it may go.
fn check_monotone(rules: &[Rule; 4], key_of: &dyn Fn(Level) -> String) -> Result<(), PolicyError> {
    for pair in Level::ALL.windows(2) {
        let (lo, hi) = (pair[0], pair[1]);
        let (a, b) = (rules[lo as usize], rules[hi as usize]);
        let retention = |r: Option<Retention>| r.unwrap_or(Retention::ProviderDefault);
        let why = if b.hosting & !a.hosting != 0 {
            let extra: Vec<&str> = Hosting::ALL
                .iter()
                .filter(|h| b.hosting & h.bit() != 0 && a.hosting & h.bit() == 0)
                .map(|h| h.as_str())
                .collect();
            Some(format!("allows hosting {} which level {lo} forbids", extra.join(", ")))
        } else if retention(b.require_retention) > retention(a.require_retention) {
            Some(format!("accepts a longer retention than level {lo}"))
        } else if a.redact_api && !b.redact_api {
            Some(format!("drops the redaction that level {lo} requires"))
        } else if b.allow_training && !a.allow_training {
            Some(format!("allows training on data, which level {lo} forbids"))
        } else if a.certs & !b.certs != 0 {
            Some(format!("drops certifications that level {lo} requires"))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(err(
                key_of(hi),
                format!("{why}: a higher level may only narrow where data can go, so raising a request's level never widens it"),
            ));
        }
    }
    Ok(())
}

impl Policy {
    /// Validates and compiles a policy. Errors name the configuration key.
    pub fn build(input: PolicyInput) -> Result<Policy, PolicyError> {
        let PolicyInput { backends, tenants, policy, availability } = input;
        match policy.on_no_backend.as_deref() {
            None | Some("deny") => {}
            Some(other) => {
                return Err(err(
                    "policy.on_no_backend",
                    format!("is {other:?}, but the only value is \"deny\": when no backend is allowed, Perimeter refuses the request"),
                ))
            }
        }
        let mut certs = Interner { what: "certification", names: Vec::new() };
        let mut jurisdictions = Interner { what: "jurisdiction", names: Vec::new() };

        // Backends, in preference order.
        let mut seen = BTreeSet::new();
        for (i, b) in backends.iter().enumerate() {
            let key = |k: &str| format!("backend[{i}].{k}");
            if !valid_name(&b.name) {
                return Err(err(key("name"), "must be 1–64 characters of letters, digits, '-', '_' or '.'"));
            }
            if !seen.insert(b.name.clone()) {
                return Err(err(key("name"), format!("{:?} is used by another backend; names must be unique", b.name)));
            }
            if b.model.trim().is_empty() {
                return Err(err(key("model"), "must not be empty"));
            }
            if b.purposes.is_empty() {
                return Err(err(key("serves"), "must name at least one of chat, embeddings"));
            }
            let embedded_provider = b.provider == Provider::Embedded;
            if embedded_provider != (b.hosting == Hosting::Embedded) {
                return Err(err(key("hosting"), "must be \"embedded\" exactly when provider is \"embedded\""));
            }
            if b.hosting == Hosting::Api && b.provider == Provider::OpenaiCompatible {
                // Allowed: a third party that speaks the OpenAI protocol.
            }
            if b.hosting != Hosting::Embedded && b.jurisdiction.as_deref().map(str::trim).unwrap_or("").is_empty() {
                return Err(err(
                    key("jurisdiction"),
                    "is required for API and self-hosted backends (e.g. \"eu\", \"us\"): residency is checked against it",
                ));
            }
        }
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_by(|&a, &b| {
            (backends[a].priority, &backends[a].name).cmp(&(backends[b].priority, &backends[b].name))
        });
        let mut compiled = Vec::with_capacity(backends.len());
        for i in order {
            let b = &backends[i];
            let key = |k: &str| format!("backend[{i}].{k}");
            let cert_names: Vec<String> = b.certifications.iter().cloned().collect();
            let jurisdiction = match (&b.jurisdiction, b.hosting) {
                (_, Hosting::Embedded) => 0,
                (Some(j), _) => jurisdictions.bit(&normalise_name(j), &key("jurisdiction"))?,
                (None, _) => 0,
            };
            let listed: Vec<&AvailabilitySpec> =
                availability.iter().filter(|a| a.provider == b.provider && a.model == b.model).collect();
            let availability_state = if listed.is_empty() {
                Availability::Unknown
            } else if b.region.as_deref().is_some_and(|r| listed.iter().any(|a| a.regions.iter().any(|x| x == r))) {
                Availability::Listed
            } else {
                Availability::NotInRegion
            };
            compiled.push(CompiledBackend {
                name: Arc::from(b.name.as_str()),
                hosting: b.hosting.bit(),
                jurisdiction,
                certs: certs.mask(&cert_names, &key("certifications"))?,
                purposes: b.purposes.iter().fold(0, |m, p| m | p.bit()),
                availability: availability_state,
                profile: b.clone(),
            });
        }
        for (i, a) in availability.iter().enumerate() {
            if a.regions.is_empty() {
                return Err(err(format!("availability[{i}].regions"), "must list at least one region"));
            }
        }

        // Global layer over the built-in defaults.
        let global_levels = policy.level.clone().unwrap_or_default();
        let mut global_specs: Vec<LevelRuleSpec> = Vec::new();
        for level in Level::ALL {
            global_specs.push(merge(&default_rule(level), global_levels.get(level)));
        }
        let global_rules = compile_levels(&global_specs, &mut certs, &|l| format!("policy.level.{l}"))?;
        check_monotone(&global_rules, &|l| format!("policy.level.{l}"))?;
        let global_entities = policy.entity.clone().unwrap_or_default();

        let tenants_declared = !tenants.is_empty();
        let tenant_specs = if tenants_declared {
            tenants
        } else {
            vec![TenantSpec {
                name: DEFAULT_TENANT.to_string(),
                residency: vec!["any".into()],
                ..TenantSpec::default()
            }]
        };
        let mut compiled_tenants = Vec::new();
        let mut tenant_index = BTreeMap::new();
        for (t, spec) in tenant_specs.iter().enumerate() {
            let key = |k: &str| format!("tenant[{t}].{k}");
            if !valid_name(&spec.name) {
                return Err(err(key("name"), "must be 1–64 characters of letters, digits, '-', '_' or '.'"));
            }
            if tenant_index.insert(spec.name.clone(), t).is_some() {
                return Err(err(key("name"), format!("{:?} is declared twice", spec.name)));
            }
            if spec.residency.is_empty() {
                return Err(err(
                    key("residency"),
                    "must list the jurisdictions the tenant's data may be processed in, or [\"any\"]",
                ));
            }
            let names: Vec<String> = spec.residency.iter().map(|r| normalise_name(r)).collect();
            let residency = if names.iter().any(|n| n == "any") {
                if names.len() > 1 {
                    return Err(err(key("residency"), "\"any\" cannot be combined with other jurisdictions"));
                }
                u64::MAX
            } else {
                jurisdictions.mask(&names, &key("residency"))?
            };
            let allowed = match &spec.backends {
                None => vec![true; compiled.len()],
                Some(list) => {
                    for name in list {
                        if !compiled.iter().any(|b| &*b.name == name) {
                            return Err(err(
                                key("backends"),
                                format!("names {name:?}, which is not a configured backend"),
                            ));
                        }
                    }
                    compiled.iter().map(|b| list.iter().any(|n| **n == *b.name)).collect()
                }
            };
            let levels = spec.level.clone().unwrap_or_default();
            let specs: Vec<LevelRuleSpec> =
                Level::ALL.iter().map(|&l| merge(&global_specs[l as usize], levels.get(l))).collect();
            let tenant_key = |l: Level| format!("tenant[{t}].level.{l}");
            let rules = compile_levels(&specs, &mut certs, &tenant_key)?;
            check_monotone(&rules, &tenant_key)?;

            let mut kind_level: [Level; EntityKind::ALL.len()] = EntityKind::ALL.map(|k| k.default_level());
            let mut kind_action = [None; EntityKind::ALL.len()];
            let mut kind_certs = [0u64; EntityKind::ALL.len()];
            let no_rules = Vec::new();
            let layers = [
                ("policy.entity".to_string(), &global_entities),
                (key("entity"), spec.entity.as_ref().unwrap_or(&no_rules)),
            ];
            for (prefix, rules) in layers {
                for (r, rule) in rules.iter().enumerate() {
                    let rkey = format!("{prefix}[{r}]");
                    if rule.kinds.is_empty() {
                        return Err(err(format!("{rkey}.kinds"), "must name at least one kind or group"));
                    }
                    if rule.level.is_none() && rule.action.is_none() && rule.require_certifications.is_none() {
                        return Err(err(rkey, "does nothing: give it a level, an action or require_certifications"));
                    }
                    let mask = certs.mask(
                        rule.require_certifications.as_deref().unwrap_or_default(),
                        &format!("{rkey}.require_certifications"),
                    )?;
                    for name in &rule.kinds {
                        let kinds = kinds_named(name).ok_or_else(|| {
                            err(
                                format!("{rkey}.kinds"),
                                format!("{name:?} is neither an entity kind (e.g. IBAN) nor a group (pii, phi, payment, secrets, all)"),
                            )
                        })?;
                        for k in kinds {
                            if let Some(l) = rule.level {
                                kind_level[k as usize] = l;
                            }
                            if let Some(a) = rule.action {
                                // Deny outranks redact whichever layer says it.
                                let cur = &mut kind_action[k as usize];
                                *cur = Some(match (*cur, a) {
                                    (Some(EntityAction::Deny), _) | (_, EntityAction::Deny) => EntityAction::Deny,
                                    _ => EntityAction::Redact,
                                });
                            }
                            kind_certs[k as usize] |= mask;
                        }
                    }
                }
            }
            let mut deny_kinds = KindSet::EMPTY;
            let mut redact_kinds = KindSet::EMPTY;
            let mut cert_kinds = KindSet::EMPTY;
            for k in EntityKind::ALL {
                match kind_action[k as usize] {
                    Some(EntityAction::Deny) => deny_kinds.insert(k),
                    Some(EntityAction::Redact) => redact_kinds.insert(k),
                    None => {}
                }
                if kind_certs[k as usize] != 0 {
                    cert_kinds.insert(k);
                }
            }
            compiled_tenants.push(CompiledTenant {
                name: spec.name.clone(),
                residency,
                residency_names: names,
                allowed,
                rules,
                kind_level,
                kind_certs,
                deny_kinds,
                redact_kinds,
                cert_kinds,
            });
        }
        Ok(Policy {
            backends: compiled,
            tenants: compiled_tenants,
            tenant_index,
            certs: certs.names,
            require_known_availability: policy.require_known_availability.unwrap_or(false),
            availability,
            tenants_declared,
        })
    }

    /// The backends in preference order (the order of `decide`'s trace and of health slices).
    pub fn backends(&self) -> impl ExactSizeIterator<Item = &BackendProfile> + '_ {
        self.backends.iter().map(|b| &b.profile)
    }

    /// Position of a backend in [`Policy::backends`].
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| &*b.name == name)
    }

    pub fn tenant_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tenants.iter().map(|t| t.name.as_str())
    }

    pub fn has_tenant(&self, name: &str) -> bool {
        self.tenant_index.contains_key(name)
    }

    /// The level a finding of `kind` gives text for `tenant` (after entity rules).
    pub fn kind_level(&self, tenant: &str, kind: EntityKind) -> Option<Level> {
        self.tenant_index.get(tenant).map(|&t| self.tenants[t].kind_level[kind as usize])
    }

    pub(crate) fn cert_names(&self, mask: u64) -> Vec<&str> {
        self.certs.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| n.as_str()).collect()
    }
}

fn compile_levels(
    specs: &[LevelRuleSpec],
    certs: &mut Interner<'_>,
    key_of: &dyn Fn(Level) -> String,
) -> Result<[Rule; 4], PolicyError> {
    let mut out = [Rule { hosting: 0, require_retention: None, redact_api: false, allow_training: false, certs: 0 }; 4];
    for level in Level::ALL {
        out[level as usize] = compile_rule(&specs[level as usize], certs, &key_of(level))?;
    }
    Ok(out)
}
