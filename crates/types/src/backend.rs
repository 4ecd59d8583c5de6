//! Chat and embedding backends: the seam between the pipeline and whatever runs a model
//! (the embedded engine today; API providers and self-hosted servers later).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// Sampling parameters. `temperature == 0` means greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self { max_tokens: 256, temperature: 0.0, top_p: 1.0, seed: 0, stop: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer or hit a stop sequence.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The consumer stopped reading (client went away).
    Cancelled,
}

/// Wall-clock time spent on the prompt (prefill) and on generating the answer (decode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub prompt_ms: f64,
    pub generation_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatOutcome {
    pub text: String,
    pub usage: Usage,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

/// Receives each piece of generated text as soon as it is decoded. Returning `false` asks the
/// backend to stop generating (the client has gone away).
pub type TokenSink = Box<dyn FnMut(&str) -> bool + Send>;

/// Why a backend could not produce an answer. Messages never contain prompt text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "the prompt has {prompt_tokens} tokens but the model's context holds {context} (including room for the answer)"
    )]
    ContextTooLong { prompt_tokens: usize, context: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the backend is busy; try again later")]
    Overloaded,
    #[error("backend failure: {0}")]
    Internal(String),
}

/// A model that answers chat requests, streaming its text into a `TokenSink`.
#[async_trait]
pub trait ChatBackend: Send + Sync {
    /// The backend's configured name (e.g. `embedded`).
    fn name(&self) -> &str;
    /// The model id clients use to address it.
    fn model(&self) -> &str;
    /// The context window in tokens.
    fn context_tokens(&self) -> usize;
    async fn chat(&self, request: ChatRequest, sink: TokenSink) -> Result<ChatOutcome, BackendError>;
}

/// Embedding vectors for a batch of texts, in input order, and the tokens they consumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    #[error("invalid embedding input: {0}")]
    InvalidInput(String),
    #[error("embedding failure: {0}")]
    Internal(String),
}

/// A model that turns text into unit-length vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    fn model(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// The longest input, in the embedder's own tokens, that is embedded without truncation.
    fn max_tokens(&self) -> usize;
    /// Tokens `text` would use, counted by the embedder's own tokenizer (for chunk budgets).
    fn count_tokens(&self, text: &str) -> usize;
    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError>;
}
