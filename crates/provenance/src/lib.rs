//! Model provenance, pure part: the model manifest (which files make up a model, where they come
//! from, and the SHA-256 each must have) and the comparison of a computed digest against it.
//!
//! Reading and hashing files is IO and happens in the runtime crate; this crate decides.
//! [`signing`] holds the signed statements of whole model directories (`perimeter model sign`).

pub mod signing;

use serde::Deserialize;

/// The committed manifest of pinned models (`models/manifest.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The name the runtime and configuration use, e.g. `all-minilm-l6-v2`.
    pub name: String,
    /// `embedding` or `generation`.
    pub kind: ModelKind,
    /// The registry package the files are unpacked from, pinned (`name==version`).
    pub package: String,
    #[serde(rename = "file")]
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Embedding,
    Generation,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// What the runtime uses the file for: `weights`, `tokenizer`, `config`.
    pub role: String,
    /// Path under the models directory.
    pub path: String,
    /// Path of the file inside the registry package.
    pub member: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("model manifest is not valid: {0}")]
    Parse(String),
    #[error("model manifest entry {model}: {reason}")]
    Invalid { model: String, reason: String },
    #[error("no model named {0:?} in the manifest")]
    UnknownModel(String),
}

/// Why a file does not match its pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("{path}: size is {actual} bytes, the manifest pins {expected}")]
    Size { path: String, expected: u64, actual: u64 },
    #[error("{path}: SHA-256 is {actual}, the manifest pins {expected}")]
    Digest { path: String, expected: String, actual: String },
}

impl Manifest {
    /// Parses and validates a manifest: unique names, lowercase 64-hex digests, relative paths
    /// without `..`, no duplicate roles within a model.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse(e.message().to_string()))?;
        let mut names = std::collections::HashSet::new();
        for m in &manifest.models {
            let invalid = |reason: String| ManifestError::Invalid { model: m.name.clone(), reason };
            if !names.insert(m.name.as_str()) {
                return Err(invalid("duplicate model name".into()));
            }
            if !m.package.contains("==") {
                return Err(invalid(format!("package {:?} is not pinned to a version (name==version)", m.package)));
            }
            let mut roles = std::collections::HashSet::new();
            for f in &m.files {
                if !roles.insert(f.role.as_str()) {
                    return Err(invalid(format!("duplicate file role {:?}", f.role)));
                }
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(invalid(format!("file {}: sha256 must be 64 lowercase hex digits", f.path)));
                }
                if f.path.starts_with('/') || f.path.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(invalid(format!("file {}: path must be relative, without '..'", f.path)));
                }
            }
            if m.files.is_empty() {
                return Err(invalid("no files".into()));
            }
        }
        Ok(manifest)
    }

    /// The built-in manifest with an operator's own models added. A name in both is refused: an
    /// operator's file must not silently replace a pin that ships with the binary.
    pub fn merged(mut self, other: Manifest) -> Result<Self, ManifestError> {
        for m in other.models {
            if self.models.iter().any(|x| x.name == m.name) {
                return Err(ManifestError::Invalid {
                    model: m.name,
                    reason: "is already pinned by the built-in manifest; choose another name".into(),
                });
            }
            self.models.push(m);
        }
        Ok(self)
    }

    pub fn model(&self, name: &str) -> Result<&ModelEntry, ManifestError> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| ManifestError::UnknownModel(name.to_string()))
    }
}

impl ModelEntry {
    pub fn file(&self, role: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == role)
    }

    /// The files of this entry that a signed statement of the models directory does not vouch
    /// for: absent from it, or listed with another digest. Empty means the statement covers the
    /// model (the pins are then checked against the bytes on disk by the runtime).
    pub fn not_covered_by(&self, statement: &signing::Statement) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| !statement.resources().iter().any(|r| r.name == f.path && hex::encode(r.digest) == f.sha256))
            .map(|f| f.path.clone())
            .collect()
    }
}

impl FileEntry {
    /// Compares what was measured on disk against the pin. Size first: it is cheap and catches
    /// truncated downloads with a clearer message.
    pub fn check(&self, actual_size: u64, actual_sha256: &[u8; 32]) -> Result<(), Mismatch> {
        if actual_size != self.size {
            return Err(Mismatch::Size { path: self.path.clone(), expected: self.size, actual: actual_size });
        }
        let actual = hex::encode(actual_sha256);
        if actual != self.sha256 {
            return Err(Mismatch::Digest { path: self.path.clone(), expected: self.sha256.clone(), actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[model]]
name = "m"
kind = "embedding"
package = "pkg==1.0"
[[model.file]]
role = "weights"
path = "m/w.bin"
member = "pkg/w.bin"
sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
size = 3
"#;

    #[test]
    fn parses_and_checks_digests() {
        let m = Manifest::parse(GOOD).unwrap();
        let entry = m.model("m").unwrap();
        let file = entry.file("weights").unwrap();
        let mut digest = [0u8; 32];
        digest[31] = 1;
        assert_eq!(file.check(3, &digest), Ok(()));
        assert!(matches!(file.check(4, &digest), Err(Mismatch::Size { .. })));
        digest[0] = 9;
        assert!(matches!(file.check(3, &digest), Err(Mismatch::Digest { .. })));
        assert!(matches!(m.model("other"), Err(ManifestError::UnknownModel(_))));
    }

    #[test]
    fn rejects_bad_manifests() {
        for (bad, why) in [
            (GOOD.replace("pkg==1.0", "pkg"), "not pinned"),
            (GOOD.replace("m/w.bin", "../w.bin"), "relative"),
            (GOOD.replace("0000000000000000000000000000000000000000000000000000000000000001", "abc"), "64 lowercase"),
            (GOOD.replace("size = 3", "size = 3\nextra = 1"), "unknown field"),
            (format!("{GOOD}{GOOD}"), "duplicate model"),
        ] {
            let err = Manifest::parse(&bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(why), "{why}: got {err:?}");
        }
    }
}
