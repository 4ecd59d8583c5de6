//! HTTP adapters that put API providers and self-hosted model servers behind the `ChatBackend`
//! and `Embedder` traits.
//!
//! Today that is the OpenAI wire format, spoken by OpenAI itself and by OpenAI-compatible servers
//! (vLLM, Ollama, llama.cpp's server): `OpenAiChat` streams `/chat/completions`, `OpenAiEmbedder`
//! calls `/embeddings`. The wire types stay in this crate; callers see only `perimeter_types`.
//!
//! The parts that can be pure are: the SSE decoder (`sse`), the interpretation of stream chunks,
//! the mapping of HTTP statuses to errors (`failure`) and the batching and checking of embeddings.
//! The HTTP calls around them are thin.
//!
//! Nothing here logs or returns prompt text, answer text or the API key: errors carry the HTTP
//! status and the provider's error `type`/`code` identifiers, never its error `message`, which
//! may quote the prompt.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod chat;
mod embed;
mod endpoint;
mod failure;
mod retry;
mod sse;
mod wire;

pub use chat::{OpenAiChat, OpenAiChatOptions, DEFAULT_CONTEXT_TOKENS};
pub use embed::{
    estimate_tokens, OpenAiEmbedder, OpenAiEmbedderOptions, DEFAULT_EMBEDDING_MAX_TOKENS, MAX_BATCH_INPUTS,
    MAX_BATCH_TOKENS,
};
pub use endpoint::{BuildError, Endpoint, Flavour, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, OPENAI_BASE_URL};
pub use retry::RetryPolicy;
