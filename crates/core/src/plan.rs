//! Classification and the routing plan.
//!
//! Until the policy engine exists there is exactly one backend, the embedded model, and the plan
//! routes every level to it. The shape (level, decision, backend, reasons) is the one the policy
//! engine will fill in, so the response's `perimeter` object and later the audit log do not change.

use std::collections::BTreeMap;

use perimeter_types::{EntityKind, Level, Passage};
use serde::Serialize;

/// What a request touches, reduced to one level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub level: Level,
    /// Sensitive data in the query: kind → count.
    pub query_entities: BTreeMap<EntityKind, u32>,
    /// Sensitive data in the retrieved passages: kind → count.
    pub passage_entities: BTreeMap<EntityKind, u32>,
    /// Why the level is what it is, e.g. `passage level: restricted`.
    pub reasons: Vec<String>,
}

/// The level of a request is the maximum of: the default level of every kind of sensitive data
/// found in the query, every retrieved passage's effective level (its document's label raised by
/// what was found in the document), and the level a client asked for with `x-perimeter-level`.
/// The client can raise the level, never lower it.
pub fn classify(
    query_entities: &BTreeMap<EntityKind, u32>,
    passages: &[Passage],
    requested: Option<Level>,
) -> Classification {
    let mut level = Level::Public;
    let mut reasons = Vec::new();
    if let Some((kind, found)) = query_entities.keys().map(|k| (*k, k.default_level())).max_by_key(|(_, l)| *l) {
        level = level.max(found);
        let kinds: Vec<&str> = query_entities.keys().map(|k| k.as_str()).collect();
        reasons.push(format!("query contains {}: {found} (from {kind})", kinds.join(", ")));
    }
    if let Some(max) = passages.iter().map(|p| p.level).max() {
        level = level.max(max);
        reasons.push(format!("highest retrieved passage level: {max}"));
    }
    if let Some(requested) = requested {
        if requested > level {
            level = requested;
            reasons.push(format!("raised by x-perimeter-level: {requested}"));
        } else {
            reasons.push(format!("x-perimeter-level {requested} does not lower {level}"));
        }
    }
    if reasons.is_empty() {
        reasons.push("no sensitive data in the query, no passages, no requested level".to_string());
    }
    let mut passage_entities = BTreeMap::new();
    for p in passages {
        for (kind, n) in &p.entities {
            *passage_entities.entry(*kind).or_insert(0) += n;
        }
    }
    Classification { level, query_entities: query_entities.clone(), passage_entities, reasons }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Route,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub level: Level,
    pub decision: Decision,
    pub backend: String,
    pub reasons: Vec<String>,
}

/// Routes the request. With only the embedded backend configured, every level may use it: the
/// text never leaves the process.
pub fn plan(classification: &Classification, embedded_backend: &str) -> Plan {
    let mut reasons = classification.reasons.clone();
    reasons.push(format!("backend {embedded_backend}: embedded model, data stays in-process; allowed at every level"));
    Plan { level: classification.level, decision: Decision::Route, backend: embedded_backend.to_string(), reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_types::DocumentId;

    fn passage(label: Level) -> Passage {
        Passage {
            level: label,
            entities: BTreeMap::new(),
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

    #[test]
    fn level_is_the_maximum_and_header_never_lowers() {
        let none = BTreeMap::new();
        let passages = [passage(Level::Internal), passage(Level::Restricted), passage(Level::Public)];
        assert_eq!(classify(&none, &passages, None).level, Level::Restricted);
        assert_eq!(classify(&none, &passages, Some(Level::Public)).level, Level::Restricted);
        assert_eq!(classify(&none, &[passage(Level::Internal)], Some(Level::Confidential)).level, Level::Confidential);
        assert_eq!(classify(&none, &[], None).level, Level::Public);
    }

    #[test]
    fn findings_in_the_query_raise_the_level() {
        let query = BTreeMap::from([(EntityKind::Email, 1), (EntityKind::Iban, 2)]);
        let c = classify(&query, &[passage(Level::Internal)], None);
        assert_eq!(c.level, Level::Restricted);
        assert!(c.reasons[0].contains("EMAIL, IBAN") && c.reasons[0].contains("restricted"), "{:?}", c.reasons);
        let mut p = passage(Level::Internal);
        p.entities = BTreeMap::from([(EntityKind::Person, 3)]);
        let c = classify(&BTreeMap::new(), &[p.clone(), p], None);
        assert_eq!(c.passage_entities, BTreeMap::from([(EntityKind::Person, 6)]));
    }

    #[test]
    fn plan_routes_to_the_embedded_backend_with_reasons() {
        let c = classify(&BTreeMap::new(), &[passage(Level::Confidential)], None);
        let p = plan(&c, "embedded");
        assert_eq!(p.decision, Decision::Route);
        assert_eq!(p.backend, "embedded");
        assert_eq!(p.level, Level::Confidential);
        assert!(p.reasons.iter().any(|r| r.contains("confidential")));
    }
}
