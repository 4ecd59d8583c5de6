//! `perimeter init` and `perimeter audit verify | export | pubkey`, run as a user would, on a log
//! written through the store's sink.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::process::Command;

use perimeter_audit::{Record, RecordKind};
use perimeter_store::audit_file::{AuditLog, AuditOptions, Fsync};
use serde_json::Value;

fn perimeter(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.env_remove("PERIMETER_CONFIG").env("PERIMETER_LOG", "error").arg("--data-dir").arg(data);
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

/// A log with restricted and public decisions, as the server would write it.
fn write_log(data: &Path) {
    let log =
        AuditLog::open(data, AuditOptions { fsync: Fsync::Never, checkpoint_every: 4, ..AuditOptions::default() })
            .unwrap();
    for (i, (level, backend)) in [
        ("restricted", "vllm-onprem"),
        ("public", "openai-eu"),
        ("restricted", "vllm-onprem"),
        ("internal", "openai-eu"),
    ]
    .iter()
    .cycle()
    .take(10)
    .enumerate()
    {
        let mut r = Record::new(RecordKind::Decision);
        r.tenant = Some("acme".into());
        r.level = Some((*level).into());
        r.backend = Some((*backend).into());
        r.decision = Some("route".into());
        r.query_hmac = Some(log.query_hmac(&format!("question {i}")));
        log.append(r).unwrap();
    }
    log.checkpoint_now().unwrap();
}

#[test]
fn init_is_idempotent_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = run(perimeter(&data).args(["init", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["created"], true);
    assert!(v["public_key"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    let secret = fs::read_to_string(data.join("audit/signing.key")).unwrap();
    assert!(!out.contains("PRIVATE") && !out.contains(secret.lines().nth(1).unwrap()));

    let (code, out, _) = run(perimeter(&data).args(["init"]));
    assert_eq!(code, 0);
    assert!(out.contains("already initialised"), "{out}");
    assert_eq!(fs::read_to_string(data.join("audit/signing.key")).unwrap(), secret, "keys are kept");

    let (code, pem, _) = run(perimeter(&data).args(["audit", "pubkey"]));
    assert_eq!(code, 0);
    assert_eq!(pem, v["public_key"].as_str().unwrap());
    let (code, hex, _) = run(perimeter(&data).args(["audit", "pubkey", "--hex"]));
    assert_eq!(code, 0);
    assert_eq!(hex.trim().len(), 64);
}

#[test]
fn verify_exits_0_when_intact_and_1_naming_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    write_log(data);
    let (code, out, err) = run(perimeter(data).args(["audit", "verify"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit log intact") && out.contains("signatures checked"), "{out}");

    // An exported public key, and --log for one file.
    let (_, pem, _) = run(perimeter(data).args(["audit", "pubkey"]));
    let pub_file = dir.path().join("exported.pub");
    fs::write(&pub_file, pem).unwrap();
    let log = data.join("audit/audit.log");
    let (code, out, _) =
        run(perimeter(data).args(["audit", "verify", "--json", "--log"]).arg(&log).arg("--public-key").arg(&pub_file));
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(v["signatures_checked"], true);

    // One changed byte in the second public decision (line 8: a segment record, a checkpoint
    // after every 4 decisions).
    let bytes = fs::read(&log).unwrap();
    let mut lines: Vec<Vec<u8>> = bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let pos = lines[7].windows(8).position(|w| w == b"\"public\"").unwrap();
    lines[7][pos + 1] = b'P';
    fs::write(&log, lines.concat()).unwrap();
    let (code, out, _) = run(perimeter(data).args(["audit", "verify"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tampered at line 8") && out.contains("NOT intact"), "{out}");
    let (code, out, _) = run(perimeter(data).args(["audit", "verify", "--json"]));
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["segments"][0]["status"]["status"], "tampered");
    assert_eq!(v["segments"][0]["status"]["line"], 8);
    assert_eq!(v["segments"][0]["status"]["reason"]["kind"], "hash_mismatch");

    // A torn last record.
    fs::write(&log, &bytes[..bytes.len() - 7]).unwrap();
    let (code, out, _) = run(perimeter(data).args(["audit", "verify"]));
    assert_eq!(code, 1);
    assert!(out.contains("torn last record"), "{out}");

    // Unreadable: no log, or a bad public key file.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run(perimeter(empty.path()).args(["audit", "verify"]));
    assert_eq!(code, 2, "{err}");
    fs::write(&pub_file, "not a key").unwrap();
    let (code, _, err) = run(perimeter(data).args(["audit", "verify", "--public-key"]).arg(&pub_file));
    assert_eq!(code, 2);
    assert!(err.contains("not an Ed25519 public key"), "{err}");
}

#[test]
fn a_key_from_elsewhere_exposes_a_rewritten_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    write_log(&data);
    let (_, pem, _) = run(perimeter(&data).args(["audit", "pubkey"]));
    let pub_file = dir.path().join("a.pub");
    fs::write(&pub_file, pem).unwrap();
    // Someone replaces the whole folder, keys included, with a log of their own.
    let forged = dir.path().join("b");
    write_log(&forged);
    let (code, out, _) = run(perimeter(&forged).args(["audit", "verify"]));
    assert_eq!(code, 0, "self-consistent on its own keys: {out}");
    let (code, out, _) = run(perimeter(&forged).args(["audit", "verify", "--public-key"]).arg(&pub_file));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tampered at line 1") && out.contains("signed by key"), "{out}");
}

#[test]
fn export_answers_where_restricted_requests_went() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    write_log(data);
    let (code, out, err) =
        run(perimeter(data).args(["audit", "export", "--level", "restricted", "--since", "2020-01-01", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(v["count"], 5);
    assert!(records.iter().all(|r| r["backend"] == "vllm-onprem" && r["level"] == "restricted"));
    assert!(records.iter().all(|r| r["query_hmac"].as_str().unwrap().len() == 64));

    let (_, out, _) = run(perimeter(data).args(["audit", "export", "--kind", "checkpoint", "--limit", "2", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    let (_, out, _) = run(perimeter(data).args(["audit", "export", "--since", "2999-01-01", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 0);

    let (code, out, _) = run(perimeter(data).args(["audit", "export", "--backend", "openai-eu"]));
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 5, "{out}");

    let (code, _, err) = run(perimeter(data).args(["audit", "export", "--since", "last tuesday"]));
    assert_eq!(code, 1);
    assert!(err.contains("--since"), "{err}");
    let (code, _, err) = run(perimeter(data).args(["audit", "export", "--kind", "bogus"]));
    assert_eq!(code, 1);
    assert!(err.contains("unknown record kind"), "{err}");
}
