//! `perimeter eval-detect`: precision and recall of the detector per entity kind on a labelled
//! corpus (`tests/data/detect/corpus.jsonl`), and its speed on that corpus.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use perimeter_detect::Detector;
use perimeter_types::EntityKind;
use serde::Deserialize;

#[derive(Args)]
pub struct EvalDetectArgs {
    /// JSON lines: {"id", "genre", "text", "entities": [{"kind", "value"}]}.
    #[arg(long, default_value = "tests/data/detect/corpus.jsonl")]
    corpus: PathBuf,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
    /// List every false positive and false negative (with the record id and kind; values are
    /// shown because the corpus is synthetic).
    #[arg(long)]
    errors: bool,
}

#[derive(Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    genre: String,
    text: String,
    entities: Vec<Gold>,
}

#[derive(Deserialize)]
struct Gold {
    kind: EntityKind,
    value: String,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Tally {
    fn precision(self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

pub fn run(args: EvalDetectArgs) -> Result<i32> {
    let text =
        std::fs::read_to_string(&args.corpus).with_context(|| format!("could not read {}", args.corpus.display()))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a labelled record", args.corpus.display(), i + 1))?;
        records.push(r);
    }
    if records.is_empty() {
        bail!("{} holds no records", args.corpus.display());
    }
    let detector = Detector::new()?;
    let mut tallies: BTreeMap<EntityKind, Tally> = BTreeMap::new();
    let mut errors = Vec::new();
    let started = Instant::now();
    let mut bytes = 0usize;
    for r in &records {
        bytes += r.text.len();
        // Gold spans: each listed value at its next unused occurrence.
        let mut gold: Vec<(EntityKind, usize, usize, bool)> = Vec::new();
        let mut cursor: BTreeMap<(EntityKind, &str), usize> = BTreeMap::new();
        for g in &r.entities {
            let from = cursor.get(&(g.kind, g.value.as_str())).copied().unwrap_or(0);
            let Some(at) = r.text[from..].find(&g.value).map(|i| i + from) else {
                bail!("record {}: value for {} is not in its text", r.id, g.kind);
            };
            cursor.insert((g.kind, g.value.as_str()), at + g.value.len());
            gold.push((g.kind, at, at + g.value.len(), false));
        }
        for f in detector.detect(&r.text) {
            let hit = gold.iter_mut().find(|(k, s, e, used)| *k == f.kind && !*used && f.start < *e && f.end > *s);
            match hit {
                Some(g) => {
                    g.3 = true;
                    tallies.entry(f.kind).or_default().tp += 1;
                }
                None => {
                    tallies.entry(f.kind).or_default().fp += 1;
                    errors.push(format!(
                        "FP {:<22} {} [{}] {:?}",
                        f.kind.as_str(),
                        r.id,
                        r.genre,
                        &r.text[f.start..f.end]
                    ));
                }
            }
        }
        for (kind, s, e, used) in &gold {
            if !used {
                tallies.entry(*kind).or_default().fn_ += 1;
                errors.push(format!("FN {:<22} {} [{}] {:?}", kind.as_str(), r.id, r.genre, &r.text[*s..*e]));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total =
        tallies.values().fold(Tally::default(), |a, t| Tally { tp: a.tp + t.tp, fp: a.fp + t.fp, fn_: a.fn_ + t.fn_ });
    if args.json {
        let kinds: serde_json::Map<String, serde_json::Value> = tallies
            .iter()
            .map(|(k, t)| {
                (k.as_str().to_string(), serde_json::json!({"tp": t.tp, "fp": t.fp, "fn": t.fn_, "precision": t.precision(), "recall": t.recall()}))
            })
            .collect();
        let body = serde_json::json!({
            "records": records.len(), "bytes": bytes, "seconds": secs,
            "micro": {"precision": total.precision(), "recall": total.recall()},
            "kinds": kinds,
            "errors": if args.errors { errors.clone() } else { Vec::new() },
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!("{} records, {} bytes, detected in {:.1} ms", records.len(), bytes, secs * 1000.0);
        println!("{:<22} {:>5} {:>5} {:>5} {:>9} {:>7}", "kind", "tp", "fp", "fn", "precision", "recall");
        for (k, t) in &tallies {
            println!(
                "{:<22} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}",
                k.as_str(),
                t.tp,
                t.fp,
                t.fn_,
                t.precision(),
                t.recall()
            );
        }
        println!(
            "{:<22} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}",
            "all (micro)",
            total.tp,
            total.fp,
            total.fn_,
            total.precision(),
            total.recall()
        );
        if args.errors {
            for e in &errors {
                println!("{e}");
            }
        }
    }
    Ok(0)
}
