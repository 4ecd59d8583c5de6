//! `perimeter detect` and `perimeter redact`: the detector and the pseudonymiser on a file or
//! standard input, in memory that does not grow with the input.
//!
//! Both read the input twice. A first pass checks that it is UTF-8 (naming the offset of the
//! first invalid byte), so an invalid input fails before anything is written: no half-written
//! JSON document on standard output. For `redact` the same pass collects the placeholder-shaped
//! literals ([`LiteralScanner`]), so that it keeps one numbering for the whole input and never
//! chooses a placeholder that occurs literally in it. Standard input cannot be read twice, so it
//! is first copied to a file in the temporary directory that only this user can read, and which
//! is unlinked as soon as it is created (on Unix; elsewhere deleted on close), so it does not
//! outlive the run. A FILE that changes between the two passes is not supported.
//!
//! The second pass reads the text in windows of 4 MiB that overlap by 64 KiB ([`windows`]). The
//! detector runs on each whole window, but only what starts before the cut (64 KiB before the
//! window's end) is reported; the next window starts at the cut, or at the end of the last value
//! reported when that runs past it, so a value that straddles an edge is found whole, once.
//! `redact` then redacts window by window ([`StreamRedactor`]) and writes each redacted head as it
//! goes; the output is the same as redacting the whole text at once with the same findings.
//! Memory is the window, the detector and, for `redact`, the mapping (each distinct value once),
//! which `--json` prints at the end.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use perimeter_detect::{Detector, Finding};
use perimeter_redact::{LiteralScanner, Literals, Mapping, Span, StreamRedactor, Tokens};
use perimeter_types::{EntityKind, Level};

/// How the input is read: windows of `window` bytes overlapping by `overlap` (which must be
/// smaller by more than a few characters), and `read` bytes at a time in the first pass of
/// `redact`. Tests use small sizes to cross many window edges.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    window: usize,
    overlap: usize,
    read: usize,
}

const SIZES: Sizes = Sizes { window: 4 << 20, overlap: 64 << 10, read: 256 << 10 };
/// `--json` escapes the text in pieces of this size, so the escaped copy stays small.
const JSON_PIECE: usize = 64 << 10;

#[derive(Args)]
pub struct DetectArgs {
    /// File to scan; `-` or nothing reads standard input. The input is read twice (UTF-8 is
    /// checked before anything is printed), so standard input is first copied to a private,
    /// already unlinked file in $TMPDIR.
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
    /// File to redact; `-` or nothing reads standard input. The input is read twice, so standard
    /// input is first copied to a private, already unlinked file in $TMPDIR (which needs room for
    /// it; a tmpfs holds it in memory).
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

/// The named file, or `None` for standard input (`-` or nothing).
fn input_path(input: &Option<PathBuf>) -> Option<&Path> {
    input.as_deref().filter(|p| p.as_os_str() != "-")
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("could not open {}", path.display()))
}

/// `read`, retried when a signal interrupts it.
fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other.context("could not read the input"),
        }
    }
}

