//! `perimeter ingest`: files and folders into the store, with a progress bar and a summary.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use perimeter_config::Config;
use perimeter_index::{ChunkSpec, FileOutcome, IngestEvent, IngestOptions, IngestProgress};
use perimeter_server::{load_models, open_index, Engines};
use perimeter_types::{AccessFilter, Level, DEFAULT_TENANT};

#[derive(Args)]
pub struct IngestArgs {
    /// Files or folders (folders are walked recursively; hidden entries are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Collection for these documents (overrides front matter; default `default`).
    #[arg(long)]
    collection: Option<String>,
    /// Sensitivity label: public, internal, confidential, restricted. A document's own front
    /// matter can raise it, never lower it. Default `internal`.
    #[arg(long)]
    label: Option<Level>,
    /// Access groups, comma-separated (overrides front matter). None: open to the whole tenant.
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// Tenant that owns the documents.
    #[arg(long, default_value = DEFAULT_TENANT)]
    tenant: String,
    /// Remove the documents ingested from these paths instead of ingesting them.
    #[arg(long)]
    delete: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

struct Bar {
    bar: ProgressBar,
    started: Instant,
    totals: Mutex<(usize, usize)>,
}

impl IngestProgress for Bar {
    fn on_event(&self, event: IngestEvent<'_>) {
        match event {
            IngestEvent::Discovered { files, bytes } => {
                self.bar.set_length(bytes.max(1));
                self.bar.println(format!("found {files} files ({})", indicatif::HumanBytes(bytes)));
            }
            IngestEvent::Embedded { chunks, tokens } => {
                let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
                t.0 += chunks;
                t.1 += tokens;
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                self.bar.set_message(format!(
                    "{} chunks, {:.0} chunks/s, {:.0} tokens/s",
                    t.0,
                    t.0 as f64 / secs,
                    t.1 as f64 / secs
                ));
            }
            IngestEvent::FileDone { source, bytes, outcome } => {
                self.bar.inc(bytes);
                if let FileOutcome::Failed { error } = outcome {
                    self.bar.println(format!("failed: {source}: {error}"));
                }
            }
        }
    }
}

pub fn run(config: &Config, data_dir: &Path, args: IngestArgs) -> Result<i32> {
    let tenant = args.tenant.trim().to_string();
    if tenant.is_empty() {
        bail!("--tenant must not be empty");
    }
    let rt = crate::runtime()?;
    let (embedder, _) = load_models(config, Engines::EmbeddingOnly)?;
    let index = open_index(data_dir, embedder.as_ref())?;

    if args.delete {
        return delete(&index, &tenant, &args.paths, args.json);
    }

    let options = IngestOptions {
        tenant,
        collection: args.collection,
        label: args.label,
        groups: args.groups.map(|g| g.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect()),
        chunk: ChunkSpec { max_tokens: config.ingest.chunk_tokens, overlap_tokens: config.ingest.chunk_overlap },
        embed_gate: Some(perimeter_index::EmbedGate {
            policy: config.policy.clone(),
            backend: config.embedding_backend.clone(),
            audit: embed_audit(config, data_dir)?,
        }),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = Bar { bar, started: Instant::now(), totals: Mutex::new((0, 0)) };
    let detector = perimeter_detect::Detector::new()?;
    let report = rt.block_on(perimeter_index::ingest_paths(
        &index,
        embedder.as_ref(),
        &detector,
        &args.paths,
        &options,
        &progress,
    ))?;
    progress.bar.finish_and_clear();

    let secs = report.seconds.max(1e-3);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (source, outcome) in &report.files {
            match outcome {
                FileOutcome::Skipped { reason } => eprintln!("skipped: {source}: {reason}"),
                FileOutcome::Failed { error } => eprintln!("failed:  {source}: {error}"),
                FileOutcome::Ingested { flagged_chunks, .. } if *flagged_chunks > 0 => {
                    eprintln!("flagged: {source}: {flagged_chunks} chunk(s) with instruction-like content ([guard] injection applies at retrieval)")
                }
                FileOutcome::Refused { reasons } => {
                    eprintln!(
                        "refused: {source}: the policy does not allow it to be embedded by {}",
                        config.embedding_backend
                    );
                    for r in reasons {
                        eprintln!("         {r}");
                    }
                }
                _ => {}
            }
        }
        eprintln!(
            "ingested {} documents ({} chunks, {} tokens) in {:.1}s: {:.1} chunks/s, {:.0} tokens/s; {} unchanged, {} skipped, {} refused by policy, {} failed",
            report.ingested,
            report.chunks,
            report.tokens,
            secs,
            report.chunks as f64 / secs,
            report.tokens as f64 / secs,
            report.unchanged,
            report.skipped,
            report.refused,
            report.failed
        );
        if report.flagged_chunks > 0 {
            eprintln!("{} chunk(s) with instruction-like content were flagged", report.flagged_chunks);
        }
        let (docs, chunks) = index.store().counts()?;
        eprintln!("store {}: {docs} documents, {chunks} chunks", data_dir.display());
    }
    Ok(if report.failed > 0 || report.refused > 0 { 1 } else { 0 })
}

fn delete(index: &perimeter_index::Index, tenant: &str, paths: &[PathBuf], json: bool) -> Result<i32> {
    let filter = AccessFilter { tenant: tenant.to_string(), ..AccessFilter::default() };
    let all = index.store().list_documents(&filter, usize::MAX, 0)?;
    let mut removed = Vec::new();
    for path in paths {
        let wanted = perimeter_index::display_source(path);
        let wanted_dir = format!("{}/", wanted.trim_end_matches('/'));
        for d in all.iter().filter(|d| d.source == wanted || d.source.starts_with(&wanted_dir)) {
            if index.store().delete_document(&d.id)?.is_some() {
                removed.push((d.id.clone(), d.source.clone()));
            }
        }
    }
    index.sync()?;
    if json {
        let list: Vec<_> = removed.iter().map(|(id, source)| serde_json::json!({"id": id, "source": source})).collect();
        println!("{}", serde_json::json!({"deleted": list}));
    } else {
        for (id, source) in &removed {
            eprintln!("deleted {source} ({id})");
        }
        eprintln!("deleted {} documents", removed.len());
    }
    Ok(0)
}

/// With an embedding backend outside this process, every document's decision goes to the audit
/// log before its chunks are sent; a log that cannot be opened stops the ingestion here.
fn embed_audit(config: &Config, data_dir: &Path) -> Result<Option<perimeter_index::EmbedAudit>> {
    if !perimeter_server::audit::embedder_leaves_process(config) {
        return Ok(None);
    }
    let options = perimeter_store::audit_file::AuditOptions::default();
    let auditor = perimeter_server::audit::Auditor::open(data_dir, options)
        .context("the audit log (documents for an API embedder are recorded before they are sent)")?;
    Ok(Some(perimeter_server::audit::embed_audit(std::sync::Arc::new(auditor), None)))
}
