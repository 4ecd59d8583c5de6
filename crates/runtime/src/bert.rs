//! Embedded embeddings: a BERT encoder (all-MiniLM-L6-v2) on candle, from safetensors, with mean
//! pooling and L2 normalisation — the same computation as sentence-transformers.
//!
//! Batches are padded to their longest member, not to a fixed length, and inputs are sorted by
//! length before batching so that short texts are not padded to long ones; the output keeps the
//! input order. Inputs longer than `EMBEDDING_MAX_TOKENS` are truncated, as sentence-transformers
//! does for this model.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{LayerNorm, Linear};
use perimeter_provenance::ModelKind;
use perimeter_types::{EmbedError, Embedder, Embeddings};
use serde_json::Value;
use tokenizers::{Tokenizer, TruncationParams};

use crate::{LoadError, VerifiedModel};

/// The longest input embedded without truncation (sentence-transformers' `max_seq_length`).
pub const EMBEDDING_MAX_TOKENS: usize = 256;
/// Texts per forward pass.
const BATCH: usize = 32;

struct Layer {
    /// Query, key and value projections fused into one (3·hidden × hidden) matrix: one larger
    /// matrix product instead of three small ones.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

/// all-MiniLM-L6-v2 (or any BERT-architecture sentence encoder with mean pooling).
pub struct BertEmbedder {
    model: String,
    inner: Arc<Inner>,
}

struct Inner {
    bert: Bert,
    /// One single-threaded pool per core. Batches run in parallel, one per core, which keeps
    /// every core in its matrix kernels; splitting each (small) matrix product across cores
    /// instead spent a sixth of the time synchronising.
    pools: Vec<rayon::ThreadPool>,
    /// Truncates at `EMBEDDING_MAX_TOKENS`, for embedding.
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for counting (chunk budgets need real lengths).
    counter: Tokenizer,
}

type CResult<T> = candle_core::Result<T>;
/// An embedding with the position of its input.
type Indexed = (usize, Vec<f32>);

impl BertEmbedder {
    pub fn load(verified: &VerifiedModel) -> Result<Self, LoadError> {
        let model = verified.name().to_string();
        let engine = |reason: String| LoadError::Engine { model: model.clone(), reason };
        if verified.kind() != ModelKind::Embedding {
            return Err(LoadError::WrongKind { model: model.clone(), expected: "embedding", actual: "generation" });
        }
        let file = |role: &str| verified.file(role).ok_or_else(|| engine(format!("the manifest has no {role} file")));
        let config: Value =
            serde_json::from_slice(&std::fs::read(file("config")?).map_err(|e| engine(format!("config.json: {e}")))?)
                .map_err(|e| engine(format!("config.json: {e}")))?;
        let usize_of = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| engine(format!("config.json has no {key}")))
        };
        let (hidden, heads, layers) =
            (usize_of("hidden_size")?, usize_of("num_attention_heads")?, usize_of("num_hidden_layers")?);
        let eps = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12);
        if heads == 0 || hidden % heads != 0 {
            return Err(engine("hidden_size is not a multiple of num_attention_heads".into()));
        }

        let bytes = std::fs::read(file("weights")?).map_err(|e| engine(format!("weights: {e}")))?;
        let tensors =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| engine(format!("weights: {e}")))?;
        let bert =
            Bert::from_tensors(tensors, hidden, heads, layers, eps).map_err(|e| engine(format!("weights: {e}")))?;

        let mut tokenizer =
            Tokenizer::from_file(file("tokenizer")?).map_err(|e| engine(format!("tokenizer.json: {e}")))?;
        // The shipped tokenizer pads every input to 128 tokens; we pad per batch instead.
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        counter.with_truncation(None).map_err(|e| engine(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: EMBEDDING_MAX_TOKENS, ..Default::default() }))
            .map_err(|e| engine(format!("tokenizer.json: {e}")))?;
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let pools = (0..workers)
            .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| engine(format!("could not start embedding threads: {e}")))?;
        tracing::info!(model = %model, hidden, layers, workers, "embedded embedding model loaded");
        Ok(Self { model, inner: Arc::new(Inner { bert, pools, tokenizer, counter }) })
    }

    /// Embeds synchronously (the async trait method runs this on a blocking thread).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Embeddings, EmbedError> {
        self.inner.embed(texts)
    }
}

