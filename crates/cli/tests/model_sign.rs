//! End-to-end tests of `perimeter model keygen|sign|verify` on real directories: a temporary
//! model with a 64 MiB sparse weights file, and the repository's embedded model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"))
}

/// Runs `perimeter model ARGS…` and returns (exit code, stdout, stderr).
fn model(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.env("PERIMETER_LOG", "warn").env_remove("PERIMETER_CONFIG").arg("model");
    for a in args {
        c.arg(a);
    }
    let Output { status, stdout, stderr } = c.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A small model: two JSON files, a 64 MiB sparse weights file in a subdirectory (written in
/// a few places only, so it is quick to make), and a link to a file inside the directory.
fn make_model(dir: &Path) {
    fs::create_dir_all(dir.join("weights")).unwrap();
    fs::write(dir.join("config.json"), br#"{"hidden_size": 8}"#).unwrap();
    fs::write(dir.join("tokenizer.json"), br#"{"vocab": ["a", "b"]}"#).unwrap();
    let mut w = fs::File::create(dir.join("weights/model.safetensors")).unwrap();
    w.set_len(64 << 20).unwrap();
    for offset in [0u64, 1 << 20, 50 << 20, (64 << 20) - 8] {
        w.seek(SeekFrom::Start(offset)).unwrap();
        w.write_all(b"weights!").unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink("config.json", dir.join("config-link.json")).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut f = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x20]).unwrap();
}

#[test]
fn keygen_sign_verify_and_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-model");
    make_model(&dir);
    let prefix = tmp.path().join("signer");

    let (code, out, err) = model(&[&"keygen", &"--out", &prefix]);
    assert_eq!(code, 0, "{err}");
    let private = fs::read_to_string(prefix.with_extension("key")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(fs::read_to_string(prefix.with_extension("pub")).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    // The secret never reaches the terminal, and only its owner can read the file.
    let secret_line = private.lines().nth(1).unwrap();
    assert!(!out.contains(secret_line) && !err.contains(secret_line));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(prefix.with_extension("key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // keygen never overwrites.
    let (code, _, err) = model(&[&"keygen", &"--out", &prefix]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");

    let key = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    let (code, out, err) = model(&[&"sign", &dir, &"--key", &key]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("signed 4 files"), "{out}");
    let sig_path = dir.join("model.sig.json");
    let envelope = json(&fs::read_to_string(&sig_path).unwrap());
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert!(envelope["signatures"][0]["keyid"].as_str().unwrap().starts_with("sha256:"));

    let verify = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &dir, &"--key", &public];
        args.extend_from_slice(extra);
        model(&args)
    };
    let (code, out, err) = verify(&[&"--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["files"], 4);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["keyid"], envelope["signatures"][0]["keyid"]);
    assert_eq!(report["model"], "tiny-model");
    let (code, out, _) = verify(&[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("verified: 4 files"), "{out}");

    // One changed byte deep inside the large file.
    let weights = dir.join("weights/model.safetensors");
    flip_byte(&weights, 50 << 20);
    let (code, out, _) = verify(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("weights/model.safetensors: changed"), "{out}");
    let report = json(&verify(&[&"--json"]).1);
    assert_eq!(report["verified"], false);
    assert_eq!(report["problems"][0]["kind"], "changed");
    assert_eq!(report["problems"][0]["path"], "weights/model.safetensors");
    flip_byte(&weights, 50 << 20);
    assert_eq!(verify(&[]).0, 0);

    // A missing file.
    let config = fs::read(dir.join("tokenizer.json")).unwrap();
    fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let (code, out, _) = verify(&[]);
    assert_eq!(code, 1);
    assert!(out.contains("tokenizer.json: missing"), "{out}");
    fs::write(dir.join("tokenizer.json"), &config).unwrap();

    // An extra file, even an empty one, even one the statement's ignore list might name.
    fs::write(dir.join("notes.txt"), b"").unwrap();
    let (code, out, _) = verify(&[]);
    assert_eq!(code, 1);
    assert!(out.contains("notes.txt: extra"), "{out}");
    fs::remove_file(dir.join("notes.txt")).unwrap();
    fs::create_dir(dir.join(".git")).unwrap();
    fs::write(dir.join(".git/HEAD"), b"ref").unwrap();
    let (code, out, _) = verify(&[]);
    assert_eq!(code, 1);
    assert!(out.contains(".git/HEAD: extra"), "{out}");
    fs::remove_dir_all(dir.join(".git")).unwrap();
    assert_eq!(verify(&[]).0, 0);

    // A link that leaves the directory is never followed.
    #[cfg(unix)]
    {
        let outside = tmp.path().join("outside.bin");
        fs::write(&outside, b"secret elsewhere").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("escape.bin")).unwrap();
        let (code, out, _) = verify(&[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("escape.bin: symbolic link pointing outside the directory"), "{out}");
        // Signing refuses it too.
        let (code, out, _) = model(&[&"sign", &dir, &"--key", &key, &"--out", &tmp.path().join("other.sig.json")]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("escape.bin"), "{out}");
        fs::remove_file(dir.join("escape.bin")).unwrap();
        // A signed link whose target is swapped for one outside fails as well.
        fs::remove_file(dir.join("config-link.json")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("config-link.json")).unwrap();
        let (code, out, _) = verify(&[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("config-link.json: symbolic link pointing outside"), "{out}");
        fs::remove_file(dir.join("config-link.json")).unwrap();
        std::os::unix::fs::symlink("config.json", dir.join("config-link.json")).unwrap();
        assert_eq!(verify(&[]).0, 0);
    }

    // A key that is not trusted.
    let other = tmp.path().join("other");
    assert_eq!(model(&[&"keygen", &"--out", &other, &"--algorithm", &"p256"]).0, 0);
    let (code, out, _) = model(&[&"verify", &dir, &"--key", &other.with_extension("pub")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("untrusted key"), "{out}");
    // Several trusted keys: one of them signed.
    let (code, out, _) =
        model(&[&"verify", &dir, &"--key", &other.with_extension("pub"), &"--key", &public, &"--json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["verified"], true);

    // A signature whose signed payload was edited: valid JSON, bad signature.
    let original = fs::read_to_string(&sig_path).unwrap();
    let mut edited = envelope.clone();
    let payload = edited["payload"].as_str().unwrap().to_string();
    let swapped = if payload.as_bytes()[10] == b'A' { 'B' } else { 'A' };
    let mut payload: Vec<char> = payload.chars().collect();
    payload[10] = swapped;
    edited["payload"] = Value::String(payload.into_iter().collect());
    fs::write(&sig_path, edited.to_string()).unwrap();
    let (code, out, err) = verify(&[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("bad signature"), "{out}");

    // A corrupted (unparseable) signature file, and a missing one: exit 2.
    fs::write(&sig_path, &original[..original.len() / 2]).unwrap();
    let (code, out, err) = verify(&[&"--json"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(json(&out)["verified"], false);
    assert!(err.contains("not a DSSE envelope"), "{err}");
    fs::remove_file(&sig_path).unwrap();
    assert_eq!(verify(&[]).0, 2);
    // A public key file that is not a key: exit 2.
    fs::write(&sig_path, &original).unwrap();
    let (code, _, err) = model(&[&"verify", &dir, &"--key", &dir.join("config.json")]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(verify(&[]).0, 0);
}

#[test]
fn p256_signature_kept_outside_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    make_model(&dir);
    let prefix = tmp.path().join("p");
    assert_eq!(model(&[&"keygen", &"--out", &prefix, &"--algorithm", &"p256"]).0, 0);
    let sig = tmp.path().join("m.sig.json");
    let (code, out, err) = model(&[&"sign", &dir, &"--key", &prefix.with_extension("key"), &"--out", &sig]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("p256 key sha256:"), "{out}");
    let (code, out, _) = model(&[&"verify", &dir, &"--signature", &sig, &"--key", &prefix.with_extension("pub")]);
    assert_eq!(code, 0, "{out}");
    // A signature file left in the directory is an extra file when another signature is used.
    fs::copy(&sig, dir.join("model.sig.json")).unwrap();
    let (code, out, _) = model(&[&"verify", &dir, &"--signature", &sig, &"--key", &prefix.with_extension("pub")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("model.sig.json: extra"), "{out}");
}

/// The embedded model the server loads, signed into a temporary file so the models directory
/// is left as it is.
#[test]
fn sign_and_verify_the_embedded_model() {
    let dir = models_dir().join("all-minilm-l6-v2");
    assert!(dir.join("model.safetensors").is_file(), "{} has no model: run `make models`", dir.display());
    let before: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("k");
    assert_eq!(model(&[&"keygen", &"--out", &prefix]).0, 0);
    let sig = tmp.path().join("all-minilm-l6-v2.sig.json");
    let (code, out, err) = model(&[&"sign", &dir, &"--key", &prefix.with_extension("key"), &"--out", &sig]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) =
        model(&[&"verify", &dir, &"--signature", &sig, &"--key", &prefix.with_extension("pub"), &"--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["model"], "all-minilm-l6-v2");
    assert_eq!(report["files"].as_u64().unwrap(), before.len() as u64);
    let after: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "the models directory must not change");

    // The statement's digests are the pins of the committed manifest.
    let envelope = perimeter_provenance::signing::Envelope::from_json(&fs::read(&sig).unwrap()).unwrap();
    let statement: Value = serde_json::from_slice(&envelope.payload).unwrap();
    let manifest = fs::read_to_string(repo_root().join("models/manifest.toml")).unwrap();
    for r in statement["predicate"]["resources"].as_array().unwrap() {
        let digest = r["digest"].as_str().unwrap();
        assert!(manifest.contains(digest), "{} {digest} is not pinned in models/manifest.toml", r["name"]);
    }
}
