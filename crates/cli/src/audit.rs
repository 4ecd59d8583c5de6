//! `perimeter audit verify | export | pubkey`: checks the tamper-evident audit log, queries it,
//! prints its public key. Exit codes of `verify`: 0 intact, 1 tampered or torn, 2 unreadable.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use perimeter_audit::{key_id, parse_time, public_key_pem, Filter, RecordKind, VerifyingKey};
use perimeter_store::audit_file::{self, SegmentReport};
use serde_json::json;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain and signed checkpoints (exit 0 intact, 1 tampered or torn, 2 unreadable).
    Verify(VerifyArgs),
    /// Print records matching filters (with --json: one JSON document, `{"records": [...]}`).
    Export(ExportArgs),
    /// Print the public key that verifies the checkpoints (SPKI PEM, or hex).
    Pubkey(PubkeyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// One log file (default: every segment under <data-dir>/audit, and their links).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Public key (PEM or hex) to check signatures with (default: the data directory's own).
    #[arg(long)]
    public_key: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// From this time (RFC 3339, or a date such as 2026-11-29), inclusive.
    #[arg(long)]
    since: Option<String>,
    /// Until this time, exclusive.
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    level: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    backend: Option<String>,
    /// route or deny.
    #[arg(long)]
    decision: Option<String>,
    /// decision, completion, refusal, access_denied, model_verification, policy_change,
    /// key_change, checkpoint, segment.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PubkeyArgs {
    /// 64 hex digits instead of PEM.
    #[arg(long)]
    hex: bool,
}

pub fn run(data_dir: &Path, cmd: AuditCommand) -> Result<i32> {
    match cmd {
        AuditCommand::Verify(args) => verify(data_dir, args),
        AuditCommand::Export(args) => export(data_dir, args),
        AuditCommand::Pubkey(args) => pubkey(data_dir, args),
    }
}

fn verify(data_dir: &Path, args: VerifyArgs) -> Result<i32> {
    // Everything that stops verification from running at all exits 2.
    let key = match &args.public_key {
        Some(path) => match audit_file::read_public_key_file(path) {
            Ok(k) => Some(k),
            Err(e) => return unreadable(&e, args.json),
        },
        None => {
            let key_dir = match &args.log {
                // A log outside the data directory: its own folder's keys, if any.
                Some(log) => log.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default(),
                None => data_dir.to_path_buf(),
            };
            match audit_file::load_public_key(&key_dir) {
                Ok(k) => k,
                Err(e) => return unreadable(&e, args.json),
            }
        }
    };
    let reports = match &args.log {
        Some(path) => audit_file::verify_file(path, key.as_ref()).map(|r| vec![r]),
        None => audit_file::verify_log(data_dir, key.as_ref()),
    };
    let reports = match reports {
        Ok(r) => r,
        Err(e) => return unreadable(&e, args.json),
    };
    let intact = reports.iter().all(SegmentReport::is_intact);
    if args.json {
        let segments: Vec<_> = reports
            .iter()
            .map(|s| {
                json!({
                    "path": s.path,
                    "intact": s.is_intact(),
                    "status": s.report.status,
                    "message": s.report.status.to_string(),
                    "link_problem": s.link_problem,
                    "records": s.report.records,
                    "checkpoints": s.report.checkpoints,
                    "unsealed": s.report.unsealed,
                    "last_seq": s.report.last_seq,
                    "sha256": s.sha256,
                })
            })
            .collect();
        let doc = json!({
            "intact": intact,
            "signatures_checked": key.is_some(),
            "key_id": key.as_ref().map(key_id),
            "segments": segments,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for s in &reports {
            print_segment(s);
        }
        match &key {
            Some(k) => println!("signatures checked with key {}", key_id(k)),
            None => println!("signatures NOT checked: no public key (pass --public-key)"),
        }
        println!("{}", if intact { "audit log intact" } else { "audit log NOT intact" });
    }
    Ok(if intact { 0 } else { 1 })
}

fn print_segment(s: &SegmentReport) {
    let r = &s.report;
    let name = s.path.display();
    if r.status.is_intact() {
        println!(
            "{name}: intact, {} records, {} signed, {} after the last signature",
            r.records, r.checkpoints, r.unsealed
        );
    } else {
        println!("{name}: {} ({} records verified before it)", r.status, r.records);
    }
    if let Some(problem) = &s.link_problem {
        println!("{name}: link to the previous segment broken: {problem}");
    }
}

fn unreadable(e: &audit_file::AuditLogError, json: bool) -> Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "intact": false, "error": e.to_string() }))?);
    }
    eprintln!("error: {e}");
    Ok(2)
}

fn time_flag(name: &str, value: Option<&str>) -> Result<Option<u64>> {
    value
        .map(|v| {
            parse_time(v).with_context(|| {
                format!("--{name} {v:?}: expected RFC 3339 (2026-11-29T08:00:00Z) or a date (2026-11-29)")
            })
        })
        .transpose()
}

fn export(data_dir: &Path, args: ExportArgs) -> Result<i32> {
    let kind = args.kind.as_deref().map(str::parse::<RecordKind>).transpose().context("--kind")?;
    if let Some(d) = &args.decision {
        if d != "route" && d != "deny" {
            bail!("--decision {d:?}: expected route or deny");
        }
    }
    let filter = Filter {
        since: time_flag("since", args.since.as_deref())?,
        until: time_flag("until", args.until.as_deref())?,
        kind,
        tenant: args.tenant,
        level: args.level,
        backend: args.backend,
        decision: args.decision,
        limit: args.limit,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let mut write_err: Option<std::io::Error> = None;
    if args.json {
        // Streamed, so an export of a large log holds one record at a time.
        write!(out, "{{\"records\":[")?;
    }
    let torn = audit_file::export_with(data_dir, &filter, |record| {
        let result = if args.json {
            let sep = if count == 0 { "" } else { "," };
            serde_json::to_string(&record).map_err(std::io::Error::other).and_then(|s| write!(out, "{sep}\n{s}"))
        } else {
            writeln!(
                out,
                "{} {:>6} {:<18} {:<12} {:<10} {:<6} {}",
                record.time,
                record.seq,
                record.kind.as_str(),
                record.level.as_deref().unwrap_or("-"),
                record.tenant.as_deref().unwrap_or("-"),
                record.decision.as_deref().unwrap_or("-"),
                record.backend.as_deref().unwrap_or("-"),
            )
        };
        count += 1;
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if args.json {
        let torn: Vec<_> = torn.iter().map(|t| json!({ "path": t.path, "line": t.line, "bytes": t.bytes })).collect();
        writeln!(out, "\n],\"count\":{count},\"torn\":{}}}", serde_json::to_string(&torn)?)?;
    } else {
        for t in &torn {
            eprintln!(
                "warning: {}: torn last record at line {} ({} bytes), not exported",
                t.path.display(),
                t.line,
                t.bytes
            );
        }
    }
    out.flush()?;
    Ok(0)
}

fn pubkey(data_dir: &Path, args: PubkeyArgs) -> Result<i32> {
    let key: VerifyingKey = audit_file::load_public_key(data_dir)?.with_context(|| {
        format!("no audit keys under {}; run `perimeter init`", audit_file::audit_dir(data_dir).display())
    })?;
    if args.hex {
        println!("{}", hex_of(&key));
    } else {
        print!("{}", public_key_pem(&key)?);
    }
    Ok(0)
}

fn hex_of(key: &VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
