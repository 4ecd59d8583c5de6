//! The `perimeter` binary: argument parsing, progress output and exit codes. Everything it does
//! is a call into the library crates; `ask` runs the same pipeline as the HTTP API.

mod ask;
mod audit;
mod bench;
mod bench_gateway;
mod canary;
mod costs;
mod eval;
mod eval_detect;
mod ingest;
mod init;
mod keys;
mod model;
mod model_scan;
mod policy;
mod scan;
mod tco;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use perimeter_config::Config;

/// mimalloc keeps freed memory for reuse. With the system allocator, every large tensor the
/// embedder allocates was a fresh mmap, and the page faults cost a third of ingestion time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "perimeter", version, about = "Security-first retrieval-augmented generation server")]
struct Cli {
    /// Where documents, chunks and indexes are stored.
    #[arg(long, global = true, env = "PERIMETER_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Configuration file (TOML). Without one, the embedded defaults apply.
    #[arg(long, global = true, env = "PERIMETER_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding the pinned model files (overrides `models.dir`).
    #[arg(long, global = true, env = "PERIMETER_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory and the audit log's keys (idempotent); prints the public key.
    Init(init::InitArgs),
    /// The tamper-evident audit log: verify, export, print the public key.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Serve the OpenAI-compatible HTTP API.
    Serve {
        /// Address to listen on (overrides `server.listen`; default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Start a new, linked audit segment when the audit log does not verify (the break stays
        /// on record; `perimeter audit verify` keeps reporting it). Without it, such a server
        /// refuses to start.
        #[arg(long)]
        new_audit_segment: bool,
    },
    /// Spend by day, backend, tenant or level, from the audit log's completion records.
    Costs(costs::CostsArgs),
    /// Ingest files and folders (.txt .md .html .pdf .docx .csv .json).
    Ingest(ingest::IngestArgs),
    /// Ask a question over the ingested documents; the answer streams to the terminal.
    Ask(ask::AskArgs),
    /// Measure retrieval quality (recall@k) on a question set.
    Eval(eval::EvalArgs),
    /// Benchmarks (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Precision and recall of the sensitive-data detector on a labelled corpus.
    EvalDetect(eval_detect::EvalDetectArgs),
    /// Find sensitive data (PII, PHI, payment data, secrets) in a file or standard input.
    Detect(scan::DetectArgs),
    /// Replace sensitive data with typed placeholders (<EMAIL_1>, <IBAN_1>, …).
    Redact(scan::RedactArgs),
    /// Model files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Sign a model directory, verify it against its signature, make signing keys.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// API keys: create (shown once), list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The access policy: check a configuration, explain a decision.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Total cost of ownership: API against self-hosted by volume, break-even, sensitivity
    /// (`--config` names the TCO plan; without it, the built-in example).
    Tco(tco::TcoArgs),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Check the pinned model files on disk against the manifest compiled into this binary.
    Verify,
}

fn main() {
    // A panic message can carry fragments of the data being processed (a parser of untrusted
    // bytes that panicked inside a dependency, say). Report where, never what.
    std::panic::set_hook(Box::new(|info| {
        // `println!` into a closed pipe (`perimeter … | head`) panics: end quietly, as a command
        // killed by SIGPIPE would, without printing anything.
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.starts_with("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(141);
        }
        let at =
            info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_else(|| "unknown location".into());
        eprintln!("panic at {at} (details withheld: they may contain document text)");
    }));
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PERIMETER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn"));
    // aws-sigv4 logs the canonical request (with the session token) at trace level: never.
    let filter = match "aws_sigv4=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let code = match run(cli) {
        Ok(code) => code,
        // A closed pipe on stdout (`perimeter … | head`) is the reader's choice, not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            141
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &cli.models_dir {
        config.models.dir = dir.clone();
    }
    Ok(config)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("could not start the async runtime")
}

fn run(cli: Cli) -> Result<i32> {
    // Policy commands report an invalid configuration themselves.
    if let Command::Policy(cmd) = cli.command {
        return policy::run(cli.config.as_deref(), cmd);
    }
    // `--config` is the TCO plan here, not a server configuration.
    if let Command::Tco(args) = cli.command {
        return tco::run(cli.config.as_deref(), args);
    }
    // Audit commands need no configuration: a broken config must not stop an audit.
    match cli.command {
        Command::Init(args) => return init::run(&cli.data_dir, args),
        Command::Audit(cmd) => return audit::run(&cli.data_dir, cmd),
        _ => {}
    }
    let config = load_config(&cli)?;
    match cli.command {
        Command::Costs(args) => costs::run(&cli.data_dir, args),
        Command::Serve { listen, new_audit_segment } => {
            let listen = listen.unwrap_or(config.server.listen);
            let rt = runtime()?;
            let state = perimeter_server::AppState::load_with(config, &cli.data_dir, new_audit_segment)?;
            let (docs, chunks) = state.index.store().counts()?;
            tracing::info!(data_dir = %cli.data_dir.display(), documents = docs, chunks, "store opened");
            if perimeter_auth::KeyStore::at(&cli.data_dir).any()? {
                tracing::info!("API keys exist: every route but /healthz, /readyz and /openapi.json needs one");
            } else if listen.ip().is_loopback() {
                tracing::info!("no API keys exist yet, so the API is open; Perimeter listens on loopback only; create a key with `perimeter keys create` before binding another address with --listen");
            } else {
                tracing::warn!("no API keys exist: the API is open to anyone who can reach this address; create one with `perimeter keys create`");
            }
            rt.block_on(perimeter_server::serve(state, listen))
                .with_context(|| format!("could not serve on {listen}"))?;
            Ok(0)
        }
        Command::Ingest(args) => ingest::run(&config, &cli.data_dir, args),
        Command::Ask(args) => ask::run(config, &cli.data_dir, args),
        Command::Keys(cmd) => keys::run(&config, &cli.data_dir, cmd),
        Command::Eval(args) => eval::run(&config, &cli.data_dir, args),
        Command::EvalDetect(args) => eval_detect::run(args),
        Command::Detect(args) => scan::detect(args),
        Command::Redact(args) => scan::redact(args),
        Command::Bench(cmd) => bench::run(&config, &cli.data_dir, cmd),
        Command::Policy(_) | Command::Init(_) | Command::Audit(_) | Command::Tco(_) => unreachable!("handled above"),
        Command::Model(cmd) => model::run(cmd, &config),
        Command::Models(ModelsCommand::Verify) => {
            // The built-in pins and the operator's `[models] manifest`, checked exactly as the
            // server's load gate does (signature included when `[models] signature` is set).
            let manifest = perimeter_runtime::manifest(config.models.manifest.as_deref())?;
            let mut bad = 0;
            for entry in &manifest.models {
                match perimeter_server::verify_embedded(&config, &entry.name) {
                    Ok(v) => {
                        println!("{}: ok", entry.name);
                        for (role, digest) in v.digests() {
                            println!("  {role}: sha256 {digest}");
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        println!("{}: FAILED: {e}", entry.name);
                    }
                }
            }
            Ok(if bad == 0 { 0 } else { 1 })
        }
    }
}
