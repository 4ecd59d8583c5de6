//! `perimeter model canary`: runs a probe suite against one backend and compares the answers
//! with the expectations, across trigger strings, and with a stored baseline.
//!
//! The prompts are the suite's own fixed texts, never user data, and they go straight to the
//! named backend (that is the point: to test that backend), without retrieval or policy.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use perimeter_canary::{Answers, Suite};
use perimeter_config::Config;

#[derive(Args, Debug)]
pub struct CanaryArgs {
    /// The configured backend to probe (e.g. `embedded`).
    #[arg(long)]
    backend: String,
    /// The probe suite (TOML; see examples/canary/basic.toml).
    #[arg(long)]
    suite: PathBuf,
    /// Answers of an earlier run to compare with (written by --write-baseline).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Store this run's answers as a baseline.
    #[arg(long)]
    write_baseline: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: CanaryArgs) -> Result<i32> {
    let text =
        std::fs::read_to_string(&args.suite).with_context(|| format!("could not read {}", args.suite.display()))?;
    let suite = Suite::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.suite.display()))?;
    let baseline: Option<Answers> = match &args.baseline {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("could not read {}", p.display()))?;
            Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is not a baseline written by --write-baseline (line {})", p.display(), e.line())
            })?)
        }
    };
    let backend = match perimeter_server::chat_backend(config, &args.backend) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let rt = crate::runtime()?;
    let prompts = suite.prompts().len();
    if !args.json {
        eprintln!("probing {} with suite {:?}: {prompts} prompts", args.backend, suite.suite.name);
    }
    let answers = match rt.block_on(perimeter_server::canary::run_suite(backend.as_ref(), &suite)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: backend {} failed during the probes: {e}", args.backend);
            return Ok(2);
        }
    };
    if let Some(p) = &args.write_baseline {
        std::fs::write(p, serde_json::to_vec_pretty(&answers)?)
            .with_context(|| format!("could not write {}", p.display()))?;
    }
    let report = suite.evaluate(&answers, baseline.as_ref());
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["backend"] = serde_json::json!(args.backend);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for p in &report.probes {
            println!(
                "{:<6} probe {}{}",
                if p.passed { "ok" } else { "FAIL" },
                p.id,
                if p.passed { String::new() } else { format!(": {}", p.failures.join("; ")) }
            );
        }
        for t in &report.triggers {
            let d = t.divergence.map(|d| format!("{d:.2}")).unwrap_or_else(|| "-".into());
            println!(
                "{:<6} trigger {} with {:?}: divergence {d}",
                if t.flagged { "FLAG" } else { "ok" },
                t.id,
                t.trigger
            );
        }
        if let Some(b) = &report.baseline {
            println!("baseline: {} answers compared, {} drifted", b.compared, b.drifted.len());
        }
        println!("{}", if report.passed { "passed" } else { "FAILED" });
    }
    if suite.suite.probes.is_empty() && suite.suite.triggers.is_empty() {
        bail!("empty suite");
    }
    Ok(if report.passed { 0 } else { 1 })
}
