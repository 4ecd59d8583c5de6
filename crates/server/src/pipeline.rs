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

use perimeter_auth::Principal;
use perimeter_core::{assemble, citations, last_user_text, plan, Plan, PlanRequest, PromptBudget};
use perimeter_policy::{Purpose, Target};
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
    /// Who asks: its tenant is the policy's tenant and, with its groups, the search's filter.
    pub principal: Principal,
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
    /// Retrieved passages with instruction-like content and what `[guard] injection` did with
    /// each (chunk ids, kinds with counts, the action; never text).
    pub injection: Vec<perimeter_guard::PassageDecision>,
    /// Links the request's audit records (never logged with text).
    pub ctx: crate::audit::RequestContext,
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
    /// What the output guard redacted from the answer (`None` when `[guard] output_guard` is off).
    pub guard: Option<perimeter_guard::GuardReport>,
    /// What the answer cost (decimal USD), from its usage and the backend's price; `None` when
    /// the backend's price is unknown.
    pub cost: Option<perimeter_cost::Money>,
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
    // This month's spend against each tenant's budget (`[[budget]]`).
    let budgets = state.meter.budgets(&crate::costs::this_month());
    let mut notes = Vec::new();
    // The request's audit context: its id, tenant, key id and a keyed HMAC of the query.
    let ctx = state.audit.context(
        &input.principal.tenant,
        input.principal.key_id.as_deref(),
        last_user_text(&input.messages),
    );
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
                tenant: &input.principal.tenant,
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
                // Text that leaves the process is on record before it goes.
                if state
                    .config
                    .backends
                    .get(target.index)
                    .is_some_and(|b| b.profile.hosting != perimeter_policy::Hosting::Embedded)
                {
                    let mut r = decision_record(state, &ctx, &embed_plan, target, &embed_plan.explanation.reasons, &[]);
                    r.detail.insert("purpose".into(), "embeddings".into());
                    state.audit.append_async(r).await?;
                }
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
        // The principal's tenant and groups are part of the search itself (BM25 and vectors).
        let filter: AccessFilter = input.principal.filter(input.collection.clone().map(|c| vec![c]));
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
    // Instruction-like content: stored flags plus a fresh scan, before the plan, so a passage
    // kept out of the prompt does not raise the level either.
    let (passages, injection) = screen_injection(state, passages, &mut notes);

    let plan = plan(
        &PlanRequest {
            tenant: &input.principal.tenant,
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
    if !plan.decision.is_route() {
        // A refusal is on record before the caller hears of it.
        let mut r = crate::audit::request_record(perimeter_audit::RecordKind::Refusal, &ctx);
        r.level = Some(plan.level().as_str().to_string());
        r.entities = crate::audit::entity_counts(&merged(&plan.query_entities, &plan.passage_entities));
        r.decision = Some("deny".into());
        r.reasons = notes.iter().chain(&plan.explanation.reasons).cloned().collect();
        r.documents = passages
            .iter()
            .map(|p| p.document_id.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        r.outcome = Some("refused".into());
        state.audit.append_async(r).await?;
    }
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
        injection,
        ctx,
    })
}

/// The record of how a routed call ended (usage and cost are added by the caller on success).
fn completion_record(
    state: &AppState,
    prepared: &Prepared,
    target: &Target,
    outcome: &str,
    called: Instant,
) -> perimeter_audit::Record {
    let mut r = crate::audit::request_record(perimeter_audit::RecordKind::Completion, &prepared.ctx);
    r.level = Some(prepared.plan.level().as_str().to_string());
    r.backend = Some(target.name.to_string());
    r.jurisdiction = state.config.backends.get(target.index).and_then(|b| b.profile.jurisdiction.clone());
    r.redaction = Some(target.redact);
    r.latency_ms = Some(called.elapsed().as_millis() as u64);
    r.outcome = Some(outcome.to_string());
    r
}

/// Two kind → count maps added together.
fn merged(a: &BTreeMap<EntityKind, u32>, b: &BTreeMap<EntityKind, u32>) -> BTreeMap<EntityKind, u32> {
    let mut out = a.clone();
    for (k, n) in b {
        *out.entry(*k).or_insert(0) += n;
    }
    out
}

/// The record that a request is routed to `target`, written before any byte goes to it.
fn decision_record(
    state: &AppState,
    ctx: &crate::audit::RequestContext,
    plan: &Plan,
    target: &Target,
    reasons: &[String],
    documents: &[String],
) -> perimeter_audit::Record {
    let mut r = crate::audit::request_record(perimeter_audit::RecordKind::Decision, ctx);
    r.level = Some(plan.level().as_str().to_string());
    r.entities = crate::audit::entity_counts(&merged(&plan.query_entities, &plan.passage_entities));
    r.documents = documents.to_vec();
    r.decision = Some("route".into());
    r.backend = Some(target.name.to_string());
    let profile = state.config.backends.get(target.index).map(|b| &b.profile);
    r.jurisdiction = profile.and_then(|p| p.jurisdiction.clone());
    if let Some(p) = profile {
        r.detail.insert("hosting".into(), p.hosting.as_str().into());
        r.detail.insert("model".into(), p.model.clone());
    }
    r.reasons = reasons.to_vec();
    r.redaction = Some(target.redact);
    r
}

