//! Classification and the routing plan.
//!
//! Until the policy engine exists there is exactly one backend, the embedded model, and the plan
//! routes every level to it. The shape (level, decision, backend, reasons) is the one the policy
//! engine will fill in, so the response's `perimeter` object and later the audit log do not change.

use perimeter_types::{Level, Passage};
use serde::Serialize;

/// What a request touches, reduced to one level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub level: Level,
    /// Why the level is what it is, e.g. `passage label: restricted`.
    pub reasons: Vec<String>,
}

/// The level of a request is the maximum of every retrieved passage's label and the level a
/// client asked for with `x-perimeter-level`. The client can raise the level, never lower it.
pub fn classify(passages: &[Passage], requested: Option<Level>) -> Classification {
    let mut level = Level::Public;
    let mut reasons = Vec::new();
    if let Some(max) = passages.iter().map(|p| p.label).max() {
        if max > level {
            level = max;
        }
        reasons.push(format!("highest retrieved passage label: {max}"));
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
        reasons.push("no passages and no requested level".to_string());
    }
    Classification { level, reasons }
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
        let passages = [passage(Level::Internal), passage(Level::Restricted), passage(Level::Public)];
        assert_eq!(classify(&passages, None).level, Level::Restricted);
        assert_eq!(classify(&passages, Some(Level::Public)).level, Level::Restricted);
        assert_eq!(classify(&[passage(Level::Internal)], Some(Level::Confidential)).level, Level::Confidential);
        assert_eq!(classify(&[], None).level, Level::Public);
    }

    #[test]
    fn plan_routes_to_the_embedded_backend_with_reasons() {
        let c = classify(&[passage(Level::Confidential)], None);
        let p = plan(&c, "embedded");
        assert_eq!(p.decision, Decision::Route);
        assert_eq!(p.backend, "embedded");
        assert_eq!(p.level, Level::Confidential);
        assert!(p.reasons.iter().any(|r| r.contains("confidential")));
    }
}
