//! One chat request, top to bottom, as in DESIGN.md's request flow:
//! query → detect → embed → retrieve (filter inside the search) → classify → plan → assemble
//! prompt (pseudonymised when asked) → backend → restore. The HTTP handlers and `perimeter ask` both run it, so the CLI shows exactly what
//! the API does.

use std::sync::Arc;
use std::time::Instant;

use std::collections::BTreeMap;

use perimeter_core::{assemble, citations, classify, last_user_text, plan, Classification, Plan, PromptBudget};
use perimeter_types::{
    AccessFilter, ChatMessage, ChatRequest, Citation, EntityKind, GenerationParams, Level, RetrievalQuery, Retriever,
};

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
    /// The client asked for pseudonymisation: sensitive values in the prompt are replaced by
    /// placeholders before the backend sees them, and restored in the answer.
    pub redact: bool,
}

/// Everything decided before the backend is called.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub classification: Classification,
    pub plan: Plan,
    pub citations: Vec<Citation>,
    pub request: ChatRequest,
    /// Placeholders and their values when the prompt was pseudonymised; the answer is restored
    /// with it. Never logged.
    pub mapping: Option<perimeter_redact::Mapping>,
}

/// Retrieval, classification, the routing plan and the final prompt.
pub async fn prepare(state: &AppState, input: ChatInput) -> Result<Prepared, ApiError> {
    // Everything the caller sent goes to the backend, so everything is scanned. Only kinds and
    // counts leave this function, never the values.
    let mut query_entities: BTreeMap<EntityKind, u32> = BTreeMap::new();
    for m in &input.messages {
        for (kind, n) in perimeter_detect::kind_counts(&state.detector.detect(&m.content)) {
            *query_entities.entry(kind).or_insert(0) += n as u32;
        }
    }
    let passages = if input.retrieval {
        let query = last_user_text(&input.messages)
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("retrieval needs a non-empty user message to search for", Some("messages"))
            })?
            .to_string();
        let started = Instant::now();
        let embedding = state
            .embedder
            .embed(vec![query.clone()])
            .await
            .map_err(ApiError::internal)?
            .vectors
            .pop()
            .ok_or_else(|| ApiError::internal("the embedder returned no vector"))?;
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

    let classification = classify(&query_entities, &passages, input.requested_level);
    let plan = plan(&classification, state.chat.name());
    let assembled = assemble(
        &input.messages,
        &passages,
        PromptBudget { max_source_chars: state.config.retrieval.max_source_chars },
    );
    let mut messages = assembled.messages;
    let mapping = if input.redact { Some(pseudonymise(state, &mut messages)?) } else { None };
    Ok(Prepared {
        classification,
        plan,
        citations: citations(&assembled.used),
        request: ChatRequest { messages, params: input.params },
        mapping,
    })
}

/// Replaces every sensitive value in the prompt (instructions, sources, conversation) with a
/// typed placeholder, one numbering across all messages, and returns the way back.
fn pseudonymise(state: &AppState, messages: &mut [ChatMessage]) -> Result<perimeter_redact::Mapping, ApiError> {
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
    for (m, text) in messages.iter_mut().zip(redacted.texts) {
        m.content = text;
    }
    Ok(redacted.mapping)
}
