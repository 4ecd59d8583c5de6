//! Prints every finding for a fixed set of inputs, to diff detector versions for identical output.
//! `cargo run --release -p perimeter-detect --example dump_findings > /tmp/findings.txt`
use perimeter_detect::Detector;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut inputs: Vec<(String, String)> = Vec::new();
    let mut joined = String::new();
    for file in ["corpus.jsonl", "heldout.jsonl", "heldout2.jsonl", "heldout3.jsonl"] {
        let path = format!("{root}/tests/data/detect/{file}");
        let body = std::fs::read_to_string(&path)?;
        for (n, line) in body.lines().enumerate() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(t) = v["text"].as_str() {
                    inputs.push((format!("{file}:{n}"), t.to_string()));
                    joined.push_str(t);
                    joined.push_str("\n\n");
                }
            }
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut names: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    for p in names {
        if p.extension().is_some_and(|e| e == "txt") {
            let body = std::fs::read_to_string(&p)?;
            for (n, line) in body.lines().enumerate() {
                if let Some(t) = line.strip_prefix("> ") {
                    let t = t.replace("\\n", "\n");
                    inputs.push((format!("{}:{n}", p.display()), t));
                }
            }
        }
    }
    let base: Vec<(String, String)> = inputs.clone();
    for (id, t) in &base {
        inputs.push((format!("{id}:upper"), t.to_uppercase()));
        inputs.push((format!("{id}:lower"), t.to_lowercase()));
        inputs.push((format!("{id}:oneline"), t.replace('\n', " ")));
        inputs.push((format!("{id}:nbsp"), t.replace(' ', "\u{a0}")));
    }
    inputs.push(("joined".into(), joined.clone()));
    let mut at = 0;
    let mut w = 0;
    while at < joined.len() && w < 600 {
        let mut end = (at + 2048).min(joined.len());
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        inputs.push((format!("window:{w}"), joined[at..end].to_string()));
        at = end;
        w += 1;
        // Shifted windows too, so boundaries fall in different places.
        let mut s = (at + 700).min(joined.len());
        while !joined.is_char_boundary(s) {
            s += 1;
        }
        let mut e2 = (s + 2048).min(joined.len());
        while !joined.is_char_boundary(e2) {
            e2 -= 1;
        }
        if s < e2 {
            inputs.push((format!("shifted:{w}"), joined[s..e2].to_string()));
        }
    }
    let detector = Detector::new()?;
    let mut total = 0;
    for (id, t) in &inputs {
        for f in detector.detect(t) {
            total += 1;
            println!("{id}\t{:?}\t{}\t{}\t{:.6}\t{:?}", f.kind, f.start, f.end, f.score, f.evidence);
        }
    }
    eprintln!("{} inputs, {total} findings", inputs.len());
    Ok(())
}
