//! `perimeter costs`: spend by day, backend, tenant, level or month, read from the audit log's
//! completion records (the same report as `GET /v1/costs`, over every tenant unless one is named).

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use perimeter_audit::{parse_time, Filter, RecordKind};
use perimeter_store::audit_file;

#[derive(Args)]
pub struct CostsArgs {
    /// From this time (RFC 3339, or a date such as 2026-11-01), inclusive. Default: the first day
    /// of this month (UTC).
    #[arg(long)]
    since: Option<String>,
    /// Until this time, exclusive.
    #[arg(long)]
    until: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Group by these, comma-separated: tenant, backend, level, day, month.
    #[arg(long, default_value = "day,backend")]
    by: String,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(data_dir: &Path, args: CostsArgs) -> Result<i32> {
    let time = |v: &Option<String>, name: &str| -> Result<Option<u64>> {
        match v {
            None => Ok(None),
            Some(t) => match parse_time(t) {
                Some(ms) => Ok(Some(ms)),
                None => bail!("--{name} must be an RFC 3339 time or a date (YYYY-MM-DD)"),
            },
        }
    };
    let by = perimeter_server::ledger::dimensions(Some(&args.by)).map_err(|m| anyhow::anyhow!("--by: {m}"))?;
    let since = match time(&args.since, "since")? {
        Some(t) => Some(t),
        None => parse_time(&format!("{}-01", perimeter_server::costs::this_month())),
    };
    let filter = Filter {
        since,
        until: time(&args.until, "until")?,
        kind: Some(RecordKind::Completion),
        tenant: args.tenant.clone(),
        ..Filter::default()
    };
    if audit_file::segments(data_dir).context("reading the audit log")?.is_empty() {
        bail!("no audit log under {} (nothing was served from this data directory yet)", data_dir.display());
    }
    let export = audit_file::export(data_dir, &filter).context("reading the audit log")?;
    let report = perimeter_server::ledger::costs_report(&export.records, &by);
    if args.json {
        println!("{report}");
        return Ok(0);
    }
    let cols: Vec<String> = report["group_by"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut header: Vec<String> = cols.clone();
    header.extend(["requests", "tokens in", "tokens out", "cost (USD)"].map(String::from));
    println!("{}", header.join("\t"));
    let rows = report["data"].as_array().cloned().unwrap_or_default();
    for row in rows.iter().chain(report["total"].as_object().map(|_| &report["total"])) {
        let is_total = std::ptr::eq(row, &report["total"]);
        let mut line: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if is_total {
                    if i == 0 {
                        "total".to_string()
                    } else {
                        String::new()
                    }
                } else {
                    row[c].as_str().unwrap_or("").to_string()
                }
            })
            .collect();
        if cols.is_empty() && is_total {
            line.push("total".into());
        }
        line.push(row["requests"].to_string());
        line.push(row["tokens_in"].to_string());
        line.push(row["tokens_out"].to_string());
        line.push(row["cost_usd"].as_str().unwrap_or("0").to_string());
        println!("{}", line.join("\t"));
    }
    let unpriced = report["unpriced_requests"].as_u64().unwrap_or(0);
    if unpriced > 0 {
        println!(
            "{unpriced} request(s) went to a backend whose price is unknown and are not in the cost (add the model under [pricing.models])"
        );
    }
    if !export.torn.is_empty() {
        eprintln!("warning: the audit log ends in a torn record; run `perimeter audit verify`");
    }
    Ok(0)
}
