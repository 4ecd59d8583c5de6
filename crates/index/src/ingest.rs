//! Ingestion: walk paths, extract text, chunk it along its structure, embed the chunks in
//! batches, and write each document with its chunks in one store transaction.
//!
//! Documents stream through a small buffer (enough chunks for efficient embedding batches), so
//! memory stays bounded whatever the corpus size. A file that cannot be read or parsed fails
//! alone; the run goes on and reports it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use perimeter_extract::{chunk, extract, Chunk, ChunkSpec, Extracted, Format};
use perimeter_store::{DocumentRecord, NewChunk};
use std::collections::BTreeMap;

use perimeter_detect::{Detector, Finding};
use perimeter_types::{DocumentId, Embedder, EntityKind, InjectionKind, Level, DEFAULT_TENANT};
use sha2::{Digest, Sha256};

use crate::{Index, IndexError};

/// Changes whenever extraction or chunking changes what a file turns into; a document ingested
/// by another version is re-ingested even if its bytes did not change.
pub const PIPELINE_VERSION: &str = "perimeter-ingest/2";

/// Files larger than this are refused (and reported), not read.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Chunks to accumulate across documents before embedding them in one call.
const EMBED_BATCH_CHUNKS: usize = 256;

/// How to label what is ingested. Flags given here override front matter for collection and
/// groups; for the label, the higher of the flag and the document's own front matter wins, so a
/// flag can never lower the sensitivity a document declares.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOptions {
    pub tenant: String,
    pub collection: Option<String>,
    pub label: Option<Level>,
    pub groups: Option<Vec<String>>,
    pub chunk: ChunkSpec,
    /// The access policy for sending chunks to the embedding backend. `None` only where no
    /// policy applies (tests of the index itself).
    pub embed_gate: Option<EmbedGate>,
}

/// Asks the policy, per document, whether its chunks may go to the embedding backend (a
/// `restricted` document never goes to an API embedder) and whether they must be
/// pseudonymised first. Decided from the document's label and the kinds found in it.
#[derive(Clone)]
pub struct EmbedGate {
    pub policy: std::sync::Arc<perimeter_policy::Policy>,
    /// The embedding backend's name.
    pub backend: String,
    /// Called with every decision for a backend outside the process, before any chunk is sent:
    /// the caller writes it to the audit log. An error refuses the document (fail closed).
    pub audit: Option<EmbedAudit>,
}

/// The audit hook of an [`EmbedGate`].
pub type EmbedAudit = std::sync::Arc<dyn Fn(&EmbedDecision<'_>) -> Result<(), String> + Send + Sync>;

/// What the gate decided for one document (kinds and counts, never text).
#[derive(Debug)]
pub struct EmbedDecision<'a> {
    pub tenant: &'a str,
    pub document_id: &'a str,
    pub level: Level,
    pub entities: &'a BTreeMap<EntityKind, u32>,
    pub backend: &'a str,
    /// `Ok(redact)` when the chunks go (pseudonymised or not), `Err(reasons)` when refused.
    pub outcome: Result<bool, &'a [String]>,
}

impl std::fmt::Debug for EmbedGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedGate").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl PartialEq for EmbedGate {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.policy, &other.policy) && self.backend == other.backend
    }
}

impl EmbedGate {
    /// Whether the embedding backend runs outside this process (then decisions are audited).
    fn leaves_process(&self) -> bool {
        self.policy
            .backend_index(&self.backend)
            .and_then(|i| self.policy.backends().nth(i))
            .is_none_or(|b| b.hosting != perimeter_policy::Hosting::Embedded)
    }

