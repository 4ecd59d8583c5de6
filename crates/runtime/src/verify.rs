//! The load gate: a model's files are hashed and compared with their pins before any engine
//! reads them. `VerifiedModel` can only be built here.

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

    /// The path of the file with this role (`weights`, `tokenizer`, `config`).
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
}

/// Hashes every file of `entry` under `models_dir` and compares it with the pin.
pub fn verify(entry: &ModelEntry, models_dir: &Path) -> Result<VerifiedModel, VerifyError> {
    let mut files = BTreeMap::new();
    let mut digests = BTreeMap::new();
    for f in &entry.files {
        let path = models_dir.join(&f.path);
        let (size, digest) = hash_file(&path)?;
        f.check(size, &digest).map_err(VerifyError::Mismatch)?;
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
            "[[model]]\nname = \"t\"\nkind = \"embedding\"\npackage = \"p==1\"\n[[model.file]]\nrole = \"weights\"\npath = \"t/w\"\nmember = \"w\"\nsha256 = \"{sha}\"\nsize = {size}\n"
        );
        Manifest::parse(&text).unwrap().models.remove(0)
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
        assert_eq!(v.file("weights"), Some(dir.path().join("t/w").as_path()));
        std::fs::write(dir.path().join("t/w"), b"abd").unwrap();
        let err = verify(&good, dir.path()).unwrap_err().to_string();
        assert!(err.contains("SHA-256") && err.contains("make models"), "{err}");
        std::fs::write(dir.path().join("t/w"), b"abcd").unwrap();
        assert!(verify(&good, dir.path()).unwrap_err().to_string().contains("size is 4 bytes"));
    }
}
