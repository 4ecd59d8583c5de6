//! `BedrockEmbedder`: an `Embedder` over Bedrock's InvokeModel, `POST /model/{modelId}/invoke`,
//! for the two embedding families with documented bodies:
//!
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, and v1): one text per call,
//!   `{"inputText", "dimensions", "normalize"}` → `{"embedding", "inputTextTokenCount"}`. Calls
//!   run a few at a time; results keep input order.
//! - Cohere Embed v3 (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`): up to 96 texts
//!   per call, `{"texts", "input_type": "search_document"}` → `{"embeddings": [[…]]}`.
//!
//! The family is chosen from the model id. Every vector is checked (count, dimensions, finite,
//! non-zero) and scaled to unit length, as the `Embedder` trait promises.

use std::fmt;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use perimeter_types::{EmbedError, Embedder, Embeddings};
use serde::{Deserialize, Serialize};

use super::client::{read_capped, Client, Failure, ReadError};
use super::BedrockOptions;
use crate::{estimate_tokens, BuildError};

/// The most texts Cohere's Embed v3 takes in one request on Bedrock.
pub const COHERE_MAX_BATCH: usize = 96;
/// How many Titan requests (one text each) are in flight at once.
const TITAN_CONCURRENCY: usize = 4;

/// Which request and response shape a model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `normalize`/`dimensions` are only understood by v2.
    Titan {
        v2: bool,
    },
    Cohere,
}

/// The family of a model id, which may be a plain id (`cohere.embed-english-v3`), a
/// cross-region inference profile (`us.cohere.embed-english-v3`) or an ARN ending in either.
fn family(model_id: &str) -> Option<Family> {
    let id = model_id.rsplit('/').next().unwrap_or(model_id);
    let matches = |prefix: &str| {
        id.starts_with(prefix)
            || id.split_once('.').is_some_and(|(geo, rest)| geo.len() <= 7 && rest.starts_with(prefix))
    };
    if matches("amazon.titan-embed-text-v2") {
        Some(Family::Titan { v2: true })
    } else if matches("amazon.titan-embed") {
        Some(Family::Titan { v2: false })
    } else if matches("cohere.embed") {
        Some(Family::Cohere)
    } else {
        None
    }
}

/// An embedder served by Amazon Bedrock (Titan or Cohere embedding models).
pub struct BedrockEmbedder {
    name: String,
    model_id: String,
    family: Family,
    dimensions: usize,
    max_tokens: usize,
    client: Client,
}

