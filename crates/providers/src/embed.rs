//! `OpenAiEmbedder`: an `Embedder` that calls `POST {base_url}/embeddings`.
//!
//! Inputs are sent in batches that respect OpenAI's request limits (2048 inputs, 300,000 tokens
//! summed over the inputs). Each response is checked and put back in input order by `assemble`,
//! which is pure: one vector per input, every index once, the configured dimensions, finite
//! values. Vectors are normalised to unit length, as the `Embedder` trait promises.
//! `EmbedClient` does the requests for this adapter and for Azure OpenAI's (`azure`).

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use perimeter_types::{EmbedError, Embedder, Embeddings};

use crate::endpoint::{read_capped, Connection, Endpoint, ReadError, Redacted};
use crate::failure::Failure;
use crate::wire;

/// The longest input OpenAI's embedding models accept, used when the configuration gives none.
pub const DEFAULT_EMBEDDING_MAX_TOKENS: usize = 8191;
/// The most inputs sent in one request (OpenAI's limit).
pub const MAX_BATCH_INPUTS: usize = 2048;
/// The most tokens, as `estimate_tokens` counts them, sent in one request (OpenAI's limit).
pub const MAX_BATCH_TOKENS: usize = 300_000;

/// An upper-leaning estimate of the tokens in `text`: one per three bytes, rounded up.
///
/// BPE tokenizers such as OpenAI's average about four bytes of English per token and about three
/// bytes of CJK text per token, so this over-counts typical text and chunks sized by it stay under
/// the model's limit. It is an estimate, not a bound: text a tokenizer splits byte by byte (rare
/// scripts, random strings) can use more tokens than this says.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3)
}

/// How to build an `OpenAiEmbedder`.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedderOptions {
    /// The backend's configured name, used in logs.
    pub name: String,
    /// The model id sent to the provider and reported by `Embedder::model`.
    pub model: String,
    pub endpoint: Endpoint,
    /// The length of the vectors the model returns; a response with another length is an error.
    pub dimensions: usize,
    /// The longest input in tokens, reported by `Embedder::max_tokens`.
    pub max_tokens: usize,
}

impl OpenAiEmbedderOptions {
    /// Options with `DEFAULT_EMBEDDING_MAX_TOKENS`.
    pub fn new(name: impl Into<String>, model: impl Into<String>, endpoint: Endpoint, dimensions: usize) -> Self {
        Self { name: name.into(), model: model.into(), endpoint, dimensions, max_tokens: DEFAULT_EMBEDDING_MAX_TOKENS }
    }
}

/// An embedder served over the OpenAI Embeddings API.
pub struct OpenAiEmbedder {
    client: EmbedClient,
}

impl OpenAiEmbedder {
    pub fn new(options: OpenAiEmbedderOptions) -> Result<Self, crate::BuildError> {
        let connection = Connection::new(&options.endpoint)?;
        Ok(Self {
            client: EmbedClient {
                name: options.name,
                model: options.model,
                send_model: true,
                path: "embeddings".to_string(),
                dimensions: options.dimensions,
                max_tokens: options.max_tokens,
                connection,
            },
        })
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        &self.client.name
    }
}

/// The requests and checks of an OpenAI-shaped embeddings endpoint.
pub(crate) struct EmbedClient {
    /// The backend's configured name, used in logs.
    pub name: String,
    /// The model reported by `Embedder::model`, and sent when `send_model` is set.
    pub model: String,
    /// Whether the body names the model; Azure OpenAI's URL names the deployment instead.
    pub send_model: bool,
    /// Appended to the connection's base URL, query string included.
    pub path: String,
    pub dimensions: usize,
    pub max_tokens: usize,
    pub connection: Connection,
}

impl EmbedClient {
    /// Embeds `texts` in as many requests as the batch limits need; each request is retried by
    /// `Connection::send` on its own.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(EmbedError::InvalidInput(format!("input {i} is empty; the provider refuses empty strings")));
        }
        let mut vectors = Vec::with_capacity(texts.len());
        let mut prompt_tokens = 0u32;
        for range in batches(&texts) {
            let (batch, tokens) = self.embed_batch(&texts[range.clone()]).await.map_err(|failure| {
                tracing::warn!(backend = %self.name, inputs = range.len(), ?failure, "provider embedding failed");
                EmbedError::from(failure)
            })?;
            vectors.extend(batch);
            prompt_tokens = prompt_tokens.saturating_add(tokens);
        }
        tracing::debug!(backend = %self.name, inputs = texts.len(), prompt_tokens, "provider embedding finished");
        Ok(Embeddings { vectors, prompt_tokens })
    }

    async fn embed_batch(&self, input: &[String]) -> Result<(Vec<Vec<f32>>, u32), Failure> {
        let body = wire::EmbedBody { model: self.send_model.then_some(self.model.as_str()), input };
        let response = self.connection.send(self.connection.post(&self.path, &body)).await?;
        // Pretty-printed JSON spends at most a few dozen bytes on each number.
        let limit = input.len().saturating_mul(self.dimensions).saturating_mul(64).saturating_add(1 << 20);
        let bytes = read_capped(response, limit).await.map_err(|e| match e {
            ReadError::TooLong => {
                Failure::Provider("the provider's embedding response is far larger than expected".into())
            }
            ReadError::Transport(e) => self.connection.transport_failure(&e),
        })?;
        let response: wire::EmbedResponse = serde_json::from_slice(&bytes)
            .map_err(|_| Failure::Provider("the provider's embedding response is not the expected JSON".into()))?;
        assemble(response, input.len(), self.dimensions).map_err(Failure::Provider)
    }
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = &self.client;
        f.debug_struct("OpenAiEmbedder")
            .field("name", &client.name)
            .field("model", &client.model)
            .field("flavour", &client.connection.flavour)
            .field("base_url", &client.connection.base_url)
            .field("api_key", &client.connection.has_key().then_some(Redacted))
            .field("dimensions", &client.dimensions)
            .field("max_tokens", &client.max_tokens)
            .finish()
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.client.model
    }

    fn dimensions(&self) -> usize {
        self.client.dimensions
    }

    fn max_tokens(&self) -> usize {
        self.client.max_tokens
    }

    /// `estimate_tokens`: the provider's tokenizer is not available here.
    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        self.client.embed(texts).await
    }
}

