//! Architecture invariants (ARCHITECTURE.md), checked on the real dependency graph and sources:
//! the pure crates depend on no IO crate and touch no filesystem, network or process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Crates that must stay pure: values in, values out.
const PURE: &[&str] = &[
    "perimeter-types",
    "perimeter-retrieval",
    "perimeter-core",
    "perimeter-provenance",
    "perimeter-extract",
    "perimeter-detect",
    "perimeter-redact",
    "perimeter-policy",
    "perimeter-scan",
    "perimeter-cost",
    "perimeter-audit",
    "perimeter-guard",
    "perimeter-canary",
];
/// Crates that do IO; none may appear among the pure crates' normal dependencies, directly or not.
const IO_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "tantivy",
    "rusqlite",
    "mio",
    "socket2",
    "walkdir",
    "llama-cpp-2",
    "candle-core",
];

/// The target triple of the machine running the tests, from `rustc -vV`.
fn host_triple() -> String {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())).arg("-vV").output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().find_map(|l| l.strip_prefix("host: ")).unwrap().trim().to_string()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn pure_crates_depend_on_no_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root())
        // Only this platform's graph: other platforms' crates (windows-sys, …) are never
        // downloaded on this machine, and the invariant is about what gets built here.
        .args(["metadata", "--format-version", "1", "--offline", "--locked", "--filter-platform", &host_triple()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> =
        meta["resolve"]["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    for pure in PURE {
        let root = names
            .iter()
            .find(|(_, n)| *n == pure)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{pure} not in the workspace"));
        // Walk normal (non-dev, non-build) dependencies transitively.
        let mut seen = BTreeSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            for dep in nodes[id]["deps"].as_array().unwrap() {
                let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
                let dep_id = dep["pkg"].as_str().unwrap();
                if normal && seen.insert(names[dep_id]) {
                    stack.push(dep_id);
                }
            }
        }
        let bad: Vec<&&str> = IO_CRATES.iter().filter(|c| seen.contains(**c)).collect();
        assert!(bad.is_empty(), "{pure} depends on IO crates {bad:?}");
    }
}

#[test]
fn pure_crates_do_no_io_in_their_sources() {
    let forbidden = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env::",
        "File::open",
        "TcpStream",
        "Instant::now",
        "SystemTime::now",
    ];
    for pure in PURE {
        let dir = repo_root().join("crates").join(pure.trim_start_matches("perimeter-")).join("src");
        for entry in walk(&dir) {
            let text = std::fs::read_to_string(&entry).unwrap();
            // Test modules may read fixtures.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for word in forbidden {
                assert!(!code.contains(word), "{} uses {word}", entry.display());
            }
        }
    }
}

fn walk(dir: &PathBuf) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}
