//! Properties of the access decision over random policies and requests:
//! - raising the level or adding an entity never widens the allowed set;
//! - no route leaves the tenant's residency, uses a hosting the level forbids, or an unhealthy
//!   backend;
//! - an empty allowed set is always a deny, and a deny allows nothing;
//! - the decision is deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use perimeter_policy::{
    decide, AvailabilitySpec, BackendProfile, BudgetState, Budgets, EntityAction, EntityRuleSpec, Facts, Health,
    Hosting, KindSet, LevelRuleSpec, LevelsSpec, PassageFacts, Policy, PolicyInput, PolicySpec, Provider, Purpose,
    Retention, TenantSpec, Unhealthy,
};
use perimeter_types::{EntityKind, Level};
use proptest::prelude::*;

const JURISDICTIONS: [&str; 3] = ["eu", "us", "uk"];
const CERTS: [&str; 3] = ["hipaa_baa", "iso27001", "soc2"];
const KINDS: [EntityKind; 8] = [
    EntityKind::Email,
    EntityKind::Phone,
    EntityKind::Iban,
    EntityKind::SwiftBic,
    EntityKind::MedicalCondition,
    EntityKind::AwsSecretKey,
    EntityKind::Person,
    EntityKind::IpAddress,
];

fn pick<T: Copy>(items: &[T], mask: u32) -> Vec<T> {
    items.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| *t).collect()
}

fn retention(i: u8) -> Retention {
    [Retention::None, Retention::AbuseMonitoring30d, Retention::ProviderDefault][i as usize % 3]
}

fn level(i: u8) -> Level {
    Level::ALL[i as usize % 4]
}

#[derive(Debug, Clone)]
struct Generated {
    input: PolicyInput,
    /// The global rules after making them monotone, as hosting sets per level.
    rules: [LevelRuleSpec; 4],
}

fn backend_strategy() -> impl Strategy<Value = (u8, u8, u8, bool, u32, i32, u8, u8, u8)> {
    (0u8..3, 0u8..3, 0u8..3, any::<bool>(), 0u32..8, 0i32..5, 1u8..4, 0u8..2, 0u8..2)
}

fn rule_strategy() -> impl Strategy<Value = (u32, u8, bool, bool, u32)> {
    (
        prop_oneof![2 => Just(0b111u32), 1 => 0u32..8],
        0u8..3,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.9),
        prop_oneof![6 => Just(0u32), 1 => 0u32..8],
    )
}

