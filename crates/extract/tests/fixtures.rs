//! Snapshot tests: every document under `tests/data/` is extracted and chunked, and the
//! result is compared with `NAME.expected` next to it.
//!
//! After a deliberate change, rewrite the snapshots with
//! `UPDATE_EXPECT=1 cargo test -p perimeter-extract --release --test fixtures` and review the
//! diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use perimeter_extract::{chunk, extract, ChunkSpec, Format};

const SPEC: ChunkSpec = ChunkSpec { max_tokens: 40, overlap_tokens: 8 };

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Renders what extraction and chunking made of one document.
fn render(format: Format, bytes: &[u8]) -> String {
    let extracted = match extract(format, bytes) {
        Ok(extracted) => extracted,
        Err(err) => return format!("error: {err}\n"),
    };
    let mut out = String::new();
    writeln!(out, "title: {:?}", extracted.title).unwrap();
    writeln!(out, "meta: {:?}", extracted.meta).unwrap();
    writeln!(out, "pages: {:?}", extracted.pages).unwrap();
    writeln!(out, "--- text").unwrap();
    writeln!(out, "{}", extracted.text).unwrap();
    let chunks = chunk(&extracted.text, &SPEC, &words);
    writeln!(out, "--- chunks (max {}, overlap {})", SPEC.max_tokens, SPEC.overlap_tokens).unwrap();
    for c in chunks {
        assert_eq!(extracted.text[c.start..c.end], c.text);
        writeln!(out, "[{}..{}] {} tokens, heading {:?}", c.start, c.end, c.token_count, c.heading).unwrap();
        for line in c.text.lines() {
            writeln!(out, "  | {line}").unwrap();
        }
    }
    out
}

fn fixtures() -> Vec<(PathBuf, Format)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut found: Vec<(PathBuf, Format)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let format = Format::from_extension(path.extension()?.to_str()?)?;
            Some((path, format))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn documents_match_their_snapshots() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 3, "fixtures missing: {fixtures:?}");
    let mut mismatches = Vec::new();
    for (path, format) in fixtures {
        let actual = render(format, &std::fs::read(&path).unwrap());
        let mut expected_path = path.clone().into_os_string();
        expected_path.push(".expected");
        let expected_path = PathBuf::from(expected_path);
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!("{}:\n{actual}", path.display()));
        }
    }
    assert!(mismatches.is_empty(), "snapshots differ (UPDATE_EXPECT=1 rewrites):\n{}", mismatches.join("\n"));
}
