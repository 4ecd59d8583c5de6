//! `perimeter policy check` and `perimeter policy explain`, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> PathBuf {
    repo_root().join("examples/policy/hybrid.toml")
}

fn perimeter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.env_remove("PERIMETER_CONFIG").env_remove("OPENAI_API_KEY").env("PERIMETER_LOG", "error");
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

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_the_example_and_names_the_key_of_an_error() {
    let (code, out, err) = run(perimeter().args(["policy", "check", "--config"]).arg(example()));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid") && out.contains("openai-eu, bedrock-us, vllm-onprem, embedded"), "{out}");

    let (code, out, _) = run(perimeter().args(["policy", "check", "--json", "--config"]).arg(example()));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);

    let dir = tempfile::tempdir().unwrap();
    let bad = write(&dir, "bad.toml", "[policy]\non_no_backend = \"allow\"\n");
    let (code, out, err) = run(perimeter().args(["policy", "check", "--config"]).arg(&bad));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("policy.on_no_backend") && err.contains("deny"), "{err}");

    let (code, out, _) = run(perimeter().args(["policy", "check", "--json", "--config"]).arg(&bad));
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["errors"][0].as_str().unwrap().contains("policy.on_no_backend"));

    let (code, _, err) = run(perimeter().args(["policy", "check"]));
    assert_eq!(code, 1);
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn check_warns_about_what_can_never_happen() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "warn.toml",
        r#"
[[backend]]
name = "us-only"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
jurisdiction = "us"
retention = "none"
trains_on_data = false

[[tenant]]
name = "default"
residency = ["eu"]

[policy.level.restricted]
hosting = ["self_hosted"]

[[availability]]
provider = "anthropic"
model = "claude-3-haiku"
regions = ["us-east-1"]
"#,
    );
    let (code, out, err) = run(perimeter().args(["policy", "check", "--json", "--config"]).arg(&config));
    assert_eq!(code, 0, "warnings do not make a policy invalid: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let warnings: Vec<&str> = v["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let has = |s: &str| warnings.iter().any(|w| w.contains(s));
    assert!(has("tenant default: no backend can serve chat at level restricted"), "{warnings:?}");
    assert!(has("backend us-only: no level of any tenant allows it"), "{warnings:?}");
    assert!(has("availability[0]"), "{warnings:?}");

    let config = write(&dir, "t.toml", "[[tenant]]\nname = \"acme\"\nresidency = [\"eu\"]\n");
    let (code, out, _) = run(perimeter().args(["policy", "check", "--json", "--config"]).arg(&config));
    assert_eq!(code, 0);
    assert!(out.contains("no tenant is named"), "{out}");
}

#[test]
fn explain_shows_the_decision_and_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let request = write(
        &dir,
        "r.json",
        r#"{"tenant": "default", "text": "Please refund the customer.", "passages": [{"text": "Refund to IBAN GB82 WEST 1234 5698 7654 32 today.", "label": "internal"}]}"#,
    );
    let (code, out, err) = run(perimeter()
        .env("OPENAI_API_KEY", "x")
        .args(["policy", "explain", "--json", "--config"])
        .arg(example())
        .arg("--request")
        .arg(&request));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "route");
    assert_eq!(v["level"], "restricted");
    assert_eq!(v["backend"], "vllm-onprem");
    assert_eq!(v["entities"]["passages"]["IBAN"], 1);
    let openai = v["trace"].as_array().unwrap().iter().find(|t| t["backend"] == "openai-eu").unwrap();
    assert_eq!(openai["verdict"], "rejected");
    assert!(!out.contains("GB82"), "explain never prints the text it classified");

    // A public question goes to the API when its key is set, and not when it is missing.
    let request = write(
        &dir,
        "p.json",
        r#"{"text": "When are you open?", "passages": [{"text": "We open at nine.", "label": "public"}]}"#,
    );
    let explain = |key: bool| {
        let mut c = perimeter();
        if key {
            c.env("OPENAI_API_KEY", "x");
        }
        let (code, out, _) =
            run(c.args(["policy", "explain", "--json", "--config"]).arg(example()).arg("--request").arg(&request));
        assert_eq!(code, 0);
        serde_json::from_str::<Value>(&out).unwrap()
    };
    assert_eq!(explain(true)["backend"], "openai-eu");
    let without = explain(false);
    assert_eq!(without["backend"], "vllm-onprem");
    assert!(without["trace"][0]["reasons"][0].as_str().unwrap().contains("credentials are not configured"));

    // A secret is denied outright by the example's entity rule.
    let request = write(
        &dir,
        "s.json",
        r#"{"text": "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "health": {"openai-eu": "down"}}"#,
    );
    let (code, out, _) = run(perimeter()
        .args(["policy", "explain", "--json", "--config"])
        .arg(example())
        .arg("--request")
        .arg(&request));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny", "{v}");
    assert!(v["reasons"].to_string().contains("GITHUB_TOKEN"), "{v}");

    // The human form prints the same decision.
    let (code, out, _) =
        run(perimeter().args(["policy", "explain", "--config"]).arg(example()).arg("--request").arg(&request));
    assert_eq!(code, 0);
    assert!(out.starts_with("decision: deny"), "{out}");
}

#[test]
fn explain_refuses_a_bad_request_file_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let request = write(&dir, "bad.json", r#"{"text": "secret-patient-name", "passages": [{"label": "top-secret"}]}"#);
    let (code, out, err) =
        run(perimeter().args(["policy", "explain", "--config"]).arg(example()).arg("--request").arg(&request));
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not a valid request") && err.contains("line 1"), "{err}");
    assert!(!err.contains("secret-patient-name") && !err.contains("top-secret"), "{err}");

    let request = write(&dir, "h.json", r#"{"text": "hi", "health": {"nope": "down"}}"#);
    let (code, _, err) =
        run(perimeter().args(["policy", "explain", "--config"]).arg(example()).arg("--request").arg(&request));
    assert_eq!(code, 1);
    assert!(err.contains("\"nope\", which is not a configured backend"), "{err}");
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    // Enough findings that the output cannot fit in the pipe's buffer.
    let corpus = std::fs::read_to_string(repo_root().join("tests/data/detect/corpus.jsonl")).unwrap().repeat(8);
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "big.txt", &corpus);
    let mut child = perimeter()
        .args(["detect", "--json"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "like a command ended by SIGPIPE");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
