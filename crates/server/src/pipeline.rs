//! One chat request, top to bottom, as in DESIGN.md's request flow:
//! query → detect → (policy: may the query be embedded here?) → embed → retrieve (filter inside
//! the search) → plan (classify → decide) → assemble prompt → for the chosen backend, then each
//! fallback: pseudonymise if the route says so → backend → restore.
//!
//! The HTTP handlers and `perimeter ask` both run it, so the CLI shows exactly what the API does.
//! Nothing is sent to any backend, for embedding or for chat, before the policy has allowed it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use perimeter_core::{assemble, citations, last_user_text, plan, Plan, PlanRequest, PromptBudget};
use perimeter_policy::{Purpose, Target, DEFAULT_TENANT};
use perimeter_types::{
    AccessFilter, ChatMessage, ChatOutcome, ChatRequest, Citation, EntityKind, GenerationParams, Level, RetrievalQuery,
    Retriever,
};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::state::AppState;

/// A chat request in core terms, after wire parsing and validation.
#[derive(Debug, Clone)]
pub struct ChatInput {
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    pub retrieval: bool,
    pub collection: Option<String>,
    pub top_k: Option<usize>,
    /// The level a client asked for with `x-perimeter-level` (it can only raise the level).
    pub requested_level: Option<Level>,
    /// A backend name or model id the caller asked for (`None` lets the policy choose).
    pub requested_model: Option<String>,
    /// The client asked for pseudonymisation: sensitive values in the prompt are replaced by
    /// placeholders before the backend sees them, and restored in the answer.
    pub redact: bool,
}

/// Everything decided before a backend is called.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: Plan,
    pub citations: Vec<Citation>,
    /// The assembled prompt, not yet pseudonymised (each target decides that). Never logged.
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    /// Retrieval notes that belong with the decision's reasons (e.g. the query was not embedded).
    pub notes: Vec<String>,
}

impl Prepared {
    pub fn is_denied(&self) -> bool {
        !self.plan.decision.is_route()
    }

    /// The decision's reasons with the retrieval notes.
    pub fn reasons(&self) -> Vec<String> {
        let mut r = self.notes.clone();
        r.extend(self.plan.explanation.reasons.iter().cloned());
        r
    }
}

/// What the pipeline tells the caller while a request runs.
#[derive(Debug)]
pub enum Event {
    /// `target` is about to produce the answer (sent once, before its first token).
    Serving(Target),
    Token(String),
}

/// A finished request.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The answer with placeholders restored.
    pub outcome: ChatOutcome,
    /// The backend that produced it.
    pub target: Target,
    /// How many distinct values were pseudonymised for it.
    pub pseudonymised: usize,
    /// Backends tried first that failed before producing any output.
    pub failed: Vec<String>,
    /// Seconds spent waiting on backends (all attempts): the request's time minus this is
    /// Perimeter's own overhead.
    pub backend_seconds: f64,
}

/// Kinds and counts of the sensitive data in one text.
pub(crate) fn kinds_in(state: &AppState, text: &str) -> BTreeMap<EntityKind, u32> {
    perimeter_detect::kind_counts(&state.detector.detect(text)).into_iter().map(|(k, n)| (k, n as u32)).collect()
}

