//! HTTP routes: OpenAI-compatible chat and embeddings, models, documents, health, metrics.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use futures::StreamExt;
use perimeter_auth::Principal;
use perimeter_extract::Format;
use perimeter_index::{document_id, ingest_bytes, FileOutcome, IngestOptions};
use perimeter_types::{AccessFilter, ChatOutcome, DocumentId, FinishReason, GenerationParams, Level};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::error::ApiError;
use crate::pipeline::{execute, prepare, ChatInput, Completed, Event as PipelineEvent, Prepared};
use crate::state::AppState;
use crate::wire::{
    ChatCompletionRequest, EmbeddingInput, EmbeddingsRequest, NewDocument, PerimeterInfo, StopField, WireUsage,
};

/// The model id that means "whatever Perimeter routes to".
pub const ROUTED_MODEL: &str = "perimeter";
/// Texts one embeddings request may carry.
const MAX_EMBEDDING_INPUTS: usize = 2048;

/// A JSON body with OpenAI-style errors for every way it can be wrong (empty, too large,
/// malformed), instead of axum's plain-text rejections.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) => {
                return Err(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge { limit: state.config.server.max_body_bytes }
                } else {
                    ApiError::bad_request("the request body could not be read", None)
                })
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("the request body is empty; expected a JSON object", None));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::bad_request(json_error_message(&e), None))
    }
}

/// Describes a JSON error without quoting the body: serde's own messages can echo string values
/// (`invalid type: string "…"`), which may be prompt text. Field names and positions are safe.
fn json_error_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("the request body is not valid JSON (at {at})"),
        Category::Data => {
            let text = e.to_string();
            // Keep serde's message only when it names a field rather than a value.
            let safe = ["missing field", "unknown field", "duplicate field"].iter().any(|p| text.starts_with(p));
            if safe {
                format!(
                    "the request body does not match this endpoint: {}",
                    text.split(" at line").next().unwrap_or("")
                )
            } else {
                format!("the request body does not match this endpoint: a field has the wrong type or value (at {at})")
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn completion_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("chatcmpl-{nanos:x}")
}

fn check_model(requested: Option<&str>, param_ok: &[&str]) -> Result<String, ApiError> {
    let model = requested.ok_or_else(|| ApiError::bad_request("you must provide a model parameter", Some("model")))?;
    if model == ROUTED_MODEL || param_ok.contains(&model) {
        Ok(model.to_string())
    } else {
        Err(ApiError::ModelNotFound(model.chars().take(64).collect()))
    }
}

/// Parses `x-perimeter-level`.
fn requested_level(headers: &HeaderMap) -> Result<Option<Level>, ApiError> {
    match headers.get("x-perimeter-level") {
        None => Ok(None),
        Some(v) => v.to_str().ok().and_then(|s| s.parse::<Level>().ok()).map(Some).ok_or_else(|| {
            ApiError::bad_request("x-perimeter-level must be one of public, internal, confidential, restricted", None)
        }),
    }
}

/// Turns a wire request into a pipeline input, validating every field.
pub fn chat_input(
    state: &AppState,
    req: ChatCompletionRequest,
    headers: &HeaderMap,
    principal: Principal,
) -> Result<(String, ChatInput, bool, bool), ApiError> {
    let served: Vec<&str> = state
        .config
        .backends
        .iter()
        .filter(|b| b.profile.purposes.contains(&perimeter_policy::Purpose::Chat))
        .flat_map(|b| [b.profile.name.as_str(), b.profile.model.as_str()])
        .collect();
    let model = check_model(req.model.as_deref(), &served)?;
    let wire_messages = req.messages.ok_or_else(|| ApiError::bad_request("messages is required", Some("messages")))?;
    if wire_messages.is_empty() {
        return Err(ApiError::bad_request("messages must contain at least one message", Some("messages")));
    }
    let messages = wire_messages.into_iter().enumerate().map(|(i, m)| m.into_core(i)).collect::<Result<Vec<_>, _>>()?;
    if req.n.unwrap_or(1) != 1 {
        return Err(ApiError::bad_request("only n = 1 is supported", Some("n")));
    }
    let limit = state.config.generation.max_tokens_limit;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(state.config.generation.max_tokens);
    if max_tokens == 0 || max_tokens > limit {
        return Err(ApiError::bad_request(format!("max_tokens must be between 1 and {limit}"), Some("max_tokens")));
    }
    let temperature = req.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request("temperature must be between 0 and 2", Some("temperature")));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
        return Err(ApiError::bad_request("top_p must be greater than 0 and at most 1", Some("top_p")));
    }
    let stop = match req.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    if stop.len() > 4 {
        return Err(ApiError::bad_request("at most 4 stop sequences are supported", Some("stop")));
    }
    let ext = req.perimeter.unwrap_or_default();
    if let Some(k) = ext.top_k {
        if !(1..=50).contains(&k) {
            return Err(ApiError::bad_request("perimeter.top_k must be between 1 and 50", Some("perimeter.top_k")));
        }
    }
    let input = ChatInput {
        messages,
        params: GenerationParams { max_tokens, temperature, top_p, seed: req.seed.unwrap_or(0) as u32, stop },
        retrieval: ext.retrieval.unwrap_or(true),
        collection: ext.collection,
        top_k: ext.top_k,
        requested_level: requested_level(headers)?,
        requested_model: (model != ROUTED_MODEL).then(|| model.clone()),
        redact: ext.redact.unwrap_or(false),
        principal,
    };
    let include_usage = req.stream_options.map(|o| o.include_usage).unwrap_or(false);
    Ok((model, input, req.stream, include_usage))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `x-perimeter-level`, `x-perimeter-decision` and (on a route) `x-perimeter-backend`.
