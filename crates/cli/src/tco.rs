//! `perimeter tco`: reads the plan (and an audit export with `--from-audit`), runs the pure
//! planner in `perimeter-cost`, prints text or JSON, and writes the SVG chart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use perimeter_cost::tco::{self, TcoConfig};

/// The plan used without `--config`: gpt-4o-mini against Llama-3.1-8B on H100s.
const DEFAULT_EXAMPLE: &str = include_str!("../../../examples/tco/gpt-4o-mini-vs-llama-3.1-8b.toml");

#[derive(Args)]
pub struct TcoArgs {
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the cost-against-volume chart (SVG) here.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Derive the traffic block from an audit export (`{"records": [...]}`): requests per day,
    /// tokens per request and peak-to-average from its completion records.
    #[arg(long, value_name = "PATH")]
    from_audit: Option<PathBuf>,
}

/// `config`: the global `--config` (a TCO plan here, not a server configuration).
pub fn run(config: Option<&Path>, args: TcoArgs) -> Result<i32> {
    let (text, name) = match config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("could not read {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_EXAMPLE.to_string(), "the built-in example".to_string()),
    };
    let mut plan_input = match (&args.from_audit, TcoConfig::parse(&text)) {
        (_, Ok(c)) => c,
        // With --from-audit the traffic block may be left out: fill a placeholder, replaced below.
        (Some(_), Err(_)) if !text.contains("[traffic]") => TcoConfig::parse(&format!(
            "{text}\n[traffic]\nrequests_per_day = 1\ninput_tokens_per_request = 1\noutput_tokens_per_request = 1\n"
        ))
        .with_context(|| format!("{name}: invalid TCO configuration"))?,
        (_, Err(e)) => return Err(e).with_context(|| format!("{name}: invalid TCO configuration")),
    };
    let derived = match &args.from_audit {
        Some(path) => {
            let json = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
            let rows =
                tco::parse_audit_export(&json).with_context(|| format!("{}: invalid audit export", path.display()))?;
            let d =
                tco::traffic_from_audit(&rows).with_context(|| format!("{}: invalid audit export", path.display()))?;
            plan_input.traffic = d.traffic(plan_input.traffic.monthly_growth);
            Some(d)
        }
        None => None,
    };
    let report = tco::plan(&plan_input);
    if let Some(path) = &args.svg {
        std::fs::write(path, tco::render_svg(&report))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(d), Some(obj)) = (derived, v.as_object_mut()) {
            obj.insert("from_audit".into(), serde_json::to_value(d)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if let Some(d) = &derived {
            println!("Traffic derived from {} completions over {} days of audit records.", d.completions, d.days);
        }
        print!("{}", tco::render_text(&report));
        if let Some(path) = &args.svg {
            println!("\nChart written to {}", path.display());
        }
    }
    Ok(0)
}