impl Inner {
    fn embed(&self, texts: &[String]) -> Result<Embeddings, EmbedError> {
        let internal = |e: &dyn std::fmt::Display| EmbedError::Internal(e.to_string());
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(|e| internal(&e))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let groups: Vec<&[usize]> = order.chunks(BATCH).collect();
        let tokens: u32 = encodings.iter().map(|e| e.get_ids().len() as u32).sum();
        // Worker w takes groups w, w + workers, …: neighbours in length order, so the work splits evenly.
        let workers = self.pools.len().min(groups.len()).max(1);
        let results: Vec<CResult<Vec<Indexed>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (groups, encodings, bert, pool) = (&groups, &encodings, &self.bert, &self.pools[w]);
                    scope.spawn(move || {
                        pool.install(|| {
                            let mut out = Vec::new();
                            for group in groups.iter().skip(w).step_by(workers) {
                                let ids: Vec<&[u32]> = group.iter().map(|&i| encodings[i].get_ids()).collect();
                                out.extend(group.iter().copied().zip(bert.embed_batch(&ids)?));
                            }
                            Ok(out)
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(candle_core::Error::Msg("embedding worker panicked".into()))))
                .collect()
        });
        let mut vectors = vec![Vec::new(); encodings.len()];
        for result in results {
            for (i, v) in result.map_err(|e| internal(&e))? {
                vectors[i] = v;
            }
        }
        Ok(Embeddings { vectors, prompt_tokens: tokens })
    }
}

#[async_trait]
impl Embedder for BertEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.inner.bert.hidden
    }

    fn max_tokens(&self) -> usize {
        EMBEDDING_MAX_TOKENS
    }

    fn count_tokens(&self, text: &str) -> usize {
        // Without truncation limits: the chunker needs the real length, special tokens included.
        self.inner.counter.encode_fast(text, true).map(|e| e.get_ids().len()).unwrap_or(text.len() / 4 + 2)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        if texts.is_empty() {
            return Ok(Embeddings { vectors: Vec::new(), prompt_tokens: 0 });
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.embed(&texts))
            .await
            .map_err(|e| EmbedError::Internal(format!("embedding task failed: {e}")))?
    }
}

