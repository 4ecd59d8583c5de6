//! The decision itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use perimeter_types::{EntityKind, Level};

use crate::model::{Availability, CompiledTenant, Policy};
use crate::{Hosting, KindSet, Purpose};

/// What is known about one retrieved passage: its document's label and the kinds of sensitive
/// data stored for it at ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassageFacts {
    pub label: Level,
    pub kinds: KindSet,
}

/// What the decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub tenant: &'a str,
    pub purpose: Purpose,
    /// Kinds of sensitive data found in the text the caller sent.
    pub query: KindSet,
    pub passages: &'a [PassageFacts],
    /// `x-perimeter-level`: raises the level, never lowers it.
    pub requested_level: Option<Level>,
    /// A backend name or model id the caller asked for; `None` (or the routed model name) for any.
    pub requested_model: Option<&'a str>,
    /// The caller asked for pseudonymisation whatever the backend.
    pub client_redact: bool,
}

impl<'a> Facts<'a> {
    /// Facts for a request with nothing in it yet.
    pub fn new(tenant: &'a str, purpose: Purpose) -> Self {
        Facts {
            tenant,
            purpose,
            query: KindSet::EMPTY,
            passages: &[],
            requested_level: None,
            requested_model: None,
            client_redact: false,
        }
    }
}

/// Why a backend may not be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhealthy {
    /// Its API key environment variable is not set.
    CredentialsMissing,
    /// Too many recent failures; requests are held off until the cool-down ends.
    CircuitOpen,
    /// Perimeter has no adapter for its provider yet, or could not start it.
    Unavailable,
    /// The backend failed its canary probes (degradation or a possible backdoor).
    CanaryFailed,
    /// Its model files failed verification or the malicious-model scan.
    ModelUnverified,
    /// No health information (fail closed).
    Unknown,
}

impl Unhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            Unhealthy::CredentialsMissing => "credentials are not configured",
            Unhealthy::CircuitOpen => "circuit open after repeated failures",
            Unhealthy::Unavailable => "not available in this server",
            Unhealthy::CanaryFailed => "failed its canary probes",
            Unhealthy::ModelUnverified => "its model files failed verification",
            Unhealthy::Unknown => "health unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy(Unhealthy),
}

/// A tenant's spending state (metering fills it in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BudgetState {
    #[default]
    Available,
    /// The API budget is spent: only self-hosted and embedded backends remain.
    ApiExhausted,
    /// Everything is spent: deny.
    Exhausted,
}

/// Budget states by tenant; a tenant not listed has budget available.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets(pub BTreeMap<String, BudgetState>);

impl Budgets {
    pub fn state(&self, tenant: &str) -> BudgetState {
        self.0.get(tenant).copied().unwrap_or_default()
    }
}

/// A backend the request may go to, and whether it must be pseudonymised first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub index: usize,
    pub name: Arc<str>,
    pub redact: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    UnknownTenant,
    /// A kind present in the request is denied outright by an entity rule.
    EntityDenied(EntityKind),
    BudgetExhausted,
    /// Every backend was rejected (the trace says why).
    NoCompliantBackend,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Route { target: Target, fallbacks: Vec<Target> },
    Deny { reasons: Vec<DenyReason> },
}

/// Where the level came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelCause {
    /// The query kind that set the highest level from the query.
    pub query: Option<(EntityKind, Level)>,
    /// The passage (index) with the highest level, its label and the kind that raised it above
    /// the label, if any.
    pub passage: Option<(usize, Level, Option<EntityKind>)>,
    pub requested: Option<Level>,
}

/// Rejection bits in [`Consideration::rejected`].
pub(crate) mod reject {
    pub const PURPOSE: u16 = 1 << 0;
    pub const MODEL: u16 = 1 << 1;
    pub const TENANT: u16 = 1 << 2;
    pub const HOSTING: u16 = 1 << 3;
    pub const JURISDICTION: u16 = 1 << 4;
    pub const RETENTION: u16 = 1 << 5;
    pub const TRAINING: u16 = 1 << 6;
    pub const CERTIFICATION: u16 = 1 << 7;
    pub const AVAILABILITY: u16 = 1 << 8;
    pub const HEALTH: u16 = 1 << 9;
    pub const BUDGET: u16 = 1 << 10;
}

/// One backend as considered for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consideration {
    pub index: usize,
    /// Zero when allowed.
    pub rejected: u16,
    pub redact: bool,
    pub health: Health,
    /// Certifications required but missing (bit mask over the policy's certification names).
    pub missing_certs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index of the tenant in the policy; `None` when the tenant is unknown.
    pub tenant: Option<usize>,
    pub purpose: Purpose,
    pub level: Level,
    pub cause: LevelCause,
    /// Kinds present in the query or any passage.
    pub kinds: KindSet,
    pub outcome: Outcome,
    /// Every backend, in preference order, with the verdict on it. Empty when the request was
    /// denied before backends were considered (unknown tenant, denied entity).
    pub trace: Vec<Consideration>,
}

impl Decision {
    pub fn is_route(&self) -> bool {
        matches!(self.outcome, Outcome::Route { .. })
    }

    /// The chosen backend and then the fallbacks, in order.
    pub fn targets(&self) -> Vec<&Target> {
        match &self.outcome {
            Outcome::Route { target, fallbacks } => std::iter::once(target).chain(fallbacks).collect(),
            Outcome::Deny { .. } => Vec::new(),
        }
    }

