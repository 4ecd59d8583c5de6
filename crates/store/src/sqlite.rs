//! The embedded store: one SQLite database (WAL mode) under the data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use perimeter_types::{AccessFilter, DocumentId, EntityKind, InjectionKind, Level};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{Changes, DocumentRecord, NewChunk, Store, StoreError, StoredChunk, VectorRow};

/// 2 added detection results: `documents.level`, `documents.entities`, `chunks.entities`.
/// 3 added instruction-like content: `chunks.injection`, `documents.flagged_chunks`.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    collection TEXT NOT NULL,
    label TEXT NOT NULL,
    groups TEXT NOT NULL,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    level TEXT,
    entities TEXT NOT NULL DEFAULT '{}',
    content_sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    pages INTEGER,
    chunk_count INTEGER NOT NULL,
    ingested_at TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    flagged_chunks INTEGER
);
CREATE INDEX IF NOT EXISTS documents_tenant_source ON documents(tenant, source);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading TEXT,
    byte_start INTEGER NOT NULL,
    byte_end INTEGER NOT NULL,
    page_start INTEGER,
    page_end INTEGER,
    token_count INTEGER NOT NULL,
    entities TEXT NOT NULL DEFAULT '{}',
    embedding BLOB NOT NULL,
    injection TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id, ordinal);
CREATE TABLE IF NOT EXISTS changes (
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('upsert', 'delete'))
);
";

const DOC_COLUMNS: &str = "id, tenant, source, collection, label, groups, title, format, content_sha256, bytes, pages, chunk_count, ingested_at, pipeline_version, level, entities, flagged_chunks";
const CHUNK_COLUMNS: &str = "c.key, c.id, c.document_id, c.ordinal, c.text, c.heading, c.byte_start, c.byte_end, c.page_start, c.page_end, c.token_count, d.tenant, d.source, d.title, d.collection, d.label, d.groups, c.entities, d.level, c.injection";

/// SQLite-backed `Store`. One connection behind a mutex: SQLite serialises writers anyway, and
/// the store's reads are short.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) `store.sqlite3` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("store.sqlite3");
        let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let conn = Connection::open(&path).map_err(|e| open_err(e.to_string()))?;
        Self::init(conn).map_err(|e| match e {
            StoreError::Database(reason) => open_err(reason),
            other => other,
        })
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // WAL: readers (the server) and a writer (a CLI ingest) can work at the same time, and a
        // killed writer leaves the last committed state. synchronous=NORMAL in WAL mode is
        // durable against process crashes; a power loss may lose the last transactions but
        // never corrupts the database.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .optional()
            .map_err(db)?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(db)?;
            }
            Some(v) => {
                let found = v.parse::<i64>().unwrap_or(-1);
                if found == 1 {
                    migrate_v1_to_v2(&conn)?;
                    migrate_v2_to_v3(&conn)?;
                } else if found == 2 {
                    migrate_v2_to_v3(&conn)?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found, expected: SCHEMA_VERSION });
                }
            }
        }
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Version 1 stores had no detection results. Their documents keep their label as their level
/// until they are re-ingested (the pipeline version changed, so the next ingest rescans them).
fn migrate_v1_to_v2(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN;
         ALTER TABLE documents ADD COLUMN level TEXT;
         ALTER TABLE documents ADD COLUMN entities TEXT NOT NULL DEFAULT '{}';
         ALTER TABLE chunks ADD COLUMN entities TEXT NOT NULL DEFAULT '{}';
         UPDATE meta SET value = '2' WHERE key = 'schema_version';
         COMMIT;",
    )
    .map_err(db)
}

/// Version 2 stores had no injection scan. Their chunks start with no stored flags (retrieval
/// scans every passage again anyway) and their documents with an unknown flagged-chunk count,
/// until they are re-ingested.
fn migrate_v2_to_v3(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN;
         ALTER TABLE documents ADD COLUMN flagged_chunks INTEGER;
         ALTER TABLE chunks ADD COLUMN injection TEXT NOT NULL DEFAULT '{}';
         UPDATE meta SET value = '3' WHERE key = 'schema_version';
         COMMIT;",
    )
    .map_err(db)
}

fn parse_injection(s: &str) -> BTreeMap<InjectionKind, u32> {
    serde_json::from_str(s).unwrap_or_default()
}

fn injection_json(e: &BTreeMap<InjectionKind, u32>) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|e| StoreError::Database(e.to_string()))
}

fn parse_entities(s: &str) -> BTreeMap<EntityKind, u32> {
    serde_json::from_str(s).unwrap_or_default()
}

