//! The embedded model runtime: verifies pinned model files, then serves generation (llama.cpp,
//! GGUF) and embeddings (a BERT encoder on candle, safetensors) in-process.
//!
//! Loading goes through one gate: `verify` turns a manifest entry and a models directory into a
//! `VerifiedModel`, and the engines accept nothing else. Later provenance checks (signatures,
//! payload scanning) join the same gate.

mod bert;
mod llm;
mod verify;

pub use bert::{BertEmbedder, EMBEDDING_MAX_TOKENS};
pub use llm::{EmbeddedChat, LlmOptions};
pub use verify::{
    builtin_manifest, manifest, require_clean, scan_file, signed_statement, verify, verify_signed, VerifiedModel,
    VerifyError,
};

/// The embedding model the default configuration uses.
pub const DEFAULT_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";
/// The generation model the default configuration uses.
pub const DEFAULT_CHAT_MODEL: &str = "smollm2-135m-instruct";

/// Errors from loading an engine.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model {model} failed verification: {source}")]
    Verify {
        model: String,
        #[source]
        source: VerifyError,
    },
    #[error("model {model} could not be loaded: {reason}")]
    Engine { model: String, reason: String },
    #[error("model {model} is a {actual} model, expected {expected}")]
    WrongKind { model: String, expected: &'static str, actual: &'static str },
}
