//! The malicious-model scanner: bytes in, a report out. Pure: it never executes, imports or
//! unpickles anything, does no IO of its own (the caller hands it a [`Source`]), and its memory
//! and time are bounded on hostile input.
//!
//! Formats: pickle (protocols 0–5), PyTorch (zip, legacy and tar containers), safetensors, GGUF
//! (with the chat template checked for template injection), ONNX (external data and custom
//! operator domains) and Keras (`.keras` zip). A file is `Clean` only when it was understood
//! completely and nothing unsafe was found; what the scanner cannot parse is `Unparseable`,
//! never clean.

use std::fmt;

use serde::Serialize;

pub mod gguf;
pub mod keras;
pub mod onnx;
pub mod pickle;
pub mod safetensors;
pub mod torch;
pub mod zip;

/// Random access to the bytes of one file. The CLI implements it over a file (positioned reads),
/// tests over a `Vec<u8>`.
pub trait Source {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caller's IO failed. The scan of that file is then `Unparseable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not read the file: {0}")]
pub struct SourceError(pub String);

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        let len = <[u8]>::len(self) as u64;
        if offset >= len {
            return Ok(0);
        }
        let start = offset as usize;
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl Source for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        self.as_slice().read_at(offset, buf)
    }
}

/// Reads exactly `len` bytes at `offset` (a bounded helper for parsers).
pub fn read_exact_at(source: &dyn Source, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = source.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            return Err(SourceError(format!("unexpected end of file at byte {}", offset + done as u64)));
        }
        done += n;
    }
    Ok(buf)
}

/// A file format the scanner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Pickle,
    PytorchZip,
    PytorchLegacy,
    PytorchTar,
    Safetensors,
    Gguf,
    Onnx,
    Keras,
    /// Not recognised (or recognised but unsupported, such as Keras `.h5`).
    Unknown,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing, not a reason to refuse the file (e.g. an unusual but harmless flag).
    Info,
    /// Refuse: the file can do something a model file should not (an unknown global, a
    /// custom operator domain, a zip trick).
    Medium,
    /// Refuse: a known code-execution or file-access primitive.
    High,
    /// Refuse: code execution as soon as the file is loaded (`os.system`, `eval`, `exec`, …).
    Critical,
}

/// One thing found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable kind such as `pickle_global`, `zip_name_mismatch`, `gguf_template_injection`.
    pub kind: &'static str,
    pub severity: Severity,
    /// Where: a byte offset, an archive member, a tensor or key name.
    pub location: String,
    /// What: the offending global (`os.system`), key or construct. Never file content beyond it.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Understood completely; nothing above `Info`.
    Clean,
    /// At least one finding above `Info`.
    Unsafe,
    /// Not understood (corrupt, truncated, unsupported): never clean.
    Unparseable,
}

/// The scan of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub format: Format,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Why the file could not be parsed, when `verdict` is `Unparseable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// A report from findings, with the verdict they imply.
    pub fn from_findings(format: Format, findings: Vec<Finding>) -> Report {
        let verdict =
            if findings.iter().any(|f| f.severity > Severity::Info) { Verdict::Unsafe } else { Verdict::Clean };
        Report { format, verdict, findings, error: None }
    }

    /// A file that could not be parsed. Findings made before the parse failed are kept (a
    /// malicious payload before garbage is still reported), and then the verdict is `Unsafe`.
    pub fn unparseable(format: Format, findings: Vec<Finding>, error: impl Into<String>) -> Report {
        let verdict =
            if findings.iter().any(|f| f.severity > Severity::Info) { Verdict::Unsafe } else { Verdict::Unparseable };
        Report { format, verdict, findings, error: Some(error.into()) }
    }
}

/// Recognises the format from the first bytes and the file name (the name only breaks ties:
/// a pickle named `.bin` is scanned as a pickle).
pub fn sniff(name: &str, head: &[u8]) -> Format {
    let lower = name.to_ascii_lowercase();
    if head.starts_with(b"GGUF") {
        return Format::Gguf;
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return if lower.ends_with(".keras") { Format::Keras } else { Format::PytorchZip };
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Format::PytorchTar;
    }
    if lower.ends_with(".safetensors") || safetensors::looks_like(head) {
        return Format::Safetensors;
    }
    if lower.ends_with(".onnx") {
        return Format::Onnx;
    }
    if pickle::looks_like(head) {
        // A legacy torch file is a sequence of pickles starting with the magic number.
        return if torch::is_legacy(head) { Format::PytorchLegacy } else { Format::Pickle };
    }
    Format::Unknown
}

/// Scans one file.
pub fn scan(name: &str, source: &dyn Source) -> Report {
    let head = match read_exact_at(source, 0, (source.len().min(1024)) as usize) {
        Ok(h) => h,
        Err(e) => return Report::unparseable(Format::Unknown, Vec::new(), e.to_string()),
    };
    let lower = name.to_ascii_lowercase();
    match sniff(name, &head) {
        Format::Pickle => pickle::scan_source(source),
        Format::PytorchZip => torch::scan_zip(source),
        Format::PytorchLegacy => torch::scan_legacy(source),
        Format::PytorchTar => torch::scan_tar(source),
        Format::Safetensors => safetensors::scan(source),
        Format::Gguf => gguf::scan(source),
        Format::Onnx => onnx::scan(source),
        Format::Keras => keras::scan(source),
        Format::Unknown if lower.ends_with(".h5") || lower.ends_with(".hdf5") => Report::unparseable(
            Format::Unknown,
            Vec::new(),
            "HDF5 Keras files (.h5) are not supported: convert the model to .keras or safetensors",
        ),
        Format::Unknown => Report::unparseable(Format::Unknown, Vec::new(), "not a model format this scanner knows"),
    }
}
