//! The dense vector index: an exact (brute-force) inner-product scan over unit vectors held in
//! memory, with the access filter evaluated per document inside the scan.
//!
//! Exact search needs no tuning, has perfect recall, and filters without the recall loss that
//! post-filtering an approximate index has. At 100,000 chunks of 384 dimensions a scan is a few
//! milliseconds (see BENCHMARKS.md); an HNSW index can replace it behind the same interface when
//! corpora outgrow that.

use std::collections::HashMap;
use std::sync::RwLock;

use perimeter_retrieval::{dot, TopK};
use perimeter_store::{Store, VectorRow};
use perimeter_types::{AccessFilter, DocumentId};

use crate::IndexError;

struct DocMeta {
    id: DocumentId,
    tenant: String,
    collection: String,
    groups: Vec<String>,
}

#[derive(Default)]
struct Vectors {
    generation: i64,
    dims: usize,
    keys: Vec<i64>,
    /// Per row: index into `docs`.
    owner: Vec<u32>,
    data: Vec<f32>,
    docs: Vec<DocMeta>,
    slot: HashMap<DocumentId, u32>,
}

pub struct VectorIndex {
    inner: RwLock<Vectors>,
}

impl VectorIndex {
    /// Loads every vector in the store.
    pub fn load(store: &dyn Store) -> Result<Self, IndexError> {
        let mut v = Vectors { generation: store.generation()?, ..Vectors::default() };
        let mut bad = None;
        store.for_each_vector(&mut |row| {
            if let Err(e) = v.push(row) {
                bad.get_or_insert(e);
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        Ok(Self { inner: RwLock::new(v) })
    }

    pub fn generation(&self) -> i64 {
        self.read().generation
    }

    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    /// Bytes held by vectors and keys.
    pub fn memory_bytes(&self) -> usize {
        let v = self.read();
        v.data.len() * 4 + v.keys.len() * 8 + v.owner.len() * 4
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vectors> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the store's changes since this index's generation.
    pub fn catch_up(&self, store: &dyn Store) -> Result<(), IndexError> {
        if store.generation()? == self.generation() {
            return Ok(());
        }
        let mut v = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let changes = store.changes_since(v.generation)?;
        let touched: Vec<&DocumentId> = changes.deleted.iter().chain(&changes.upserted).collect();
        v.remove(&touched);
        for id in &changes.upserted {
            for row in store.document_vectors(id)? {
                v.push(row)?;
            }
        }
        v.generation = changes.generation;
        Ok(())
    }

    /// The `limit` nearest chunk keys to `query` among those `filter` admits, best first.
    pub fn search(&self, query: &[f32], filter: &AccessFilter, limit: usize) -> Result<Vec<(i64, f32)>, IndexError> {
        let v = self.read();
        if v.keys.is_empty() {
            return Ok(Vec::new());
        }
        if query.len() != v.dims {
            return Err(IndexError::Dimensions { expected: v.dims, got: query.len() });
        }
        let admitted: Vec<bool> = v.docs.iter().map(|d| filter.admits(&d.tenant, &d.collection, &d.groups)).collect();
        let mut top = TopK::new(limit);
        for (row, (&key, &owner)) in v.keys.iter().zip(&v.owner).enumerate() {
            if !admitted[owner as usize] {
                continue;
            }
            let score = dot(query, &v.data[row * v.dims..(row + 1) * v.dims]);
            top.push(score, key);
        }
        Ok(top.into_sorted().into_iter().map(|(s, k)| (k, s)).collect())
    }
}

impl Vectors {
    fn push(&mut self, row: VectorRow) -> Result<(), IndexError> {
        if self.dims == 0 {
            self.dims = row.embedding.len();
        }
        if row.embedding.len() != self.dims {
            return Err(IndexError::Dimensions { expected: self.dims, got: row.embedding.len() });
        }
        let slot = match self.slot.get(&row.document_id) {
            Some(&s) => s,
            None => {
                let s = self.docs.len() as u32;
                self.docs.push(DocMeta {
                    id: row.document_id.clone(),
                    tenant: row.tenant,
                    collection: row.collection,
                    groups: row.groups,
                });
                self.slot.insert(row.document_id, s);
                s
            }
        };
        self.keys.push(row.key);
        self.owner.push(slot);
        self.data.extend_from_slice(&row.embedding);
        Ok(())
    }

    /// Drops every row of the given documents and forgets their metadata.
    fn remove(&mut self, ids: &[&DocumentId]) {
        let gone: Vec<u32> = ids.iter().filter_map(|id| self.slot.get(*id).copied()).collect();
        if gone.is_empty() {
            return;
        }
        let dims = self.dims;
        let mut w = 0;
        for r in 0..self.keys.len() {
            if gone.contains(&self.owner[r]) {
                continue;
            }
            if w != r {
                self.keys[w] = self.keys[r];
                self.owner[w] = self.owner[r];
                self.data.copy_within(r * dims..(r + 1) * dims, w * dims);
            }
            w += 1;
        }
        self.keys.truncate(w);
        self.owner.truncate(w);
        self.data.truncate(w * dims);
        // Metadata slots of removed documents stay allocated but unreachable; clear their
        // identity so a re-added document gets a fresh slot with fresh attributes.
        for id in ids {
            if let Some(s) = self.slot.remove(*id) {
                let d = &mut self.docs[s as usize];
                d.tenant.clear();
                d.collection.clear();
                d.groups.clear();
                d.id = DocumentId(String::new());
            }
        }
    }
}
