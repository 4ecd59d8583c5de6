//! `decide()` with 20 backends and 4 tenants: the target is P50 ≤ 5 µs (BENCHMARKS.md).
//!
//! cargo bench -p perimeter-policy --bench decide
#![allow(clippy::panic)]

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use perimeter_policy::{
    decide, BackendProfile, Budgets, EntityAction, EntityRuleSpec, Facts, Health, Hosting, KindSet, PassageFacts,
    Policy, PolicyInput, PolicySpec, Provider, Purpose, Retention, TenantSpec,
};
use perimeter_types::{EntityKind, Level};

fn policy() -> Policy {
    let jurisdictions = ["eu", "us", "uk", "ch"];
    let mut backends = Vec::new();
    for i in 0..20 {
        let hosting = if i % 5 == 3 { Hosting::SelfHosted } else { Hosting::Api };
        backends.push(BackendProfile {
            name: format!("backend-{i:02}"),
            hosting,
            provider: if hosting == Hosting::Api { Provider::Openai } else { Provider::OpenaiCompatible },
            model: format!("model-{}", i % 4),
            region: Some(format!("region-{}", i % 3)),
            jurisdiction: Some(jurisdictions[i % 4].to_string()),
            retention: [Retention::None, Retention::AbuseMonitoring30d, Retention::ProviderDefault][i % 3],
            trains_on_data: i % 7 == 0,
            certifications: if i % 2 == 0 { BTreeSet::from(["hipaa_baa".to_string()]) } else { BTreeSet::new() },
            priority: i as i32,
            purposes: BTreeSet::from([Purpose::Chat]),
        });
    }
    backends.push(BackendProfile {
        name: "embedded".into(),
        hosting: Hosting::Embedded,
        provider: Provider::Embedded,
        model: "smollm2".into(),
        region: None,
        jurisdiction: None,
        retention: Retention::None,
        trains_on_data: false,
        certifications: BTreeSet::new(),
        priority: 1000,
        purposes: BTreeSet::from([Purpose::Chat, Purpose::Embeddings]),
    });
    let tenants = (0..4)
        .map(|t| TenantSpec {
            name: format!("tenant-{t}"),
            residency: vec![jurisdictions[t].to_string(), "eu".to_string()],
            ..TenantSpec::default()
        })
        .collect();
    let policy = PolicySpec {
        entity: Some(vec![
            EntityRuleSpec {
                kinds: vec!["phi".into()],
                require_certifications: Some(vec!["hipaa_baa".into()]),
                ..EntityRuleSpec::default()
            },
            EntityRuleSpec {
                kinds: vec!["secrets".into()],
                action: Some(EntityAction::Deny),
                ..EntityRuleSpec::default()
            },
            EntityRuleSpec { kinds: vec!["PHONE".into()], level: Some(Level::Internal), ..EntityRuleSpec::default() },
        ]),
        ..PolicySpec::default()
    };
    Policy::build(PolicyInput { backends, tenants, policy, availability: Vec::new() }).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let health = vec![Health::Healthy; policy.backends().len()];
    let budgets = Budgets::default();
    let passages: Vec<PassageFacts> = (0..5)
        .map(|i| PassageFacts {
            label: [Level::Public, Level::Internal][i % 2],
            kinds: [EntityKind::Phone, EntityKind::Email].into_iter().take(i % 3).collect(),
        })
        .collect();
    let query: KindSet = [EntityKind::Person].into_iter().collect();
    let facts = Facts { query, passages: &passages, ..Facts::new("tenant-2", Purpose::Chat) };
    c.bench_function("decide/20 backends, 4 tenants, 5 passages (confidential)", |b| {
        b.iter(|| decide(black_box(&facts), black_box(&policy), black_box(&health), black_box(&budgets)))
    });
    let public = Facts::new("tenant-1", Purpose::Chat);
    c.bench_function("decide/20 backends, 4 tenants, no passages (public)", |b| {
        b.iter(|| decide(black_box(&public), black_box(&policy), black_box(&health), black_box(&budgets)))
    });
    c.bench_function("decide + explain (rendering the reasons)", |b| {
        b.iter(|| decide(black_box(&facts), &policy, &health, &budgets).explain(&policy))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