fn entities_json(e: &BTreeMap<EntityKind, u32>) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|e| StoreError::Database(e.to_string()))
}

/// The effective level: stored, or (for documents from before detection) the label.
fn level_or(stored: Option<String>, label: Level) -> Level {
    stored.map(|s| parse_level(&s)).unwrap_or(label).max(label)
}

fn parse_groups(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn parse_level(s: &str) -> Level {
    // Stored labels were validated on the way in; an unreadable one is treated as the most
    // sensitive level rather than the least.
    s.parse().unwrap_or(Level::Restricted)
}

fn doc_from_row(r: &Row<'_>) -> rusqlite::Result<DocumentRecord> {
    let label = parse_level(&r.get::<_, String>(4)?);
    Ok(DocumentRecord {
        id: DocumentId(r.get(0)?),
        tenant: r.get(1)?,
        source: r.get(2)?,
        collection: r.get(3)?,
        label,
        groups: parse_groups(&r.get::<_, String>(5)?),
        title: r.get(6)?,
        format: r.get(7)?,
        content_sha256: r.get(8)?,
        bytes: r.get::<_, i64>(9)? as u64,
        pages: r.get::<_, Option<i64>>(10)?.map(|p| p as u32),
        chunk_count: r.get::<_, i64>(11)? as u32,
        ingested_at: r.get(12)?,
        pipeline_version: r.get(13)?,
        level: level_or(r.get::<_, Option<String>>(14)?, label),
        entities: parse_entities(&r.get::<_, String>(15)?),
        flagged_chunks: r.get::<_, Option<i64>>(16)?.map(|n| n as u32),
    })
}

fn chunk_from_row(r: &Row<'_>) -> rusqlite::Result<StoredChunk> {
    let label = parse_level(&r.get::<_, String>(15)?);
    Ok(StoredChunk {
        key: r.get(0)?,
        id: r.get(1)?,
        document_id: DocumentId(r.get(2)?),
        ordinal: r.get::<_, i64>(3)? as u32,
        text: r.get(4)?,
        heading: r.get(5)?,
        byte_start: r.get::<_, i64>(6)? as u64,
        byte_end: r.get::<_, i64>(7)? as u64,
        page_start: r.get::<_, Option<i64>>(8)?.map(|p| p as u32),
        page_end: r.get::<_, Option<i64>>(9)?.map(|p| p as u32),
        token_count: r.get::<_, i64>(10)? as u32,
        tenant: r.get(11)?,
        source: r.get(12)?,
        title: r.get(13)?,
        collection: r.get(14)?,
        label,
        groups: parse_groups(&r.get::<_, String>(16)?),
        entities: parse_entities(&r.get::<_, String>(17)?),
        level: level_or(r.get::<_, Option<String>>(18)?, label),
        injection: parse_injection(&r.get::<_, String>(19)?),
    })
}

fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn vector_from_row(r: &Row<'_>) -> rusqlite::Result<VectorRow> {
    Ok(VectorRow {
        key: r.get(0)?,
        document_id: DocumentId(r.get(1)?),
        tenant: r.get(2)?,
        collection: r.get(3)?,
        groups: parse_groups(&r.get::<_, String>(4)?),
        embedding: blob_to_vector(&r.get::<_, Vec<u8>>(5)?),
    })
}

const VECTOR_SELECT: &str = "SELECT c.key, c.document_id, d.tenant, d.collection, d.groups, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id";

impl Store for SqliteStore {
    fn bind_embedder(&self, model: &str, dimensions: usize) -> Result<(), StoreError> {
        let conn = self.conn();
        let get = |key: &str| -> Result<Option<String>, StoreError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(db)
        };
        match (get("embedding_model")?, get("embedding_dimensions")?) {
            (Some(stored), Some(dims)) => {
                let stored_dims = dims.parse().unwrap_or(0);
                if stored != model || stored_dims != dimensions {
                    return Err(StoreError::EmbedderMismatch {
                        stored,
                        stored_dims,
                        configured: model.to_string(),
                        configured_dims: dimensions,
                    });
                }
                Ok(())
            }
            _ => {
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding_model', ?1), ('embedding_dimensions', ?2)",
                    params![model, dimensions.to_string()],
                )
                .map_err(db)?;
                Ok(())
            }
        }
    }

    fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, StoreError> {
        self.conn()
            .query_row(&format!("SELECT {DOC_COLUMNS} FROM documents WHERE id = ?1"), [&id.0], doc_from_row)
            .optional()
            .map_err(db)
    }

    fn replace_document(&self, doc: &DocumentRecord, chunks: &[NewChunk]) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM chunks WHERE document_id = ?1", [&doc.id.0]).map_err(db)?;
        let groups = serde_json::to_string(&doc.groups).map_err(|e| StoreError::Database(e.to_string()))?;
        tx.execute(
            &format!("INSERT OR REPLACE INTO documents ({DOC_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
            params![
                doc.id.0,
                doc.tenant,
                doc.source,
                doc.collection,
                doc.label.as_str(),
                groups,
                doc.title,
                doc.format,
                doc.content_sha256,
                doc.bytes as i64,
                doc.pages.map(i64::from),
                i64::from(doc.chunk_count),
                doc.ingested_at,
                doc.pipeline_version,
                doc.level.as_str(),
                entities_json(&doc.entities)?,
                doc.flagged_chunks.map(i64::from)
            ],
        )
        .map_err(db)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO chunks (id, document_id, ordinal, text, heading, byte_start, byte_end, page_start, page_end, token_count, embedding, entities, injection)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(db)?;
            for c in chunks {
                insert
                    .execute(params![
                        c.id,
                        doc.id.0,
                        i64::from(c.ordinal),
                        c.text,
                        c.heading,
                        c.byte_start as i64,
                        c.byte_end as i64,
                        c.page_start.map(i64::from),
                        c.page_end.map(i64::from),
                        i64::from(c.token_count),
                        vector_to_blob(&c.embedding),
                        entities_json(&c.entities)?,
                        injection_json(&c.injection)?
                    ])
                    .map_err(db)?;
            }
        }
        tx.execute("INSERT INTO changes (document_id, kind) VALUES (?1, 'upsert')", [&doc.id.0]).map_err(db)?;
        let generation = tx.last_insert_rowid();
        tx.commit().map_err(db)?;
        Ok(generation)
    }

    fn delete_document(&self, id: &DocumentId) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM chunks WHERE document_id = ?1", [&id.0]).map_err(db)?;
        let removed = tx.execute("DELETE FROM documents WHERE id = ?1", [&id.0]).map_err(db)?;
        if removed == 0 {
            return Ok(None);
        }
        tx.execute("INSERT INTO changes (document_id, kind) VALUES (?1, 'delete')", [&id.0]).map_err(db)?;
        let generation = tx.last_insert_rowid();
        tx.commit().map_err(db)?;
        Ok(Some(generation))
    }

    fn list_documents(
        &self,
        filter: &AccessFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        // Collections and groups are few per request; filter them here, tenant in SQL.
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {DOC_COLUMNS} FROM documents WHERE tenant = ?1 ORDER BY source, collection"))
            .map_err(db)?;
        let rows = stmt.query_map([&filter.tenant], doc_from_row).map_err(db)?;
        let mut out = Vec::new();
        let mut skipped = 0;
        for row in rows {
            let d = row.map_err(db)?;
            if !filter.admits(&d.tenant, &d.collection, &d.groups) {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(d);
        }
        Ok(out)
    }

    fn chunks_by_keys(&self, keys: &[i64]) -> Result<Vec<StoredChunk>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.key = ?1"
            ))
            .map_err(db)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(c) = stmt.query_row([key], chunk_from_row).optional().map_err(db)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn document_chunks(&self, id: &DocumentId) -> Result<Vec<StoredChunk>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.document_id = ?1 ORDER BY c.ordinal"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([&id.0], chunk_from_row).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn document_vectors(&self, id: &DocumentId) -> Result<Vec<VectorRow>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("{VECTOR_SELECT} WHERE c.document_id = ?1 ORDER BY c.ordinal")).map_err(db)?;
        let rows = stmt.query_map([&id.0], vector_from_row).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn generation(&self) -> Result<i64, StoreError> {
        self.conn().query_row("SELECT COALESCE(MAX(generation), 0) FROM changes", [], |r| r.get(0)).map_err(db)
    }

    fn changes_since(&self, generation: i64) -> Result<Changes, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT generation, document_id, kind FROM changes WHERE generation > ?1 ORDER BY generation")
            .map_err(db)?;
        let rows = stmt
            .query_map([generation], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(db)?;
        let mut last: BTreeMap<String, bool> = BTreeMap::new();
        let mut current = generation;
        for row in rows {
            let (g, doc, kind) = row.map_err(db)?;
            current = current.max(g);
            last.insert(doc, kind == "upsert");
        }
        let mut changes = Changes { generation: current, ..Changes::default() };
        for (doc, upsert) in last {
            if upsert {
                changes.upserted.push(DocumentId(doc));
            } else {
                changes.deleted.push(DocumentId(doc));
            }
        }
        Ok(changes)
    }

    fn for_each_vector(&self, visit: &mut dyn FnMut(VectorRow)) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{VECTOR_SELECT} ORDER BY c.key")).map_err(db)?;
        let rows = stmt.query_map([], vector_from_row).map_err(db)?;
        for row in rows {
            visit(row.map_err(db)?);
        }
        Ok(())
    }

    fn counts(&self) -> Result<(u64, u64), StoreError> {
        let conn = self.conn();
        let docs: i64 = conn.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0)).map_err(db)?;
        let chunks: i64 = conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0)).map_err(db)?;
        Ok((docs as u64, chunks as u64))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn doc(id: &str, groups: &[&str]) -> DocumentRecord {
        DocumentRecord {
            id: DocumentId(id.into()),
            tenant: "default".into(),
            source: format!("{id}.md"),
            collection: "c".into(),
            label: Level::Confidential,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            title: "T".into(),
            format: "markdown".into(),
            content_sha256: "00".into(),
            bytes: 10,
            pages: None,
            chunk_count: 2,
            ingested_at: "2026-01-01T00:00:00Z".into(),
            pipeline_version: "1".into(),
            level: Level::Restricted,
            entities: BTreeMap::from([(EntityKind::Iban, 2)]),
            flagged_chunks: Some(1),
        }
    }

    fn chunk(id: &str, ordinal: u32) -> NewChunk {
        NewChunk {
            id: id.into(),
            ordinal,
            text: format!("text {id}"),
            heading: None,
            byte_start: 0,
            byte_end: 5,
            page_start: None,
            page_end: None,
            token_count: 2,
            entities: BTreeMap::from([(EntityKind::Iban, 1)]),
            injection: BTreeMap::from([(InjectionKind::Override, 1)]),
            embedding: vec![0.5, -0.25, 1.0],
        }
    }

    #[test]
    fn replace_delete_and_change_log() {
        let s = SqliteStore::in_memory().unwrap();
        assert_eq!(s.generation().unwrap(), 0);
        let g1 = s.replace_document(&doc("a", &["hr"]), &[chunk("a0", 0), chunk("a1", 1)]).unwrap();
        let g2 = s.replace_document(&doc("b", &[]), &[chunk("b0", 0)]).unwrap();
        assert!(g2 > g1);
        assert_eq!(s.counts().unwrap(), (2, 3));
        // Replacing drops old chunks.
        s.replace_document(&doc("a", &["hr"]), &[chunk("a0-new", 0)]).unwrap();
        assert_eq!(s.counts().unwrap(), (2, 2));
        let chunks = s.document_chunks(&DocumentId("a".into())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].groups, vec!["hr".to_string()]);
        assert_eq!(chunks[0].label, Level::Confidential);
        assert_eq!(chunks[0].entities, BTreeMap::from([(EntityKind::Iban, 1)]));
        assert_eq!(chunks[0].level, Level::Restricted);
        assert_eq!(chunks[0].injection, BTreeMap::from([(InjectionKind::Override, 1)]));
        let doc_a = s.document(&DocumentId("a".into())).unwrap().unwrap();
        assert_eq!((doc_a.label, doc_a.level), (Level::Confidential, Level::Restricted));
        assert_eq!(doc_a.entities, BTreeMap::from([(EntityKind::Iban, 2)]));
        assert_eq!(doc_a.flagged_chunks, Some(1));
        let vectors = s.document_vectors(&DocumentId("a".into())).unwrap();
        assert_eq!(vectors[0].embedding, vec![0.5, -0.25, 1.0]);

        assert!(s.delete_document(&DocumentId("b".into())).unwrap().is_some());
        assert_eq!(s.delete_document(&DocumentId("b".into())).unwrap(), None);
        let changes = s.changes_since(g1).unwrap();
        assert_eq!(changes.upserted, vec![DocumentId("a".into())]);
        assert_eq!(changes.deleted, vec![DocumentId("b".into())]);
        assert_eq!(changes.generation, s.generation().unwrap());
        assert_eq!(s.changes_since(changes.generation).unwrap().upserted.len(), 0);
    }

    #[test]
    fn list_filters_by_group_and_binds_one_embedder() {
        let s = SqliteStore::in_memory().unwrap();
        s.replace_document(&doc("a", &["hr"]), &[chunk("a0", 0)]).unwrap();
        s.replace_document(&doc("b", &["finance"]), &[chunk("b0", 0)]).unwrap();
        let hr = AccessFilter { groups: Some(vec!["hr".into()]), ..AccessFilter::default() };
        let listed = s.list_documents(&hr, 10, 0).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id.0, "a");
        assert_eq!(s.list_documents(&AccessFilter::default(), 10, 1).unwrap().len(), 1);
        s.bind_embedder("m", 3).unwrap();
        s.bind_embedder("m", 3).unwrap();
        assert!(matches!(s.bind_embedder("other", 3), Err(StoreError::EmbedderMismatch { .. })));
    }

    #[test]
    fn version_1_stores_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A version-1 store: no detection columns.
            let conn = Connection::open(dir.path().join("store.sqlite3")).unwrap();
            let v1 = v2_schema()
                .replace("    level TEXT,\n    entities TEXT NOT NULL DEFAULT '{}',\n", "")
                .replace("    entities TEXT NOT NULL DEFAULT '{}',\n", "");
            assert!(!v1.contains("entities"), "{v1}");
            conn.execute_batch(&v1).unwrap();
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')", []).unwrap();
            conn.execute(
                "INSERT INTO documents (id, tenant, source, collection, label, groups, title, format, content_sha256, bytes, pages, chunk_count, ingested_at, pipeline_version)
                 VALUES ('old', 'default', 'old.md', 'c', 'internal', '[]', 'Old', 'markdown', '', 1, NULL, 0, 't', 'perimeter-ingest/1')",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let old = s.document(&DocumentId("old".into())).unwrap().unwrap();
        assert_eq!((old.label, old.level), (Level::Internal, Level::Internal));
        assert!(old.entities.is_empty());
        s.replace_document(&doc("new", &[]), &[chunk("n0", 0)]).unwrap();
        drop(s);
        assert_eq!(SqliteStore::open(dir.path()).unwrap().counts().unwrap(), (2, 1), "reopens as version 3");
        assert!(old.flagged_chunks.is_none());
    }

    /// The schema as version 2 wrote it: no injection columns.
    fn v2_schema() -> String {
        let v2 = SCHEMA
            .replace(",\n    flagged_chunks INTEGER\n", "\n")
            .replace(",\n    injection TEXT NOT NULL DEFAULT '{}'\n", "\n");
        assert!(!v2.contains("injection") && !v2.contains("flagged_chunks"), "{v2}");
        v2
    }

    #[test]
    fn version_2_stores_are_migrated_and_keep_their_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A version-2 store with a document and a chunk, as `make run` leaves a data dir.
            let conn = Connection::open(dir.path().join("store.sqlite3")).unwrap();
            conn.execute_batch(&v2_schema()).unwrap();
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')", []).unwrap();
            conn.execute(
                "INSERT INTO documents (id, tenant, source, collection, label, groups, title, format, content_sha256, bytes, pages, chunk_count, ingested_at, pipeline_version, level, entities)
                 VALUES ('old', 'default', 'old.md', 'c', 'internal', '[]', 'Old', 'markdown', '', 1, NULL, 1, 't', 'perimeter-ingest/2', 'confidential', '{\"EMAIL\":1}')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO chunks (id, document_id, ordinal, text, heading, byte_start, byte_end, page_start, page_end, token_count, entities, embedding)
                 VALUES ('old0', 'old', 0, 'old text', NULL, 0, 8, NULL, NULL, 2, '{\"EMAIL\":1}', ?1)",
                [vector_to_blob(&[1.0, 0.0])],
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let old = s.document(&DocumentId("old".into())).unwrap().unwrap();
        assert_eq!(old.level, Level::Confidential);
        assert_eq!(old.entities, BTreeMap::from([(EntityKind::Email, 1)]));
        assert_eq!(old.flagged_chunks, None, "not scanned before version 3");
        let chunks = s.document_chunks(&DocumentId("old".into())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "old text");
        assert!(chunks[0].injection.is_empty());
        assert_eq!(s.document_vectors(&DocumentId("old".into())).unwrap()[0].embedding, vec![1.0, 0.0]);
        s.replace_document(&doc("new", &[]), &[chunk("n0", 0)]).unwrap();
        drop(s);
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.counts().unwrap(), (2, 2), "reopens as version 3");
        let version: String =
            s.conn().query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(version, "3");
        let new = s.document_chunks(&DocumentId("new".into())).unwrap();
        assert_eq!(new[0].injection, BTreeMap::from([(InjectionKind::Override, 1)]));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("store.sqlite3")).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '4')", []).unwrap();
        }
        let err = SqliteStore::open(dir.path()).err().unwrap();
        assert!(matches!(err, StoreError::Schema { found: 4, expected: 3 }), "{err}");
    }

    #[test]
    fn reopening_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            s.replace_document(&doc("a", &[]), &[chunk("a0", 0)]).unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.counts().unwrap(), (1, 1));
        assert!(s.document(&DocumentId("a".into())).unwrap().is_some());
    }
}