/// Retrieval, classification, the decision and the prompt. A denied request comes back as
/// `Ok` with `is_denied()`; the caller answers it without calling any backend.
pub async fn prepare(state: &AppState, input: ChatInput) -> Result<Prepared, ApiError> {
    // Everything the caller sent goes to the backend, so everything is scanned. Only kinds and
    // counts leave this function, never the values.
    // Each message is scanned once; the query sent for embedding is one of them.
    let per_message: Vec<BTreeMap<EntityKind, u32>> =
        input.messages.iter().map(|m| kinds_in(state, &m.content)).collect();
    let mut query_entities: BTreeMap<EntityKind, u32> = BTreeMap::new();
    for counts in &per_message {
        for (kind, n) in counts {
            *query_entities.entry(*kind).or_insert(0) += n;
        }
    }
    let policy = &state.config.policy;
    let budgets = perimeter_policy::Budgets::default();
    let mut notes = Vec::new();
    let passages = if input.retrieval {
        let query = last_user_text(&input.messages)
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("retrieval needs a non-empty user message to search for", Some("messages"))
            })?
            .to_string();
        let started = Instant::now();
        // The query is text too: it may only go to the embedding backend if the policy allows
        // it. If not, the search runs on BM25 alone and the query never leaves.
        let embedding_name = state.config.embedding_backend.as_str();
        let last_user = input.messages.iter().rposition(|m| m.role == perimeter_types::Role::User);
        let query_kinds = last_user.map(|i| per_message[i].clone()).unwrap_or_default();
        let embed_plan = plan(
            &PlanRequest {
                tenant: DEFAULT_TENANT,
                purpose: Purpose::Embeddings,
                query_entities: &query_kinds,
                passages: &[],
                requested_level: input.requested_level,
                requested_model: Some(embedding_name),
                client_redact: input.redact,
            },
            policy,
            &state.backends.health(),
            &budgets,
        );
        let embedding = match embed_plan.decision.targets().first() {
            Some(target) => {
                let text = if target.redact { redact_text(state, &query)? } else { query.clone() };
                match state.backends.embedder.embed(vec![text]).await {
                    Ok(mut e) => {
                        e.vectors.pop().ok_or_else(|| ApiError::internal("the embedder returned no vector"))?
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "query embedding failed; searching with BM25 only");
                        notes.push("the query embedding failed; passages were found by keyword search only".into());
                        Vec::new()
                    }
                }
            }
            None => {
                notes.push(format!(
                    "the query was not sent to embedding backend {embedding_name} (policy: {}); passages were found by keyword search only",
                    embed_plan.explanation.reasons.last().map(String::as_str).unwrap_or("denied")
                ));
                Vec::new()
            }
        };
        let filter = AccessFilter { collections: input.collection.clone().map(|c| vec![c]), ..AccessFilter::default() };
        let top_k = input.top_k.unwrap_or(state.config.retrieval.top_k);
        let retriever: Arc<dyn Retriever> = state.index.clone();
        let search = RetrievalQuery { text: query, embedding, filter, top_k };
        let passages = tokio::task::spawn_blocking(move || retriever.retrieve(&search))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        state.metrics.retrieval_seconds.observe(started.elapsed().as_secs_f64());
        passages
    } else {
        Vec::new()
    };

    let plan = plan(
        &PlanRequest {
            tenant: DEFAULT_TENANT,
            purpose: Purpose::Chat,
            query_entities: &query_entities,
            passages: &passages,
            requested_level: input.requested_level,
            requested_model: input.requested_model.as_deref(),
            client_redact: input.redact,
        },
        policy,
        &state.backends.health(),
        &budgets,
    );
    state.metrics.decision(plan.decision.is_route());
    let assembled = assemble(
        &input.messages,
        &passages,
        PromptBudget { max_source_chars: state.config.retrieval.max_source_chars },
    );
    Ok(Prepared {
        plan,
        citations: citations(&assembled.used),
        messages: assembled.messages,
        params: input.params,
        notes,
    })
}

/// The text with every detected value replaced by a typed placeholder (the mapping is dropped:
/// used where nothing comes back to restore, such as embeddings).
pub(crate) fn redact_text(state: &AppState, text: &str) -> Result<String, ApiError> {
    let spans: Vec<perimeter_redact::Span> =
        state.detector.detect(text).iter().map(|f| perimeter_redact::Span::new(f.kind, f.start, f.end)).collect();
    Ok(perimeter_redact::redact(text, &spans, &perimeter_redact::Tokens::Sequential).map_err(ApiError::internal)?.text)
}

/// Replaces every sensitive value in the prompt (instructions, sources, conversation) with a
/// typed placeholder, one numbering across all messages, and returns the way back.
fn pseudonymise(
    state: &AppState,
    messages: &[ChatMessage],
) -> Result<(Vec<ChatMessage>, perimeter_redact::Mapping), ApiError> {
    let spans: Vec<Vec<perimeter_redact::Span>> = messages
        .iter()
        .map(|m| {
            state
                .detector
                .detect(&m.content)
                .iter()
                .map(|f| perimeter_redact::Span::new(f.kind, f.start, f.end))
                .collect()
        })
        .collect();
    let inputs: Vec<(&str, &[perimeter_redact::Span])> =
        messages.iter().zip(&spans).map(|(m, s)| (m.content.as_str(), s.as_slice())).collect();
    let redacted =
        perimeter_redact::redact_many(&inputs, &perimeter_redact::Tokens::Sequential).map_err(ApiError::internal)?;
    let out = messages.iter().zip(redacted.texts).map(|(m, text)| ChatMessage::new(m.role, text)).collect();
    Ok((out, redacted.mapping))
}