impl BedrockEmbedder {
    /// `dimensions` is the vector length the model returns (for Titan v2 it is also requested:
    /// 256, 512 or 1024); `max_tokens` the longest input, reported by `Embedder::max_tokens`.
    pub fn new(options: BedrockOptions, dimensions: usize, max_tokens: usize) -> Result<Self, BuildError> {
        let family = family(&options.model_id).ok_or(BuildError::BaseUrl(
            "cannot be built: model_id is not a Titan (amazon.titan-embed-*) or Cohere (cohere.embed-*) embedding model",
        ))?;
        let client = Client::new(&options)?;
        Ok(Self { name: options.name, model_id: options.model_id, family, dimensions, max_tokens, client })
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn invoke(&self, body: &impl Serialize, expected: usize) -> Result<(Vec<u8>, Option<u32>), Failure> {
        let body =
            serde_json::to_vec(body).map_err(|_| Failure::Provider("the request could not be encoded".into()))?;
        let response = self.client.post("invoke", body, "application/json").await?;
        // Bedrock reports the tokens of every InvokeModel call in a header.
        let tokens = response
            .headers()
            .get("x-amzn-bedrock-input-token-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        // Pretty-printed JSON spends at most a few dozen bytes on each number.
        let limit = expected.saturating_mul(self.dimensions).saturating_mul(64).saturating_add(1 << 20);
        let bytes = read_capped(response, limit).await.map_err(|e| match e {
            ReadError::TooLong => {
                Failure::Provider("the provider's embedding response is far larger than expected".into())
            }
            ReadError::Transport(e) => self.client.transport_failure(&e),
        })?;
        Ok((bytes, tokens))
    }

    /// Every input's vector, in input order, and the tokens the provider counted.
    async fn embed_all(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u32), Failure> {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut tokens = 0u32;
        match self.family {
            Family::Titan { .. } => {
                // `buffered` yields results in input order, whatever order they finish in. The
                // futures are collected first: a closure inside the stream type trips the
                // compiler's `Send` check of this `async_trait` future.
                let calls: Vec<_> = texts.iter().map(|t| self.titan(t)).collect();
                let mut results = futures::stream::iter(calls).buffered(TITAN_CONCURRENCY);
                while let Some((vector, n)) = results.try_next().await? {
                    vectors.push(vector);
                    tokens = tokens.saturating_add(n);
                }
            }
            Family::Cohere => {
                for batch in texts.chunks(COHERE_MAX_BATCH) {
                    let (batch_vectors, n) = self.cohere(batch).await?;
                    vectors.extend(batch_vectors);
                    tokens = tokens.saturating_add(n);
                }
            }
        }
        Ok((vectors, tokens))
    }

    async fn titan(&self, text: &str) -> Result<(Vec<f32>, u32), Failure> {
        let v2 = self.family == Family::Titan { v2: true };
        let body =
            TitanRequest { input_text: text, dimensions: v2.then_some(self.dimensions), normalize: v2.then_some(true) };
        let (bytes, header_tokens) = self.invoke(&body, 1).await?;
        let response: TitanResponse = serde_json::from_slice(&bytes).map_err(|_| not_json())?;
        let vector = check(response.embedding, self.dimensions)?;
        Ok((vector, response.input_text_token_count.or(header_tokens).unwrap_or(0)))
    }

    async fn cohere(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u32), Failure> {
        let body = CohereRequest { texts, input_type: "search_document" };
        let (bytes, tokens) = self.invoke(&body, texts.len()).await?;
        let response: CohereResponse = serde_json::from_slice(&bytes).map_err(|_| not_json())?;
        if response.embeddings.len() != texts.len() {
            return Err(Failure::Provider(format!(
                "the provider returned {} embeddings for {} inputs",
                response.embeddings.len(),
                texts.len()
            )));
        }
        let vectors =
            response.embeddings.into_iter().map(|v| check(v, self.dimensions)).collect::<Result<Vec<_>, _>>()?;
        Ok((vectors, tokens.unwrap_or(0)))
    }
}

impl fmt::Debug for BedrockEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockEmbedder")
            .field("name", &self.name)
            .field("model_id", &self.model_id)
            .field("family", &self.family)
            .field("url", &self.client.model_url())
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Embedder for BedrockEmbedder {
    fn model(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// `estimate_tokens`: the model's tokenizer is not available here.
    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EmbedError::InvalidInput(format!("input {i} is empty; the provider refuses blank text")));
        }
        let result = self.embed_all(&texts).await;
        match result {
            Ok((vectors, prompt_tokens)) => {
                tracing::debug!(backend = %self.name, inputs = texts.len(), prompt_tokens, "bedrock embedding finished");
                Ok(Embeddings { vectors, prompt_tokens })
            }
            Err(failure) => {
                tracing::warn!(backend = %self.name, inputs = texts.len(), ?failure, "bedrock embedding failed");
                Err(failure.into())
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f32>,
    input_text_token_count: Option<u32>,
}

#[derive(Serialize)]
struct CohereRequest<'a> {
    texts: &'a [String],
    input_type: &'static str,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: Vec<Vec<f32>>,
}

fn not_json() -> Failure {
    Failure::Provider("the provider's embedding response is not the expected JSON".into())
}

/// Checks one vector's length and scales it to unit length.
fn check(vector: Vec<f32>, dimensions: usize) -> Result<Vec<f32>, Failure> {
    if vector.len() != dimensions {
        return Err(Failure::Provider(format!(
            "the provider returned {} dimensions but the backend is configured for {dimensions}",
            vector.len()
        )));
    }
    normalise(vector).ok_or_else(|| Failure::Provider("the provider returned a zero or non-finite vector".into()))
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

    #[test]
    fn families_follow_the_model_id() {
        assert_eq!(family("amazon.titan-embed-text-v2:0"), Some(Family::Titan { v2: true }));
        assert_eq!(family("amazon.titan-embed-text-v1"), Some(Family::Titan { v2: false }));
        assert_eq!(family("cohere.embed-english-v3"), Some(Family::Cohere));
        assert_eq!(family("us.cohere.embed-multilingual-v3"), Some(Family::Cohere));
        assert_eq!(
            family("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"),
            Some(Family::Titan { v2: true })
        );
        assert_eq!(family("anthropic.claude-3-haiku-20240307-v1:0"), None);
        assert_eq!(family("my.very.long.prefix.cohere.embed-english-v3"), None);
    }

    #[test]
    fn vectors_are_checked_and_scaled() {
        assert_eq!(check(vec![3.0, 4.0], 2).unwrap(), [0.6, 0.8]);
        assert!(matches!(check(vec![1.0], 2), Err(Failure::Provider(m)) if m.contains("1 dimensions")));
        assert!(check(vec![0.0, 0.0], 2).is_err());
        assert!(check(vec![f32::NAN, 1.0], 2).is_err());
    }

    #[test]
    fn request_bodies_follow_the_documentation() {
        let titan = TitanRequest { input_text: "hi", dimensions: Some(256), normalize: Some(true) };
        assert_eq!(
            serde_json::to_value(&titan).unwrap(),
            serde_json::json!({"inputText": "hi", "dimensions": 256, "normalize": true})
        );
        let v1 = TitanRequest { input_text: "hi", dimensions: None, normalize: None };
        assert_eq!(serde_json::to_value(&v1).unwrap(), serde_json::json!({"inputText": "hi"}));
        let texts = vec!["a".to_string(), "b".to_string()];
        let cohere = CohereRequest { texts: &texts, input_type: "search_document" };
        assert_eq!(
            serde_json::to_value(&cohere).unwrap(),
            serde_json::json!({"texts": ["a", "b"], "input_type": "search_document"})
        );
    }
}
