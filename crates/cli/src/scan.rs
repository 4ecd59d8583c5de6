//! `perimeter detect` and `perimeter redact`: the detector and the pseudonymiser on a file or
//! standard input.
//!
//! `detect` streams: it reads 4 MiB windows that overlap by 64 KiB, so memory stays bounded
//! whatever the input size, and a value that straddles a window edge is found whole in the
//! window that starts before it. `redact` needs the whole text (one numbering for the whole
//! input) and refuses inputs over 256 MiB.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use perimeter_detect::{Detector, Finding};
use perimeter_redact::{Span, Tokens};
use perimeter_types::Level;

const WINDOW: usize = 4 << 20;
const OVERLAP: usize = 64 << 10;
const MAX_REDACT_BYTES: usize = 256 << 20;

#[derive(Args)]
pub struct DetectArgs {
    /// File to scan; `-` or nothing reads standard input.
    input: Option<PathBuf>,
    /// Print one JSON document: {"level", "findings": [{"kind", "start", "end", "score", "evidence"}]}.
    #[arg(long)]
    json: bool,
    /// Include each finding's text. Off by default: the point is not to copy sensitive values.
    #[arg(long)]
    show_values: bool,
}

#[derive(Args)]
pub struct RedactArgs {
    /// File to redact; `-` or nothing reads standard input.
    input: Option<PathBuf>,
    /// Print {"text", "mapping": [{"placeholder", "kind", "value"}]} instead of the text.
    #[arg(long)]
    json: bool,
    /// Name of an environment variable holding a key for deterministic keyed placeholders
    /// (`<EMAIL_3f9a1c2b>`, the same for the same value across runs). Without it, placeholders
    /// are numbered (`<EMAIL_1>`).
    #[arg(long)]
    key_env: Option<String>,
}

fn open(input: &Option<PathBuf>) -> Result<Box<dyn Read>> {
    match input {
        None => Ok(Box::new(std::io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(std::io::stdin().lock())),
        Some(p) => Ok(Box::new(std::fs::File::open(p).with_context(|| format!("could not open {}", p.display()))?)),
    }
}

/// Fills `buf` up to `WINDOW` bytes; returns true at end of input.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>) -> Result<bool> {
    let mut chunk = vec![0u8; 256 << 10];
    while buf.len() < WINDOW {
        let n = reader.read(&mut chunk).context("could not read the input")?;
        if n == 0 {
            return Ok(true);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(false)
}

/// The valid UTF-8 prefix of a window; an incomplete character at the end is carried to the
/// next window, anything else invalid is an error naming the byte offset.
fn valid_prefix(buf: &[u8], base: usize, last: bool) -> Result<&str> {
    match std::str::from_utf8(buf) {
        Ok(s) => Ok(s),
        Err(e) if e.error_len().is_none() && !last => Ok(std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or("")),
        Err(e) => bail!(
            "the input is not valid UTF-8 (first invalid byte at offset {}); convert it to UTF-8 first, e.g. with iconv",
            base + e.valid_up_to()
        ),
    }
}

fn finding_json(f: &Finding, base: usize, text: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "kind": f.kind, "start": base + f.start, "end": base + f.end, "score": (f.score * 1000.0).round() / 1000.0,
        "evidence": f.evidence,
    });
    if let Some(t) = text {
        v["text"] = serde_json::json!(t);
    }
    v
}

pub fn detect(args: DetectArgs) -> Result<i32> {
    let detector = Detector::new()?;
    let mut reader = open(&args.input)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf: Vec<u8> = Vec::with_capacity(WINDOW);
    let mut base = 0usize;
    let mut level: Option<Level> = None;
    let mut count = 0usize;
    if args.json {
        write!(out, "{{\"findings\": [")?;
    }
    loop {
        let last = fill(reader.as_mut(), &mut buf)?;
        let text = valid_prefix(&buf, base, last)?;
        let cut = if last {
            text.len()
        } else {
            let mut c = text.len().saturating_sub(OVERLAP);
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        };
        let mut next = cut;
        for f in detector.detect(text).iter().filter(|f| f.start < cut) {
            next = next.max(f.end);
            level = level.max(Some(f.kind.default_level()));
            let value = args.show_values.then(|| &text[f.start..f.end]);
            if args.json {
                let sep = if count == 0 { "" } else { "," };
                write!(out, "{sep}\n  {}", finding_json(f, base, value))?;
            } else {
                write!(out, "{:<22} {:>10}..{:<10} {:.2}", f.kind.as_str(), base + f.start, base + f.end, f.score)?;
                if let Some(v) = value {
                    write!(out, "  {v:?}")?;
                }
                writeln!(out)?;
            }
            count += 1;
        }
        if last {
            break;
        }
        buf.drain(..next);
        base += next;
    }
    let level_name = level.map(|l| l.as_str()).unwrap_or("public");
    if args.json {
        writeln!(out, "{}], \"level\": \"{level_name}\"}}", if count == 0 { "" } else { "\n" })?;
    } else {
        writeln!(out, "{count} findings; level {level_name}")?;
    }
    out.flush()?;
    Ok(0)
}

pub fn redact(args: RedactArgs) -> Result<i32> {
    let detector = Detector::new()?;
    let mut bytes = Vec::new();
    open(&args.input)?.take(MAX_REDACT_BYTES as u64 + 1).read_to_end(&mut bytes).context("could not read the input")?;
    if bytes.len() > MAX_REDACT_BYTES {
        bail!("the input is larger than {MAX_REDACT_BYTES} bytes; split it (redaction keeps one numbering per input)");
    }
    let text = valid_prefix(&bytes, 0, true)?;
    let tokens = match &args.key_env {
        None => Tokens::Sequential,
        Some(var) => {
            let key = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
            if key.len() < 16 {
                bail!("the key in {var} is too short: use at least 16 bytes");
            }
            Tokens::keyed(key.into_bytes(), 8)?
        }
    };
    let spans: Vec<Span> = detector.detect(text).iter().map(|f| Span::new(f.kind, f.start, f.end)).collect();
    let redacted = perimeter_redact::redact(text, &spans, &tokens)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({"text": redacted.text, "mapping": redacted.mapping}),
        )?;
        writeln!(out)?;
    } else {
        out.write_all(redacted.text.as_bytes())?;
    }
    out.flush()?;
    Ok(0)
}
