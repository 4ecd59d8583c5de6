//! `perimeter eval`: recall@k of the expected source document for a question set, for hybrid,
//! BM25-only and dense-only retrieval.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use perimeter_config::Config;
use perimeter_index::SearchMode;
use perimeter_server::{load_models, open_index, Engines};
use perimeter_types::{AccessFilter, RetrievalQuery};
use serde::Deserialize;

#[derive(Args)]
pub struct EvalArgs {
    /// JSON lines: {"question": "...", "expected": "path/suffix/of/the/source.md"}.
    #[arg(long, default_value = "examples/eval/questions.jsonl")]
    questions: PathBuf,
    /// Passages retrieved per question.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Deserialize)]
struct Question {
    question: String,
    expected: String,
}

pub fn run(config: &Config, data_dir: &Path, args: EvalArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.questions)
        .with_context(|| format!("could not read {}", args.questions.display()))?;
    let mut questions = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let q: Question = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a question object", args.questions.display(), i + 1))?;
        questions.push(q);
    }
    if questions.is_empty() {
        bail!("{} holds no questions", args.questions.display());
    }
    let rt = crate::runtime()?;
    let (embedder, _) = load_models(config, Engines::EmbeddingOnly)?;
    let index = open_index(data_dir, embedder.as_ref())?;
    let texts: Vec<String> = questions.iter().map(|q| q.question.clone()).collect();
    let vectors = rt.block_on(embedder.embed(texts))?.vectors;

    let modes = [("hybrid", SearchMode::Hybrid), ("bm25", SearchMode::Bm25), ("dense", SearchMode::Dense)];
    let mut results = serde_json::Map::new();
    let mut misses = Vec::new();
    for (name, mode) in modes {
        let mut hits = 0;
        for (q, v) in questions.iter().zip(&vectors) {
            let query = RetrievalQuery {
                text: q.question.clone(),
                embedding: v.clone(),
                filter: AccessFilter::default(),
                top_k: args.k,
            };
            let passages = index.search(&query, mode)?;
            if passages.iter().any(|p| p.source.ends_with(&q.expected)) {
                hits += 1;
            } else if mode == SearchMode::Hybrid {
                misses.push(serde_json::json!({"question": q.question, "expected": q.expected,
                    "got": passages.iter().map(|p| p.source.clone()).collect::<Vec<_>>()}));
            }
        }
        results.insert(format!("{name}_recall_at_{}", args.k), serde_json::json!(hits as f64 / questions.len() as f64));
    }
    results.insert("questions".into(), serde_json::json!(questions.len()));
    results.insert("hybrid_misses".into(), serde_json::json!(misses));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(results))?);
    } else {
        println!("{} questions, recall@{}:", questions.len(), args.k);
        for (name, _) in modes {
            println!("  {name:<7} {:.3}", results[&format!("{name}_recall_at_{}", args.k)].as_f64().unwrap_or(0.0));
        }
        for m in &misses {
            println!("  hybrid miss: {} (expected {})", m["question"], m["expected"]);
        }
    }
    Ok(0)
}
