//! Amazon Bedrock behind `ChatBackend` (`BedrockChat`, over ConverseStream) and `Embedder`
//! (`BedrockEmbedder`, Titan and Cohere over InvokeModel), signed with SigV4.
//!
//! Written against AWS's published documentation: the Bedrock Runtime API reference for the
//! request and event shapes, the event-stream encoding for the binary framing, and AWS's SigV4
//! test suite for signing. The pure parts are the event-stream codec (`eventstream`), the
//! signing (`sigv4`, through AWS's `aws-sigv4`), the credentials files' INI dialect and
//! resolution order (`credentials`), the request bodies and the interpretation of stream events.
//!
//! Nothing here logs or returns prompt text, answer text or secrets: errors carry HTTP statuses
//! and AWS error *types* (`ThrottlingException`), never an error `message`, which may quote the
//! prompt; `Credentials` never prints its secret or session token.

mod client;
mod converse;
mod credentials;
mod embed;
pub mod eventstream;
pub mod sigv4;

use std::time::Duration;

pub use converse::BedrockChat;
pub use credentials::{resolve_credentials, Credentials};
pub use embed::{BedrockEmbedder, COHERE_MAX_BATCH};

/// How to build a `BedrockChat` or a `BedrockEmbedder`. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct BedrockOptions {
    /// The backend's configured name, reported by `ChatBackend::name` and used in logs.
    pub name: String,
    /// The Bedrock model id, inference profile id or ARN, e.g.
    /// `anthropic.claude-3-haiku-20240307-v1:0`; sent URL-encoded as one path segment.
    pub model_id: String,
    /// The AWS region, e.g. `us-east-1`: the endpoint's host and the signature's scope.
    pub region: String,
    /// Replaces `https://bedrock-runtime.{region}.amazonaws.com` (a VPC endpoint, a proxy, or a
    /// test server on 127.0.0.1). Requests are still signed for `region`.
    pub endpoint_url: Option<String>,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// The longest wait for any read: the response head, and each piece of a streamed body.
    pub read_timeout: Duration,
    /// The model's context window in tokens, reported by `ChatBackend::context_tokens`.
    pub context_tokens: usize,
    /// Retries on throttling, 5xx and connection failures (each attempt is signed afresh).
    pub retry: crate::RetryPolicy,
}
