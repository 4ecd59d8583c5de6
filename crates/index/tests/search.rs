//! Hybrid search over a real store and real indexes, with hand-made vectors so that rankings
//! are known: access filters act inside each search, and indexes follow the store's changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use perimeter_index::{Index, SearchMode};
use perimeter_store::{DocumentRecord, NewChunk, SqliteStore, Store};
use perimeter_types::{AccessFilter, DocumentId, Level, RetrievalQuery};

const DIMS: usize = 8;

fn unit(direction: usize, tilt: f32) -> Vec<f32> {
    let mut v = [0.0; DIMS];
    v[direction] = 1.0;
    v[(direction + 1) % DIMS] = tilt;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn add(store: &dyn Store, id: &str, collection: &str, groups: &[&str], text: &str, vector: Vec<f32>) {
    let doc = DocumentRecord {
        id: DocumentId(id.into()),
        tenant: "default".into(),
        source: format!("{id}.md"),
        collection: collection.into(),
        label: Level::Internal,
        level: Level::Internal,
        entities: Default::default(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        title: id.into(),
        format: "markdown".into(),
        content_sha256: String::new(),
        bytes: text.len() as u64,
        pages: None,
        chunk_count: 1,
        flagged_chunks: Some(0),
        ingested_at: "2026-01-01T00:00:00Z".into(),
        pipeline_version: "test".into(),
    };
    let chunk = NewChunk {
        id: format!("{id}-0"),
        ordinal: 0,
        text: text.into(),
        heading: None,
        byte_start: 0,
        byte_end: text.len() as u64,
        page_start: None,
        page_end: None,
        token_count: 5,
        entities: Default::default(),
        injection: Default::default(),
        embedding: vector,
    };
    store.replace_document(&doc, &[chunk]).unwrap();
}

fn query(text: &str, vector: Vec<f32>, filter: AccessFilter, top_k: usize) -> RetrievalQuery {
    RetrievalQuery { text: text.into(), embedding: vector, filter, top_k }
}

fn sources(index: &Index, q: &RetrievalQuery, mode: SearchMode) -> Vec<String> {
    index.search(q, mode).unwrap().into_iter().map(|p| p.document_id.0).collect()
}

#[test]
fn filters_apply_inside_the_search_not_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    // 200 documents for group "staff" that match the query better than the one "hr" document.
    for i in 0..200 {
        add(
            store.as_ref(),
            &format!("staff{i:03}"),
            "handbook",
            &["staff"],
            "salary review salary review process",
            unit(0, 0.01 * i as f32),
        );
    }
    add(store.as_ref(), "hr-only", "hr", &["hr"], "salary review notes", unit(0, 3.0));
    add(store.as_ref(), "open", "handbook", &[], "canteen menu", unit(5, 0.0));
    let index = Index::open(dir.path(), store.clone()).unwrap();

    let hr = AccessFilter { groups: Some(vec!["hr".into()]), ..AccessFilter::default() };
    for mode in [SearchMode::Hybrid, SearchMode::Bm25, SearchMode::Dense] {
        let got = sources(&index, &query("salary review", unit(0, 0.0), hr.clone(), 3), mode);
        assert!(got.contains(&"hr-only".to_string()), "{mode:?}: {got:?}");
        assert!(got.iter().all(|d| d == "hr-only" || d == "open"), "{mode:?} leaked: {got:?}");
    }
    // Without a group restriction the staff documents dominate the top 3.
    let all = sources(&index, &query("salary review", unit(0, 0.0), AccessFilter::default(), 3), SearchMode::Hybrid);
    assert!(!all.contains(&"hr-only".to_string()), "{all:?}");

    let by_collection = AccessFilter { collections: Some(vec!["hr".into()]), ..AccessFilter::default() };
    assert_eq!(sources(&index, &query("salary", unit(0, 0.0), by_collection, 5), SearchMode::Hybrid), vec!["hr-only"]);

    let other_tenant = AccessFilter { tenant: "other".into(), ..AccessFilter::default() };
    assert!(sources(&index, &query("salary", unit(0, 0.0), other_tenant, 5), SearchMode::Hybrid).is_empty());

    let wrong_dims = query("salary", vec![1.0; 3], AccessFilter::default(), 5);
    assert!(index.search(&wrong_dims, SearchMode::Dense).is_err());
}

#[test]
fn hybrid_fusion_finds_what_either_ranking_finds() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    add(store.as_ref(), "lexical", "c", &[], "the zebra crossing permit number ZX-41", unit(3, 0.0));
    add(store.as_ref(), "semantic", "c", &[], "unrelated wording entirely", unit(1, 0.0));
    for i in 0..30 {
        add(store.as_ref(), &format!("noise{i}"), "c", &[], "filler text about nothing", unit(6, 0.1 * i as f32));
    }
    let index = Index::open(dir.path(), store).unwrap();
    let q = query("zebra permit", unit(1, 0.0), AccessFilter::default(), 2);
    assert_eq!(sources(&index, &q, SearchMode::Bm25)[0], "lexical");
    assert_eq!(sources(&index, &q, SearchMode::Dense)[0], "semantic");
    let hybrid = sources(&index, &q, SearchMode::Hybrid);
    assert!(hybrid.contains(&"lexical".into()) && hybrid.contains(&"semantic".into()), "{hybrid:?}");
    let passages = index.search(&q, SearchMode::Hybrid).unwrap();
    assert!(passages[0].score >= passages[1].score);
}

#[test]
fn indexes_follow_changes_made_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    add(store.as_ref(), "a", "c", &[], "alpha document", unit(0, 0.0));
    let index = Index::open(dir.path(), store).unwrap();
    // A second store handle stands in for a CLI ingest running beside the server.
    let other = SqliteStore::open(dir.path()).unwrap();
    add(&other, "b", "c", &[], "bravo document", unit(2, 0.0));
    other.delete_document(&DocumentId("a".into())).unwrap();
    let q = query("alpha bravo document", unit(2, 0.0), AccessFilter::default(), 5);
    assert_eq!(sources(&index, &q, SearchMode::Hybrid), vec!["b"]);
    assert_eq!(sources(&index, &q, SearchMode::Bm25), vec!["b"]);
    // Replacing a document's groups changes who finds it.
    add(&other, "b", "c", &["finance"], "bravo document", unit(2, 0.0));
    let hr = AccessFilter { groups: Some(vec!["hr".into()]), ..AccessFilter::default() };
    assert!(sources(&index, &query("bravo", unit(2, 0.0), hr, 5), SearchMode::Hybrid).is_empty());
    let (vectors, bm25, _) = index.stats();
    assert_eq!((vectors, bm25), (1, 1));
}

#[test]
fn a_lost_index_is_rebuilt_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    for i in 0..10 {
        add(store.as_ref(), &format!("d{i}"), "c", &[], &format!("document number {i}"), unit(i % DIMS, 0.0));
    }
    drop(Index::open(dir.path(), store.clone()).unwrap());
    std::fs::remove_dir_all(dir.path().join("bm25")).unwrap();
    let index = Index::open(dir.path(), store).unwrap();
    assert_eq!(index.stats().1, 10);
    let q = query("number 7", unit(7, 0.0), AccessFilter::default(), 1);
    assert_eq!(sources(&index, &q, SearchMode::Hybrid), vec!["d7"]);
}
