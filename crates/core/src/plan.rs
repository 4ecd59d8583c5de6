//! Classification and the access decision for one request.
//!
//! `plan` turns what the pipeline knows (the kinds of sensitive data in the caller's text, the
//! retrieved passages with their labels and stored findings, the level the caller asked for) into
//! the policy's facts, and asks the policy where the request may go. The level itself is computed
//! by the policy, because entity rules may change the level a kind implies (per tenant).

use std::collections::BTreeMap;

use perimeter_policy::{decide, Budgets, Decision, Explanation, Facts, Health, KindSet, PassageFacts, Policy, Purpose};
use perimeter_types::{EntityKind, Level, Passage};

/// What a request touches and what the policy decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    pub explanation: Explanation,
    /// Sensitive data in the caller's text: kind → count.
    pub query_entities: BTreeMap<EntityKind, u32>,
    /// Sensitive data in the retrieved passages: kind → count.
    pub passage_entities: BTreeMap<EntityKind, u32>,
}

impl Plan {
    pub fn level(&self) -> Level {
        self.decision.level
    }
}

/// The request side of a plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub tenant: &'a str,
    pub purpose: Purpose,
    pub query_entities: &'a BTreeMap<EntityKind, u32>,
    pub passages: &'a [Passage],
    pub requested_level: Option<Level>,
    pub requested_model: Option<&'a str>,
    pub client_redact: bool,
}

/// Classifies the request and decides where it may go.
pub fn plan(request: &PlanRequest<'_>, policy: &Policy, health: &[Health], budgets: &Budgets) -> Plan {
    let facts_passages: Vec<PassageFacts> = request
        .passages
        .iter()
        .map(|p| PassageFacts { label: p.label, kinds: p.entities.keys().copied().collect() })
        .collect();
    let facts = Facts {
        tenant: request.tenant,
        purpose: request.purpose,
        query: request.query_entities.keys().copied().collect::<KindSet>(),
        passages: &facts_passages,
        requested_level: request.requested_level,
        requested_model: request.requested_model,
        client_redact: request.client_redact,
    };
    let decision = decide(&facts, policy, health, budgets);
    let explanation = decision.explain(policy);
    let mut passage_entities = BTreeMap::new();
    for p in request.passages {
        for (kind, n) in &p.entities {
            *passage_entities.entry(*kind).or_insert(0) += n;
        }
    }
    Plan { decision, explanation, query_entities: request.query_entities.clone(), passage_entities }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_policy::{BackendProfile, Hosting, PolicyInput, Provider, Retention};
    use perimeter_types::DocumentId;
    use std::collections::BTreeSet;

    fn passage(label: Level, entities: &[(EntityKind, u32)]) -> Passage {
        Passage {
            level: label,
            entities: entities.iter().copied().collect(),
            injection: Default::default(),
            chunk_id: "c".into(),
            document_id: DocumentId("d".into()),
            source: "s".into(),
            title: "t".into(),
            collection: "default".into(),
            label,
            text: "x".into(),
            score: 0.0,
        }
    }

    fn policy() -> Policy {
        let backend = |name: &str, hosting, provider| BackendProfile {
            name: name.into(),
            hosting,
            provider,
            model: "m".into(),
            region: None,
            jurisdiction: (hosting != Hosting::Embedded).then(|| "eu".into()),
            retention: Retention::None,
            trains_on_data: false,
            certifications: BTreeSet::new(),
            priority: if hosting == Hosting::Api { 10 } else { 1000 },
            purposes: BTreeSet::from([Purpose::Chat]),
        };
        Policy::build(PolicyInput {
            backends: vec![
                backend("api", Hosting::Api, Provider::Openai),
                backend("embedded", Hosting::Embedded, Provider::Embedded),
            ],
            ..PolicyInput::default()
        })
        .unwrap()
    }

    fn request<'a>(
        q: &'a BTreeMap<EntityKind, u32>,
        passages: &'a [Passage],
        requested: Option<Level>,
    ) -> PlanRequest<'a> {
        PlanRequest {
            tenant: "default",
            purpose: Purpose::Chat,
            query_entities: q,
            passages,
            requested_level: requested,
            requested_model: None,
            client_redact: false,
        }
    }

    #[test]
    fn level_is_the_maximum_and_the_header_never_lowers_it() {
        let p = policy();
        let health = [Health::Healthy, Health::Healthy];
        let none = BTreeMap::new();
        let passages = [passage(Level::Internal, &[]), passage(Level::Restricted, &[]), passage(Level::Public, &[])];
        let plan_of = |passages: &[Passage], r| plan(&request(&none, passages, r), &p, &health, &Budgets::default());
        assert_eq!(plan_of(&passages, None).level(), Level::Restricted);
        assert_eq!(plan_of(&passages, Some(Level::Public)).level(), Level::Restricted);
        assert_eq!(plan_of(&[passage(Level::Internal, &[])], Some(Level::Confidential)).level(), Level::Confidential);
        assert_eq!(plan_of(&[], None).level(), Level::Public);
    }

    #[test]
    fn restricted_passages_stay_in_process_and_public_ones_may_use_the_api() {
        let p = policy();
        let health = [Health::Healthy, Health::Healthy];
        let none = BTreeMap::new();
        let restricted = [passage(Level::Internal, &[(EntityKind::Iban, 1)])];
        let plan = plan(&request(&none, &restricted, None), &p, &health, &Budgets::default());
        assert_eq!(plan.level(), Level::Restricted);
        assert_eq!(plan.explanation.backend.as_deref(), Some("embedded"));
        assert_eq!(plan.passage_entities, BTreeMap::from([(EntityKind::Iban, 1)]));
        assert!(plan.explanation.reasons.iter().any(|r| r.contains("IBAN")), "{:?}", plan.explanation.reasons);
        let public = [passage(Level::Public, &[])];
        let plan = super::plan(&request(&none, &public, None), &p, &health, &Budgets::default());
        assert_eq!(plan.explanation.backend.as_deref(), Some("api"));
        assert_eq!(plan.explanation.fallbacks, vec!["embedded".to_string()]);
    }
}
