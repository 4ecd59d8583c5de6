//! Sealing: the canonical encoding, the hash chain, Ed25519 signatures of checkpoint and segment
//! records, and the key encodings (PKCS#8/SPKI PEM, hex).

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::record::Record;

/// The `prev_hash` of the first record of the first segment.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation for signatures, so a checkpoint signature is never valid for anything else.
pub const SIGNATURE_DOMAIN: &[u8] = b"perimeter-audit-checkpoint-v1";

/// Where the chain stands: the next record's `seq` and `prev_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub next_seq: u64,
    pub hash: String,
}

impl Head {
    /// The start of a new log.
    pub fn genesis() -> Self {
        Head { next_seq: 0, hash: ZERO_HASH.to_string() }
    }

    /// The start of a segment linked to the last verified record of the previous one.
    pub fn linked(prev_hash: impl Into<String>) -> Self {
        Head { next_seq: 0, hash: prev_hash.into() }
    }
}

/// A sealed record and its line on disk (canonical JSON and a newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub record: Record,
    pub line: Vec<u8>,
}

impl Sealed {
    /// The head after this record.
    pub fn head(&self) -> Head {
        Head { next_seq: self.record.seq + 1, hash: self.record.hash.clone() }
    }
}

/// Bad key material. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM")]
    BadPrivateKey,
    #[error("not an Ed25519 public key (SPKI PEM or 64 hex digits)")]
    BadPublicKey,
    #[error("the key could not be encoded")]
    Encode,
}

/// The canonical encoding: serde_json's compact output of the struct (fixed field order, sorted
/// map keys, no floats), without a newline.
#[expect(clippy::expect_used, reason = "a struct of strings, integers and string-keyed maps always serialises")]
pub fn canonical(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("records always serialise")
}

/// SHA-256 (hex) of the canonical encoding of `record` with `hash` empty.
pub fn record_hash(record: &Record) -> String {
    let mut r = record.clone();
    r.hash.clear();
    hex::encode(Sha256::digest(canonical(&r)))
}

/// Seals an unsigned record onto the chain at `head`: sets `seq`, `prev_hash` and `hash` (any
/// signature fields the caller set are cleared). Checkpoint and segment records go through
/// [`seal_signed`]; the verifier refuses them unsigned.
pub fn seal(head: &Head, mut record: Record) -> Sealed {
    record.signature = None;
    record.key_id = None;
    finish(head, record)
}

/// Seals a record and signs it: the signature covers [`SIGNATURE_DOMAIN`], `seq` and the SHA-256
/// of the record's canonical encoding without signature and hash, which includes `prev_hash` and
/// so the whole chain before it.
pub fn seal_signed(head: &Head, mut record: Record, key: &SigningKey) -> Sealed {
    record.seq = head.next_seq;
    record.prev_hash = head.hash.clone();
    record.signature = None;
    record.key_id = Some(key_id(&key.verifying_key()));
    record.hash.clear();
    let signature = key.sign(&signing_message(&record));
    record.signature = Some(hex::encode(signature.to_bytes()));
    finish(head, record)
}

fn finish(head: &Head, mut record: Record) -> Sealed {
    record.seq = head.next_seq;
    record.prev_hash = head.hash.clone();
    record.hash = record_hash(&record);
    let mut line = canonical(&record);
    line.push(b'\n');
    Sealed { record, line }
}

/// The message a signed record's signature covers.
pub(crate) fn signing_message(record: &Record) -> Vec<u8> {
    let mut body = record.clone();
    body.signature = None;
    body.hash.clear();
    let mut msg = SIGNATURE_DOMAIN.to_vec();
    msg.extend_from_slice(&record.seq.to_be_bytes());
    msg.extend_from_slice(&Sha256::digest(canonical(&body)));
    msg
}

/// Whether a signed record's signature is valid under `key`.
pub(crate) fn signature_valid(record: &Record, key: &VerifyingKey) -> bool {
    let Some(sig) = record.signature.as_deref().and_then(|s| hex::decode(s).ok()) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
        return false;
    };
    key.verify_strict(&signing_message(record), &sig).is_ok()
}

/// A short id of a public key: the first 8 bytes of the SHA-256 of its 32 bytes, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// A signing key from a 32-byte seed the caller drew from the operating system.
pub fn signing_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// The private key as PKCS#8 PEM (zeroised on drop).
pub fn signing_key_to_pem(key: &SigningKey) -> Result<Zeroizing<String>, KeyError> {
    key.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyError::Encode)
}

pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::BadPrivateKey)
}

/// The public key as SPKI PEM, for `perimeter audit pubkey` and `signing.pub`.
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF).map_err(|_| KeyError::Encode)
}

/// A public key from SPKI PEM or 64 hex digits (surrounding whitespace ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text).map_err(|_| KeyError::BadPublicKey);
    }
    let bytes: [u8; 32] = hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or(KeyError::BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)
}
