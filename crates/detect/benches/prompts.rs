//! Latency of `Detector::detect` on 2 KB prompts, finding-dense and prose, in one process and
//! without building the CLI: `cargo bench -p perimeter-detect --bench prompts [-- ROUNDS]`, or
//! under `perf record` to see where a prompt's time goes. Prompts are made as
//! `perimeter bench detect` makes them (whose figures BENCHMARKS.md reports): windows of the
//! labelled corpus's texts, and of the finding-free paragraphs of `examples/corpus`.

use std::path::Path;
use std::time::Instant;

use perimeter_detect::Detector;

fn main() {
    let rounds: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(5);
    let Ok(detector) = Detector::new() else {
        eprintln!("the detector did not build");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let corpus = std::fs::read_to_string(root.join("tests/data/detect/corpus.jsonl")).unwrap_or_default();
    let texts: Vec<String> = corpus
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    let mut paragraphs = Vec::new();
    prose_paragraphs(&root.join("examples/corpus"), &detector, &mut paragraphs);
    if texts.is_empty() || paragraphs.is_empty() {
        eprintln!("no texts: run from the repository");
        return;
    }
    let dense = repeat(&texts, 1 << 20);
    let prose = repeat(&paragraphs, 1 << 20);
    for (name, text) in [("finding-dense", &dense), ("prose", &prose)] {
        let prompts = windows(text, 2048, 2000);
        for p in &prompts {
            std::hint::black_box(detector.detect(p));
        }
        for _ in 0..rounds {
            let mut lat: Vec<f64> = prompts
                .iter()
                .map(|p| {
                    let t = Instant::now();
                    std::hint::black_box(detector.detect(p));
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            let mean = lat.iter().sum::<f64>() / lat.len() as f64;
            lat.sort_by(f64::total_cmp);
            println!(
                "2 KB {name} prompt: P50 {:.1} µs, P99 {:.1} µs, mean {mean:.1} µs",
                lat[lat.len() / 2],
                lat[lat.len() * 99 / 100]
            );
        }
    }
}

/// The paragraphs of the Markdown and text files under `dir` in which nothing is found.
fn prose_paragraphs(dir: &Path, detector: &Detector, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            prose_paragraphs(&path, detector, out);
        } else if path.extension().is_some_and(|e| e == "md" || e == "txt") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.extend(
                text.split("\n\n").filter(|p| p.len() > 80 && detector.detect(p).is_empty()).map(str::to_string),
            );
        }
    }
}

/// `parts`, each followed by a blank line, repeated to at least `len` bytes.
fn repeat(parts: &[String], len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        for p in parts {
            out.push_str(p);
            out.push_str("\n\n");
        }
    }
    out
}

/// `count` consecutive windows of about `size` bytes, on character boundaries, wrapping round.
fn windows(text: &str, size: usize, count: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    while out.len() < count {
        let mut end = (at + size).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push(&text[at..end]);
        at = if end + size >= text.len() { 0 } else { end };
        while !text.is_char_boundary(at) {
            at += 1;
        }
    }
    out
}
