//! BM25 full-text search over chunks (tantivy), with the access filter applied inside the query.
//!
//! The index is derived from the store: its commit payload records the store generation it
//! reflects, and `catch_up` replays the store's change log from there. A crash between a store
//! commit and an index commit is therefore repaired at the next start.

use std::path::Path;
use std::sync::Mutex;

use perimeter_store::{Store, StoredChunk};
use perimeter_types::AccessFilter;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, INDEXED, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::IndexError;

/// The group term indexed for documents open to their whole tenant.
const ALL_GROUPS: &str = "\u{0}all";
/// Memory for tantivy's indexing buffer.
const WRITER_HEAP: usize = 50_000_000;

struct Fields {
    key: Field,
    document_id: Field,
    tenant: Field,
    collection: Field,
    groups: Field,
    title: Field,
    text: Field,
}

pub struct Bm25Index {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
    /// Serialises writers inside this process; tantivy's lock file does it across processes.
    write: Mutex<()>,
}

fn tv(e: tantivy::TantivyError) -> IndexError {
    IndexError::Bm25(e.to_string())
}

impl Bm25Index {
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let mut builder = Schema::builder();
        let fields = Fields {
            key: builder.add_i64_field("key", INDEXED | STORED),
            document_id: builder.add_text_field("document_id", STRING),
            tenant: builder.add_text_field("tenant", STRING),
            collection: builder.add_text_field("collection", STRING),
            groups: builder.add_text_field("groups", STRING),
            title: builder.add_text_field("title", TEXT),
            text: builder.add_text_field("text", TEXT),
        };
        let schema = builder.build();
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Bm25(format!("{}: {e}", dir.display())))?;
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(|e| IndexError::Bm25(e.to_string()))?;
        let index = Index::open_or_create(directory, schema).map_err(tv)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(tv)?;
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.text]);
        parser.set_field_boost(fields.title, 1.5);
        Ok(Self { index, reader, fields, parser, write: Mutex::new(()) })
    }

    /// The store generation the committed index reflects.
    pub fn generation(&self) -> Result<i64, IndexError> {
        let metas = self.index.load_metas().map_err(tv)?;
        Ok(metas.payload.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0))
    }

    /// Replays the store's changes since the index's generation, commits, and reloads the
    /// reader. If another process holds the index lock, it is doing the same work: just reload.
    pub fn catch_up(&self, store: &dyn Store) -> Result<(), IndexError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut from = self.generation()?;
        let target = store.generation()?;
        if from == target {
            return self.reader.reload().map_err(tv);
        }
        let mut writer: IndexWriter = match self.index.writer_with_num_threads(1, WRITER_HEAP) {
            Ok(w) => w,
            Err(tantivy::TantivyError::LockFailure(..)) => {
                tracing::debug!("BM25 index locked by another process; reloading only");
                return self.reader.reload().map_err(tv);
            }
            Err(e) => return Err(tv(e)),
        };
        if from > target {
            // The index is ahead of the store (the store was replaced): rebuild it.
            tracing::warn!(index = from, store = target, "BM25 index is ahead of the store; rebuilding");
            writer.delete_all_documents().map_err(tv)?;
            from = 0;
        }
        let changes = store.changes_since(from)?;
        for id in changes.deleted.iter().chain(&changes.upserted) {
            writer.delete_term(Term::from_field_text(self.fields.document_id, &id.0));
        }
        for id in &changes.upserted {
            for chunk in store.document_chunks(id)? {
                writer.add_document(self.to_doc(&chunk)).map_err(tv)?;
            }
        }
        let mut commit = writer.prepare_commit().map_err(tv)?;
        commit.set_payload(&changes.generation.to_string());
        commit.commit().map_err(tv)?;
        writer.wait_merging_threads().map_err(tv)?;
        self.reader.reload().map_err(tv)
    }

    fn to_doc(&self, c: &StoredChunk) -> TantivyDocument {
        let f = &self.fields;
        let title = match &c.heading {
            Some(h) => format!("{} {h}", c.title),
            None => c.title.clone(),
        };
        let mut d = doc!(
            f.key => c.key,
            f.document_id => c.document_id.0.as_str(),
            f.tenant => c.tenant.as_str(),
            f.collection => c.collection.as_str(),
            f.title => title,
            f.text => c.text.as_str(),
        );
        if c.groups.is_empty() {
            d.add_text(f.groups, ALL_GROUPS);
        }
        for g in &c.groups {
            d.add_text(f.groups, g);
        }
        d
    }

    /// The best chunk keys for `text` among those `filter` admits, best first.
    pub fn search(&self, text: &str, filter: &AccessFilter, limit: usize) -> Result<Vec<(i64, f32)>, IndexError> {
        let (query, _errors) = self.parser.parse_query_lenient(text);
        let f = &self.fields;
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
        };
        let any_of = |field: Field, values: &[&str]| -> Box<dyn Query> {
            let should = values.iter().map(|v| (Occur::Should, term(field, v))).collect();
            Box::new(ConstScoreQuery::new(Box::new(BooleanQuery::new(should)), 0.0))
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, query),
            (Occur::Must, Box::new(ConstScoreQuery::new(term(f.tenant, &filter.tenant), 0.0))),
        ];
        if let Some(collections) = &filter.collections {
            let values: Vec<&str> = collections.iter().map(String::as_str).collect();
            clauses.push((Occur::Must, any_of(f.collection, &values)));
        }
        if let Some(groups) = &filter.groups {
            let mut values: Vec<&str> = groups.iter().map(String::as_str).collect();
            values.push(ALL_GROUPS);
            clauses.push((Occur::Must, any_of(f.groups, &values)));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1))).map_err(tv)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let d: TantivyDocument = searcher.doc(address).map_err(tv)?;
            if let Some(key) = d.get_first(f.key).and_then(|v| v.as_i64()) {
                out.push((key, score));
            }
        }
        Ok(out)
    }

    /// Chunks in the index (for health output).
    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}