    /// `Ok(redact)` when the document may be embedded, `Err(reasons)` when not.
    fn admit(&self, tenant: &str, label: Level, entities: &BTreeMap<EntityKind, u32>) -> Result<bool, Vec<String>> {
        use perimeter_policy::{decide, Budgets, Facts, Health, PassageFacts, Purpose};
        let passages = [PassageFacts { label, kinds: entities.keys().copied().collect() }];
        let facts = Facts {
            passages: &passages,
            requested_model: Some(&self.backend),
            ..Facts::new(tenant, Purpose::Embeddings)
        };
        // Health is not the question here (a failing embedder fails the batch); permission is.
        let health = vec![Health::Healthy; self.policy.backends().len()];
        let d = decide(&facts, &self.policy, &health, &Budgets::default());
        match d.targets().first() {
            Some(t) => Ok(t.redact),
            None => Err(d.explain(&self.policy).reasons),
        }
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_string(),
            collection: None,
            label: None,
            groups: None,
            chunk: ChunkSpec { max_tokens: 200, overlap_tokens: 40 },
            embed_gate: None,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileOutcome {
    Ingested {
        document_id: DocumentId,
        chunks: usize,
        tokens: usize,
        level: Level,
        entities: BTreeMap<EntityKind, u32>,
        /// Chunks with instruction-like content (counts only; the kinds are stored per chunk).
        flagged_chunks: usize,
    },
    Unchanged {
        document_id: DocumentId,
    },
    Skipped {
        reason: String,
    },
    /// The policy does not allow this document to be sent to the embedding backend.
    Refused {
        reasons: Vec<String>,
    },
    Failed {
        error: String,
    },
}

/// Progress notifications, for a progress bar.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestEvent<'a> {
    /// The walk found this many candidate files and bytes.
    Discovered {
        files: usize,
        bytes: u64,
    },
    FileDone {
        source: &'a str,
        bytes: u64,
        outcome: &'a FileOutcome,
    },
    Embedded {
        chunks: usize,
        tokens: usize,
    },
}

pub trait IngestProgress: Sync {
    fn on_event(&self, event: IngestEvent<'_>);
}

impl IngestProgress for () {
    fn on_event(&self, _event: IngestEvent<'_>) {}
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IngestReport {
    pub files: Vec<(String, FileOutcome)>,
    pub ingested: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub refused: usize,
    pub failed: usize,
    pub chunks: usize,
    pub tokens: usize,
    /// Chunks with instruction-like content, over all ingested files.
    pub flagged_chunks: usize,
    pub seconds: f64,
}

impl IngestReport {
    fn record(&mut self, source: String, outcome: FileOutcome) {
        match &outcome {
            FileOutcome::Ingested { chunks, tokens, flagged_chunks, .. } => {
                self.flagged_chunks += flagged_chunks;
                self.ingested += 1;
                self.chunks += chunks;
                self.tokens += tokens;
            }
            FileOutcome::Unchanged { .. } => self.unchanged += 1,
            FileOutcome::Skipped { .. } => self.skipped += 1,
            FileOutcome::Refused { .. } => self.refused += 1,
            FileOutcome::Failed { .. } => self.failed += 1,
        }
        self.files.push((source, outcome));
    }
}

/// The stable id of a document: its tenant and source, hashed.
pub fn document_id(tenant: &str, source: &str) -> DocumentId {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(source.as_bytes());
    DocumentId(format!("doc_{}", &hex::encode(h.finalize())[..24]))
}

/// A document extracted and chunked, waiting for its embeddings.
struct Pending {
    source: String,
    record: DocumentRecord,
    chunks: Vec<Chunk>,
    /// Per chunk: kinds and counts of the findings that overlap it.
    chunk_entities: Vec<BTreeMap<EntityKind, u32>>,
    /// Per chunk: instruction-like content in it (kinds and counts).
    chunk_injection: Vec<BTreeMap<InjectionKind, u32>>,
    pages: Vec<std::ops::Range<usize>>,
    /// What is sent to the embedder per chunk (pseudonymised when the policy says so).
    embed_texts: Vec<String>,
}

/// Ingests files and folders (recursively). Hidden files and folders are skipped.
pub async fn ingest_paths(
    index: &Index,
    embedder: &dyn Embedder,
    detector: &Detector,
    paths: &[PathBuf],
    options: &IngestOptions,
    progress: &dyn IngestProgress,
) -> Result<IngestReport, IndexError> {
    let started = Instant::now();
    // First pass: count files and bytes for the progress bar (metadata only).
    let mut files = 0usize;
    let mut bytes = 0u64;
    for root in paths {
        if !root.exists() {
            return Err(IndexError::Path {
                path: root.display().to_string(),
                reason: "no such file or directory".into(),
            });
        }
        for entry in walk(root) {
            if let Ok(meta) = entry.metadata() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    progress.on_event(IngestEvent::Discovered { files, bytes });

    let mut report = IngestReport::default();
    let mut pending: Vec<Pending> = Vec::new();
    for root in paths {
        for entry in walk(root) {
            let path = entry.path();
            let source = display_source(path);
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match prepare_file(index, embedder, detector, path, &source, size, options) {
                Ok(Prepared::Done(outcome)) => {
                    progress.on_event(IngestEvent::FileDone { source: &source, bytes: size, outcome: &outcome });
                    report.record(source, outcome);
                }
                Ok(Prepared::Pending(p)) => {
                    pending.push(*p);
                    if pending.iter().map(|p| p.chunks.len()).sum::<usize>() >= EMBED_BATCH_CHUNKS {
                        flush(index, embedder, &mut pending, &mut report, progress).await?;
                    }
                }
                Err(e) => {
                    let outcome = FileOutcome::Failed { error: e };
                    progress.on_event(IngestEvent::FileDone { source: &source, bytes: size, outcome: &outcome });
                    report.record(source, outcome);
                }
            }
        }
    }
    flush(index, embedder, &mut pending, &mut report, progress).await?;
    index.sync()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Ingests one document given as bytes (the HTTP API's upload). `source` names it.
pub async fn ingest_bytes(
    index: &Index,
    embedder: &dyn Embedder,
    detector: &Detector,
    source: &str,
    format: Format,
    bytes: &[u8],
    options: &IngestOptions,
) -> Result<FileOutcome, IndexError> {
    let outcome = match prepare_bytes(index, embedder, detector, source, format, bytes, options) {
        Ok(Prepared::Done(outcome)) => outcome,
        Ok(Prepared::Pending(p)) => {
            let mut report = IngestReport::default();
            flush(index, embedder, &mut vec![*p], &mut report, &()).await?;
            report.files.pop().map(|(_, o)| o).unwrap_or(FileOutcome::Failed { error: "nothing ingested".into() })
        }
        Err(error) => FileOutcome::Failed { error },
    };
    index.sync()?;
    Ok(outcome)
}

enum Prepared {
    Done(FileOutcome),
    Pending(Box<Pending>),
}

fn walk(root: &Path) -> impl Iterator<Item = walkdir::DirEntry> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
}

/// The source name shown in citations: relative to the working directory when under it.
pub fn display_source(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let relative = std::env::current_dir().ok().and_then(|cwd| absolute.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.unwrap_or(absolute).to_string_lossy().into_owned()
}

fn prepare_file(
    index: &Index,
    embedder: &dyn Embedder,
    detector: &Detector,
    path: &Path,
    source: &str,
    size: u64,
    options: &IngestOptions,
) -> Result<Prepared, String> {
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(format) = Format::from_extension(&ext) else {
        let reason =
            if ext.is_empty() { "no file extension".to_string() } else { format!("unsupported file type .{ext}") };
        return Ok(Prepared::Done(FileOutcome::Skipped { reason }));
    };
    if size > MAX_FILE_BYTES {
        return Err(format!("file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("could not read the file: {e}"))?;
    prepare_bytes(index, embedder, detector, source, format, &bytes, options)
}

fn prepare_bytes(
    index: &Index,
    embedder: &dyn Embedder,
    detector: &Detector,
    source: &str,
    format: Format,
    bytes: &[u8],
    options: &IngestOptions,
) -> Result<Prepared, String> {
    let id = document_id(&options.tenant, source);
    let content_sha256 = hex::encode(Sha256::digest(bytes));
    let Extracted { text, title, meta, pages } = extract(format, bytes).map_err(|e| e.to_string())?;

    let collection = options.collection.clone().or(meta.collection).unwrap_or_else(|| "default".to_string());
    let label = match (options.label, meta.label) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b).unwrap_or_default(),
    };
    let mut groups = options.groups.clone().or(meta.groups).unwrap_or_default();
    groups.sort();
    groups.dedup();
    let title = title.or(meta.title).unwrap_or_else(|| file_stem(source));
    let pipeline_version = format!(
        "{PIPELINE_VERSION}; chunks {}/{}; {}",
        options.chunk.max_tokens,
        options.chunk.overlap_tokens,
        embedder.model()
    );

    let existing = index.store().document(&id).map_err(|e| e.to_string())?;
    if let Some(old) = &existing {
        if old.content_sha256 == content_sha256
            && old.collection == collection
            && old.label == label
            && old.groups == groups
            && old.title == title
            && old.pipeline_version == pipeline_version
        {
            return Ok(Prepared::Done(FileOutcome::Unchanged { document_id: id }));
        }
    }

    let chunks = chunk(&text, &options.chunk, &|s: &str| embedder.count_tokens(s));
    if chunks.is_empty() {
        return Err("the document has no text to index".into());
    }
    // Detection runs once over the whole text; each chunk then counts the findings it overlaps,
    // so a value split by a chunk boundary still marks both chunks.
    let findings = detector.detect(&text);
    let entities = perimeter_detect::kind_counts(&findings).into_iter().map(|(k, n)| (k, n as u32)).collect();
    let level = perimeter_detect::level_of(&findings).map_or(label, |found| found.max(label));
    let chunk_entities = chunks.iter().map(|c| overlapping(&findings, c.start, c.end)).collect();
    // Each chunk is scanned as it will be retrieved; retrieval scans it again with the rules of
    // the day, so these stored flags are for the document's report and the audit.
    let chunk_injection: Vec<BTreeMap<InjectionKind, u32>> = chunks
        .iter()
        .map(|c| perimeter_guard::injection_counts(&perimeter_guard::scan_instructions(&c.text)))
        .collect();
    let flagged_chunks = chunk_injection.iter().filter(|k| !k.is_empty()).count() as u32;
    let redact = match &options.embed_gate {
        None => false,
        Some(gate) => {
            let decided = gate.admit(&options.tenant, label, &entities);
            if let (Some(audit), true) = (&gate.audit, gate.leaves_process()) {
                let decision = EmbedDecision {
                    tenant: &options.tenant,
                    document_id: &id.0,
                    level: level.max(label),
                    entities: &entities,
                    backend: &gate.backend,
                    outcome: decided.as_ref().map(|r| *r).map_err(Vec::as_slice),
                };
                if let Err(e) = audit(&decision) {
                    return Ok(Prepared::Done(FileOutcome::Refused {
                        reasons: vec![format!("the audit record could not be written ({e}); nothing was sent")],
                    }));
                }
            }
            match decided {
                Ok(redact) => redact,
                Err(reasons) => return Ok(Prepared::Done(FileOutcome::Refused { reasons })),
            }
        }
    };
    let embed_texts = chunks
        .iter()
        .map(|c| {
            let input = embedding_input(&title, c);
            if !redact {
                return Ok(input);
            }
            let spans: Vec<perimeter_redact::Span> =
                detector.detect(&input).iter().map(|f| perimeter_redact::Span::new(f.kind, f.start, f.end)).collect();
            perimeter_redact::redact(&input, &spans, &perimeter_redact::Tokens::Sequential)
                .map(|r| r.text)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let record = DocumentRecord {
        id,
        tenant: options.tenant.clone(),
        source: source.to_string(),
        collection,
        label,
        level,
        entities,
        groups,
        title,
        format: format.as_str().to_string(),
        content_sha256,
        bytes: bytes.len() as u64,
        pages: if pages.is_empty() { None } else { Some(pages.len() as u32) },
        chunk_count: chunks.len() as u32,
        flagged_chunks: Some(flagged_chunks),
        ingested_at: now_rfc3339(),
        pipeline_version,
    };
    Ok(Prepared::Pending(Box::new(Pending {
        source: source.to_string(),
        record,
        chunks,
        chunk_entities,
        chunk_injection,
        pages,
        embed_texts,
    })))
}

/// Embeds every pending document's chunks in one call and writes each document.
async fn flush(
    index: &Index,
    embedder: &dyn Embedder,
    pending: &mut Vec<Pending>,
    report: &mut IngestReport,
    progress: &dyn IngestProgress,
) -> Result<(), IndexError> {
    if pending.is_empty() {
        return Ok(());
    }
    let texts: Vec<String> = pending.iter_mut().flat_map(|p| std::mem::take(&mut p.embed_texts)).collect();
    let embeddings = embedder.embed(texts).await.map_err(|e| IndexError::Embed(e.to_string()))?;
    let total_chunks: usize = pending.iter().map(|p| p.chunks.len()).sum();
    if embeddings.vectors.len() != total_chunks {
        return Err(IndexError::Embed(format!("{} vectors for {total_chunks} chunks", embeddings.vectors.len())));
    }
    progress.on_event(IngestEvent::Embedded { chunks: total_chunks, tokens: embeddings.prompt_tokens as usize });
    let mut vectors = embeddings.vectors.into_iter();
    for p in pending.drain(..) {
        let mut rows = Vec::with_capacity(p.chunks.len());
        let mut tokens = 0usize;
        for (ordinal, (((c, embedding), entities), injection)) in
            p.chunks.iter().zip(vectors.by_ref()).zip(&p.chunk_entities).zip(&p.chunk_injection).enumerate()
        {
            tokens += c.token_count;
            let (page_start, page_end) = page_range(&p.pages, c.start, c.end);
            rows.push(NewChunk {
                id: chunk_id(&p.record.id, ordinal, &c.text),
                ordinal: ordinal as u32,
                text: c.text.clone(),
                heading: c.heading.clone(),
                byte_start: c.start as u64,
                byte_end: c.end as u64,
                page_start,
                page_end,
                token_count: c.token_count as u32,
                entities: entities.clone(),
                injection: injection.clone(),
                embedding,
            });
        }
        let outcome = match index.store().replace_document(&p.record, &rows) {
            Ok(_) => FileOutcome::Ingested {
                document_id: p.record.id.clone(),
                chunks: rows.len(),
                tokens,
                level: p.record.level,
                entities: p.record.entities.clone(),
                flagged_chunks: p.record.flagged_chunks.unwrap_or(0) as usize,
            },
            Err(e) => FileOutcome::Failed { error: e.to_string() },
        };
        progress.on_event(IngestEvent::FileDone { source: &p.source, bytes: p.record.bytes, outcome: &outcome });
        report.record(p.source, outcome);
    }
    Ok(())
}

/// Kinds and counts of the findings that overlap `start..end`.
fn overlapping(findings: &[Finding], start: usize, end: usize) -> BTreeMap<EntityKind, u32> {
    let mut out = BTreeMap::new();
    for f in findings.iter().filter(|f| f.start < end && f.end > start) {
        *out.entry(f.kind).or_insert(0) += 1;
    }
    out
}

/// What the embedder sees for a chunk: its document title and section, then its text.
fn embedding_input(title: &str, c: &Chunk) -> String {
    match &c.heading {
        Some(h) => format!("{title} > {h}\n{}", c.text),
        None => format!("{title}\n{}", c.text),
    }
}

fn chunk_id(doc: &DocumentId, ordinal: usize, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(doc.0.as_bytes());
    h.update((ordinal as u64).to_le_bytes());
    h.update(text.as_bytes());
    format!("chk_{}", &hex::encode(h.finalize())[..24])
}

/// 1-based first and last page a byte range touches (PDFs only).
fn page_range(pages: &[std::ops::Range<usize>], start: usize, end: usize) -> (Option<u32>, Option<u32>) {
    if pages.is_empty() {
        return (None, None);
    }
    let page_of = |at: usize| pages.iter().position(|r| at < r.end).unwrap_or(pages.len() - 1) as u32 + 1;
    (Some(page_of(start)), Some(page_of(end.saturating_sub(1).max(start))))
}

fn file_stem(source: &str) -> String {
    Path::new(source).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| source.to_string())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(document_id("default", "a.md"), document_id("default", "a.md"));
        assert_ne!(document_id("default", "a.md"), document_id("other", "a.md"));
        assert_ne!(chunk_id(&document_id("t", "a"), 0, "x"), chunk_id(&document_id("t", "a"), 1, "x"));
    }

    #[test]
    fn page_ranges_map_bytes_to_pages() {
        let pages = vec![0..10, 10..25, 25..30];
        assert_eq!(page_range(&pages, 0, 5), (Some(1), Some(1)));
        assert_eq!(page_range(&pages, 8, 12), (Some(1), Some(2)));
        assert_eq!(page_range(&pages, 26, 30), (Some(3), Some(3)));
        assert_eq!(page_range(&[], 0, 5), (None, None));
    }
}