fn perimeter_headers(prepared: &Prepared, backend: Option<&str>) -> Vec<(&'static str, HeaderValue)> {
    let mut h = vec![
        ("x-perimeter-level", header_value(prepared.plan.level().as_str())),
        ("x-perimeter-decision", header_value(prepared.plan.explanation.decision)),
    ];
    if let Some(b) = backend {
        h.push(("x-perimeter-backend", header_value(b)));
    }
    h
}

/// The `perimeter` object. `completed` is the finished request, if it ran.
pub fn perimeter_info(prepared: &Prepared, completed: Option<&Completed>) -> PerimeterInfo {
    let e = &prepared.plan.explanation;
    let mut reasons = prepared.reasons();
    let (backend, redact, pseudonymised) = match completed {
        Some(c) => {
            if !c.failed.is_empty() {
                reasons.push(format!(
                    "failed before answering, skipped: {}; served by {}",
                    c.failed.join(", "),
                    c.target.name
                ));
            }
            (Some(c.target.name.to_string()), c.target.redact, c.pseudonymised)
        }
        None => (e.backend.clone(), e.redact, 0),
    };
    let guard = guard_info(prepared, completed, &mut reasons);
    PerimeterInfo {
        entities: crate::wire::Entities {
            query: prepared.plan.query_entities.clone(),
            passages: prepared.plan.passage_entities.clone(),
        },
        pseudonymised,
        level: prepared.plan.level(),
        decision: e.decision,
        backend,
        redact,
        fallbacks: e.fallbacks.clone(),
        reasons,
        trace: e.trace.clone(),
        citations: prepared.citations.clone(),
        usage: completed.map(|c| c.outcome.usage.into()),
        guard,
        cost: completed.and_then(|c| c.cost).map(|c| c.to_string()),
        request_id: prepared.ctx.request_id.clone(),
    }
}

/// `perimeter.guard`, and a reason line when the output guard redacted something.
fn guard_info(
    prepared: &Prepared,
    completed: Option<&Completed>,
    reasons: &mut Vec<String>,
) -> Option<crate::wire::GuardInfo> {
    let passages: Vec<crate::wire::GuardedPassage> = prepared
        .injection
        .iter()
        .filter(|d| d.action != perimeter_guard::InjectionAction::Drop)
        .map(|d| crate::wire::GuardedPassage {
            chunk_id: d.chunk_id.clone(),
            document_id: d.document_id.clone(),
            kinds: d.kinds.clone(),
            action: d.action.as_str(),
        })
        .collect();
    let redacted = completed.and_then(|c| c.guard.as_ref()).map(|g| g.redacted.clone()).unwrap_or_default();
    if !redacted.is_empty() {
        let kinds: Vec<String> = redacted.iter().map(|(k, n)| format!("{k}\u{d7}{n}")).collect();
        reasons.push(format!(
            "guard: the answer held values that were not in the permitted context; redacted: {}",
            kinds.join(", ")
        ));
    }
    (!passages.is_empty() || !redacted.is_empty()).then_some(crate::wire::GuardInfo { passages, redacted })
}

