//! One chat request, top to bottom, as in DESIGN.md's request flow:
//! query → embed → retrieve (filter inside the search) → classify → plan → assemble prompt →
//! backend. The HTTP handlers and `perimeter ask` both run it, so the CLI shows exactly what
//! the API does.

use std::sync::Arc;
use std::time::Instant;

use perimeter_core::{assemble, citations, classify, last_user_text, plan, Plan, PromptBudget};
use perimeter_types::{
    AccessFilter, ChatMessage, ChatRequest, Citation, GenerationParams, Level, RetrievalQuery, Retriever,
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
}

/// Everything decided before the backend is called.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: Plan,
    pub citations: Vec<Citation>,
    pub request: ChatRequest,
}

/// Retrieval, classification, the routing plan and the final prompt.
pub async fn prepare(state: &AppState, input: ChatInput) -> Result<Prepared, ApiError> {
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

    let classification = classify(&passages, input.requested_level);
    let plan = plan(&classification, state.chat.name());
    let assembled = assemble(
        &input.messages,
        &passages,
        PromptBudget { max_source_chars: state.config.retrieval.max_source_chars },
    );
    Ok(Prepared {
        plan,
        citations: citations(&assembled.used),
        request: ChatRequest { messages: assembled.messages, params: input.params },
    })
}
