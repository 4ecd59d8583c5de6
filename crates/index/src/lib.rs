//! Ingestion and search: turns files into chunks with lineage and embeddings in the store, keeps
//! the BM25 and vector indexes in step with the store, and answers hybrid queries with the access
//! filter applied inside each search.

mod bm25;
mod ingest;
mod vectors;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use perimeter_retrieval::{reciprocal_rank_fusion, RRF_K};
use perimeter_store::{Store, StoreError};
use perimeter_types::{Passage, RetrievalError, RetrievalQuery, Retriever};

pub use ingest::{
    display_source, document_id, ingest_bytes, ingest_paths, EmbedAudit, EmbedDecision, EmbedGate, FileOutcome,
    IngestEvent, IngestOptions, IngestProgress, IngestReport, PIPELINE_VERSION,
};
pub use perimeter_extract::{ChunkSpec, Format};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("BM25 index failure: {0}")]
    Bm25(String),
    #[error("vector has {got} dimensions, the index holds {expected}")]
    Dimensions { expected: usize, got: usize },
    #[error("{path}: {reason}")]
    Path { path: String, reason: String },
    #[error("embedding failed: {0}")]
    Embed(String),
}

/// Which rankings a search uses. `Hybrid` is the default; the others exist for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    Hybrid,
    Bm25,
    Dense,
}

/// Candidates each ranking contributes to fusion, per requested result.
const CANDIDATES_PER_RESULT: usize = 8;
const MIN_CANDIDATES: usize = 50;

/// The store plus its derived search indexes.
pub struct Index {
    store: Arc<dyn Store>,
    bm25: bm25::Bm25Index,
    vectors: vectors::VectorIndex,
    /// The store generation both indexes are known to reflect (-1: not yet). Lets `sync`, which
    /// runs before every search, skip reading the BM25 index's metadata from disk.
    synced: AtomicI64,
}

impl Index {
    /// Opens the indexes under `dir` and brings them up to the store's state.
    pub fn open(dir: &Path, store: Arc<dyn Store>) -> Result<Self, IndexError> {
        let bm25 = bm25::Bm25Index::open(&dir.join("bm25"))?;
        let vectors = vectors::VectorIndex::load(store.as_ref())?;
        let index = Self { store, bm25, vectors, synced: AtomicI64::new(-1) };
        index.sync()?;
        Ok(index)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Brings both indexes up to the store's current generation (cheap when nothing changed).
    pub fn sync(&self) -> Result<(), IndexError> {
        let generation = self.store.generation()?;
        if self.synced.load(Ordering::Acquire) == generation {
            return Ok(());
        }
        if self.bm25.generation()? != generation {
            self.bm25.catch_up(self.store.as_ref())?;
        }
        if self.vectors.generation() != generation {
            self.vectors.catch_up(self.store.as_ref())?;
        }
        // Another process may hold the BM25 writer lock and still be catching up: only a
        // confirmed state is remembered.
        if self.bm25.generation()? == generation && self.vectors.generation() == generation {
            self.synced.store(generation, Ordering::Release);
        }
        Ok(())
    }

    /// Chunks in the vector index, chunks in the BM25 index, and the vector index's memory.
    pub fn stats(&self) -> (usize, u64, usize) {
        (self.vectors.len(), self.bm25.num_chunks(), self.vectors.memory_bytes())
    }

    pub fn search(&self, query: &RetrievalQuery, mode: SearchMode) -> Result<Vec<Passage>, IndexError> {
        self.sync()?;
        let candidates = (query.top_k * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        // The two searches are independent; on a multi-core machine they run side by side.
        let (lexical, dense) = std::thread::scope(|scope| {
            let lexical = scope.spawn(|| {
                if mode == SearchMode::Dense {
                    Ok(Vec::new())
                } else {
                    self.bm25.search(&query.text, &query.filter, candidates)
                }
            });
            let dense = if mode == SearchMode::Bm25 {
                Ok(Vec::new())
            } else {
                self.vectors.search(&query.embedding, &query.filter, candidates)
            };
            let lexical =
                lexical.join().unwrap_or_else(|_| Err(IndexError::Bm25("the BM25 search thread panicked".into())));
            (lexical, dense)
        });
        let (lexical, dense) = (lexical?, dense?);
        let lexical_keys: Vec<i64> = lexical.iter().map(|(k, _)| *k).collect();
        let dense_keys: Vec<i64> = dense.iter().map(|(k, _)| *k).collect();
        let fused = reciprocal_rank_fusion(&[&lexical_keys, &dense_keys], RRF_K, query.top_k);
        let keys: Vec<i64> = fused.iter().map(|(k, _)| *k).collect();
        let chunks = self.store.chunks_by_keys(&keys)?;
        let mut passages = Vec::with_capacity(chunks.len());
        for (key, score) in fused {
            let Some(c) = chunks.iter().find(|c| c.key == key) else { continue };
            // The store is the authority: re-check the filter on what it returned, so an index
            // that lags a permission change can never widen access.
            if !query.filter.admits(&c.tenant, &c.collection, &c.groups) {
                continue;
            }
            passages.push(Passage {
                chunk_id: c.id.clone(),
                document_id: c.document_id.clone(),
                source: c.source.clone(),
                title: c.title.clone(),
                collection: c.collection.clone(),
                label: c.label,
                level: c.level,
                entities: c.entities.clone(),
                injection: c.injection.clone(),
                text: c.text.clone(),
                score,
            });
        }
        Ok(passages)
    }
}

impl Retriever for Index {
    fn retrieve(&self, query: &RetrievalQuery) -> Result<Vec<Passage>, RetrievalError> {
        // A query the policy would not let out to the embedding backend arrives without an
        // embedding: keyword search alone.
        let mode = if query.embedding.is_empty() { SearchMode::Bm25 } else { SearchMode::Hybrid };
        self.search(query, mode).map_err(|e| match e {
            IndexError::Dimensions { expected, got } => RetrievalError::Dimensions { expected, got },
            other => RetrievalError::Index(other.to_string()),
        })
    }
}