/// The 403 for a request the policy refuses. Nothing was sent to any backend.
pub fn denied(prepared: &Prepared) -> ApiError {
    let info = perimeter_info(prepared, None);
    let message = format!(
        "Perimeter's policy allows no backend for this request (level {}): {}",
        prepared.plan.level(),
        prepared
            .plan
            .explanation
            .reasons
            .iter()
            .filter(|r| !r.starts_with("level:"))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    ApiError::PolicyDenied { message, perimeter: Box::new(json!(info)) }
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

fn record_usage(state: &AppState, outcome: &ChatOutcome) {
    state.metrics.prompt_tokens.fetch_add(u64::from(outcome.usage.prompt_tokens), Ordering::Relaxed);
    state.metrics.completion_tokens.fetch_add(u64::from(outcome.usage.completion_tokens), Ordering::Relaxed);
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (model, input, stream, include_usage) = chat_input(&state, req, &headers, principal)?;
    let prepared = prepare(&state, input).await?;
    if prepared.is_denied() {
        tracing::info!(level = %prepared.plan.level(), "request denied by policy");
        let mut response = denied(&prepared).into_response();
        for (name, value) in perimeter_headers(&prepared, None) {
            response.headers_mut().insert(name, value);
        }
        return Ok(response);
    }
    let id = completion_id();
    let created = unix_now();
    let prepared = Arc::new(prepared);

    // The pipeline runs in its own task: tokens flow through an unbounded channel (a backend
    // must never block on a slow client), and generation stops when the client goes away.
    let (tx, mut rx) = mpsc::unbounded_channel::<PipelineEvent>();
    let task_state = state.clone();
    let task_prepared = prepared.clone();
    let done = tokio::spawn(async move {
        let result = execute(&task_state, &task_prepared, &tx).await;
        drop(tx);
        result
    });

    let model_for = |target: &str| -> String {
        if model == ROUTED_MODEL {
            state
                .config
                .backends
                .iter()
                .find(|b| b.profile.name == target)
                .map(|b| b.profile.model.clone())
                .unwrap_or_else(|| target.to_string())
        } else {
            model.clone()
        }
    };

    if !stream {
        let mut first_token = None;
        while let Some(ev) = rx.recv().await {
            if first_token.is_none() && matches!(ev, PipelineEvent::Token(_)) {
                first_token = Some(started.elapsed());
            }
        }
        let completed = done.await.map_err(ApiError::internal)??;
        if let Some(t) = first_token {
            state.metrics.first_token_seconds.observe(t.as_secs_f64());
        }
        record_usage(&state, &completed.outcome);
        let total = started.elapsed().as_secs_f64();
        state.metrics.chat_seconds.observe(total);
        state.metrics.overhead_seconds.0.observe((total - completed.backend_seconds).max(0.0));
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model_for(&completed.target.name),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": completed.outcome.text},
                "logprobs": null,
                "finish_reason": finish_reason(completed.outcome.finish_reason),
            }],
            "usage": WireUsage::from(completed.outcome.usage),
            "perimeter": perimeter_info(&prepared, Some(&completed)),
        });
        let mut response = Json(body).into_response();
        for (name, value) in perimeter_headers(&prepared, Some(&completed.target.name)) {
            response.headers_mut().insert(name, value);
        }
        return Ok(response);
    }

    // Streaming: wait until a backend starts answering (or all allowed backends have failed),
    // so the status and the x-perimeter-backend header tell the truth.
    let serving = loop {
        match rx.recv().await {
            Some(PipelineEvent::Serving(target)) => break Some(target),
            Some(PipelineEvent::Token(_)) => continue,
            None => break None,
        }
    };
    let (serving, early, done) = match serving {
        Some(t) => (t, None, Some(done)),
        None => {
            // Finished without a single token: an error, or an empty answer.
            let completed = done.await.map_err(ApiError::internal)??;
            (completed.target.clone(), Some(completed), None)
        }
    };
    state.metrics.first_token_seconds.observe(started.elapsed().as_secs_f64());
    let model_name = model_for(&serving.name);
    let chunk = {
        let (id, model_name) = (id.clone(), model_name.clone());
        move |delta: Value, finish: Option<&str>| {
            json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            })
        }
    };
    let mut opening = chunk(json!({"role": "assistant", "content": ""}), None);
    opening["perimeter"] = json!(perimeter_info(&prepared, None));
    opening["perimeter"]["backend"] = json!(serving.name.to_string());
    opening["perimeter"]["redact"] = json!(serving.redact);
    let head = futures::stream::iter(vec![Ok::<Event, Infallible>(Event::default().data(opening.to_string()))]);
    let tokens = {
        let chunk = chunk.clone();
        UnboundedReceiverStream::new(rx).filter_map(move |ev| {
            let out = match ev {
                PipelineEvent::Token(text) => Some(Ok::<Event, Infallible>(
                    Event::default().data(chunk(json!({"content": text}), None).to_string()),
                )),
                PipelineEvent::Serving(_) => None,
            };
            std::future::ready(out)
        })
    };
    let tail_state = state.clone();
    let tail_prepared = prepared.clone();
    let tail = futures::stream::once(async move {
        let result = match (early, done) {
            (Some(c), _) => Ok(c),
            (None, Some(done)) => done.await.map_err(ApiError::internal).and_then(|r| r),
            (None, None) => Err(ApiError::internal("the request finished twice")),
        };
        let events: Vec<Event> = match result {
            Ok(completed) => {
                record_usage(&tail_state, &completed.outcome);
                let total = started.elapsed().as_secs_f64();
                tail_state.metrics.chat_seconds.observe(total);
                tail_state.metrics.overhead_seconds.0.observe((total - completed.backend_seconds).max(0.0));
                let mut last = chunk(json!({}), Some(finish_reason(completed.outcome.finish_reason)));
                last["perimeter"] = json!(perimeter_info(&tail_prepared, Some(&completed)));
                let mut out = vec![Event::default().data(last.to_string())];
                if include_usage {
                    let usage = json!({
                        "id": last["id"], "object": "chat.completion.chunk", "created": created,
                        "model": last["model"], "choices": [], "usage": WireUsage::from(completed.outcome.usage),
                    });
                    out.push(Event::default().data(usage.to_string()));
                }
                out.push(Event::default().data("[DONE]"));
                out
            }
            Err(e) => {
                tracing::warn!(error = %e, "stream failed after it started");
                vec![Event::default().data(e.body().to_string()), Event::default().data("[DONE]")]
            }
        };
        futures::stream::iter(events.into_iter().map(Ok::<Event, Infallible>))
    })
    .flatten();
    let mut response = Sse::new(head.chain(tokens).chain(tail)).keep_alive(KeepAlive::default()).into_response();
    for (name, value) in perimeter_headers(&prepared, Some(&serving.name)) {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let model = check_model(req.model.as_deref(), &[state.embedder.model()])?;
    let model = if model == ROUTED_MODEL { state.embedder.model().to_string() } else { model };
    let texts = match req.input {
        None => return Err(ApiError::bad_request("input is required", Some("input"))),
        Some(EmbeddingInput::One(s)) => vec![s],
        Some(EmbeddingInput::Many(v)) => v,
        Some(EmbeddingInput::Tokens(_)) => {
            return Err(ApiError::bad_request(
                "input must be a string or an array of strings; token arrays are not supported",
                Some("input"),
            ))
        }
    };
    if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::bad_request(
            format!("input must hold between 1 and {MAX_EMBEDDING_INPUTS} strings"),
            Some("input"),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(ApiError::bad_request(format!("input[{i}] is empty"), Some("input")));
    }
    if let Some(d) = req.dimensions {
        if d != state.embedder.dimensions() {
            return Err(ApiError::bad_request(
                format!("this model has {} dimensions and cannot shorten them", state.embedder.dimensions()),
                Some("dimensions"),
            ));
        }
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::bad_request("encoding_format must be float or base64", Some("encoding_format")))
        }
    };
    // The texts go to the embedding backend only if the policy allows it.
    let mut kinds: std::collections::BTreeMap<perimeter_types::EntityKind, u32> = Default::default();
    for t in &texts {
        for (k, n) in crate::pipeline::kinds_in(&state, t) {
            *kinds.entry(k).or_insert(0) += n;
        }
    }
    let plan = perimeter_core::plan(
        &perimeter_core::PlanRequest {
            tenant: &principal.tenant,
            purpose: perimeter_policy::Purpose::Embeddings,
            query_entities: &kinds,
            passages: &[],
            requested_level: requested_level(&headers)?,
            requested_model: Some(&state.config.embedding_backend),
            client_redact: false,
        },
        &state.config.policy,
        &state.backends.health(),
        &state.meter.budgets(&crate::costs::this_month()),
    );
    state.metrics.decision(plan.decision.is_route());
    let ctx = state.audit.context(&principal.tenant, principal.key_id.as_deref(), None);
    let inputs = texts.len().to_string();
    let record = |kind: perimeter_audit::RecordKind| {
        let mut r = crate::audit::request_record(kind, &ctx);
        r.level = Some(plan.level().as_str().to_string());
        r.entities = crate::audit::entity_counts(&kinds);
        r.detail.insert("purpose".into(), "embeddings".into());
        r.detail.insert("inputs".into(), inputs.clone());
        r
    };
    let e = &plan.explanation;
    let info = json!({"level": plan.level(), "entities": kinds, "decision": e.decision, "backend": e.backend, "redact": e.redact, "reasons": e.reasons, "trace": e.trace});
    let mut perimeter_headers = vec![
        ("x-perimeter-level", header_value(plan.level().as_str())),
        ("x-perimeter-decision", header_value(e.decision)),
    ];
    let Some(target) = plan.decision.targets().first().map(|t| (*t).clone()) else {
        let mut r = record(perimeter_audit::RecordKind::Refusal);
        r.decision = Some("deny".into());
        r.reasons = e.reasons.clone();
        r.outcome = Some("refused".into());
        state.audit.append_async(r).await?;
        let message = format!(
            "Perimeter's policy does not allow these texts to be embedded by {} (level {})",
            state.config.embedding_backend,
            plan.level()
        );
        let mut response = ApiError::PolicyDenied { message, perimeter: Box::new(info) }.into_response();
        for (name, value) in perimeter_headers {
            response.headers_mut().insert(name, value);
        }
        return Ok(response);
    };
    perimeter_headers.push(("x-perimeter-backend", header_value(&target.name)));
    // Where the texts go is on record before they go (fail closed).
    let mut r = record(perimeter_audit::RecordKind::Decision);
    r.decision = Some("route".into());
    r.backend = Some(target.name.to_string());
    r.jurisdiction = state.config.backends.get(target.index).and_then(|b| b.profile.jurisdiction.clone());
    r.redaction = Some(target.redact);
    r.reasons = e.reasons.clone();
    state.audit.append_async(r).await?;
    let called = Instant::now();
    let texts = if target.redact {
        texts.iter().map(|t| crate::pipeline::redact_text(&state, t)).collect::<Result<Vec<_>, _>>()?
    } else {
        texts
    };
    let embedded = state.embedder.embed(texts).await;
    let mut done = record(perimeter_audit::RecordKind::Completion);
    done.backend = Some(target.name.to_string());
    done.redaction = Some(target.redact);
    done.latency_ms = Some(called.elapsed().as_millis() as u64);
    let embedded = match embedded {
        Ok(e) => e,
        Err(err) => {
            done.outcome = Some("failed".into());
            state.audit.append_best_effort_async(done).await;
            return Err(ApiError::internal(err));
        }
    };
    let usage = perimeter_types::Usage { prompt_tokens: embedded.prompt_tokens, completion_tokens: 0 };
    let cost = state.meter.cost(target.index, &usage);
    if let Some(c) = cost {
        state.meter.record(&principal.tenant, &crate::costs::this_month(), c);
        state.metrics.spend(&principal.tenant, &target.name, c);
    }
    done.outcome = Some("ok".into());
    done.tokens_in = Some(u64::from(embedded.prompt_tokens));
    done.tokens_out = Some(0);
    done.cost = cost.map(|c| c.to_string());
    state.audit.append_best_effort_async(done).await;
    state.metrics.embedding_tokens.fetch_add(u64::from(embedded.prompt_tokens), Ordering::Relaxed);
    let data: Vec<Value> = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let mut response = Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": embedded.prompt_tokens, "total_tokens": embedded.prompt_tokens},
        "perimeter": info,
    }))
    .into_response();
    for (name, value) in perimeter_headers {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

/// `GET /v1/models`
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let created = 1_700_000_000u64;
    let entry = |id: &str, kind: &str, backend: Value| json!({"id": id, "object": "model", "created": created, "owned_by": "perimeter", "perimeter": {"kind": kind, "backend": backend}});
    let mut data = vec![entry(ROUTED_MODEL, "chat", json!("routed by policy"))];
    // One entry per model id: several backends may serve the same model (say, OpenAI and Azure
    // OpenAI). `backend` is the preferred one (policy order); `backends` lists them all.
    for (b, _) in state.backends.summary() {
        if !b.profile.purposes.contains(&perimeter_policy::Purpose::Chat) {
            continue;
        }
        match data.iter_mut().find(|m| m["id"] == b.profile.model.as_str() && m["perimeter"]["kind"] == "chat") {
            Some(m) => {
                if let Some(list) = m["perimeter"]["backends"].as_array_mut() {
                    list.push(json!(b.profile.name));
                }
            }
            None => {
                let mut m = entry(&b.profile.model, "chat", json!(b.profile.name));
                m["perimeter"]["backends"] = json!([b.profile.name]);
                data.push(m);
            }
        }
    }
    data.push(entry(state.embedder.model(), "embedding", json!(state.config.embedding_backend)));
    Json(json!({"object": "list", "data": data}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    collection: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn document_json(d: &perimeter_store::DocumentRecord) -> Value {
    json!({
        "id": d.id, "object": "document", "source": d.source, "title": d.title, "collection": d.collection,
        "label": d.label, "groups": d.groups, "format": d.format, "content_sha256": d.content_sha256,
        "bytes": d.bytes, "pages": d.pages, "chunks": d.chunk_count, "ingested_at": d.ingested_at,
        "pipeline_version": d.pipeline_version, "level": d.level, "entities": d.entities,
        // Chunks with instruction-like content at ingestion (null: ingested before the scan).
        "flagged_chunks": d.flagged_chunks,
    })
}

/// `GET /v1/documents`
pub async fn list_documents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"), None))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000", Some("limit")));
    }
    // Only what the caller may see: its tenant, and its groups unless it is an admin.
    let filter: AccessFilter = principal.filter(q.collection.map(|c| vec![c]));
    let index = state.index.clone();
    let offset = q.offset.unwrap_or(0);
    let docs = tokio::task::spawn_blocking(move || index.store().list_documents(&filter, limit, offset))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"object": "list", "data": docs.iter().map(document_json).collect::<Vec<_>>()})))
}