/// Applies `[guard] injection` to the retrieved passages: the kept ones, and the decisions.
/// Quarantined and allowed passages are named in the notes (shown as `perimeter.reasons`);
/// dropped ones only in the decisions, for the audit.
fn screen_injection(
    state: &AppState,
    passages: Vec<perimeter_types::Passage>,
    notes: &mut Vec<String>,
) -> (Vec<perimeter_types::Passage>, Vec<perimeter_guard::PassageDecision>) {
    let action = state.config.guard.injection;
    let screened = perimeter_guard::screen_passages(passages, action);
    // AUDIT: screened.decisions (chunk_id, document_id, kinds, action) go into the request's record.
    let describe = |d: &perimeter_guard::PassageDecision| {
        let kinds: Vec<String> = d.kinds.iter().map(|(k, n)| format!("{k}\u{d7}{n}")).collect();
        format!("{} ({})", d.chunk_id, kinds.join(", "))
    };
    let named: Vec<String> = screened.decisions.iter().map(describe).collect();
    if !named.is_empty() {
        match action {
            perimeter_guard::InjectionAction::Quarantine => notes.push(format!(
                "guard: quarantined {} passage(s) with instruction-like content, kept out of the prompt: {}",
                named.len(),
                named.join("; ")
            )),
            perimeter_guard::InjectionAction::Allow => notes.push(format!(
                "guard: {} passage(s) with instruction-like content were used ([guard] injection = allow): {}",
                named.len(),
                named.join("; ")
            )),
            perimeter_guard::InjectionAction::Drop => {}
        }
    }
    (screened.kept, screened.decisions)
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
    let documents: Vec<String> = {
        let ids: std::collections::BTreeSet<String> =
            prepared.citations.iter().map(|c| c.document_id.to_string()).collect();
        ids.into_iter().collect()
    };
    for target in targets {
        let Some(backend) = state.backends.chat(target.index).cloned() else {
            failed.push(target.name.to_string());
            continue;
        };
        // Where the data goes is on record before any byte goes there; if the record cannot
        // be written, nothing is sent (fail closed).
        let mut record =
            decision_record(state, &prepared.ctx, &prepared.plan, &target, &prepared.reasons(), &documents);
        if !prepared.injection.is_empty() {
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            for d in &prepared.injection {
                *counts.entry(d.action.as_str().to_string()).or_insert(0) += 1;
            }
            for (action, n) in counts {
                record.detail.insert(format!("injection_{action}"), n.to_string());
            }
        }
        state.audit.append_async(record).await?;
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
        // The permitted context is the prompt with its original values: what the backend was
        // allowed to see. The guard runs after the restorer, on the text the user gets.
        let context: Vec<&str> = prepared.messages.iter().map(|m| m.content.as_str()).collect();
        let guard_on = state.config.guard.output_guard;
        let mut stream_report = None;
        let forward = async {
            // Placeholders may be split across tokens: the restorer holds back a possible prefix.
            let mut restorer = mapping.as_ref().map(perimeter_redact::Restorer::new);
            let mut guard = guard_on.then(|| perimeter_guard::OutputGuard::new(&state.detector, &context));
            while let Some(piece) = raw_rx.recv().await {
                let text = match restorer.as_mut() {
                    Some(r) => r.push(&piece),
                    None => piece,
                };
                if text.is_empty() {
                    continue;
                }
                // The backend has started answering (even if the guard holds the text back a
                // moment): from here a failure ends the request, as without the guard.
                if !emitted.swap(true, Ordering::Relaxed) && out.send(Event::Serving(target.clone())).is_err() {
                    break;
                }
                let text = match guard.as_mut() {
                    Some(g) => g.push(&text),
                    None => text,
                };
                if text.is_empty() {
                    continue;
                }
                if out.send(Event::Token(text)).is_err() {
                    // The client went away: stop reading so the sink reports it to the model.
                    break;
                }
            }
            drop(raw_rx);
            let rest = restorer.map(|r| r.finish()).unwrap_or_default();
            match guard {
                Some(mut g) => {
                    let mut out = g.push(&rest);
                    let (tail, report) = g.finish();
                    out.push_str(&tail);
                    stream_report = Some(report);
                    out
                }
                None => rest,
            }
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
                // The whole answer (the non-streaming response) is guarded the same way; the
                // guard gives the same output for the whole text as for the stream.
                let guard = guard_on.then(|| {
                    let (text, mut report) = perimeter_guard::guard_text(&state.detector, &context, &outcome.text);
                    outcome.text = text;
                    if let Some(streamed) = &stream_report {
                        report.merge_max(streamed);
                    }
                    report
                });
                let cost = state.meter.cost(target.index, &outcome.usage);
                let month = crate::costs::this_month();
                if let Some(c) = cost {
                    state.meter.record(&prepared.ctx.tenant, &month, c);
                    state.metrics.spend(&prepared.ctx.tenant, &target.name, c);
                }
                let mut r = completion_record(state, prepared, &target, "ok", called);
                r.tokens_in = Some(u64::from(outcome.usage.prompt_tokens));
                r.tokens_out = Some(u64::from(outcome.usage.completion_tokens));
                r.cost = cost.map(|c| c.to_string());
                if let Some(g) = &guard {
                    r.entities = g.redacted.iter().map(|(k, n)| (format!("redacted_{}", k.as_str()), *n)).collect();
                }
                // The answer exists; a completion record that cannot be written is logged, and
                // the routing record already says where the data went.
                state.audit.append_best_effort_async(r).await;
                return Ok(Completed {
                    cost,
                    guard,
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
                let outcome = if emitted.load(Ordering::Relaxed) { "failed_mid_answer" } else { "failed" };
                state
                    .audit
                    .append_best_effort_async(completion_record(state, prepared, &target, outcome, called))
                    .await;
                if emitted.load(Ordering::Relaxed) {
                    // What the guard still held is guarded text of the answer so far: it goes out
                    // before the error, as it would have without the guard.
                    if !rest.is_empty() {
                        let _ = out.send(Event::Token(rest));
                    }
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
