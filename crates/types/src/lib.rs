//! Perimeter's shared vocabulary: sensitivity levels, identifiers, chat and retrieval types, and
//! the traits at the seams (`ChatBackend`, `Embedder`, `Retriever`).
//!
//! This crate does no IO. Everything that crosses a crate boundary is named here once, so the
//! pure decision crates and the IO crates agree on one meaning.

mod backend;
mod entity;
mod injection;
mod level;
mod retrieval;

pub use backend::{
    BackendError, ChatBackend, ChatMessage, ChatOutcome, ChatRequest, EmbedError, Embedder, Embeddings, FinishReason,
    GenerationParams, Role, Timings, TokenSink, Usage,
};
pub use entity::{EntityKind, ParseEntityKindError};
pub use injection::InjectionKind;
pub use level::{Level, ParseLevelError};
pub use retrieval::{
    AccessFilter, Citation, DocumentId, Passage, RetrievalError, RetrievalQuery, Retriever, DEFAULT_TENANT,
};
