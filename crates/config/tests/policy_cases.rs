//! Table-driven access decisions: every file in tests/data/policy/cases is a configuration, a
//! request and the decision it must produce (format in tests/data/policy/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use perimeter_config::Config;
use perimeter_policy::{decide, BudgetState, Budgets, Facts, Health, KindSet, PassageFacts, Purpose, Unhealthy};
use perimeter_types::{EntityKind, Level};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    config: String,
    request: Request,
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Request {
    tenant: Option<String>,
    #[serde(default)]
    query: Vec<EntityKind>,
    #[serde(default)]
    passages: Vec<P>,
    level: Option<Level>,
    model: Option<String>,
    purpose: Option<Purpose>,
    #[serde(default)]
    redact: bool,
    #[serde(default)]
    health: BTreeMap<String, String>,
    budget: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    label: Level,
    #[serde(default)]
    kinds: Vec<EntityKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    backend: Option<String>,
    redact: Option<bool>,
    level: Option<Level>,
    fallbacks: Option<Vec<String>>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    rejected: BTreeMap<String, String>,
}

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/policy/cases")
}

fn run(name: &str, case: &Case) -> Result<(), String> {
    let config = Config::parse(&case.config, name).map_err(|e| format!("config: {e}"))?;
    let policy = &config.policy;
    let mut health = vec![Health::Healthy; policy.backends().len()];
    for (backend, state) in &case.request.health {
        let i = policy.backend_index(backend).ok_or_else(|| format!("health names unknown backend {backend}"))?;
        health[i] = match state.as_str() {
            "down" => Health::Unhealthy(Unhealthy::CircuitOpen),
            "up" => Health::Healthy,
            other => return Err(format!("health state {other}")),
        };
    }
    let tenant = case.request.tenant.clone().unwrap_or_else(|| "default".into());
    let mut budgets = Budgets::default();
    let budget = match case.request.budget.as_deref() {
        None | Some("available") => BudgetState::Available,
        Some("api_exhausted") => BudgetState::ApiExhausted,
        Some("exhausted") => BudgetState::Exhausted,
        Some(other) => return Err(format!("budget {other}")),
    };
    budgets.0.insert(tenant.clone(), budget);
    let passages: Vec<PassageFacts> = case
        .request
        .passages
        .iter()
        .map(|p| PassageFacts { label: p.label, kinds: p.kinds.iter().copied().collect() })
        .collect();
    let facts = Facts {
        tenant: &tenant,
        purpose: case.request.purpose.unwrap_or(Purpose::Chat),
        query: case.request.query.iter().copied().collect::<KindSet>(),
        passages: &passages,
        requested_level: case.request.level,
        requested_model: case.request.model.as_deref(),
        client_redact: case.request.redact,
    };
    let decision = decide(&facts, policy, &health, &budgets);
    let e = decision.explain(policy);
    let got = serde_json::to_string_pretty(&e).unwrap();
    let fail = |what: String| Err(format!("{what}\ndecision:\n{got}"));
    if e.decision != case.expect.decision {
        return fail(format!("decision {} != {}", e.decision, case.expect.decision));
    }
    if let Some(b) = &case.expect.backend {
        if e.backend.as_ref() != Some(b) {
            return fail(format!("backend {:?} != {b}", e.backend));
        }
    }
    if let Some(r) = case.expect.redact {
        if e.redact != r {
            return fail(format!("redact {} != {r}", e.redact));
        }
    }
    if let Some(l) = case.expect.level {
        if e.level != l {
            return fail(format!("level {} != {l}", e.level));
        }
    }
    if let Some(f) = &case.expect.fallbacks {
        if &e.fallbacks != f {
            return fail(format!("fallbacks {:?} != {f:?}", e.fallbacks));
        }
    }
    for want in &case.expect.reasons {
        if !e.reasons.iter().any(|r| r.contains(want.as_str())) {
            return fail(format!("no reason contains {want:?}"));
        }
    }
    for (backend, want) in &case.expect.rejected {
        let Some(t) = e.trace.iter().find(|t| &t.backend == backend) else {
            return fail(format!("{backend} is not in the trace"));
        };
        if t.verdict != "rejected" || !t.reasons.iter().any(|r| r.contains(want.as_str())) {
            return fail(format!("{backend} was not rejected with {want:?}"));
        }
    }
    // Invariants that hold for every case.
    if e.decision == "route" {
        let chosen = e.trace.iter().find(|t| Some(&t.backend) == e.backend.as_ref()).unwrap();
        if chosen.verdict != "allowed" {
            return fail("the chosen backend is not allowed in the trace".into());
        }
        for f in &e.fallbacks {
            if e.trace.iter().find(|t| &t.backend == f).map(|t| t.verdict) != Some("allowed") {
                return fail(format!("fallback {f} is not allowed"));
            }
        }
    } else if e.trace.iter().any(|t| t.verdict == "allowed") {
        return fail("a deny with an allowed backend".into());
    }
    Ok(())
}

#[test]
fn every_policy_case_decides_as_expected() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 16, "expected the case files, found {}", entries.len());
    let mut failures = Vec::new();
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let case: Case =
            toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(why) = run(&name, &case) {
            failures.push(format!("{name} ({}): {why}", case.description));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn a_case_that_expects_the_wrong_backend_fails() {
    // The harness itself must be able to fail.
    let text = std::fs::read_to_string(cases_dir().join("02-restricted-passage-stays-local.toml")).unwrap();
    let mut case: Case = toml::from_str(&text).unwrap();
    case.expect.backend = Some("openai-eu".into());
    assert!(run("mutated", &case).is_err());
}
