//! Storage: the `Store` trait (documents, chunks with lineage and embeddings, and a change log)
//! and its embedded default on SQLite under the data directory.
//!
//! The store is the source of truth. The search indexes (BM25, vectors) are derived from it and
//! catch up through the change log: every write bumps a generation in the same transaction as
//! the data, so a crash leaves either the old or the new state, never half of a document.
//! The trait is SQL-shaped so a PostgreSQL/pgvector implementation can follow.

pub mod audit_file;
mod sqlite;

use std::collections::BTreeMap;

use perimeter_types::{AccessFilter, DocumentId, EntityKind, InjectionKind, Level};
use serde::Serialize;

pub use sqlite::SqliteStore;

/// A document as stored, with its lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentRecord {
    pub id: DocumentId,
    pub tenant: String,
    pub source: String,
    pub collection: String,
    /// The label it was given (flag or front matter).
    pub label: Level,
    /// The label raised by what detection found in it: max(label, findings' levels).
    pub level: Level,
    /// Sensitive data found in it: kind → count. Never the values.
    pub entities: BTreeMap<EntityKind, u32>,
    pub groups: Vec<String>,
    pub title: String,
    pub format: String,
    pub content_sha256: String,
    pub bytes: u64,
    pub pages: Option<u32>,
    pub chunk_count: u32,
    /// Chunks with instruction-like content at ingestion; `None` for documents ingested before
    /// the scan existed (schema version 2), until they are re-ingested.
    pub flagged_chunks: Option<u32>,
    /// RFC 3339, UTC.
    pub ingested_at: String,
    pub pipeline_version: String,
}

/// A chunk to store: text, lineage and embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub id: String,
    pub ordinal: u32,
    pub text: String,
    pub heading: Option<String>,
    pub byte_start: u64,
    pub byte_end: u64,
    pub page_start: Option<u32>,
    pub page_end: Option<u32>,
    pub token_count: u32,
    /// Sensitive data found in the chunk: kind → count.
    pub entities: BTreeMap<EntityKind, u32>,
    /// Instruction-like content found in the chunk: kind → count.
    pub injection: BTreeMap<InjectionKind, u32>,
    pub embedding: Vec<f32>,
}

/// A stored chunk with the attributes retrieval needs from its document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredChunk {
    /// The store's numeric key for the chunk, used by the search indexes.
    pub key: i64,
    pub id: String,
    pub document_id: DocumentId,
    pub ordinal: u32,
    pub text: String,
    pub heading: Option<String>,
    pub byte_start: u64,
    pub byte_end: u64,
    pub page_start: Option<u32>,
    pub page_end: Option<u32>,
    pub token_count: u32,
    pub entities: BTreeMap<EntityKind, u32>,
    /// Instruction-like content flagged at ingestion (empty for chunks stored before the scan).
    pub injection: BTreeMap<InjectionKind, u32>,
    pub tenant: String,
    pub source: String,
    pub title: String,
    pub collection: String,
    /// The document's label.
    pub label: Level,
    /// The document's effective level (label raised by its findings).
    pub level: Level,
    pub groups: Vec<String>,
}

/// A chunk's vector with the attributes the vector search filters on.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRow {
    pub key: i64,
    pub document_id: DocumentId,
    pub tenant: String,
    pub collection: String,
    pub groups: Vec<String>,
    pub embedding: Vec<f32>,
}

/// What changed after a generation: documents to (re)index and documents to drop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub generation: i64,
    pub upserted: Vec<DocumentId>,
    pub deleted: Vec<DocumentId>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} could not be opened: {reason}")]
    Open { path: String, reason: String },
    #[error("the store was built with embedding model {stored} ({stored_dims} dimensions), but {configured} ({configured_dims}) is configured: use another data directory or re-ingest into a fresh one")]
    EmbedderMismatch { stored: String, stored_dims: usize, configured: String, configured_dims: usize },
    #[error("the store's schema version is {found}, this build understands {expected}")]
    Schema { found: i64, expected: i64 },
    #[error("store failure: {0}")]
    Database(String),
}

/// Documents and chunks, and the change log the search indexes follow.
pub trait Store: Send + Sync {
    /// Checks (or, for an empty store, records) the embedding model the vectors come from.
    fn bind_embedder(&self, model: &str, dimensions: usize) -> Result<(), StoreError>;
    fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, StoreError>;
    /// Replaces a document and all of its chunks atomically; returns the new generation.
    fn replace_document(&self, doc: &DocumentRecord, chunks: &[NewChunk]) -> Result<i64, StoreError>;
    /// Deletes a document and its chunks; `None` if there was no such document.
    fn delete_document(&self, id: &DocumentId) -> Result<Option<i64>, StoreError>;
    /// Documents the filter admits, ordered by source.
    fn list_documents(
        &self,
        filter: &AccessFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DocumentRecord>, StoreError>;
    fn chunks_by_keys(&self, keys: &[i64]) -> Result<Vec<StoredChunk>, StoreError>;
    fn document_chunks(&self, id: &DocumentId) -> Result<Vec<StoredChunk>, StoreError>;
    fn document_vectors(&self, id: &DocumentId) -> Result<Vec<VectorRow>, StoreError>;
    /// The current generation (0 for an empty store).
    fn generation(&self) -> Result<i64, StoreError>;
    /// The net changes after `generation`, up to the current one.
    fn changes_since(&self, generation: i64) -> Result<Changes, StoreError>;
    /// Streams every vector (for building the vector index at start-up).
    fn for_each_vector(&self, visit: &mut dyn FnMut(VectorRow)) -> Result<(), StoreError>;
    /// Document and chunk counts.
    fn counts(&self) -> Result<(u64, u64), StoreError>;
}
