//! `perimeter bench …`: the measurements behind BENCHMARKS.md. Benchmarks, not tests: they
//! report numbers and never fail on them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use perimeter_config::Config;
use perimeter_index::{Index, SearchMode};
use perimeter_server::{load_models, Engines};
use perimeter_store::{DocumentRecord, NewChunk, SqliteStore, Store};
use perimeter_types::{
    AccessFilter, ChatMessage, ChatRequest, DocumentId, GenerationParams, Level, RetrievalQuery, Role,
};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Embedding throughput (sentences/s) on synthetic ~34-token sentences.
    Embed {
        #[arg(long, default_value_t = 1000)]
        sentences: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Words per sentence (about 1.2 tokens each); the default gives ~34-token sentences.
        #[arg(long, default_value_t = 28)]
        words: usize,
        /// Also write the sentences to this file (one per line) for an anchor measurement.
        #[arg(long)]
        dump: Option<PathBuf>,
    },
    /// Generation speed: prompt processing and decoding tokens/s.
    Generate {
        /// Approximate prompt length in tokens.
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 128)]
        new_tokens: u32,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Time to first token of a RAG request (5 passages) over the data directory's documents.
    Rag {
        #[arg(
            long,
            default_value = "How many days of annual leave do full-time staff get, and can unused days be carried over?"
        )]
        question: String,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Detector throughput (MB/s, one core) on prose without findings and on finding-dense text,
    /// and latency for 2 KB prompts.
    Detect {
        /// Labelled corpus whose texts make the finding-dense input.
        #[arg(long, default_value = "tests/data/detect/corpus.jsonl")]
        dense: PathBuf,
        /// Folder whose paragraphs without findings make the prose input.
        #[arg(long, default_value = "examples/corpus")]
        prose: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Latency Perimeter adds in front of a fast OpenAI-compatible upstream, and the rate it sustains.
    Gateway(crate::bench_gateway::GatewayArgs),
    /// Hybrid retrieval latency over a synthetic store of N chunks (no generation).
    Retrieval {
        #[arg(long, default_value_t = 100_000)]
        chunks: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Where to build the synthetic store (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn run(config: &Config, data_dir: &std::path::Path, cmd: BenchCommand) -> Result<i32> {
    match cmd {
        BenchCommand::Gateway(args) => crate::bench_gateway::run(config, args),
        BenchCommand::Rag { question, runs } => rag(config, data_dir, &question, runs),
        BenchCommand::Detect { dense, prose, runs } => detect(&dense, &prose, runs),
        BenchCommand::Embed { sentences, runs, words, dump } => embed(config, sentences, runs, words, dump),
        BenchCommand::Generate { prompt_tokens, new_tokens, runs } => generate(config, prompt_tokens, new_tokens, runs),
        BenchCommand::Retrieval { chunks, queries, dir } => retrieval(chunks, queries, dir),
    }
}

/// A small deterministic PRNG (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

const WORDS: &[&str] = &[
    "patient",
    "clinic",
    "appointment",
    "member",
    "savings",
    "account",
    "interest",
    "payment",
    "refund",
    "policy",
    "leave",
    "holiday",
    "expenses",
    "travel",
    "mileage",
    "password",
    "security",
    "incident",
    "report",
    "rota",
    "pharmacy",
    "prescription",
    "complaint",
    "interpreter",
    "access",
    "record",
    "review",
    "salary",
    "band",
    "manager",
    "staff",
    "training",
    "onboarding",
    "remote",
    "working",
    "equipment",
    "laptop",
    "network",
    "backup",
    "supplier",
    "invoice",
    "approval",
    "threshold",
    "budget",
    "quarter",
    "annual",
    "monthly",
    "weekly",
    "deadline",
    "escalation",
    "the",
    "a",
    "for",
    "with",
    "and",
    "of",
    "to",
    "in",
    "on",
    "by",
    "must",
    "should",
    "will",
    "can",
    "before",
    "after",
];

fn sentence(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s.push('.');
    s
}

fn range(values: &[f64]) -> String {
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.1}–{max:.1}")
}

fn embed(config: &Config, n: usize, runs: usize, words: usize, dump: Option<PathBuf>) -> Result<i32> {
    if n == 0 || runs == 0 {
        bail!("--sentences and --runs must be positive");
    }
    let mut rng = Rng(42);
    // 28–32 words ≈ 34 tokens with [CLS]/[SEP] for this vocabulary.
    let texts: Vec<String> = (0..n)
        .map(|_| {
            let count = words + rng.below(5);
            sentence(&mut rng, count)
        })
        .collect();
    if let Some(path) = dump {
        std::fs::write(&path, texts.join("\n") + "\n")
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    let rt = crate::runtime()?;
    let (embedder, _) = load_models(config, Engines::EmbeddingOnly)?;
    let tokens: usize = texts.iter().map(|t| embedder.count_tokens(t)).sum();
    println!(
        "embedding {n} sentences ({:.1} tokens each), {runs} runs, model {}",
        tokens as f64 / n as f64,
        embedder.model()
    );
    let mut rates = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let out = rt.block_on(embedder.embed(texts.clone()))?;
        let secs = started.elapsed().as_secs_f64();
        if out.vectors.len() != n {
            bail!("embedder returned {} vectors for {n} inputs", out.vectors.len());
        }
        rates.push(n as f64 / secs);
        println!("  run {run}: {:.1} sentences/s ({secs:.2}s)", n as f64 / secs);
    }
    println!("embedding throughput: {} sentences/s", range(&rates));
    Ok(0)
}

fn generate(config: &Config, prompt_tokens: usize, new_tokens: u32, runs: usize) -> Result<i32> {
    if runs == 0 || new_tokens == 0 {
        bail!("--runs and --new-tokens must be positive");
    }
    let rt = crate::runtime()?;
    let (_, chat) = load_models(config, Engines::All)?;
    let chat = chat.context("the chat model did not load")?;
    let mut rng = Rng(7);
    // About 1.2 tokens per word for this vocabulary with SmolLM2's tokenizer.
    let context = sentence(&mut rng, prompt_tokens * 5 / 6);
    println!(
        "generation: model {}, {} threads, ~{prompt_tokens}-token prompt, {new_tokens} new tokens, {runs} runs",
        chat.model(),
        config.runtime.threads
    );
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let request = ChatRequest {
            messages: vec![ChatMessage::new(Role::User, format!("{context}\nWrite a long story about the clinic."))],
            // A stop sequence that never appears forces the full length.
            params: GenerationParams { max_tokens: new_tokens, ..GenerationParams::default() },
        };
        let outcome = rt.block_on(chat.chat(request, Box::new(|_| true)))?;
        let p = f64::from(outcome.usage.prompt_tokens) / (outcome.timings.prompt_ms / 1000.0).max(1e-6);
        let g = f64::from(outcome.usage.completion_tokens) / (outcome.timings.generation_ms / 1000.0).max(1e-6);
        println!(
            "  run {run}: prompt {} tokens in {:.0} ms ({p:.1} tok/s); generated {} tokens in {:.0} ms ({g:.1} tok/s)",
            outcome.usage.prompt_tokens,
            outcome.timings.prompt_ms,
            outcome.usage.completion_tokens,
            outcome.timings.generation_ms
        );
        pp.push(p);
        tg.push(g);
    }
    println!("prompt processing: {} tok/s; generation: {} tok/s", range(&pp), range(&tg));
    Ok(0)
}

fn rag(config: &Config, data_dir: &std::path::Path, question: &str, runs: usize) -> Result<i32> {
    if runs == 0 {
        bail!("--runs must be positive");
    }
    let rt = crate::runtime()?;
    let state = perimeter_server::AppState::load(config.clone(), data_dir)?;
    if state.index.store().counts()?.1 == 0 {
        bail!("{} holds no documents: ingest some first (e.g. examples/corpus)", data_dir.display());
    }
    println!("time to first token, 5-passage RAG prompt, {runs} runs: {question:?}");
    let mut ttft = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let input = perimeter_server::pipeline::ChatInput {
            messages: vec![ChatMessage::new(Role::User, question)],
            params: GenerationParams { max_tokens: 16, ..GenerationParams::default() },
            retrieval: true,
            collection: None,
            top_k: Some(5),
            requested_level: None,
            requested_model: None,
            redact: false,
            principal: perimeter_auth::Principal::anonymous(),
        };
        let prepared =
            rt.block_on(perimeter_server::pipeline::prepare(&state, input)).map_err(|e| anyhow::anyhow!("{e}"))?;
        if prepared.is_denied() {
            bail!("the policy refused the benchmark question: {}", perimeter_server::denied(&prepared));
        }
        let retrieved = started.elapsed().as_secs_f64() * 1000.0;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let completed = rt.block_on(async {
            let run = perimeter_server::pipeline::execute(&state, &prepared, &tx);
            let first = async {
                while let Some(ev) = rx.recv().await {
                    if matches!(ev, perimeter_server::pipeline::Event::Token(_)) {
                        return Some(Instant::now());
                    }
                }
                None
            };
            let (done, first) = tokio::join!(run, first);
            done.map(|c| (c, first))
        });
        let (completed, first) = completed.map_err(|e| anyhow::anyhow!("{e}"))?;
        let outcome = completed.outcome;
        let first_ms = first.map(|t| t.duration_since(started).as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
        println!(
            "  run {run}: {} passages, {} prompt tokens; retrieval {retrieved:.0} ms, prefill {:.0} ms, first token at {first_ms:.0} ms",
            prepared.citations.len(),
            outcome.usage.prompt_tokens,
            outcome.timings.prompt_ms
        );
        ttft.push(first_ms);
    }
    println!("time to first token: {} ms", range(&ttft));
    Ok(0)
}

fn detect(dense: &std::path::Path, prose: &std::path::Path, runs: usize) -> Result<i32> {
    if runs == 0 {
        bail!("--runs must be positive");
    }
    let detector = perimeter_detect::Detector::new()?;
    // Prose: paragraphs of the sample corpus in which the detector finds nothing, repeated to 8 MB.
    let mut paragraphs = Vec::new();
    for entry in walkdir::WalkDir::new(prose).sort_by_file_name().into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "md" || e == "txt") {
            let text = std::fs::read_to_string(entry.path())?;
            paragraphs.extend(
                text.split("\n\n").filter(|p| p.len() > 80 && detector.detect(p).is_empty()).map(str::to_string),
            );
        }
    }
    if paragraphs.is_empty() {
        bail!("no finding-free paragraphs under {}", prose.display());
    }
    let mut clean = String::new();
    while clean.len() < 8 << 20 {
        for p in &paragraphs {
            clean.push_str(p);
            clean.push_str("\n\n");
        }
    }
    // Finding-dense: the labelled corpus's texts, repeated to 8 MB.
    let mut texts = Vec::new();
    for line in std::fs::read_to_string(dense).with_context(|| format!("could not read {}", dense.display()))?.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(t) = v["text"].as_str() {
                texts.push(t.to_string());
            }
        }
    }
    if texts.is_empty() {
        bail!("no labelled texts in {}", dense.display());
    }
    let mut dense_text = String::new();
    while dense_text.len() < 8 << 20 {
        for t in &texts {
            dense_text.push_str(t);
            dense_text.push_str("\n\n");
        }
    }
    println!(
        "detector: {} paragraphs of finding-free prose, {} labelled texts; {runs} runs, one thread",
        paragraphs.len(),
        texts.len()
    );
    for (name, text) in [("prose without findings", &clean), ("finding-dense text", &dense_text)] {
        // Warm-up (one untimed pass): the regex engines build their automata lazily, and the
        // first pass over a new input was about three times slower.
        std::hint::black_box(detector.detect(text).len());
        let mut rates = Vec::new();
        let mut found = 0;
        for _ in 0..runs {
            let t = Instant::now();
            found = detector.detect(text).len();
            rates.push(text.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        println!("  {name}: {:.1} MB, {found} findings, {} MB/s", text.len() as f64 / 1e6, range(&rates));
    }
    // 2 KB prompts with a few findings, as when a user pastes one ticket, note, log or config
    // into a question: each labelled text in turn (the ones without entities too), followed
    // by prose up to 2 KB. A labelled text longer than 2 KB is cut.
    {
        let mut lat = Vec::new();
        let mut found = 0usize;
        let mut p = 0usize;
        for i in 0..2000 {
            let mut prompt = texts[i % texts.len()].clone();
            prompt.push_str("\n\n");
            while prompt.len() < 2048 {
                prompt.push_str(&paragraphs[p % paragraphs.len()]);
                prompt.push_str("\n\n");
                p += 1;
            }
            let mut end = 2048.min(prompt.len());
            while !prompt.is_char_boundary(end) {
                end -= 1;
            }
            prompt.truncate(end);
            let t = Instant::now();
            let n = detector.detect(&prompt).len();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            found += n;
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        println!(
            "  2 KB prompt with one pasted labelled text: P50 {:.1} µs, P99 {:.1} µs ({:.1} findings a prompt)",
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
            found as f64 / lat.len() as f64
        );
    }
    // 2 KB prompts: windows of the dense text (a worst case) and of prose.
    for (name, text) in [("2 KB prose prompt", &clean), ("2 KB finding-dense prompt", &dense_text)] {
        let mut lat = Vec::new();
        let mut at = 0;
        for _ in 0..2000 {
            let mut end = (at + 2048).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let prompt = &text[at..end];
            let t = Instant::now();
            let n = detector.detect(prompt).len();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(n);
            at = if end + 2048 >= text.len() { 0 } else { end };
            while !text.is_char_boundary(at) {
                at += 1;
            }
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        println!("  {name}: P50 {:.1} µs, P99 {:.1} µs", lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
    }
    Ok(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn retrieval(chunks: usize, queries: usize, dir: Option<PathBuf>) -> Result<i32> {
    if chunks == 0 || queries == 0 {
        bail!("--chunks and --queries must be positive");
    }
    const DIMS: usize = 384;
    const PER_DOC: usize = 100;
    let cleanup = dir.is_none();
    let dir = match dir {
        Some(d) => d,
        None => tempfile_dir()?,
    };
    let mut rng = Rng(1234);
    let store = SqliteStore::open(&dir)?;
    store.bind_embedder("synthetic", DIMS)?;
    let (existing, _) = store.counts()?;
    if existing == 0 {
        println!("building a synthetic store of {chunks} chunks in {}", dir.display());
        let started = Instant::now();
        let docs = chunks.div_ceil(PER_DOC);
        for d in 0..docs {
            let id = DocumentId(format!("doc_{d:08}"));
            let n = PER_DOC.min(chunks - d * PER_DOC);
            let rows: Vec<NewChunk> = (0..n)
                .map(|i| NewChunk {
                    id: format!("chk_{d:08}_{i:03}"),
                    ordinal: i as u32,
                    text: sentence(&mut rng, 60),
                    heading: None,
                    byte_start: 0,
                    byte_end: 0,
                    page_start: None,
                    page_end: None,
                    token_count: 70,
                    entities: Default::default(),
                    injection: Default::default(),
                    embedding: unit_vector(&mut rng, DIMS),
                })
                .collect();
            let record = DocumentRecord {
                id,
                tenant: "default".into(),
                source: format!("synthetic/{d}.md"),
                collection: if d % 2 == 0 { "even" } else { "odd" }.into(),
                label: Level::Internal,
                level: Level::Internal,
                entities: Default::default(),
                groups: vec![format!("g{}", d % 4)],
                title: format!("Synthetic {d}"),
                format: "markdown".into(),
                content_sha256: String::new(),
                bytes: 0,
                pages: None,
                chunk_count: n as u32,
                flagged_chunks: Some(0),
                ingested_at: "1970-01-01T00:00:00Z".into(),
                pipeline_version: "bench".into(),
            };
            store.replace_document(&record, &rows)?;
        }
        println!("  stored in {:.1}s", started.elapsed().as_secs_f64());
    }
    let rss_before = rss_kib();
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(store);
    let index = Index::open(&dir, store)?;
    let (vectors, bm25, vector_bytes) = index.stats();
    let rss_after = rss_kib();
    println!("  indexes ready in {:.1}s: {vectors} vectors, {bm25} BM25 chunks", started.elapsed().as_secs_f64());
    println!(
        "memory: vector index {:.1} MiB; process RSS grew {:.1} MiB opening the indexes ({:.1} MiB per 100,000 chunks)",
        vector_bytes as f64 / 1048576.0,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 * 100_000.0 / vectors.max(1) as f64
    );

    for (label, filter) in [
        ("unfiltered", AccessFilter::default()),
        (
            "filtered (1 collection, 1 group)",
            AccessFilter {
                collections: Some(vec!["even".into()]),
                groups: Some(vec!["g0".into()]),
                ..AccessFilter::default()
            },
        ),
    ] {
        for (mode_name, mode) in
            [("hybrid", SearchMode::Hybrid), ("bm25 only", SearchMode::Bm25), ("dense only", SearchMode::Dense)]
        {
            let mut lat = Vec::with_capacity(queries);
            for _ in 0..queries {
                let query = RetrievalQuery {
                    text: sentence(&mut rng, 6),
                    embedding: unit_vector(&mut rng, DIMS),
                    filter: filter.clone(),
                    top_k: 5,
                };
                let t = Instant::now();
                let hits = index.search(&query, mode)?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if hits.is_empty() {
                    bail!("a query returned nothing; the synthetic store is broken");
                }
            }
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
            println!(
                "{mode_name:<10} {label}, {queries} queries, top 5: P50 {:.2} ms, P90 {:.2} ms, P99 {:.2} ms, max {:.2} ms",
                pct(0.5),
                pct(0.9),
                pct(0.99),
                pct(1.0)
            );
        }
    }
    if cleanup {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(0)
}

fn unit_vector(rng: &mut Rng, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims).map(|_| rng.unit()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("perimeter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
