//! `perimeter policy check` and `perimeter policy explain`: validate a configuration's access
//! policy, and show the decision it makes for a request, with the trace, without serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use perimeter_config::Config;
use perimeter_core::{plan, PlanRequest};
use perimeter_policy::{Budgets, Health, Purpose, Unhealthy};
use perimeter_types::{DocumentId, EntityKind, Level, Passage};
use serde::Deserialize;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate the policy in a configuration file: exit 0 when valid (warnings are printed),
    /// 1 with the reasons when not.
    Check(CheckArgs),
    /// Show the decision for one request described in a JSON file.
    Explain(ExplainArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// Print {"valid", "errors", "warnings"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// The request: {"tenant", "text", "passages": [{"text", "label"}], "level"?, "model"?,
    /// "purpose"?: "chat"|"embeddings", "redact"?, "health"?: {"backend": "down"}}.
    #[arg(long)]
    request: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    passages: Vec<PassageFile>,
    level: Option<Level>,
    model: Option<String>,
    #[serde(default)]
    purpose: Option<Purpose>,
    #[serde(default)]
    redact: bool,
    /// Backend name → "down" (unhealthy) or "up". Unlisted backends get the health the server
    /// would give them at start-up (an API backend whose key variable is unset is down).
    #[serde(default)]
    health: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PassageFile {
    #[serde(default)]
    text: String,
    #[serde(default)]
    label: Level,
}

fn default_tenant() -> String {
    perimeter_policy::DEFAULT_TENANT.to_string()
}

pub fn run(config_path: Option<&Path>, cmd: PolicyCommand) -> Result<i32> {
    let Some(path) = config_path else {
        bail!("give the configuration to check with --config FILE (or PERIMETER_CONFIG)");
    };
    match cmd {
        PolicyCommand::Check(args) => check(path, args),
        PolicyCommand::Explain(args) => {
            let config = Config::load(path)?;
            explain(&config, args)
        }
    }
}

fn check(path: &Path, args: CheckArgs) -> Result<i32> {
    match Config::load(path) {
        Ok(config) => {
            let warnings = perimeter_policy::lint(&config.policy);
            if args.json {
                println!("{}", serde_json::json!({"valid": true, "errors": [], "warnings": warnings}));
            } else {
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                let names: Vec<&str> = config.policy.backends().map(|b| b.name.as_str()).collect();
                println!(
                    "{}: valid; {} backend(s) in order of preference: {}; {} tenant(s); {} warning(s)",
                    path.display(),
                    names.len(),
                    names.join(", "),
                    config.policy.tenant_names().count(),
                    warnings.len()
                );
            }
            Ok(0)
        }
        Err(e) => {
            if args.json {
                println!("{}", serde_json::json!({"valid": false, "errors": [e.to_string()], "warnings": []}));
            } else {
                eprintln!("invalid: {e}");
            }
            Ok(1)
        }
    }
}

/// Health as the server would see it at start-up, without building any adapter.
pub fn startup_health(config: &Config) -> Vec<Health> {
    config
        .backends
        .iter()
        .map(|b| match &b.api_key_env {
            Some(var) if std::env::var_os(var).is_none() => Health::Unhealthy(Unhealthy::CredentialsMissing),
            _ if b.profile.provider == perimeter_policy::Provider::Bedrock
                && perimeter_providers::bedrock::resolve_credentials(b.aws_profile.as_deref()).is_err() =>
            {
                Health::Unhealthy(Unhealthy::CredentialsMissing)
            }
            _ => Health::Healthy,
        })
        .collect()
}

fn explain(config: &Config, args: ExplainArgs) -> Result<i32> {
    let bytes = std::fs::read(&args.request).with_context(|| format!("could not read {}", args.request.display()))?;
    let req: RequestFile = serde_json::from_slice(&bytes).map_err(|e| {
        // Name the position, never the content (the file holds the text being classified).
        anyhow::anyhow!(
            "{} is not a valid request (line {} column {}): expected {{\"tenant\", \"text\", \"passages\": [{{\"text\", \"label\"}}], \"level\"?}}",
            args.request.display(),
            e.line(),
            e.column()
        )
    })?;
    let mut health = startup_health(config);
    for (name, state) in &req.health {
        let i = config
            .policy
            .backend_index(name)
            .with_context(|| format!("health names {name:?}, which is not a configured backend"))?;
        health[i] = match state.as_str() {
            "up" => Health::Healthy,
            "down" => Health::Unhealthy(Unhealthy::CircuitOpen),
            other => bail!("health of {name} is {other:?}; use \"up\" or \"down\""),
        };
    }
    let detector = perimeter_detect::Detector::new()?;
    let counts = |text: &str| -> BTreeMap<EntityKind, u32> {
        perimeter_detect::kind_counts(&detector.detect(text)).into_iter().map(|(k, n)| (k, n as u32)).collect()
    };
    let query_entities = counts(&req.text);
    let passages: Vec<Passage> = req
        .passages
        .iter()
        .enumerate()
        .map(|(i, p)| Passage {
            chunk_id: format!("request-passage-{}", i + 1),
            document_id: DocumentId(format!("request-passage-{}", i + 1)),
            source: String::new(),
            title: String::new(),
            collection: String::new(),
            label: p.label,
            level: p.label,
            entities: counts(&p.text),
            injection: BTreeMap::new(),
            text: String::new(),
            score: 0.0,
        })
        .collect();
    let purpose = req.purpose.unwrap_or(Purpose::Chat);
    let requested_model = match purpose {
        Purpose::Embeddings => Some(req.model.as_deref().unwrap_or(&config.embedding_backend)),
        Purpose::Chat => req.model.as_deref().filter(|m| *m != perimeter_server::ROUTED_MODEL),
    };
    let plan = plan(
        &PlanRequest {
            tenant: &req.tenant,
            purpose,
            query_entities: &query_entities,
            passages: &passages,
            requested_level: req.level,
            requested_model,
            client_redact: req.redact,
        },
        &config.policy,
        &health,
        &Budgets::default(),
    );
    let e = &plan.explanation;
    if args.json {
        let body = serde_json::json!({
            "decision": e.decision,
            "backend": e.backend,
            "redact": e.redact,
            "level": e.level,
            "fallbacks": e.fallbacks,
            "reasons": e.reasons,
            "trace": e.trace,
            "entities": {"query": plan.query_entities, "passages": plan.passage_entities},
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!(
            "decision: {}{}",
            e.decision,
            e.backend
                .as_ref()
                .map(|b| format!(" → {b}{}", if e.redact { " (pseudonymised)" } else { "" }))
                .unwrap_or_default()
        );
        println!("level: {}", e.level);
        for r in &e.reasons {
            println!("  - {r}");
        }
        println!("trace:");
        for t in &e.trace {
            println!("  {:<20} {:<11} {:<8} {}", t.backend, t.hosting.as_str(), t.verdict, t.reasons.join("; "));
        }
    }
    // The explanation was produced: success, whatever it decided (the JSON says what).
    Ok(0)
}
