//! `perimeter model scan` as a user runs it: exit codes, JSON shape, and the real models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"))
}

fn scan(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .env("PERIMETER_LOG", "error")
        .env_remove("PERIMETER_CONFIG")
        .args(["model", "scan"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `os.system("id")` as a protocol-2 pickle, written opcode by opcode.
const MALICIOUS: &[u8] = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.";

#[test]
fn the_real_models_scan_clean_and_payloads_are_caught() {
    let models = models_dir();
    let (code, out) = scan(&[models.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "clean");
    let formats: Vec<&str> = v["files"].as_array().unwrap().iter().map(|f| f["format"].as_str().unwrap()).collect();
    assert!(formats.contains(&"safetensors") && formats.contains(&"gguf"), "{formats:?}");

    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("pytorch_model.bin");
    std::fs::write(&evil, MALICIOUS).unwrap();
    let (code, out) = scan(&[evil.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let f = &v["files"][0];
    assert_eq!(f["format"], "pickle");
    assert_eq!(f["verdict"], "unsafe");
    assert!(f["findings"].to_string().contains("os.system"), "{f}");
    assert_eq!(f["sha256"].as_str().unwrap().len(), 64);

    let garbage = dir.path().join("weights.bin");
    std::fs::write(&garbage, b"\x00\x01\x02 definitely not a model").unwrap();
    let (code, out) = scan(&[garbage.as_os_str()]);
    assert_eq!(code, 2, "an unparseable file is never clean: {out}");
    assert!(out.contains("could not be parsed"), "{out}");

    // A folder with both: unsafe wins.
    let (code, _) = scan(&[dir.path().as_os_str()]);
    assert_eq!(code, 1);

    let (code, _) = scan(&[dir.path().join("missing.pt").as_os_str()]);
    assert_eq!(code, 2);
}