/// A document the principal may see, or the same 404 as for an id that does not exist: a
/// caller cannot tell a document outside its reach from a missing one.
async fn visible_document(
    state: &AppState,
    principal: &Principal,
    id: DocumentId,
) -> Result<perimeter_store::DocumentRecord, ApiError> {
    let index = state.index.clone();
    let filter = principal.filter(None);
    tokio::task::spawn_blocking(move || index.store().document(&id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .filter(|d| filter.admits(&d.tenant, &d.collection, &d.groups))
        .ok_or_else(|| ApiError::NotFound("document".into()))
}

/// `GET /v1/documents/{id}`
pub async fn get_document(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = visible_document(&state, &principal, DocumentId(id)).await?;
    Ok(Json(document_json(&doc)))
}

/// `DELETE /v1/documents/{id}`
pub async fn delete_document(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc_id = visible_document(&state, &principal, DocumentId(id)).await?.id;
    let index = state.index.clone();
    let deleted = {
        let doc_id = doc_id.clone();
        tokio::task::spawn_blocking(move || -> Result<bool, ApiError> {
            let gone = index.store().delete_document(&doc_id).map_err(ApiError::internal)?.is_some();
            index.sync().map_err(ApiError::internal)?;
            Ok(gone)
        })
        .await
        .map_err(ApiError::internal)??
    };
    if !deleted {
        return Err(ApiError::NotFound("document".into()));
    }
    // AUDIT: document deleted (id, tenant, key id).
    tracing::info!(target: "perimeter::audit", event = "document.deleted", document = %doc_id, tenant = %principal.tenant, key_id = principal.key_id.as_deref().unwrap_or("-"), "document deleted");
    Ok(Json(json!({"id": doc_id, "object": "document", "deleted": true})))
}

/// `POST /v1/documents`
pub async fn create_document(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(req): JsonBody<NewDocument>,
) -> Result<Response, ApiError> {
    let source = req.source.trim().to_string();
    if source.is_empty() || source.len() > 512 {
        return Err(ApiError::bad_request("source must be 1 to 512 characters", Some("source")));
    }
    let format = match req.format.as_deref() {
        Some(f) => Format::from_extension(f),
        None => std::path::Path::new(&source).extension().and_then(|e| Format::from_extension(&e.to_string_lossy())),
    }
    .ok_or_else(|| ApiError::bad_request("unsupported or missing format: use txt, md, html, pdf, docx, csv or json (from `format` or the source's extension)", Some("format")))?;
    let bytes = match (req.content, req.content_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| ApiError::bad_request("content_base64 is not valid base64", Some("content_base64")))?,
        _ => return Err(ApiError::bad_request("give exactly one of content or content_base64", Some("content"))),
    };
    let label = match req.label.as_deref() {
        None => None,
        Some(l) => Some(l.parse::<Level>().map_err(|e| ApiError::bad_request(e.to_string(), Some("label")))?),
    };
    // Groups name access groups inside the admin's own tenant; the tenant is the key's.
    let groups = match req.groups {
        None => None,
        Some(g) => Some(perimeter_auth::normalise_groups(&g).map_err(|e| ApiError::bad_request(e, Some("groups")))?),
    };
    let options = IngestOptions {
        tenant: principal.tenant.clone(),
        collection: req.collection,
        label,
        groups,
        chunk: perimeter_index::ChunkSpec {
            max_tokens: state.config.ingest.chunk_tokens,
            overlap_tokens: state.config.ingest.chunk_overlap,
        },
        embed_gate: Some(perimeter_index::EmbedGate {
            policy: state.config.policy.clone(),
            backend: state.config.embedding_backend.clone(),
            audit: Some(crate::audit::embed_audit(state.audit.clone(), principal.key_id.clone())),
        }),
    };
    let source_name = format!("api:{source}");
    // Parsing, chunking and the index commit block; keep them off the async workers.
    let outcome = {
        let (index, embedder, detector) = (state.index.clone(), state.embedder.clone(), state.detector.clone());
        let (source_name, options) = (source_name.clone(), options.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(ingest_bytes(&index, embedder.as_ref(), &detector, &source_name, format, &bytes, &options))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
    };
    let (status, id) = match &outcome {
        FileOutcome::Ingested { document_id, .. } => (StatusCode::CREATED, document_id.clone()),
        FileOutcome::Unchanged { document_id } => (StatusCode::OK, document_id.clone()),
        FileOutcome::Skipped { reason } => return Err(ApiError::Unprocessable(reason.clone())),
        FileOutcome::Refused { reasons } => {
            return Err(ApiError::PolicyDenied {
                message: format!(
                    "Perimeter's policy does not allow this document to be sent to embedding backend {}",
                    state.config.embedding_backend
                ),
                perimeter: Box::new(json!({"decision": "deny", "reasons": reasons})),
            })
        }
        FileOutcome::Failed { error } => {
            return Err(ApiError::Unprocessable(format!("the document could not be ingested: {error}")))
        }
    };
    debug_assert_eq!(id, document_id(&options.tenant, &source_name));
    let index = state.index.clone();
    let doc = tokio::task::spawn_blocking(move || index.store().document(&id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("document vanished after ingestion"))?;
    // AUDIT: document created or re-ingested (id, tenant, key id).
    tracing::info!(target: "perimeter::audit", event = "document.created", document = %doc.id, tenant = %principal.tenant, key_id = principal.key_id.as_deref().unwrap_or("-"), "document ingested");
    let mut body = document_json(&doc);
    body["status"] = json!(if status == StatusCode::CREATED { "ingested" } else { "unchanged" });
    Ok((status, Json(body)).into_response())
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: models loaded and the store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (index, keys) = (state.index.clone(), state.keys.clone());
    // Readiness is open to everyone, so once keys exist it does not count documents: the
    // totals span every tenant and group.
    match tokio::task::spawn_blocking(move || index.store().counts().map(|c| (c, keys.any().unwrap_or(true)))).await {
        Ok(Ok(((documents, chunks), closed))) => Json(json!({
            "status": "ready",
            "documents": (!closed).then_some(documents),
            "chunks": (!closed).then_some(chunks),
            "models": {"embedding": state.embedder.model()},
            "backends": state.backends.summary().iter().map(|(b, h)| json!({
                "name": b.profile.name,
                "hosting": b.profile.hosting,
                "model": b.profile.model,
                "healthy": *h == perimeter_policy::Health::Healthy,
                "problem": match h { perimeter_policy::Health::Unhealthy(u) => Some(u.as_str()), _ => None },
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let index = state.index.clone();
    let (documents, chunks) =
        tokio::task::spawn_blocking(move || index.store().counts()).await.ok().and_then(Result::ok).unwrap_or((0, 0));
    let body = state.metrics.render(documents, chunks);
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

/// Unknown routes get an OpenAI-style 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}