fn policy_strategy() -> impl Strategy<Value = Generated> {
    (
        prop::collection::vec(backend_strategy(), 1..7),
        prop::collection::vec((0u32..8, any::<bool>(), prop::option::of(0u32..64)), 1..4),
        prop::collection::vec(rule_strategy(), 4),
        prop::collection::vec(
            (
                0u32..256,
                prop::option::of(0u8..4),
                prop::option::of(prop::bool::weighted(0.2)),
                prop::option::of(prop_oneof![3 => Just(0u32), 1 => 0u32..8]),
            ),
            0..4,
        ),
        prop::collection::vec((0u8..2, 0u32..4), 0..3),
    )
        .prop_map(|(bs, ts, rs, es, avail)| {
            let mut backends = Vec::new();
            for (i, (h, j, r, trains, certs, priority, purposes, region, model)) in bs.into_iter().enumerate() {
                let hosting = Hosting::ALL[h as usize];
                let provider = match hosting {
                    Hosting::Api => Provider::Openai,
                    Hosting::SelfHosted => Provider::OpenaiCompatible,
                    Hosting::Embedded => Provider::Embedded,
                };
                backends.push(BackendProfile {
                    name: format!("b{i}"),
                    hosting,
                    provider,
                    model: format!("m{model}"),
                    region: Some(format!("r{region}")),
                    jurisdiction: Some(JURISDICTIONS[j as usize].to_string()),
                    retention: retention(r),
                    trains_on_data: trains,
                    certifications: pick(&CERTS, certs).into_iter().map(String::from).collect(),
                    priority,
                    purposes: pick(&[Purpose::Chat, Purpose::Embeddings], u32::from(purposes)).into_iter().collect(),
                });
            }
            let names: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
            let mut tenants = Vec::new();
            for (i, (res, any_res, allow)) in ts.into_iter().enumerate() {
                let mut residency: Vec<String> = pick(&JURISDICTIONS, res).into_iter().map(String::from).collect();
                if any_res || residency.is_empty() {
                    residency = vec!["any".into()];
                }
                let backends = allow.map(|m| {
                    names.iter().enumerate().filter(|(k, _)| m & (1 << k) != 0).map(|(_, n)| n.clone()).collect()
                });
                tenants.push(TenantSpec { name: format!("t{i}"), residency, backends, ..TenantSpec::default() });
            }
            // Monotone by construction: each level is the one below narrowed by a random rule.
            let mut rules: Vec<LevelRuleSpec> = Vec::new();
            let mut prev = (0b111u32, Retention::ProviderDefault, false, true, 0u32);
            for (hosting, ret, redact, training, certs) in rs {
                let cur = (
                    prev.0 & (hosting | if rules.is_empty() { 0b111 } else { 0 }),
                    prev.1.min(retention(ret)),
                    prev.2 || redact,
                    prev.3 && training,
                    prev.4 | certs,
                );
                rules.push(LevelRuleSpec {
                    hosting: Some(pick(&Hosting::ALL, cur.0)),
                    require_retention: Some(cur.1),
                    require_redaction_for_api: Some(cur.2),
                    allow_training: Some(cur.3),
                    require_certifications: Some(pick(&CERTS, cur.4).into_iter().map(String::from).collect()),
                });
                prev = cur;
            }
            let entity = es
                .into_iter()
                .map(|(kinds, lvl, action, certs)| {
                    let mut kinds: Vec<String> =
                        pick(&KINDS, kinds).into_iter().map(|k| k.as_str().to_string()).collect();
                    if kinds.is_empty() {
                        kinds.push("PHONE".into());
                    }
                    let level = lvl.map(level);
                    let action = action.map(|deny| if deny { EntityAction::Deny } else { EntityAction::Redact });
                    let mut require_certifications =
                        certs.map(|c| pick(&CERTS, c).into_iter().map(String::from).collect());
                    if level.is_none() && action.is_none() && require_certifications.is_none() {
                        require_certifications = Some(vec!["soc2".to_string()]);
                    }
                    EntityRuleSpec { kinds, level, action, require_certifications }
                })
                .collect();
            let availability = avail
                .into_iter()
                .map(|(model, regions)| AvailabilitySpec {
                    provider: Provider::Openai,
                    model: format!("m{model}"),
                    regions: {
                        let r: Vec<String> = pick(&["r0", "r1"], regions).into_iter().map(String::from).collect();
                        if r.is_empty() {
                            vec!["r0".into()]
                        } else {
                            r
                        }
                    },
                })
                .collect();
            let [public, internal, confidential, restricted]: [LevelRuleSpec; 4] = rules.clone().try_into().unwrap();
            let policy = PolicySpec {
                on_no_backend: Some("deny".into()),
                require_known_availability: None,
                level: Some(LevelsSpec {
                    public: Some(public),
                    internal: Some(internal),
                    confidential: Some(confidential),
                    restricted: Some(restricted),
                }),
                entity: Some(entity),
            };
            Generated {
                input: PolicyInput { backends, tenants, policy, availability },
                rules: rules.try_into().unwrap(),
            }
        })
}

#[derive(Debug, Clone)]
struct GenFacts {
    tenant: u8,
    purpose: bool,
    query: u32,
    passages: Vec<(u8, u32)>,
    requested: Option<u8>,
    health: Vec<bool>,
    budget: u8,
    redact: bool,
}