/// Fills `buf` up to `window` bytes; returns true at end of input.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, window: usize) -> Result<bool> {
    while buf.len() < window {
        let start = buf.len();
        buf.resize(window, 0);
        let n = read_some(reader, &mut buf[start..]);
        buf.truncate(start + *n.as_ref().unwrap_or(&0));
        if n? == 0 {
            return Ok(true);
        }
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

/// Reads `reader` in overlapping windows and calls `each(text, base, cut)` on each: `text` is the
/// window, starting at byte `base` of the input, and `cut` is where the next window would start
/// (the end of `text` in the last window). `each` handles what starts before `cut` and returns
/// where the next window starts: `cut`, or later to step past a value that runs across it.
fn windows(
    reader: &mut dyn Read,
    sizes: Sizes,
    mut each: impl FnMut(&str, usize, usize) -> Result<usize>,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(sizes.window);
    let mut base = 0usize;
    loop {
        let last = fill(reader, &mut buf, sizes.window)?;
        let text = valid_prefix(&buf, base, last)?;
        let cut = if last {
            text.len()
        } else {
            let mut c = text.len().saturating_sub(sizes.overlap);
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        };
        let next = each(text, base, cut)?.clamp(cut, text.len());
        if last {
            return Ok(());
        }
        buf.drain(..next);
        base += next;
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
    let mut input = match input_path(&args.input) {
        Some(path) => open(path)?,
        None => spool_stdin()?,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    detect_to(&detector, &mut input, args.json, args.show_values, SIZES, &mut out)?;
    out.flush()?;
    Ok(0)
}

/// Writes the findings of `input` (from its start) to `out` as text or `--json`. A first pass
/// checks that the input is UTF-8, so an invalid input fails before anything is written (no
/// half-written JSON document on standard output).
fn detect_to<R: Read + Seek>(
    detector: &Detector,
    input: &mut R,
    json: bool,
    show_values: bool,
    sizes: Sizes,
    out: &mut impl Write,
) -> Result<()> {
    input.rewind().context("could not rewind the input")?;
    check_utf8(input, sizes, |_| {})?;
    input.rewind().context("could not rewind the input")?;
    let reader: &mut dyn Read = input;
    let mut level: Option<Level> = None;
    let mut count = 0usize;
    if json {
        write!(out, "{{\"findings\": [")?;
    }
    windows(reader, sizes, |text, base, cut| {
        let mut next = cut;
        for f in detector.detect(text).iter().filter(|f| f.start < cut) {
            next = next.max(f.end);
            level = level.max(Some(f.kind.default_level()));
            let value = show_values.then(|| &text[f.start..f.end]);
            if json {
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
        Ok(next)
    })?;
    let level_name = level.map(|l| l.as_str()).unwrap_or("public");
    if json {
        writeln!(out, "{}], \"level\": \"{level_name}\"}}", if count == 0 { "" } else { "\n" })?;
    } else {
        writeln!(out, "{count} findings; level {level_name}")?;
    }
    Ok(())
}

pub fn redact(args: RedactArgs) -> Result<i32> {
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
    let detector = Detector::new()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut input = match input_path(&args.input) {
        Some(path) => open(path)?,
        None => spool_stdin()?,
    };
    redact_to(&detector, &mut input, &tokens, args.json, SIZES, &mut out)?;
    out.flush()?;
    Ok(0)
}

/// Redacts `input` from its start to `out` in two passes (see the module comment): as text, or
/// with `json` as `{"text": …, "mapping": […]}`. Fails before writing anything when the input is
/// not UTF-8.
fn redact_to<R: Read + Seek>(
    detector: &Detector,
    input: &mut R,
    tokens: &Tokens,
    json: bool,
    sizes: Sizes,
    out: &mut impl Write,
) -> Result<()> {
    input.rewind().context("could not rewind the input")?;
    let literals = scan_literals(input, sizes)?;
    input.rewind().context("could not rewind the input")?;
    let mut redactor = StreamRedactor::new(tokens, literals)?;
    let mut scratch = Vec::new();
    if json {
        out.write_all(b"{\"text\": \"")?;
    }
    windows(input, sizes, |text, _, cut| {
        let spans: Vec<Span> = detector.detect(text).iter().map(|f| Span::new(f.kind, f.start, f.end)).collect();
        let head = redactor.push(text, &spans, cut)?;
        if json {
            write_json_string_contents(out, &head.text, &mut scratch)?;
        } else {
            out.write_all(head.text.as_bytes())?;
        }
        Ok(head.consumed)
    })?;
    if json {
        write_mapping(out, &redactor.finish())?;
    }
    Ok(())
}

/// The first pass of `redact`: checks that the input is UTF-8 and collects its
/// placeholder-shaped literals.
fn scan_literals(reader: &mut dyn Read, sizes: Sizes) -> Result<Literals> {
    let mut scanner = LiteralScanner::new();
    check_utf8(reader, sizes, |valid| scanner.push(valid))?;
    Ok(scanner.finish())
}

/// Reads `reader` to its end, checking that it is UTF-8 (naming the offset of the first
/// invalid byte) and handing each valid piece to `each`.
fn check_utf8(reader: &mut dyn Read, sizes: Sizes, mut each: impl FnMut(&[u8])) -> Result<()> {
    // Room for at least one byte after an incomplete character (at most 3 bytes) carried over.
    let mut buf = vec![0u8; sizes.read.max(4)];
    let (mut carried, mut base) = (0usize, 0usize);
    loop {
        let n = read_some(reader, &mut buf[carried..])?;
        let filled = carried + n;
        let valid = valid_prefix(&buf[..filled], base, n == 0)?.len();
        each(&buf[..valid]);
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(valid..filled, 0);
        carried = filled - valid;
        base += valid;
    }
}

/// Writes `text` escaped as the inside of a JSON string.
fn write_json_string_contents(out: &mut impl Write, text: &str, scratch: &mut Vec<u8>) -> Result<()> {
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(JSON_PIECE);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        scratch.clear();
        serde_json::to_writer(&mut *scratch, &rest[..end])?;
        // Without the quotes serde_json put around it.
        out.write_all(scratch.get(1..scratch.len().saturating_sub(1)).unwrap_or_default())?;
        rest = &rest[end..];
    }
    Ok(())
}

/// Closes the text string and writes the mapping, one entry a line, and the end of the document.
fn write_mapping(out: &mut impl Write, mapping: &Mapping) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        placeholder: &'a str,
        kind: EntityKind,
        value: &'a str,
    }
    out.write_all(b"\", \"mapping\": [")?;
    for (i, (placeholder, kind, value)) in mapping.iter().enumerate() {
        out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
        serde_json::to_writer(&mut *out, &Entry { placeholder, kind, value })?;
    }
    writeln!(out, "{}]}}", if mapping.is_empty() { "" } else { "\n" })?;
    Ok(())
}

/// Copies standard input to a new file in the temporary directory that only this user can read
/// and that has no name left (see [`anonymous_file`]), and returns it.
fn spool_stdin() -> Result<File> {
    let dir = std::env::temp_dir();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut attempt = 0u32;
    let mut file = loop {
        let path = dir.join(format!("perimeter-scan-{}-{stamp}-{attempt}", std::process::id()));
        match anonymous_file(&path) {
            Ok(file) => break file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e).with_context(|| format!("could not create a temporary file in {}", dir.display())),
        }
    };
    std::io::copy(&mut std::io::stdin().lock(), &mut file)
        .context("could not copy standard input to a temporary file")?;
    Ok(file)
}

/// Creates `path` (never an existing file or link), readable and writable by this user only, and
/// removes its name at once: the open handle keeps the content until it is closed, even when the
/// process is killed.
#[cfg(unix)]
fn anonymous_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)?;
    std::fs::remove_file(path)?;
    Ok(file)
}

