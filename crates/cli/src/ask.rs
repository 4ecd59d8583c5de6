//! `perimeter ask`: one question through the same pipeline as the HTTP API, answered on the
//! terminal as it is generated, followed by the sources and the decision.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use perimeter_auth::{Principal, Role as KeyRole};
use perimeter_config::Config;
use perimeter_server::pipeline::{execute, prepare, ChatInput, Event};
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
    /// Ask as this tenant (declared in the configuration; default `default`): its policy
    /// applies and only its documents are searched.
    #[arg(long)]
    tenant: Option<String>,
    /// Ask as a user of these access groups, comma-separated: only the tenant's documents open
    /// to all or sharing one of them are searched. Without it, all of the tenant's documents.
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
}

/// The principal `ask` acts as: the operator, as an admin of the tenant (every document of it),
/// or as a user of `groups` when given.
fn principal(config: &Config, tenant: Option<String>, groups: Option<Vec<String>>) -> Result<Principal> {
    let tenant = tenant.map(|t| t.trim().to_string()).unwrap_or_else(|| perimeter_types::DEFAULT_TENANT.to_string());
    if !config.policy.has_tenant(&tenant) {
        bail!("--tenant {tenant:?} is not declared in the configuration ([[tenant]])");
    }
    Ok(match groups {
        None => Principal { tenant, ..Principal::anonymous() },
        Some(g) => Principal {
            key_id: None,
            tenant,
            role: KeyRole::User,
            groups: perimeter_auth::normalise_groups(&g).map_err(|e| anyhow::anyhow!("--groups: {e}"))?,
        },
    })
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
    let principal = principal(&config, args.tenant, args.groups)?;
    let rt = crate::runtime()?;
    let state = AppState::load(config, data_dir)?;
    let input = ChatInput {
        messages: vec![ChatMessage::new(Role::User, args.question.clone())],
        params: GenerationParams { max_tokens, ..GenerationParams::default() },
        retrieval: !args.no_retrieval,
        collection: args.collection,
        top_k: args.top_k,
        requested_level: args.level,
        requested_model: None,
        redact: args.redact,
        principal,
    };
    let prepared = rt.block_on(prepare(&state, input)).map_err(|e| anyhow::anyhow!("{e}"))?;
    if prepared.is_denied() {
        let error = perimeter_server::denied(&prepared);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&error.body())?);
        } else {
            eprintln!("refused: {error}");
        }
        return Ok(3);
    }
    let stream = !args.json;
    if stream {
        let e = &prepared.plan.explanation;
        eprintln!(
            "[level {} | decision {} | backend {}{} | {} sources]",
            prepared.plan.level(),
            e.decision,
            e.backend.as_deref().unwrap_or("-"),
            if e.redact { " (pseudonymised)" } else { "" },
            prepared.citations.len()
        );
    }
    // The pipeline runs on the runtime and sends restored text through a channel; this thread
    // prints it. Dropping the receiver (a closed stdout, e.g. piped into `head`) stops generation.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let prepared = Arc::new(prepared);
    let generation = rt.spawn({
        let (state, prepared) = (state.clone(), prepared.clone());
        async move { execute(&state, &prepared, &tx).await }
    });
    let print = |text: &str| -> bool {
        if !stream || text.is_empty() {
            return true;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_ok()
    };
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token(text) => {
                if !print(&text) {
                    break;
                }
            }
            Event::Serving(target) => {
                if stream && prepared.plan.explanation.backend.as_deref() != Some(&*target.name) {
                    eprintln!("[answered by fallback {}]", target.name);
                }
            }
        }
    }
    drop(rx);
    let completed = rt.block_on(generation)?.map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcome = &completed.outcome;
    if args.json {
        let body = serde_json::json!({
            "answer": outcome.text,
            "finish_reason": outcome.finish_reason,
            "model": state.config.backends.iter().find(|b| *b.profile.name == *completed.target.name).map(|b| b.profile.model.clone()),
            "perimeter": perimeter_info(&prepared, Some(&completed)),
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
