//! The pinned embedded models (models/manifest.toml) scan as clean, read through a file-backed
//! `Source` the way the CLI reads them. The models directory is `models/` at the repository root,
//! or `PERIMETER_MODELS_DIR`. A missing model is a failure that says how to fetch it, never a
//! silent skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::path::PathBuf;

use perimeter_scan::{Format, Source, SourceError, Verdict};

/// Positioned reads from a file (no shared cursor).
struct FileSource {
    file: File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, offset);
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset);
        n.map_err(|e| SourceError(e.to_string()))
    }
}

fn models_dir() -> PathBuf {
    match std::env::var_os("PERIMETER_MODELS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    }
}

/// Opens a model file named in the manifest, or fails saying how to get it.
fn open(relative: &str) -> FileSource {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/manifest.toml");
    let pins = std::fs::read_to_string(&manifest).expect("models/manifest.toml is readable");
    assert!(
        pins.contains(&format!("path = \"{relative}\"")),
        "{relative} is no longer pinned in models/manifest.toml; update this test"
    );
    let path = models_dir().join(relative);
    let file = File::open(&path).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): run `make models` (or point PERIMETER_MODELS_DIR at the models)", path.display())
    });
    let len = file.metadata().unwrap().len();
    FileSource { file, len }
}

#[test]
fn embedding_model_safetensors_is_clean() {
    let source = open("all-minilm-l6-v2/model.safetensors");
    let report = perimeter_scan::scan("model.safetensors", &source);
    assert_eq!(report.format, Format::Safetensors);
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert!(report.findings.is_empty(), "{report:#?}");
}

#[test]
fn generation_model_gguf_is_clean() {
    let source = open("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let report = perimeter_scan::scan("SmolLM2-135M-Instruct.Q4_1.gguf", &source);
    assert_eq!(report.format, Format::Gguf);
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert!(report.findings.is_empty(), "{report:#?}");
}
