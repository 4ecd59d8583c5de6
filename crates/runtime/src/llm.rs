//! Embedded generation: a GGUF chat model on llama.cpp, run by one worker thread that owns the
//! model and its context, fed through a queue. Tokens stream out through the request's sink.
//!
//! Prompts are rendered with ChatML (the model's own template). Template markers are tokenized
//! as special tokens; message text never is, so text inside a message or a retrieved document
//! cannot forge `<|im_start|>` turns.

use std::num::NonZeroU32;
use std::sync::{mpsc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use perimeter_provenance::ModelKind;
use perimeter_types::{
    BackendError, ChatBackend, ChatOutcome, ChatRequest, FinishReason, Role, Timings, TokenSink, Usage,
};
use tokio::sync::oneshot;

use crate::{LoadError, VerifiedModel};

/// How the embedded generation engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmOptions {
    /// Context window in tokens (prompt + answer).
    pub context_tokens: u32,
    /// CPU threads for prompt processing and generation.
    pub threads: usize,
    /// Requests that may wait in the queue before new ones are refused as overloaded.
    pub queue_depth: usize,
    /// Layers to offload to a GPU (only with the `cuda` feature; 0 = CPU only).
    pub gpu_layers: u32,
    /// Strength of the LoRA adapter, when the verified model has one (role `adapter`).
    pub adapter_scale: f32,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            context_tokens: 4096,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            queue_depth: 64,
            gpu_layers: 0,
            adapter_scale: 1.0,
        }
    }
}

/// llama.cpp's backend may be initialised once per process.
static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, String> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp logs to stderr by default; Perimeter logs through tracing only.
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(Clone::clone)
}

struct Job {
    request: ChatRequest,
    sink: TokenSink,
    reply: oneshot::Sender<Result<ChatOutcome, BackendError>>,
}

/// The embedded chat model, served by a dedicated worker thread.
pub struct EmbeddedChat {
    name: String,
    model: String,
    context_tokens: usize,
    queue: mpsc::SyncSender<Job>,
}

