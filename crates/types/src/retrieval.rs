//! Retrieval vocabulary: documents, passages, citations, access filters and the `Retriever` seam.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{EntityKind, InjectionKind, Level};

/// The tenant every document and request belongs to until tenants are configured.
pub const DEFAULT_TENANT: &str = "default";

/// A document's stable id: derived from its tenant, collection and source, so re-ingesting the
/// same file addresses the same document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocumentId(pub String);

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may see what. Applied inside every search, never by trimming results afterwards.
///
/// A document is visible when it belongs to `tenant`, its collection is in `collections`
/// (when given), and it is open to the whole tenant (no groups) or shares a group with
/// `groups` (when given; `None` means the caller is not restricted by group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessFilter {
    pub tenant: String,
    pub collections: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

impl Default for AccessFilter {
    fn default() -> Self {
        Self { tenant: DEFAULT_TENANT.to_string(), collections: None, groups: None }
    }
}

impl AccessFilter {
    /// Whether a document with these attributes passes the filter.
    pub fn admits(&self, tenant: &str, collection: &str, groups: &[String]) -> bool {
        if tenant != self.tenant {
            return false;
        }
        if let Some(collections) = &self.collections {
            if !collections.iter().any(|c| c == collection) {
                return false;
            }
        }
        match &self.groups {
            None => true,
            Some(mine) => groups.is_empty() || groups.iter().any(|g| mine.contains(g)),
        }
    }
}

/// One retrieval request: the query text, its embedding, the filter and how many passages.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalQuery {
    pub text: String,
    pub embedding: Vec<f32>,
    pub filter: AccessFilter,
    pub top_k: usize,
}

/// A retrieved chunk with its lineage and fused score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    pub chunk_id: String,
    pub document_id: DocumentId,
    pub source: String,
    pub title: String,
    pub collection: String,
    /// The document's label.
    pub label: Level,
    /// The document's effective level: its label raised by the sensitive data found in it.
    pub level: Level,
    /// Sensitive data found in this passage: kind → count (never the values).
    pub entities: BTreeMap<EntityKind, u32>,
    /// Instruction-like content flagged in this passage at ingestion: kind → count.
    pub injection: BTreeMap<InjectionKind, u32>,
    pub text: String,
    pub score: f32,
}

/// What an answer cites as `[n]`: the n-th entry (1-based) of the response's citations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub source: String,
    pub document_id: DocumentId,
    pub chunk_id: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetrievalError {
    #[error("the search index is unavailable: {0}")]
    Index(String),
    #[error("the query embedding has {got} dimensions, the index {expected}")]
    Dimensions { expected: usize, got: usize },
}

/// Finds the passages most relevant to a query among those the filter admits.
pub trait Retriever: Send + Sync {
    fn retrieve(&self, query: &RetrievalQuery) -> Result<Vec<Passage>, RetrievalError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_admits_by_tenant_collection_and_group() {
        let open = AccessFilter::default();
        assert!(open.admits("default", "hr", &["hr".into()]));
        assert!(!open.admits("other", "hr", &[]));

        let hr_only = AccessFilter {
            collections: Some(vec!["hr".into()]),
            groups: Some(vec!["hr".into()]),
            ..AccessFilter::default()
        };
        assert!(hr_only.admits("default", "hr", &["hr".into(), "finance".into()]));
        assert!(hr_only.admits("default", "hr", &[]), "ungrouped documents are tenant-wide");
        assert!(!hr_only.admits("default", "hr", &["finance".into()]));
        assert!(!hr_only.admits("default", "finance", &["hr".into()]));
    }
}