/// Splits the inputs into consecutive batches within `MAX_BATCH_INPUTS` and `MAX_BATCH_TOKENS`.
/// An input over the token limit on its own still gets a batch; the provider decides about it.
fn batches(texts: &[String]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (i, text) in texts.iter().enumerate() {
        let cost = estimate_tokens(text);
        if i > start && (i - start == MAX_BATCH_INPUTS || tokens + cost > MAX_BATCH_TOKENS) {
            out.push(start..i);
            start = i;
            tokens = 0;
        }
        tokens += cost;
    }
    if start < texts.len() {
        out.push(start..texts.len());
    }
    out
}

/// Checks a response for `expected` inputs and returns unit vectors in input order, with the
/// prompt tokens. The error says what was wrong without quoting the response.
fn assemble(response: wire::EmbedResponse, expected: usize, dimensions: usize) -> Result<(Vec<Vec<f32>>, u32), String> {
    if response.data.len() != expected {
        return Err(format!("the provider returned {} embeddings for {expected} inputs", response.data.len()));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in response.data {
        let slot = slots.get_mut(item.index).ok_or_else(|| {
            format!("the provider returned an embedding for input {}, which was not sent", item.index)
        })?;
        if slot.is_some() {
            return Err(format!("the provider returned two embeddings for input {}", item.index));
        }
        if item.embedding.len() != dimensions {
            return Err(format!(
                "the provider returned {} dimensions but the backend is configured for {dimensions}",
                item.embedding.len()
            ));
        }
        *slot = Some(normalise(item.embedding).ok_or("the provider returned a zero or non-finite vector")?);
    }
    // Every slot is filled: `expected` items, each index in range and none twice.
    let vectors = slots.into_iter().flatten().collect();
    let tokens = response.usage.and_then(|u| u.prompt_tokens).unwrap_or(0);
    Ok((vectors, tokens))
}

/// Scales `v` to unit length; `None` for a zero or non-finite vector.
fn normalise(mut v: Vec<f32>) -> Option<Vec<f32>> {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    for x in &mut v {
        *x = (f64::from(*x) / norm) as f32;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(items: &[(usize, &[f32])], prompt_tokens: u32) -> wire::EmbedResponse {
        let json = serde_json::json!({
            "object": "list",
            "data": items.iter().map(|(i, v)| serde_json::json!({"object": "embedding", "index": i, "embedding": v})).collect::<Vec<_>>(),
            "model": "m",
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn vectors_come_back_in_input_order_and_unit_length() {
        let (vectors, tokens) = assemble(response(&[(1, &[0.0, 2.0]), (0, &[3.0, 4.0])], 5), 2, 2).unwrap();
        assert_eq!(vectors, [vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert_eq!(tokens, 5);
    }

    #[test]
    fn inconsistent_responses_are_refused() {
        assert!(assemble(response(&[(0, &[1.0, 0.0])], 1), 2, 2).unwrap_err().contains("1 embeddings for 2 inputs"));
        assert!(assemble(response(&[(0, &[1.0, 0.0]), (0, &[1.0, 0.0])], 1), 2, 2).unwrap_err().contains("two"));
        assert!(assemble(response(&[(0, &[1.0, 0.0]), (2, &[1.0, 0.0])], 1), 2, 2).unwrap_err().contains("not sent"));
        assert!(assemble(response(&[(0, &[1.0, 0.0, 0.0])], 1), 1, 2).unwrap_err().contains("3 dimensions"));
        assert!(assemble(response(&[(0, &[0.0, 0.0])], 1), 1, 2).unwrap_err().contains("zero"));
    }

    #[test]
    fn batches_respect_both_limits() {
        let short: Vec<String> = vec!["abc".into(); 5000];
        assert_eq!(batches(&short), [0..2048, 2048..4096, 4096..5000]);
        // 100 inputs of 9,000 estimated tokens: 33 fit under 300,000.
        let long: Vec<String> = vec!["x".repeat(27_000); 100];
        assert_eq!(batches(&long), [0..33, 33..66, 66..99, 99..100]);
        let huge: Vec<String> = vec!["x".repeat(1_000_000), "y".into()];
        assert_eq!(batches(&huge), [0..1, 1..2]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn the_estimate_rounds_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 2);
        assert_eq!(estimate_tokens("日本"), 2);
    }
}