impl EmbeddedChat {
    /// Loads a verified GGUF model and starts its worker. Blocks until the model is loaded.
    pub fn load(name: &str, verified: &VerifiedModel, options: &LlmOptions) -> Result<Self, LoadError> {
        let model_name = verified.name().to_string();
        let engine = |reason: String| LoadError::Engine { model: model_name.clone(), reason };
        if verified.kind() != ModelKind::Generation {
            return Err(LoadError::WrongKind {
                model: model_name.clone(),
                expected: "generation",
                actual: "embedding",
            });
        }
        let path =
            verified.file("weights").ok_or_else(|| engine("the manifest has no weights file".into()))?.to_path_buf();
        let backend = backend().map_err(&engine)?;
        let params = LlamaModelParams::default().with_n_gpu_layers(options.gpu_layers);
        let mut model = LlamaModel::load_from_file(backend, &path, &params).map_err(|e| engine(e.to_string()))?;
        // A fine-tuned adapter is a model file like the weights: it is only here because it is
        // part of the `VerifiedModel` (pinned digest, clean scan, signature when required).
        let mut adapter = match verified.file("adapter") {
            Some(p) => Some(
                model.lora_adapter_init(p).map_err(|e| engine(format!("the LoRA adapter could not be loaded: {e}")))?,
            ),
            None => None,
        };
        let adapter_scale = options.adapter_scale;
        let template = model.meta_val_str("tokenizer.chat_template").unwrap_or_default();
        if !template.contains("<|im_start|>") {
            return Err(engine("the model's chat template is not ChatML; only ChatML models are supported".into()));
        }
        let n_ctx = options.context_tokens.min(model.n_ctx_train()).max(256);
        let threads = i32::try_from(options.threads.max(1)).unwrap_or(2);

        let (tx, rx) = mpsc::sync_channel::<Job>(options.queue_depth.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("perimeter-llm".into())
            .spawn(move || {
                let ctx_params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new(n_ctx))
                    .with_n_batch(512)
                    .with_n_ubatch(512)
                    .with_n_threads(threads)
                    .with_n_threads_batch(threads);
                let mut ctx = match model.new_context(backend, ctx_params) {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                if let Some(adapter) = adapter.as_mut() {
                    if let Err(e) = ctx.lora_adapter_set(adapter, adapter_scale) {
                        let _ = ready_tx.send(Err(format!("the LoRA adapter could not be applied: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let mut worker = Worker { model: &model, ctx, n_ctx: n_ctx as usize };
                while let Ok(job) = rx.recv() {
                    let Job { request, sink, reply } = job;
                    let result = worker.run(&request, sink);
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| engine(format!("could not start the worker thread: {e}")))?;
        ready_rx.recv().map_err(|_| engine("the worker thread stopped while loading".into()))?.map_err(&engine)?;
        tracing::info!(model = %model_name, n_ctx, threads, "embedded chat model loaded");
        Ok(Self { name: name.to_string(), model: model_name, context_tokens: n_ctx as usize, queue: tx })
    }
}

#[async_trait]
impl ChatBackend for EmbeddedChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn context_tokens(&self) -> usize {
        self.context_tokens
    }

    async fn chat(&self, request: ChatRequest, sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        let (reply, wait) = oneshot::channel();
        match self.queue.try_send(Job { request, sink, reply }) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => return Err(BackendError::Overloaded),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(BackendError::Internal("the embedded model worker has stopped".into()))
            }
        }
        wait.await.map_err(|_| BackendError::Internal("the embedded model worker has stopped".into()))?
    }
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    n_ctx: usize,
}

/// The fewest answer tokens a prompt must leave room for.
const MIN_ANSWER_TOKENS: usize = 16;

impl Worker<'_> {
    fn tokenize_prompt(&self, request: &ChatRequest) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let mut tokens = Vec::new();
        let special = |s: &str, tokens: &mut Vec<LlamaToken>| tokens.extend(vocab.tokenize(s.as_bytes(), false, true));
        let plain = |s: &str, tokens: &mut Vec<LlamaToken>| tokens.extend(vocab.tokenize(s.as_bytes(), false, false));
        if vocab.should_add_bos() {
            tokens.push(vocab.bos());
        }
        for m in &request.messages {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            special(&format!("<|im_start|>{role}\n"), &mut tokens);
            plain(&m.content, &mut tokens);
            special("<|im_end|>\n", &mut tokens);
        }
        special("<|im_start|>assistant\n", &mut tokens);
        tokens
    }

    fn run(&mut self, request: &ChatRequest, mut sink: TokenSink) -> Result<ChatOutcome, BackendError> {
        let internal = |e: &dyn std::fmt::Display| BackendError::Internal(e.to_string());
        let prompt = self.tokenize_prompt(request);
        if prompt.len() + MIN_ANSWER_TOKENS > self.n_ctx {
            return Err(BackendError::ContextTooLong { prompt_tokens: prompt.len(), context: self.n_ctx });
        }
        let max_new = (request.params.max_tokens as usize).min(self.n_ctx - prompt.len());

        self.ctx.clear_kv_cache();
        let started = Instant::now();
        let n_batch = self.ctx.n_batch().max(1) as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        for (chunk_index, chunk) in prompt.chunks(n_batch).enumerate() {
            batch.clear();
            let base = chunk_index * n_batch;
            for (i, token) in chunk.iter().enumerate() {
                let pos = base + i;
                let last = pos + 1 == prompt.len();
                batch.add(*token, pos as i32, &[0], last).map_err(|e| internal(&e))?;
            }
            self.ctx.decode(&mut batch).map_err(|e| internal(&e))?;
        }
        let prompt_ms = started.elapsed().as_secs_f64() * 1000.0;

        let params = &request.params;
        let mut sampler = if params.temperature <= 0.0 {
            LlamaSampler::greedy()
        } else {
            LlamaSampler::chain_simple([
                LlamaSampler::top_p(params.top_p.clamp(0.01, 1.0), 1),
                LlamaSampler::temp(params.temperature),
                LlamaSampler::dist(params.seed),
            ])
        };

        let gen_started = Instant::now();
        let mut stream = TextStream::new(&params.stop);
        let mut generated = 0usize;
        let mut pos = prompt.len();
        let mut finish = FinishReason::Length;
        let vocab = self.model.vocab();
        while generated < max_new {
            let token = sampler.sample(&self.ctx, batch.n_tokens() - 1);
            sampler.accept(token);
            generated += 1;
            if vocab.is_eog(token) {
                finish = FinishReason::Stop;
                break;
            }
            let piece = vocab.token_to_piece(token, false, None);
            let (emit, stopped) = stream.push(&piece);
            if !emit.is_empty() && !sink(&emit) {
                finish = FinishReason::Cancelled;
                break;
            }
            if stopped {
                finish = FinishReason::Stop;
                break;
            }
            batch.clear();
            batch.add(token, pos as i32, &[0], true).map_err(|e| internal(&e))?;
            pos += 1;
            self.ctx.decode(&mut batch).map_err(|e| internal(&e))?;
        }
        if finish != FinishReason::Cancelled {
            let rest = stream.finish();
            if !rest.is_empty() && !sink(&rest) {
                finish = FinishReason::Cancelled;
            }
        }
        Ok(ChatOutcome {
            text: stream.text,
            usage: Usage { prompt_tokens: prompt.len() as u32, completion_tokens: generated as u32 },
            finish_reason: finish,
            timings: Timings { prompt_ms, generation_ms: gen_started.elapsed().as_secs_f64() * 1000.0 },
        })
    }
}

/// Turns token bytes into text safe to stream: holds back incomplete UTF-8 sequences and any
/// tail that could still become a stop sequence, and cuts the text at the first stop sequence.
struct TextStream {
    stops: Vec<String>,
    pending: Vec<u8>,
    /// Decoded text not yet emitted (may be the start of a stop sequence).
    held: String,
    /// Everything emitted so far.
    text: String,
}

impl TextStream {
    fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: Vec::new(),
            held: String::new(),
            text: String::new(),
        }
    }

    /// Adds token bytes; returns the text that may be emitted now and whether a stop sequence ended the answer.
    fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid bytes (not just incomplete): replace them rather than stall.
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                self.held.push_str(&s);
                return self.release();
            }
        };
        let decoded: Vec<u8> = self.pending.drain(..valid).collect();
        self.held.push_str(&String::from_utf8_lossy(&decoded));
        self.release()
    }

    fn release(&mut self) -> (String, bool) {
        for stop in &self.stops {
            if let Some(at) = self.held.find(stop.as_str()) {
                let out: String = self.held[..at].to_string();
                self.held.clear();
                self.text.push_str(&out);
                return (out, true);
            }
        }
        // Keep back the longest tail that is a prefix of some stop sequence.
        let mut keep = 0;
        for stop in &self.stops {
            for (i, _) in self.held.char_indices() {
                let tail = &self.held[i..];
                if stop.starts_with(tail) {
                    keep = keep.max(tail.len());
                    break;
                }
            }
        }
        let cut = self.held.len() - keep;
        let out: String = self.held[..cut].to_string();
        self.held.drain(..cut);
        self.text.push_str(&out);
        (out, false)
    }

    fn finish(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            rest.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        self.text.push_str(&rest);
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stream_holds_incomplete_utf8_and_cuts_at_stop() {
        let mut s = TextStream::new(&["STOP".to_string()]);
        let pound = "£".as_bytes();
        assert_eq!(s.push(&pound[..1]), (String::new(), false));
        assert_eq!(s.push(&pound[1..]), ("£".to_string(), false));
        assert_eq!(s.push(b"ab ST"), ("ab ".to_string(), false), "ST may begin STOP");
        assert_eq!(s.push(b"OP tail"), (String::new(), true));
        assert_eq!(s.text, "£ab ");

        let mut s = TextStream::new(&[]);
        assert_eq!(s.push(b"x\xff"), ("x\u{fffd}".to_string(), false));
        s.push(&pound[..1]);
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
