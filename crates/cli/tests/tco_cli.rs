//! `perimeter tco`, run as a user would: the shipped example, JSON, the SVG chart,
//! `--from-audit`, and a refused plan.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn perimeter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.env_remove("PERIMETER_CONFIG").env("PERIMETER_LOG", "error");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_text_json_and_svg() {
    let example = repo_root().join("examples/tco/gpt-4o-mini-vs-llama-3.1-8b.toml");
    let (code, out, err) = run(perimeter().args(["tco", "--config"]).arg(&example));
    assert_eq!(code, 0, "{out}{err}");
    for part in ["gpt-4o-mini", "llama-3.1-8b-vllm-h100", "Break-even", "Sensitivity", "Cumulative"] {
        assert!(out.contains(part), "{part} missing:\n{out}");
    }
    // Without --config the same example is built in.
    let (code, out2, _) = run(perimeter().arg("tco"));
    assert_eq!(code, 0);
    assert_eq!(out, out2);

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("chart.svg");
    let (code, out, err) = run(perimeter().args(["tco", "--json", "--svg"]).arg(&svg).arg("--config").arg(&example));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let be = &v["break_even"][0];
    assert_eq!(be["api"], "gpt-4o-mini");
    // Money and volumes are strings (exact decimals), never floats.
    assert!(v["options"][0]["monthly_usd"].is_string());
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("requests per day"));
    if be["requests_per_day"].is_string() {
        assert!(chart.contains("class=\"break-even\""));
    }
}

#[test]
fn from_audit_derives_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.json");
    // Two days, four completions: 2 requests/day, 1500 input and 250 output tokens on average.
    std::fs::write(
        &audit,
        r#"{"records": [
            {"kind": "completion", "time": "2026-11-01T09:00:00Z", "tokens_in": 1000, "tokens_out": 200},
            {"kind": "completion", "time": "2026-11-01T10:00:00Z", "tokens_in": 2000, "tokens_out": 300},
            {"kind": "ingest", "time": "2026-11-01T11:00:00Z"},
            {"kind": "completion", "time": "2026-11-02T09:00:00Z", "tokens_in": 1000, "tokens_out": 200},
            {"kind": "completion", "time": "2026-11-02T15:00:00Z", "tokens_in": 2000, "tokens_out": 300}
        ]}"#,
    )
    .unwrap();
    let (code, out, err) = run(perimeter().args(["tco", "--json", "--from-audit"]).arg(&audit));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from_audit"]["completions"], 4);
    assert_eq!(v["config"]["traffic"]["requests_per_day"], "2");
    assert_eq!(v["config"]["traffic"]["input_tokens_per_request"], "1500");
    assert_eq!(v["config"]["traffic"]["output_tokens_per_request"], "250");

    std::fs::write(&audit, r#"{"records": [{"kind": "completion", "time": "soon", "tokens_in": 1, "tokens_out": 1}]}"#)
        .unwrap();
    let (code, _, err) = run(perimeter().args(["tco", "--from-audit"]).arg(&audit));
    assert_eq!(code, 1);
    assert!(err.contains("records[0].time"), "{err}");
}

#[test]
fn a_bad_plan_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/tco/gpt-4o-mini-vs-llama-3.1-8b.toml")).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("utilisation = \"0.6\"", "utilisation = \"1.6\"")).unwrap();
    let (code, out, err) = run(perimeter().args(["tco", "--config"]).arg(&bad));
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("self_hosted[0].utilisation"), "{err}");
}