fn facts_strategy() -> impl Strategy<Value = GenFacts> {
    (
        prop_oneof![9 => 0u8..3, 1 => Just(9u8)],
        any::<bool>(),
        prop_oneof![1 => Just(0u32), 1 => 0u32..256],
        prop::collection::vec((0u8..4, prop_oneof![1 => Just(0u32), 1 => 0u32..256]), 0..3),
        prop::option::of(0u8..4),
        prop::collection::vec(prop::bool::weighted(0.8), 8),
        0u8..6,
        any::<bool>(),
    )
        .prop_map(|(tenant, purpose, query, passages, requested, health, budget, redact)| GenFacts {
            tenant,
            purpose,
            query,
            passages,
            requested,
            health,
            budget,
            redact,
        })
}

fn kinds(mask: u32) -> KindSet {
    pick(&KINDS, mask).into_iter().collect()
}

struct World {
    policy: Policy,
    health: Vec<Health>,
    budgets: Budgets,
    tenant: String,
    passages: Vec<PassageFacts>,
}

fn world(g: &Generated, f: &GenFacts) -> Option<World> {
    let policy = Policy::build(g.input.clone()).ok()?;
    let n = policy.backends().len();
    let health = (0..n)
        .map(|i| if f.health[i % 8] { Health::Healthy } else { Health::Unhealthy(Unhealthy::CircuitOpen) })
        .collect();
    // Mostly a configured tenant; index 9 stands for an unknown one.
    let n_tenants = g.input.tenants.len() as u8;
    let tenant = if f.tenant == 9 { "unknown".to_string() } else { format!("t{}", f.tenant % n_tenants) };
    let budget = match f.budget {
        0 => BudgetState::ApiExhausted,
        1 => BudgetState::Exhausted,
        _ => BudgetState::Available,
    };
    let mut budgets = Budgets::default();
    budgets.0.insert(tenant.clone(), budget);
    let passages = f.passages.iter().map(|&(l, k)| PassageFacts { label: level(l), kinds: kinds(k) }).collect();
    Some(World { policy, health, budgets, tenant, passages })
}

fn facts<'a>(w: &'a World, f: &GenFacts, query: KindSet, requested: Option<Level>) -> Facts<'a> {
    Facts {
        tenant: &w.tenant,
        purpose: if f.purpose { Purpose::Chat } else { Purpose::Embeddings },
        query,
        passages: &w.passages,
        requested_level: requested,
        requested_model: None,
        client_redact: f.redact,
    }
}

