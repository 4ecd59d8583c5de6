//! Configuration: a TOML file parsed into a raw form (`deny_unknown_fields`, every key optional),
//! then validated into a `Config` with no gaps. Errors name the key and the reason.
//!
//! No file means the embedded defaults: both models in-process, loopback listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub models: Models,
    pub runtime: Runtime,
    pub retrieval: Retrieval,
    pub ingest: Ingest,
    pub generation: Generation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Models {
    /// Where the pinned model files live.
    pub dir: PathBuf,
    pub embedding: String,
    pub chat: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub threads: usize,
    pub context_tokens: u32,
    pub queue_depth: usize,
    pub gpu_layers: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrieval {
    pub top_k: usize,
    /// Characters of retrieved text placed in a prompt at most.
    pub max_source_chars: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Default answer length when a request gives no `max_tokens`.
    pub max_tokens: u32,
    /// Upper bound a request may ask for.
    pub max_tokens_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: `{key}` {reason}")]
    Invalid { path: String, key: &'static str, reason: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: Option<RawServer>,
    models: Option<RawModels>,
    runtime: Option<RawRuntime>,
    retrieval: Option<RawRetrieval>,
    ingest: Option<RawIngest>,
    generation: Option<RawGeneration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    dir: Option<PathBuf>,
    embedding: Option<String>,
    chat: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    threads: Option<usize>,
    context_tokens: Option<u32>,
    queue_depth: Option<usize>,
    gpu_layers: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetrieval {
    top_k: Option<usize>,
    max_source_chars: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    chunk_tokens: Option<usize>,
    chunk_overlap: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneration {
    max_tokens: Option<u32>,
    max_tokens_limit: Option<u32>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Default for Config {
    #[expect(clippy::manual_unwrap_or_default, reason = "unwrap_or_default would call this function again")]
    fn default() -> Self {
        // The defaults are valid by construction; `validate` of an empty file yields them.
        match Config::parse("", "<defaults>") {
            Ok(c) => c,
            Err(_) => unreachable_defaults(),
        }
    }
}

#[cold]
fn unreachable_defaults() -> Config {
    Config {
        server: Server { listen: SocketAddr::from(([127, 0, 0, 1], 8080)), max_body_bytes: 8 << 20 },
        models: Models {
            dir: PathBuf::from("models"),
            embedding: "all-minilm-l6-v2".into(),
            chat: "smollm2-135m-instruct".into(),
        },
        runtime: Runtime { threads: 2, context_tokens: 4096, queue_depth: 64, gpu_layers: 0 },
        retrieval: Retrieval { top_k: 5, max_source_chars: 6000 },
        ingest: Ingest { chunk_tokens: 200, chunk_overlap: 40 },
        generation: Generation { max_tokens: 256, max_tokens_limit: 2048 },
    }
}

impl Config {
    /// Parses and validates configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let raw: Raw =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_string(), reason: e.to_string() })?;
        raw.validate(path)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Parse { path: name.clone(), reason: e.to_string() })?;
        Self::parse(&text, &name)
    }
}

impl Raw {
    fn validate(self, path: &str) -> Result<Config, ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { path: path.to_string(), key, reason };
        let server = self.server.unwrap_or_default();
        let listen_text = server.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| invalid("server.listen", format!("{listen_text:?} is not an address like 127.0.0.1:8080")))?;
        let max_body_bytes = server.max_body_bytes.unwrap_or(8 << 20);
        if max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".into()));
        }

        let models = self.models.unwrap_or_default();
        let models = Models {
            dir: models.dir.unwrap_or_else(|| PathBuf::from("models")),
            embedding: models.embedding.unwrap_or_else(|| "all-minilm-l6-v2".into()),
            chat: models.chat.unwrap_or_else(|| "smollm2-135m-instruct".into()),
        };

        let rt = self.runtime.unwrap_or_default();
        let threads = rt.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        if threads == 0 || threads > 512 {
            return Err(invalid("runtime.threads", "must be between 1 and 512".into()));
        }
        let context_tokens = rt.context_tokens.unwrap_or(4096);
        if !(512..=131_072).contains(&context_tokens) {
            return Err(invalid("runtime.context_tokens", "must be between 512 and 131072".into()));
        }
        let queue_depth = rt.queue_depth.unwrap_or(64);
        if queue_depth == 0 {
            return Err(invalid("runtime.queue_depth", "must be at least 1".into()));
        }

        let r = self.retrieval.unwrap_or_default();
        let top_k = r.top_k.unwrap_or(5);
        if !(1..=100).contains(&top_k) {
            return Err(invalid("retrieval.top_k", "must be between 1 and 100".into()));
        }
        let max_source_chars = r.max_source_chars.unwrap_or(6000);
        if max_source_chars < 200 {
            return Err(invalid("retrieval.max_source_chars", "must be at least 200".into()));
        }

        let i = self.ingest.unwrap_or_default();
        let chunk_tokens = i.chunk_tokens.unwrap_or(200);
        if !(32..=512).contains(&chunk_tokens) {
            return Err(invalid("ingest.chunk_tokens", "must be between 32 and 512".into()));
        }
        let chunk_overlap = i.chunk_overlap.unwrap_or(40);
        if chunk_overlap >= chunk_tokens / 2 {
            return Err(invalid("ingest.chunk_overlap", "must be less than half of ingest.chunk_tokens".into()));
        }

        let g = self.generation.unwrap_or_default();
        let max_tokens_limit = g.max_tokens_limit.unwrap_or(2048);
        let max_tokens = g.max_tokens.unwrap_or(256);
        if max_tokens == 0 || max_tokens > max_tokens_limit {
            return Err(invalid(
                "generation.max_tokens",
                format!("must be between 1 and generation.max_tokens_limit ({max_tokens_limit})"),
            ));
        }

        Ok(Config {
            server: Server { listen, max_body_bytes },
            models,
            runtime: Runtime { threads, context_tokens, queue_depth, gpu_layers: rt.gpu_layers.unwrap_or(0) },
            retrieval: Retrieval { top_k, max_source_chars },
            ingest: Ingest { chunk_tokens, chunk_overlap },
            generation: Generation { max_tokens, max_tokens_limit },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.models.embedding, "all-minilm-l6-v2");
        assert_eq!(c.retrieval.top_k, 5);
        assert_eq!(Config::default().ingest.chunk_tokens, 200);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            ("[retrieval]\ntop_k = 0", "retrieval.top_k"),
            ("[ingest]\nchunk_tokens = 100\nchunk_overlap = 60", "ingest.chunk_overlap"),
            ("[generation]\nmax_tokens = 5000", "generation.max_tokens"),
            ("[server]\nlisten = \"127.0.0.1:1\"\nport = 3", "unknown field `port`"),
            ("[serverr]", "unknown field `serverr`"),
        ];
        for (text, expect) in cases {
            let err = Config::parse(text, "t.toml").err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(expect) && err.starts_with("t.toml"), "{text}: {err}");
        }
    }
}
