//! `perimeter model scan PATH... [--json]`: the malicious-model scanner on files and folders.
//! Exit 0 when every file is clean, 1 when any is unsafe, 2 when any could not be parsed (and
//! none is unsafe). A file the scanner did not understand is never reported clean.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use perimeter_scan::{Format, Verdict};
use sha2::{Digest, Sha256};

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Model files or folders (walked recursively; hidden entries included: an attacker would
    /// hide a payload there).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print one JSON document: {"verdict", "files": [{"path", "format", "verdict", "sha256",
    /// "findings": [{"kind", "severity", "location", "detail"}], "error"?}]}.
    #[arg(long)]
    json: bool,
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex_encode(&hasher.finalize()))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// ONNX external data must stay inside the model's folder: no `..`, no absolute path (the
/// scanner checks those) and no symbolic link leading out (checked here, on the file system).
fn onnx_symlink_findings(path: &Path) -> Vec<perimeter_scan::Finding> {
    let mut out = Vec::new();
    let Ok(source) = std::fs::read(path) else { return out };
    let Ok(locations) = perimeter_scan::onnx::external_locations(&source) else { return out };
    let base = path.parent().unwrap_or(Path::new("."));
    let Ok(root) = base.canonicalize() else { return out };
    for loc in locations {
        let target = base.join(&loc);
        if let Ok(real) = target.canonicalize() {
            if !real.starts_with(&root) {
                out.push(perimeter_scan::Finding {
                    kind: "onnx_external_data_outside",
                    severity: perimeter_scan::Severity::High,
                    location: loc.clone(),
                    detail: "external data resolves (through a symbolic link) outside the model's folder".into(),
                });
            }
        }
    }
    out
}

/// Text data that ships next to model weights (tokenizer and config JSON, README, TOML/YAML):
/// not a model payload, understood as text, and reported as skipped rather than unparseable.
/// Only when the scanner did not recognise a model format and the whole file is valid UTF-8
/// (JSON must also parse).
fn text_data(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let kind = match ext.as_str() {
        "json" => "json",
        "txt" | "md" | "toml" | "yaml" | "yml" | "cfg" => "text",
        _ => return None,
    };
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > 64 << 20 {
        return None;
    }
    let text = String::from_utf8(std::fs::read(path).ok()?).ok()?;
    if kind == "json" && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
        return None;
    }
    Some(kind)
}

pub fn run(args: ScanArgs) -> Result<i32> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for p in &args.paths {
        if let Err(e) = walk(p, &mut files) {
            unreadable.push((p.clone(), e.kind().to_string()));
        }
    }
    let mut results = Vec::new();
    let (mut unsafe_files, mut unparsed) = (0, unreadable.len());
    for (path, reason) in &unreadable {
        results.push(serde_json::json!({"path": path, "format": Format::Unknown, "verdict": Verdict::Unparseable, "findings": [], "error": format!("could not read: {reason}")}));
    }
    let mut skipped = 0;
    for path in &files {
        let mut report = match perimeter_runtime::scan_file(path) {
            Ok(r) => r,
            Err(e) => perimeter_scan::Report::unparseable(Format::Unknown, Vec::new(), e.to_string()),
        };
        if report.format == Format::Onnx {
            let extra = onnx_symlink_findings(path);
            if !extra.is_empty() {
                report.findings.extend(extra);
                report.verdict = Verdict::Unsafe;
            }
        }
        if report.format == Format::Unknown && report.findings.is_empty() {
            if let Some(kind) = text_data(path) {
                skipped += 1;
                if !args.json {
                    println!("{:<11} {:<14} {} (text data, not a model payload)", "skipped", kind, path.display());
                }
                results.push(serde_json::json!({"path": path, "format": kind, "verdict": "skipped", "findings": [], "sha256": sha256(path).unwrap_or_default()}));
                continue;
            }
        }
        match report.verdict {
            Verdict::Unsafe => unsafe_files += 1,
            Verdict::Unparseable => unparsed += 1,
            Verdict::Clean => {}
        }
        let digest = sha256(path).unwrap_or_default();
        if !args.json {
            println!(
                "{:<11} {:<14} {}",
                format!("{:?}", report.verdict).to_lowercase(),
                report.format.to_string(),
                path.display()
            );
            for f in &report.findings {
                println!("    {:?} {} at {}: {}", f.severity, f.kind, f.location, f.detail);
            }
            if let Some(e) = &report.error {
                println!("    error: {e}");
            }
        }
        let mut v = serde_json::to_value(&report)?;
        v["path"] = serde_json::json!(path);
        v["sha256"] = serde_json::json!(digest);
        results.push(v);
    }
    let verdict = if unsafe_files > 0 {
        Verdict::Unsafe
    } else if unparsed > 0 {
        Verdict::Unparseable
    } else {
        Verdict::Clean
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"verdict": verdict, "files": results}))?);
    } else {
        println!(
            "{} file(s): {} clean, {unsafe_files} unsafe, {unparsed} could not be parsed, {skipped} skipped (text data)",
            results.len(),
            results.len() - unsafe_files - unparsed - skipped
        );
    }
    Ok(match verdict {
        Verdict::Clean => 0,
        Verdict::Unsafe => 1,
        Verdict::Unparseable => 2,
    })
}