fn allowed(w: &World, facts: &Facts<'_>) -> BTreeSet<String> {
    decide(facts, &w.policy, &w.health, &w.budgets).allowed().into_iter().map(String::from).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn raising_the_level_never_widens_the_allowed_set(g in policy_strategy(), f in facts_strategy(), up in 0u8..4) {
        let Some(w) = world(&g, &f) else { return Ok(()) };
        let base = facts(&w, &f, kinds(f.query), f.requested.map(level));
        let d = decide(&base, &w.policy, &w.health, &w.budgets);
        let raised_level = d.level.max(level(up));
        let raised = facts(&w, &f, kinds(f.query), Some(raised_level));
        let wide = allowed(&w, &base);
        let narrow = allowed(&w, &raised);
        prop_assert!(narrow.is_subset(&wide), "raising {} -> {}: {:?} not within {:?}", d.level, raised_level, narrow, wide);
    }

    #[test]
    fn adding_an_entity_never_widens_the_allowed_set(g in policy_strategy(), f in facts_strategy(), extra in 0usize..8) {
        let Some(w) = world(&g, &f) else { return Ok(()) };
        let base = facts(&w, &f, kinds(f.query), f.requested.map(level));
        let mut more = kinds(f.query);
        more.insert(KINDS[extra]);
        let added = facts(&w, &f, more, f.requested.map(level));
        let wide = allowed(&w, &base);
        let narrow = allowed(&w, &added);
        prop_assert!(narrow.is_subset(&wide), "adding {:?}: {:?} not within {:?}", KINDS[extra], narrow, wide);
    }

    #[test]
    fn routes_respect_residency_hosting_health_and_terms(g in policy_strategy(), f in facts_strategy()) {
        let Some(w) = world(&g, &f) else { return Ok(()) };
        let fa = facts(&w, &f, kinds(f.query), f.requested.map(level));
        let d = decide(&fa, &w.policy, &w.health, &w.budgets);
        let tenant = g.input.tenants.iter().find(|t| t.name == w.tenant);
        let rule = &g.rules[d.level as usize];
        for t in d.targets() {
            let b = w.policy.backends().nth(t.index).unwrap();
            let tenant = tenant.expect("a route for an unknown tenant");
            let residency = &tenant.residency;
            prop_assert!(
                b.hosting == Hosting::Embedded
                    || residency.iter().any(|r| r == "any")
                    || residency.iter().any(|r| Some(r) == b.jurisdiction.as_ref()),
                "{} in {:?} outside residency {:?}", b.name, b.jurisdiction, residency
            );
            prop_assert!(rule.hosting.as_ref().unwrap().contains(&b.hosting), "{} hosting {} forbidden at {}", b.name, b.hosting, d.level);
            prop_assert!(b.retention <= rule.require_retention.unwrap(), "{} retention", b.name);
            prop_assert!(!b.trains_on_data || rule.allow_training.unwrap(), "{} trains", b.name);
            prop_assert_eq!(w.health[t.index], Health::Healthy);
            prop_assert!(b.purposes.contains(&fa.purpose));
            if let Some(list) = &tenant.backends {
                prop_assert!(list.contains(&b.name));
            }
            if rule.require_redaction_for_api.unwrap() && b.hosting == Hosting::Api {
                prop_assert!(t.redact, "{} must be pseudonymised at {}", b.name, d.level);
            }
            let budget = w.budgets.state(&w.tenant);
            prop_assert!(budget != BudgetState::Exhausted);
            prop_assert!(!(budget == BudgetState::ApiExhausted && b.hosting == Hosting::Api));
        }
    }

    #[test]
    fn empty_allowed_set_is_always_a_deny(g in policy_strategy(), f in facts_strategy()) {
        let Some(w) = world(&g, &f) else { return Ok(()) };
        let fa = facts(&w, &f, kinds(f.query), f.requested.map(level));
        let d = decide(&fa, &w.policy, &w.health, &w.budgets);
        let any_allowed = d.trace.iter().any(|c| c.rejected == 0);
        prop_assert_eq!(d.is_route(), any_allowed);
        prop_assert_eq!(d.targets().is_empty(), !d.is_route());
        prop_assert_eq!(d.targets().len(), d.trace.iter().filter(|c| c.rejected == 0).count());
        let again = decide(&fa, &w.policy, &w.health, &w.budgets);
        prop_assert_eq!(&d, &again);
        let e = d.explain(&w.policy);
        prop_assert_eq!(e.decision == "deny", !d.is_route());
        prop_assert!(!e.reasons.is_empty());
    }
}

#[test]
fn unknown_tenant_is_denied() {
    let policy = Policy::build(PolicyInput::default()).unwrap();
    let d = decide(&Facts::new("nobody", Purpose::Chat), &policy, &[], &Budgets::default());
    assert!(!d.is_route());
    assert_eq!(d.level, Level::Restricted);
}

#[test]
fn the_generators_produce_valid_policies_with_both_outcomes() {
    // Guards against vacuous properties: most generated policies must build, and both routes
    // and denies must occur.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut built, mut routes, mut denies) = (0, 0, 0);
    for _ in 0..1000 {
        let g = policy_strategy().new_tree(&mut runner).unwrap().current();
        let f = facts_strategy().new_tree(&mut runner).unwrap().current();
        let Some(w) = world(&g, &f) else { continue };
        built += 1;
        let fa = facts(&w, &f, kinds(f.query), f.requested.map(level));
        if decide(&fa, &w.policy, &w.health, &w.budgets).is_route() {
            routes += 1;
        } else {
            denies += 1;
        }
    }
    assert!(built > 900, "only {built} of 1000 generated policies built");
    assert!(routes > 100 && denies > 100, "routes {routes}, denies {denies}");
}
