//! `perimeter ask`: one question through the same pipeline as the HTTP API, answered on the
//! terminal as it is generated, followed by the sources and the decision.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use perimeter_config::Config;
use perimeter_server::pipeline::{prepare, ChatInput};
use perimeter_server::{perimeter_info, AppState};
use perimeter_types::{ChatMessage, GenerationParams, Level, Role};

#[derive(Args)]
pub struct AskArgs {
    /// The question.
    question: String,
    /// Print the full response object (answer, citations, decision) as JSON instead of streaming.
    #[arg(long)]
    json: bool,
    /// Search only this collection.
    #[arg(long)]
    collection: Option<String>,
    /// Passages to retrieve.
    #[arg(long)]
    top_k: Option<usize>,
    /// Answer without retrieval (a plain model call).
    #[arg(long)]
    no_retrieval: bool,
    /// Longest answer, in tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Raise the request's sensitivity level (like the x-perimeter-level header).
    #[arg(long)]
    level: Option<Level>,
    /// Pseudonymise the prompt before the model sees it, and restore the answer.
    #[arg(long)]
    redact: bool,
}

pub fn run(config: Config, data_dir: &Path, args: AskArgs) -> Result<i32> {
    if args.question.trim().is_empty() {
        bail!("the question is empty");
    }
    if let Some(k) = args.top_k {
        if !(1..=50).contains(&k) {
            bail!("--top-k must be between 1 and 50");
        }
    }
    let max_tokens = args.max_tokens.unwrap_or(config.generation.max_tokens);
    if max_tokens == 0 || max_tokens > config.generation.max_tokens_limit {
        bail!("--max-tokens must be between 1 and {}", config.generation.max_tokens_limit);
    }
    let rt = crate::runtime()?;
    let state = AppState::load(config, data_dir)?;
    let input = ChatInput {
        messages: vec![ChatMessage::new(Role::User, args.question.clone())],
        params: GenerationParams { max_tokens, ..GenerationParams::default() },
        retrieval: !args.no_retrieval,
        collection: args.collection,
        top_k: args.top_k,
        requested_level: args.level,
        redact: args.redact,
    };
    let prepared = rt.block_on(prepare(&state, input)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stream = !args.json;
    if stream {
        eprintln!(
            "[level {} | decision {} | backend {} | {} sources]",
            prepared.plan.level,
            serde_json::to_value(prepared.plan.decision)?.as_str().unwrap_or("route"),
            prepared.plan.backend,
            prepared.citations.len()
        );
    }
    // Tokens come from the model's worker thread through a channel; this thread restores
    // placeholders (when the prompt was pseudonymised) and prints. Dropping the receiver (a
    // closed stdout, e.g. piped into `head`) stops generation.
    let chat = Arc::clone(&state.chat);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let generation = rt.spawn({
        let request = prepared.request.clone();
        async move { chat.chat(request, Box::new(move |piece: &str| tx.send(piece.to_string()).is_ok())).await }
    });
    let mut restorer = prepared.mapping.as_ref().map(perimeter_redact::Restorer::new);
    let print = |text: &str| -> bool {
        if !stream || text.is_empty() {
            return true;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_ok()
    };
    for piece in rx.iter() {
        let text = match restorer.as_mut() {
            Some(r) => r.push(&piece),
            None => piece,
        };
        if !print(&text) {
            break;
        }
    }
    drop(rx);
    if let Some(r) = restorer {
        print(&r.finish());
    }
    let mut outcome = rt.block_on(generation)?.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(mapping) = &prepared.mapping {
        outcome.text = perimeter_redact::restore(&outcome.text, mapping);
    }
    if args.json {
        let body = serde_json::json!({
            "answer": outcome.text,
            "finish_reason": outcome.finish_reason,
            "model": state.chat.model(),
            "perimeter": perimeter_info(&prepared, Some(outcome.usage.into())),
            "timings": outcome.timings,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!();
        if !prepared.citations.is_empty() {
            println!("\nSources:");
            for (i, c) in prepared.citations.iter().enumerate() {
                println!("  [{}] {} (score {:.4})", i + 1, c.source, c.score);
            }
        }
        eprintln!(
            "[{} prompt tokens in {:.0} ms, {} answer tokens in {:.0} ms]",
            outcome.usage.prompt_tokens,
            outcome.timings.prompt_ms,
            outcome.usage.completion_tokens,
            outcome.timings.generation_ms
        );
    }
    Ok(0)
}