/// Runs a routed request: the chosen backend first, then each fallback, all from the set the
/// policy allowed. A backend that fails before producing any output is recorded as a failure
/// and the next one is tried; once output has started, a failure ends the request (the answer
/// never silently continues on another backend). Tokens (restored) go to `out`; if `out` is
/// closed, generation stops.
pub async fn execute(
    state: &AppState,
    prepared: &Prepared,
    out: &mpsc::UnboundedSender<Event>,
) -> Result<Completed, ApiError> {
    let targets: Vec<Target> = prepared.plan.decision.targets().into_iter().cloned().collect();
    if targets.is_empty() {
        return Err(ApiError::internal("execute called on a denied request"));
    }
    let mut failed = Vec::new();
    let mut last_error = None;
    let mut backend_seconds = 0.0;
    for target in targets {
        let Some(backend) = state.backends.chat(target.index).cloned() else {
            failed.push(target.name.to_string());
            continue;
        };
        let (messages, mapping) = if target.redact {
            let (m, map) = pseudonymise(state, &prepared.messages)?;
            (m, Some(map))
        } else {
            (prepared.messages.clone(), None)
        };
        let request = ChatRequest { messages, params: prepared.params.clone() };
        let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<String>();
        let emitted = AtomicBool::new(false);
        let generate = backend.chat(request, Box::new(move |piece: &str| raw_tx.send(piece.to_string()).is_ok()));
        let forward = async {
            // Placeholders may be split across tokens: the restorer holds back a possible prefix.
            let mut restorer = mapping.as_ref().map(perimeter_redact::Restorer::new);
            while let Some(piece) = raw_rx.recv().await {
                let text = match restorer.as_mut() {
                    Some(r) => r.push(&piece),
                    None => piece,
                };
                if text.is_empty() {
                    continue;
                }
                if !emitted.swap(true, Ordering::Relaxed) && out.send(Event::Serving(target.clone())).is_err() {
                    break;
                }
                if out.send(Event::Token(text)).is_err() {
                    // The client went away: stop reading so the sink reports it to the model.
                    break;
                }
            }
            drop(raw_rx);
            restorer.map(|r| r.finish()).unwrap_or_default()
        };
        let called = Instant::now();
        let (result, rest) = tokio::join!(generate, forward);
        backend_seconds += called.elapsed().as_secs_f64();
        match result {
            Ok(mut outcome) => {
                state.backends.record_success(target.index);
                if !rest.is_empty() {
                    if !emitted.swap(true, Ordering::Relaxed) {
                        let _ = out.send(Event::Serving(target.clone()));
                    }
                    let _ = out.send(Event::Token(rest));
                }
                if let Some(m) = &mapping {
                    outcome.text = perimeter_redact::restore(&outcome.text, m);
                }
                return Ok(Completed {
                    outcome,
                    pseudonymised: mapping.as_ref().map_or(0, |m| m.len()),
                    target,
                    failed,
                    backend_seconds,
                });
            }
            Err(e) => {
                // The request's own fault (too long, invalid) would fail anywhere: no fallback,
                // and the backend is not blamed.
                if matches!(
                    e,
                    perimeter_types::BackendError::ContextTooLong { .. }
                        | perimeter_types::BackendError::InvalidRequest(_)
                ) {
                    return Err(e.into());
                }
                state.backends.record_failure(target.index);
                tracing::warn!(backend = %target.name, error = %e, "backend call failed");
                if emitted.load(Ordering::Relaxed) {
                    // Part of the answer is out: never continue on another backend.
                    return Err(ApiError::Upstream(format!(
                        "backend {} failed after it had started answering; the answer is incomplete",
                        target.name
                    )));
                }
                failed.push(target.name.to_string());
                last_error = Some(e);
            }
        }
    }
    Err(match last_error {
        Some(perimeter_types::BackendError::Overloaded) => ApiError::Overloaded,
        _ => {
            ApiError::Upstream(format!("every allowed backend failed before answering (tried: {})", failed.join(", ")))
        }
    })
}
