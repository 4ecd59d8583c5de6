//! Scans 2 KB windows of the labelled corpus (as `perimeter bench detect` does) in a loop, for
//! profiling: `perf record target/release/examples/dense_prompts 20`.
use perimeter_detect::Detector;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let body = std::fs::read_to_string(format!("{root}/tests/data/detect/corpus.jsonl"))?;
    let mut text = String::new();
    for line in body.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(t) = v["text"].as_str() {
                text.push_str(t);
                text.push_str("\n\n");
            }
        }
    }
    let mut prompts = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + 2048).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        prompts.push(&text[at..end]);
        at = end;
    }
    let d = Detector::new()?;
    let mut n = 0;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for p in &prompts {
            n += d.detect(p).len();
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / (rounds * prompts.len()) as f64;
    println!("{} prompts x {rounds}: {n} findings, mean {per:.1} µs per prompt", prompts.len());
    Ok(())
}
