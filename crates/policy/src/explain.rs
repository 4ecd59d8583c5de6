//! A decision in words: the reasons and the per-backend trace that `perimeter policy explain`,
//! the response's `perimeter` object, the 403 body and the audit log show.

use perimeter_types::Level;
use serde::Serialize;

use crate::decide::{reject, Consideration, Decision, DenyReason, Health, Outcome};
use crate::model::{Availability, Policy};
use crate::Hosting;

/// One backend's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    pub backend: String,
    pub hosting: Hosting,
    /// `allowed` or `rejected`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redact: bool,
    pub reasons: Vec<String>,
}

/// The whole decision as data for people and logs. Contains names, levels and kinds; never text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `route` or `deny`.
    pub decision: &'static str,
    pub backend: Option<String>,
    pub redact: bool,
    pub level: Level,
    pub fallbacks: Vec<String>,
    pub reasons: Vec<String>,
    pub trace: Vec<TraceEntry>,
}

impl Decision {
    /// Renders the decision. `policy` must be the one it was made with.
    pub fn explain(&self, policy: &Policy) -> Explanation {
        let mut reasons = self.level_reasons();
        let trace: Vec<TraceEntry> = self.trace.iter().map(|c| entry(c, self, policy)).collect();
        match &self.outcome {
            Outcome::Route { target, fallbacks } => {
                let b = &policy.backends[target.index];
                let mut why = format!(
                    "routed to {} ({} {}, {} hosting",
                    b.name, b.profile.provider, b.profile.model, b.profile.hosting
                );
                if let Some(j) = &b.profile.jurisdiction {
                    if b.profile.hosting != Hosting::Embedded {
                        why.push_str(&format!(" in {j}"));
                    }
                }
                why.push_str(&format!("): the most preferred of {} allowed backend(s)", 1 + fallbacks.len()));
                reasons.push(why);
                if target.redact {
                    reasons.push(self.redaction_reason(policy));
                }
                if !fallbacks.is_empty() {
                    let names: Vec<&str> = fallbacks.iter().map(|f| &*f.name).collect();
                    reasons.push(format!("fallbacks, in order: {}", names.join(", ")));
                }
                Explanation {
                    decision: "route",
                    backend: Some(b.name.to_string()),
                    redact: target.redact,
                    level: self.level,
                    fallbacks: fallbacks.iter().map(|f| f.name.to_string()).collect(),
                    reasons,
                    trace,
                }
            }
            Outcome::Deny { reasons: why } => {
                for r in why {
                    match r {
                        DenyReason::UnknownTenant => reasons.push("the tenant is not configured".into()),
                        DenyReason::EntityDenied(k) => {
                            reasons.push(format!("the request contains {k}, which policy denies outright"))
                        }
                        DenyReason::BudgetExhausted => reasons.push("the tenant's budget is exhausted".into()),
                        DenyReason::NoCompliantBackend => {
                            reasons.push(format!(
                                "no backend may receive {} data at level {} (on_no_backend = deny)",
                                self.purpose, self.level
                            ));
                            for t in &trace {
                                reasons.push(format!("{}: {}", t.backend, t.reasons.join("; ")));
                            }
                        }
                    }
                }
                Explanation {
                    decision: "deny",
                    backend: None,
                    redact: false,
                    level: self.level,
                    fallbacks: Vec::new(),
                    reasons,
                    trace,
                }
            }
        }
    }

    fn level_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.tenant.is_none() {
            return out;
        }
        if let Some((k, l)) = self.cause.query {
            out.push(format!("query contains {k}: level {l}"));
        }
        if let Some((i, l, by)) = self.cause.passage {
            match by {
                Some(k) => out.push(format!("retrieved passage {} contains {k}: level {l}", i + 1)),
                None => out.push(format!("retrieved passage {} is labelled {l}", i + 1)),
            }
        }
        if let Some(r) = self.cause.requested {
            out.push(format!("x-perimeter-level asks for at least {r}"));
        }
        if out.is_empty() {
            out.push("no sensitive data found and no labelled passages: level public".into());
        }
        out.push(format!("level: {}", self.level));
        out
    }

    fn redaction_reason(&self, _policy: &Policy) -> String {
        format!("pseudonymised before sending: required for API backends at level {} or by an entity rule, or asked for by the caller", self.level)
    }
}

fn entry(c: &Consideration, d: &Decision, policy: &Policy) -> TraceEntry {
    let b = &policy.backends[c.index];
    let p = &b.profile;
    let mut reasons = Vec::new();
    let has = |bit: u16| c.rejected & bit != 0;
    if has(reject::PURPOSE) {
        reasons.push(format!("does not serve {}", d.purpose));
    }
    if has(reject::MODEL) {
        reasons.push("not the requested model".to_string());
    }
    if has(reject::TENANT) {
        reasons.push("not in the tenant's backend list".to_string());
    }
    if has(reject::HOSTING) {
        reasons.push(format!("{} hosting is not allowed at level {}", p.hosting, d.level));
    }
    if has(reject::JURISDICTION) {
        let residency = d.tenant.map(|t| policy.tenants[t].residency_names.join(", ")).unwrap_or_default();
        reasons.push(format!(
            "jurisdiction {} is outside the tenant's residency ({residency})",
            p.jurisdiction.as_deref().unwrap_or("(none)")
        ));
    }
    if has(reject::RETENTION) {
        reasons.push(format!("retention {} is longer than level {} allows", p.retention, d.level));
    }
    if has(reject::TRAINING) {
        reasons.push(format!("the provider may train on data, which level {} forbids", d.level));
    }
    if has(reject::CERTIFICATION) {
        reasons.push(format!("lacks required certification(s): {}", policy.cert_names(c.missing_certs).join(", ")));
    }
    if has(reject::AVAILABILITY) {
        reasons.push(match b.availability {
            Availability::NotInRegion => {
                format!("model {} is not offered in region {}", p.model, p.region.as_deref().unwrap_or("(none)"))
            }
            _ => format!("availability of {} in its region is unknown", p.model),
        });
    }
    if has(reject::HEALTH) {
        if let Health::Unhealthy(u) = c.health {
            reasons.push(format!("unhealthy: {}", u.as_str()));
        }
    }
    if has(reject::BUDGET) {
        reasons.push("the tenant's budget does not allow it".to_string());
    }
    if c.rejected == 0 {
        let mut why = format!("{} hosting allowed at level {}", p.hosting, d.level);
        if p.hosting != Hosting::Embedded {
            why.push_str(&format!(", jurisdiction {} within residency", p.jurisdiction.as_deref().unwrap_or("?")));
            why.push_str(&format!(", retention {}", p.retention));
        }
        reasons.push(why);
    }
    TraceEntry {
        backend: b.name.to_string(),
        hosting: p.hosting,
        verdict: if c.rejected == 0 { "allowed" } else { "rejected" },
        redact: c.rejected == 0 && c.redact,
        reasons,
    }
}