impl Bert {
    fn from_tensors(
        mut t: HashMap<String, Tensor>,
        hidden: usize,
        heads: usize,
        layers: usize,
        eps: f64,
    ) -> CResult<Self> {
        let t = &mut t;
        let mut built = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = format!("encoder.layer.{i}");
            let parts = ["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}"));
            let mut weights = Vec::with_capacity(3);
            let mut biases = Vec::with_capacity(3);
            for part in &parts {
                weights.push(take(t, &format!("{part}.weight"))?);
                biases.push(take(t, &format!("{part}.bias"))?);
            }
            built.push(Layer {
                qkv: Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?)),
                attn_out: linear(t, &format!("{p}.attention.output.dense"))?,
                attn_norm: norm(t, &format!("{p}.attention.output.LayerNorm"), eps)?,
                intermediate: linear(t, &format!("{p}.intermediate.dense"))?,
                output: linear(t, &format!("{p}.output.dense"))?,
                out_norm: norm(t, &format!("{p}.output.LayerNorm"), eps)?,
            });
        }
        let word = take(t, "embeddings.word_embeddings.weight")?;
        if word.dim(1)? != hidden {
            return Err(candle_core::Error::Msg("word embeddings do not match hidden_size".into()));
        }
        Ok(Self {
            word,
            position: take(t, "embeddings.position_embeddings.weight")?,
            token_type: take(t, "embeddings.token_type_embeddings.weight")?.get(0)?,
            norm: norm(t, "embeddings.LayerNorm", eps)?,
            layers: built,
            heads,
            hidden,
        })
    }

    /// Embeds one batch of token id sequences (each non-empty), returning unit vectors.
    fn embed_batch(&self, ids: &[&[u32]]) -> CResult<Vec<Vec<f32>>> {
        let b = ids.len();
        let l = ids.iter().map(|x| x.len()).max().unwrap_or(0).max(1);
        let (h, d) = (self.heads, self.hidden);
        let dh = d / h;
        let mut flat = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        for seq in ids {
            flat.extend_from_slice(seq);
            flat.extend(std::iter::repeat_n(0u32, l - seq.len()));
            mask.extend(std::iter::repeat_n(1f32, seq.len()));
            mask.extend(std::iter::repeat_n(0f32, l - seq.len()));
        }
        let dev = Device::Cpu;
        let ids_t = Tensor::from_vec(flat, b * l, &dev)?;
        let mask_t = Tensor::from_vec(mask, (b, l), &dev)?;

        // Embeddings: word + position + token type 0, then LayerNorm. Shape (b*l, d).
        let pos = self.position.narrow(0, 0, l)?.repeat((b, 1))?;
        let x = self.word.embedding(&ids_t)?.add(&pos)?.broadcast_add(&self.token_type)?;
        let mut x = self.norm.forward(&x)?;

        // Padding positions get a large negative attention bias. Shape (b, 1, 1, l).
        let bias = ((mask_t.clone() - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?;
        let scale = 1.0 / (dh as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?.reshape((b, l, 3, h, dh))?;
            let split =
                |i: usize| -> CResult<Tensor> { qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous() };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * l, d))?;
            let attn = layer.attn_norm.forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let inter = gelu_erf(&layer.intermediate.forward(&attn)?)?;
            x = layer.out_norm.forward(&(layer.output.forward(&inter)? + &attn)?)?;
        }

        // Mean pooling over real tokens, then L2 normalisation.
        let x = x.reshape((b, l, d))?;
        let m = mask_t.unsqueeze(2)?;
        let summed = x.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1.0, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

fn take(t: &mut HashMap<String, Tensor>, name: &str) -> CResult<Tensor> {
    t.remove(name)
        .or_else(|| t.remove(&format!("bert.{name}")))
        .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))
        .and_then(|x| x.to_dtype(DType::F32))
}

fn linear(t: &mut HashMap<String, Tensor>, prefix: &str) -> CResult<Linear> {
    Ok(Linear::new(take(t, &format!("{prefix}.weight"))?, Some(take(t, &format!("{prefix}.bias"))?)))
}

fn norm(t: &mut HashMap<String, Tensor>, prefix: &str, eps: f64) -> CResult<LayerNorm> {
    Ok(LayerNorm::new(take(t, &format!("{prefix}.weight"))?, take(t, &format!("{prefix}.bias"))?, eps))
}

/// GELU with the exact (erf) form BERT was trained with, computed with a vectorisable rational
/// approximation of erf instead of candle's scalar libm call per element (which took about a
/// sixth of the encoder's time).
fn gelu_erf(x: &Tensor) -> CResult<Tensor> {
    let shape = x.shape().clone();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    for e in v.iter_mut() {
        let z = *e;
        *e = 0.5 * z * (1.0 + fast_erf(z * std::f32::consts::FRAC_1_SQRT_2));
    }
    Tensor::from_vec(v, shape, x.device())
}

/// erf(x) as a ratio of odd and even polynomials on [-4, 4] (the approximation Eigen uses for
/// float); beyond ±4 erf is ±1 to float precision. Absolute error below 1e-6 (see the test).
#[inline(always)]
fn fast_erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_matches_libm() {
        let mut worst = 0.0f32;
        for i in -8000..=8000 {
            let x = i as f32 / 1000.0;
            let exact = libm_erf(f64::from(x)) as f32;
            worst = worst.max((fast_erf(x) - exact).abs());
        }
        assert!(worst < 1e-6, "max error {worst}");
    }

    /// erf by its Taylor series / continued fraction, in f64, as an independent reference.
    fn libm_erf(x: f64) -> f64 {
        // Abramowitz–Stegun 7.1.26 is too coarse for a reference; integrate exp(-t^2) instead.
        let n = 20_000;
        let h = x / n as f64;
        let mut sum = 0.0;
        for k in 0..=n {
            let t = k as f64 * h;
            let w = if k == 0 || k == n {
                1.0
            } else if k % 2 == 1 {
                4.0
            } else {
                2.0
            };
            sum += w * (-t * t).exp();
        }
        sum * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }
}