/// Creates `path` (never an existing file), to be deleted by the system when it is closed. The
/// temporary directory is the user's own.
#[cfg(windows)]
fn anonymous_file(path: &Path) -> std::io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_FLAG_DELETE_ON_CLOSE: u32 = 0x0400_0000;
    OpenOptions::new().read(true).write(true).create_new(true).custom_flags(FILE_FLAG_DELETE_ON_CLOSE).open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::io::Cursor;

    use super::*;

    /// Small windows, so that a short text crosses many edges, and a first pass that reads 7
    /// bytes at a time, so that literals and characters are cut between reads.
    const SMALL: Sizes = Sizes { window: 1024, overlap: 256, read: 7 };

    /// Prose with emails (some repeated), cards, IBANs, multi-byte characters and literal
    /// placeholders, including those `redact` would choose first.
    fn sample(lines: usize) -> String {
        let mut text = String::from("Quoted from an earlier run: <EMAIL_1>, <CREDIT_CARD_1> and <IBAN_2>.\n");
        for i in 0..lines {
            text.push_str(&format!(
                "Line {i}: café ☕ 日本 🦀 — please write to person{}@example.org about the refund. ",
                i % 37
            ));
            match i % 4 {
                0 => text.push_str("The card 4111 1111 1111 1111 was charged twice.\n"),
                1 => text.push_str("Pay to GB82 WEST 1234 5698 7654 32 before Friday.\n"),
                2 => text.push_str("Old reference <EMAIL_3> stays as it is.\n"),
                _ => text.push_str("Nothing else of note here, only words.\n"),
            }
        }
        text
    }

    fn streamed(detector: &Detector, text: &[u8], tokens: &Tokens, json: bool, sizes: Sizes) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        redact_to(detector, &mut Cursor::new(text), tokens, json, sizes, &mut out)?;
        Ok(out)
    }

    /// Redacts with the findings of the whole text at once: what `redact` did before it streamed.
    fn whole(detector: &Detector, text: &str, tokens: &Tokens) -> perimeter_redact::Redacted {
        let spans: Vec<Span> = detector.detect(text).iter().map(|f| Span::new(f.kind, f.start, f.end)).collect();
        perimeter_redact::redact(text, &spans, tokens).unwrap()
    }

    fn check_equals_whole(detector: &Detector, text: &str, sizes: Sizes) {
        let keyed = Tokens::keyed(b"0123456789abcdef-unit-test".to_vec(), 8).unwrap();
        for tokens in [Tokens::Sequential, keyed] {
            let expected = whole(detector, text, &tokens);
            assert!(expected.mapping.len() > 30, "the sample has many values: {:?}", expected.mapping);
            let out = streamed(detector, text.as_bytes(), &tokens, false, sizes).unwrap();
            assert!(out == expected.text.as_bytes(), "streamed text differs from whole-text redaction ({tokens:?})");
            let json: serde_json::Value =
                serde_json::from_slice(&streamed(detector, text.as_bytes(), &tokens, true, sizes).unwrap()).unwrap();
            assert!(json["text"] == expected.text.as_str(), "JSON text differs ({tokens:?})");
            assert_eq!(json["mapping"], serde_json::to_value(&expected.mapping).unwrap());
            assert_eq!(perimeter_redact::restore(&expected.text, &expected.mapping), text);
        }
    }

    #[test]
    fn streaming_in_small_windows_equals_redacting_the_whole_text() {
        let detector = Detector::new().unwrap();
        let text = sample(400);
        assert!(text.len() > 40 * SMALL.window, "{}", text.len());
        let expected = whole(&detector, &text, &Tokens::Sequential).text;
        // The literals are avoided: numbering skips them.
        assert!(
            expected.contains("<EMAIL_2>") && expected.contains("<CREDIT_CARD_2>") && !expected.contains("<IBAN_2>,")
        );
        check_equals_whole(&detector, &text, SMALL);
    }

    #[test]
    fn streaming_in_the_real_windows_equals_redacting_the_whole_text() {
        let detector = Detector::new().unwrap();
        let text = sample(70_000);
        assert!(text.len() > 2 * SIZES.window, "{}", text.len());
        check_equals_whole(&detector, &text, SIZES);
    }

    #[test]
    fn invalid_utf8_fails_in_the_first_pass_before_any_output() {
        let detector = Detector::new().unwrap();
        let mut bytes = sample(100).into_bytes();
        // Before an ASCII byte near the end, many windows in.
        let at = bytes.len() - 100 + bytes[bytes.len() - 100..].iter().position(u8::is_ascii).unwrap();
        bytes.insert(at, 0xff);
        for json in [false, true] {
            let mut out = Vec::new();
            let err =
                redact_to(&detector, &mut Cursor::new(&bytes), &Tokens::Sequential, json, SMALL, &mut out).unwrap_err();
            assert!(format!("{err:#}").contains(&format!("offset {at}")), "{err:#}");
            assert!(out.is_empty());
            // `detect` too: no half-written document although the findings start much earlier.
            let err = detect_to(&detector, &mut Cursor::new(&bytes), json, false, SMALL, &mut out).unwrap_err();
            assert!(format!("{err:#}").contains(&format!("offset {at}")), "{err:#}");
            assert!(out.is_empty());
            // Without the bad byte the same call writes the findings.
            let mut fixed = bytes.clone();
            fixed.remove(at);
            detect_to(&detector, &mut Cursor::new(&fixed), json, false, SMALL, &mut out).unwrap();
            assert!(String::from_utf8_lossy(&out).contains("EMAIL"), "{}", String::from_utf8_lossy(&out));
        }
        // A character cut short by the end of the input.
        let mut bytes = sample(10).into_bytes();
        let end = bytes.len();
        bytes.extend_from_slice(&"🦀".as_bytes()[..2]);
        let err = streamed(&detector, &bytes, &Tokens::Sequential, false, SMALL).unwrap_err();
        assert!(format!("{err:#}").contains(&format!("offset {end}")), "{err:#}");
    }

    #[test]
    fn empty_input_gives_empty_output() {
        let detector = Detector::new().unwrap();
        assert!(streamed(&detector, b"", &Tokens::Sequential, false, SMALL).unwrap().is_empty());
        let json = streamed(&detector, b"", &Tokens::Sequential, true, SMALL).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), "{\"text\": \"\", \"mapping\": []}\n");
    }

    #[test]
    fn json_text_is_escaped_across_pieces() {
        let mut text = "\"quoted\"\\ \u{1} tab\t ".repeat(JSON_PIECE / 8);
        text.push('é');
        text.push_str(&"x".repeat(JSON_PIECE - 1));
        text.push('🦀');
        let mut out = Vec::new();
        write_json_string_contents(&mut out, &text, &mut Vec::new()).unwrap();
        let quoted = format!("\"{}\"", String::from_utf8(out).unwrap());
        assert_eq!(serde_json::from_str::<String>(&quoted).unwrap(), text);
    }
}
