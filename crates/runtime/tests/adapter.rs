//! Fine-tuned adapters pass the same gate as weights (issue 6): a LoRA adapter in GGUF form,
//! written here byte by byte for the real embedded model, is pinned in an operator's manifest,
//! scanned, and applied by the embedded engine; a changed byte or an unsigned file refuses it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use perimeter_provenance::signing::{Algorithm, Envelope, SigningKey, Statement};
use perimeter_provenance::Manifest;
use perimeter_runtime::{
    builtin_manifest, signed_statement, verify, verify_signed, EmbeddedChat, LlmOptions, VerifyError,
};
use perimeter_types::{ChatBackend, ChatMessage, ChatRequest, GenerationParams, Role};
use sha2::{Digest, Sha256};

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// SmolLM2-135M: hidden size 576, 30 layers, 9 query heads of 64.
const N_EMBD: u64 = 576;
const RANK: u64 = 4;

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 LoRA adapter (the layout llama.cpp's `convert_lora_to_gguf.py` writes) for the
/// query projection of every layer: `lora_a` is [n_embd, rank], `lora_b` is [rank, n_embd]
/// (GGUF dimension order), both F32. `b_value` fills B: 0 makes the adapter a no-op.
fn lora_gguf(layers: u32, b_value: f32) -> Vec<u8> {
    const ALIGN: usize = 32;
    let mut tensors: Vec<(String, [u64; 2], Vec<f32>)> = Vec::new();
    for l in 0..layers {
        // A deterministic, non-trivial A so a non-zero B changes the projection.
        let a: Vec<f32> = (0..N_EMBD * RANK).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
        tensors.push((format!("blk.{l}.attn_q.weight.lora_a"), [N_EMBD, RANK], a));
        tensors.push((
            format!("blk.{l}.attn_q.weight.lora_b"),
            [RANK, N_EMBD],
            vec![b_value; (RANK * N_EMBD) as usize],
        ));
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    for (key, value) in [("general.architecture", "llama"), ("general.type", "adapter"), ("adapter.type", "lora")] {
        gguf_string(&mut out, key);
        out.extend_from_slice(&8u32.to_le_bytes()); // string
        gguf_string(&mut out, value);
    }
    gguf_string(&mut out, "adapter.lora.alpha");
    out.extend_from_slice(&6u32.to_le_bytes()); // float32
    out.extend_from_slice(&(RANK as f32).to_le_bytes());
    let mut offset = 0u64;
    for (name, dims, data) in &tensors {
        gguf_string(&mut out, name);
        out.extend_from_slice(&2u32.to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes()); // F32
        out.extend_from_slice(&offset.to_le_bytes());
        offset += (data.len() * 4).div_ceil(ALIGN) as u64 * ALIGN as u64;
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    for (_, _, data) in &tensors {
        for v in data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    }
    out
}

/// A models directory with the real base weights (linked, not copied) and an adapter file,
/// and an operator's manifest entry pinning both.
struct Fixture {
    dir: tempfile::TempDir,
    manifest: Manifest,
}

fn fixture(adapter: &[u8]) -> Fixture {
    let builtin = builtin_manifest().unwrap();
    let base = builtin.model(perimeter_runtime::DEFAULT_CHAT_MODEL).unwrap();
    let weights = base.file("weights").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tuned")).unwrap();
    let real = std::fs::canonicalize(models_dir().join(&weights.path)).unwrap();
    std::os::unix::fs::symlink(real, dir.path().join("tuned/base.gguf")).unwrap();
    std::fs::write(dir.path().join("tuned/adapter.gguf"), adapter).unwrap();
    let text = format!(
        "[[model]]\nname = \"smollm2-tuned\"\nkind = \"generation\"\npackage = \"local==1\"\n\
         [[model.file]]\nrole = \"weights\"\npath = \"tuned/base.gguf\"\nmember = \"-\"\nsha256 = \"{}\"\nsize = {}\n\
         [[model.file]]\nrole = \"adapter\"\npath = \"tuned/adapter.gguf\"\nmember = \"-\"\nsha256 = \"{}\"\nsize = {}\n",
        weights.sha256,
        weights.size,
        hex::encode(Sha256::digest(adapter)),
        adapter.len()
    );
    Fixture { dir, manifest: builtin.merged(Manifest::parse(&text).unwrap()).unwrap() }
}

fn path(f: &Fixture) -> &Path {
    f.dir.path()
}

async fn answer(chat: &EmbeddedChat) -> String {
    let request = ChatRequest {
        messages: vec![ChatMessage::new(Role::User, "Name three colours.")],
        params: GenerationParams { max_tokens: 16, ..GenerationParams::default() },
    };
    chat.chat(request, Box::new(|_| true)).await.unwrap().text
}

fn load(f: &Fixture) -> EmbeddedChat {
    let verified = verify(f.manifest.model("smollm2-tuned").unwrap(), path(f)).unwrap();
    assert!(verified.file("adapter").is_some());
    let options = LlmOptions { context_tokens: 512, threads: 1, ..LlmOptions::default() };
    EmbeddedChat::load("embedded", &verified, &options).unwrap()
}

#[tokio::test]
async fn a_pinned_lora_adapter_is_verified_scanned_and_applied() {
    let base = {
        let builtin = builtin_manifest().unwrap();
        let v = verify(builtin.model(perimeter_runtime::DEFAULT_CHAT_MODEL).unwrap(), &models_dir()).unwrap();
        let options = LlmOptions { context_tokens: 512, threads: 1, ..LlmOptions::default() };
        answer(&EmbeddedChat::load("embedded", &v, &options).unwrap()).await
    };
    // B = 0: the adapter adds nothing, so greedy decoding gives the base model's answer. This
    // proves the file was accepted by llama.cpp (wrong shapes or names are refused at load).
    let noop = fixture(&lora_gguf(30, 0.0));
    assert_eq!(answer(&load(&noop)).await, base);
    // A strong adapter changes the answer: it really is applied.
    let strong = fixture(&lora_gguf(30, 0.5));
    assert_ne!(answer(&load(&strong)).await, base, "the adapter had no effect");
}

#[test]
fn a_changed_adapter_byte_is_refused_before_loading() {
    let f = fixture(&lora_gguf(2, 0.0));
    let adapter = path(&f).join("tuned/adapter.gguf");
    let mut bytes = std::fs::read(&adapter).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&adapter, bytes).unwrap();
    let err = verify(f.manifest.model("smollm2-tuned").unwrap(), path(&f)).unwrap_err();
    assert!(matches!(err, VerifyError::Mismatch(_)), "{err}");
}

#[test]
fn an_adapter_that_is_not_a_model_format_is_refused_by_the_scan() {
    // Pinned correctly, but a pickle with a code-execution global: the scan refuses it.
    let payload = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.";
    let f = fixture(payload);
    let err = verify(f.manifest.model("smollm2-tuned").unwrap(), path(&f)).unwrap_err();
    assert!(matches!(err, VerifyError::Unsafe { .. }), "{err}");
}

#[test]
fn a_signed_statement_must_vouch_for_every_file_including_the_adapter() {
    let f = fixture(&lora_gguf(2, 0.0));
    let entry = f.manifest.model("smollm2-tuned").unwrap();
    let digest = |p: &str| -> [u8; 32] { Sha256::digest(std::fs::read(path(&f).join(p)).unwrap()).into() };
    let both = vec![
        ("tuned/adapter.gguf".to_string(), digest("tuned/adapter.gguf")),
        ("tuned/base.gguf".to_string(), digest("tuned/base.gguf")),
    ];
    let statement = Statement::new("models", both.clone(), vec![]).unwrap();
    assert!(verify_signed(entry, path(&f), &statement).is_ok());
    // A statement that lists only the base weights does not cover the adapter.
    let partial = Statement::new("models", vec![both[1].clone()], vec![]).unwrap();
    let err = verify_signed(entry, path(&f), &partial).unwrap_err();
    assert!(err.to_string().contains("tuned/adapter.gguf"), "{err}");
    // One that lists another adapter digest does not either.
    let other =
        Statement::new("models", vec![("tuned/adapter.gguf".into(), [7u8; 32]), both[1].clone()], vec![]).unwrap();
    assert!(matches!(verify_signed(entry, path(&f), &other), Err(VerifyError::Signed(_))));
}

#[test]
fn the_signed_statement_must_verify_with_a_trusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let statement = Statement::new("models", vec![("a/w.gguf".into(), [1u8; 32])], vec![]).unwrap();
    let signer = SigningKey::from_seed(Algorithm::Ed25519, &[1u8; 32]).unwrap();
    let stranger = SigningKey::from_seed(Algorithm::P256, &[2u8; 32]).unwrap();
    let envelope = dir.path().join("models.sig.json");
    std::fs::write(&envelope, Envelope::sign(&statement, &signer).to_json()).unwrap();
    let trusted = dir.path().join("trusted.pem");
    std::fs::write(&trusted, signer.public_key().to_spki_pem().unwrap()).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, stranger.public_key().to_spki_pem().unwrap()).unwrap();

    let (got, keyid) = signed_statement(&envelope, &[other.clone(), trusted.clone()]).unwrap();
    assert_eq!(got, statement);
    assert_eq!(keyid, signer.public_key().keyid());
    // Signed, but not by a key the configuration trusts.
    assert!(matches!(signed_statement(&envelope, &[other]), Err(VerifyError::Signed(_))));
    // A changed payload byte breaks the signature.
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&envelope).unwrap()).unwrap();
    let payload = json["payload"].as_str().unwrap().to_string();
    let flipped = if payload.ends_with('A') { "B" } else { "A" };
    json["payload"] = serde_json::Value::String(format!("{}{flipped}", &payload[..payload.len() - 1]));
    std::fs::write(&envelope, json.to_string()).unwrap();
    assert!(signed_statement(&envelope, std::slice::from_ref(&trusted)).is_err());
    // A missing signature file is an IO error naming the file, never a pass.
    let err = signed_statement(&dir.path().join("absent.json"), &[trusted]).unwrap_err();
    assert!(err.to_string().contains("absent.json"), "{err}");
}