    /// Names of every allowed backend (the route's target and fallbacks).
    pub fn allowed(&self) -> Vec<&str> {
        self.targets().into_iter().map(|t| &*t.name).collect()
    }
}

fn level_of(t: &CompiledTenant, facts: &Facts<'_>) -> (Level, LevelCause) {
    let mut level = Level::Public;
    let mut cause = LevelCause::default();
    for k in facts.query.iter() {
        let l = t.kind_level[k as usize];
        if cause.query.is_none_or(|(_, best)| l > best) {
            cause.query = Some((k, l));
        }
        level = level.max(l);
    }
    for (i, p) in facts.passages.iter().enumerate() {
        let mut pl = p.label;
        let mut by = None;
        for k in p.kinds.iter() {
            let l = t.kind_level[k as usize];
            if l > pl {
                pl = l;
                by = Some(k);
            }
        }
        if cause.passage.is_none_or(|(_, best, _)| pl > best) {
            cause.passage = Some((i, pl, by));
        }
        level = level.max(pl);
    }
    if let Some(r) = facts.requested_level {
        cause.requested = Some(r);
        level = level.max(r);
    }
    (level, cause)
}

/// Decides where a request may go. Pure and deterministic: the same inputs give the same
/// decision. `health` is indexed like [`Policy::backends`]; a backend without an entry counts as
/// unhealthy (fail closed).
pub fn decide(facts: &Facts<'_>, policy: &Policy, health: &[Health], budgets: &Budgets) -> Decision {
    let kinds = facts.passages.iter().fold(facts.query, |s, p| s.union(p.kinds));
    let deny = |reasons: Vec<DenyReason>, level: Level, cause: LevelCause, tenant: Option<usize>| Decision {
        tenant,
        purpose: facts.purpose,
        level,
        cause,
        kinds,
        outcome: Outcome::Deny { reasons },
        trace: Vec::new(),
    };
    let Some(&ti) = policy.tenant_index.get(facts.tenant) else {
        let level = facts.requested_level.unwrap_or(Level::Restricted).max(Level::Restricted);
        return deny(vec![DenyReason::UnknownTenant], level, LevelCause::default(), None);
    };
    let t = &policy.tenants[ti];
    let (level, cause) = level_of(t, facts);

    let denied = kinds.intersection(t.deny_kinds);
    if !denied.is_empty() {
        return deny(denied.iter().map(DenyReason::EntityDenied).collect(), level, cause, Some(ti));
    }
    let budget = budgets.state(facts.tenant);
    let rule = t.rules[level as usize];
    let mut required_certs = rule.certs;
    for k in kinds.intersection(t.cert_kinds).iter() {
        required_certs |= t.kind_certs[k as usize];
    }
    let redact_entities = !kinds.intersection(t.redact_kinds).is_empty();
    let requested_model = facts.requested_model.filter(|m| !m.is_empty());

    let mut trace = Vec::with_capacity(policy.backends.len());
    for (i, b) in policy.backends.iter().enumerate() {
        use reject::*;
        let mut rejected = 0u16;
        let p = &b.profile;
        if b.purposes & facts.purpose.bit() == 0 {
            rejected |= PURPOSE;
        }
        if let Some(m) = requested_model {
            if m != &*b.name && m != p.model {
                rejected |= MODEL;
            }
        }
        if !t.allowed[i] {
            rejected |= TENANT;
        }
        if rule.hosting & b.hosting == 0 {
            rejected |= HOSTING;
        }
        if p.hosting != Hosting::Embedded && t.residency & b.jurisdiction == 0 {
            rejected |= JURISDICTION;
        }
        if rule.require_retention.is_some_and(|r| p.retention > r) {
            rejected |= RETENTION;
        }
        if p.trains_on_data && !rule.allow_training {
            rejected |= TRAINING;
        }
        let missing_certs = required_certs & !b.certs;
        if missing_certs != 0 {
            rejected |= CERTIFICATION;
        }
        match b.availability {
            Availability::NotInRegion => rejected |= AVAILABILITY,
            Availability::Unknown if policy.require_known_availability && p.hosting == Hosting::Api => {
                rejected |= AVAILABILITY
            }
            _ => {}
        }
        let h = health.get(i).copied().unwrap_or(Health::Unhealthy(Unhealthy::Unknown));
        if h != Health::Healthy {
            rejected |= HEALTH;
        }
        if budget == BudgetState::Exhausted || (budget == BudgetState::ApiExhausted && p.hosting == Hosting::Api) {
            rejected |= BUDGET;
        }
        let redact = facts.client_redact || (p.hosting == Hosting::Api && (rule.redact_api || redact_entities));
        trace.push(Consideration { index: i, rejected, redact, health: h, missing_certs });
    }

    let mut allowed = trace.iter().filter(|c| c.rejected == 0).map(|c| Target {
        index: c.index,
        name: policy.backends[c.index].name.clone(),
        redact: c.redact,
    });
    let outcome = match allowed.next() {
        Some(target) => Outcome::Route { target, fallbacks: allowed.collect() },
        None if budget == BudgetState::Exhausted => {
            Outcome::Deny { reasons: vec![DenyReason::BudgetExhausted, DenyReason::NoCompliantBackend] }
        }
        None => Outcome::Deny { reasons: vec![DenyReason::NoCompliantBackend] },
    };
    Decision { tenant: Some(ti), purpose: facts.purpose, level, cause, kinds, outcome, trace }
}
