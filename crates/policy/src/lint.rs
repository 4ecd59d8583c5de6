//! Warnings about a valid policy that probably does not say what its author meant: levels or
//! tenants nothing can serve, rules that can never match, backends nothing allows.

use perimeter_types::Level;

use crate::decide::{decide, Budgets, Facts, Health};
use crate::model::Policy;
use crate::{Hosting, Purpose};

/// Every warning for `policy`, assuming all backends healthy and budgets available.
pub fn lint(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    let healthy = vec![Health::Healthy; policy.backends.len()];
    let budgets = Budgets::default();
    let leaves = policy.backends.iter().any(|b| b.profile.hosting != Hosting::Embedded);
    if !policy.tenants_declared && leaves {
        out.push(
            "no [[tenant]] is declared: the default tenant may have its data processed in any jurisdiction; declare it with a residency".into(),
        );
    }
    if policy.tenants_declared && !policy.tenant_index.contains_key(crate::DEFAULT_TENANT) {
        out.push(format!(
            "no tenant is named \"{}\": requests without an API key that names a tenant belong to it, and will be refused",
            crate::DEFAULT_TENANT
        ));
    }
    let mut ever_allowed = vec![false; policy.backends.len()];
    for t in &policy.tenants {
        for purpose in [Purpose::Chat, Purpose::Embeddings] {
            if !policy.backends.iter().any(|b| b.purposes & purpose.bit() != 0) {
                continue;
            }
            let mut unserved = Vec::new();
            for level in Level::ALL {
                let facts = Facts { requested_level: Some(level), ..Facts::new(&t.name, purpose) };
                let d = decide(&facts, policy, &healthy, &budgets);
                if d.is_route() {
                    for target in d.targets() {
                        ever_allowed[target.index] = true;
                    }
                } else {
                    unserved.push(level.as_str());
                }
            }
            if !unserved.is_empty() && purpose == Purpose::Chat {
                out.push(format!(
                    "tenant {}: no backend can serve {purpose} at level {}; such requests will be refused",
                    t.name,
                    unserved.join(", ")
                ));
            }
        }
        for (i, b) in policy.backends.iter().enumerate() {
            let named = t.allowed[i] && t.allowed.iter().any(|a| !a);
            if named && b.profile.hosting != Hosting::Embedded && t.residency & b.jurisdiction == 0 {
                out.push(format!(
                    "tenant {}: lists backend {} but its jurisdiction is outside the tenant's residency, so it can never be used",
                    t.name, b.name
                ));
            }
        }
    }
    for (i, b) in policy.backends.iter().enumerate() {
        if !ever_allowed[i] {
            out.push(format!(
                "backend {}: no level of any tenant allows it (check its hosting, jurisdiction, retention, training, certifications and availability)",
                b.name
            ));
        }
    }
    for (i, a) in policy.availability.iter().enumerate() {
        if !policy.backends.iter().any(|b| b.profile.provider == a.provider && b.profile.model == a.model) {
            out.push(format!(
                "availability[{i}]: no backend uses {} model {}, so this entry never matches",
                a.provider, a.model
            ));
        }
    }
    out
}
