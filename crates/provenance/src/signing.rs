//! Model signatures, pure part: the signed statement that lists every file of a model directory
//! with its SHA-256, the DSSE envelope that carries it, and the check of a directory's recomputed
//! digests against a verified statement. Walking, hashing and reading keys happen in the CLI.
//!
//! The statement follows the OpenSSF model-signing format (sigstore/model-transparency,
//! predicate `https://model_signing/signature/v1.0`): an in-toto Statement v1 whose single
//! subject is the model, named after its directory, with a SHA-256 over the raw digests of all
//! resources in order; the predicate lists the resources (`{name, algorithm, digest}`, sorted by
//! path component by component) and the serialization parameters. It is wrapped in a DSSE
//! envelope (`application/vnd.in-toto+json`) whose signatures cover the DSSE pre-authentication
//! encoding ([`pae`]). Keys are Ed25519 or ECDSA P-256 with SHA-256, read from PKCS#8 (private)
//! and SPKI (public) PEM. A key id is `sha256:` and the hex SHA-256 of the public key's SPKI DER.
//!
//! The `keyid` in an envelope is an unauthenticated hint: verification tries every trusted key
//! against every signature, and the hint only chooses between the messages "bad signature" and
//! "untrusted key". The `ignore_paths` list in the predicate is recorded for other tools and
//! never consulted: a verifier here ignores only the signature file it was given.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
pub use zeroize::Zeroizing;

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The DSSE payload type of an in-toto statement in JSON.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The OpenSSF model-signing predicate, v1.0.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The file name `perimeter model sign` writes into the model directory by default.
pub const DEFAULT_SIGNATURE_FILE: &str = "model.sig.json";
/// An envelope with more signatures than this is refused, so a crafted file cannot make
/// verification try keys without end.
pub const MAX_SIGNATURES: usize = 16;

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256.
    P256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::P256 => "p256",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an unencrypted PKCS#8 PEM private key for Ed25519 or P-256 (\"-----BEGIN PRIVATE KEY-----\")")]
    NotAPrivateKey,
    #[error("not an SPKI PEM public key for Ed25519 or P-256 (\"-----BEGIN PUBLIC KEY-----\")")]
    NotAPublicKey,
    #[error("the seed is not a valid P-256 private scalar; draw another")]
    SeedOutOfRange,
    #[error("the key could not be encoded as PEM")]
    Encode,
}

/// A private key. Its `Debug` shows the algorithm and key id only, and the key material is
/// zeroed when it is dropped.
pub struct SigningKey {
    inner: SigningInner,
    public: PublicKey,
}

enum SigningInner {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: PublicInner,
    keyid: String,
}

#[derive(Clone, PartialEq, Eq)]
enum PublicInner {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl SigningKey {
    /// Makes a key from 32 bytes of secret randomness: the Ed25519 seed, or the P-256 scalar
    /// (big-endian; zero and values at or above the group order are refused). The caller draws
    /// the bytes: this crate has no source of randomness.
    pub fn from_seed(algorithm: Algorithm, seed: &[u8; 32]) -> Result<Self, KeyError> {
        let inner = match algorithm {
            Algorithm::Ed25519 => SigningInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)),
            Algorithm::P256 => SigningInner::P256(
                p256::ecdsa::SigningKey::from_bytes(&(*seed).into()).map_err(|_| KeyError::SeedOutOfRange)?,
            ),
        };
        Self::new(inner)
    }

    /// Reads an unencrypted PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let inner = if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            SigningInner::Ed25519(k)
        } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            SigningInner::P256(k)
        } else {
            return Err(KeyError::NotAPrivateKey);
        };
        Self::new(inner)
    }

    fn new(inner: SigningInner) -> Result<Self, KeyError> {
        let public = match &inner {
            SigningInner::Ed25519(k) => PublicKey::new(PublicInner::Ed25519(k.verifying_key()))?,
            SigningInner::P256(k) => PublicKey::new(PublicInner::P256(*k.verifying_key()))?,
        };
        Ok(SigningKey { inner, public })
    }

    /// The key as PKCS#8 PEM, in memory that is zeroed when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let pem = match &self.inner {
            SigningInner::Ed25519(k) => k.to_pkcs8_pem(p256::pkcs8::LineEnding::LF),
            SigningInner::P256(k) => k.to_pkcs8_pem(p256::pkcs8::LineEnding::LF),
        };
        pem.map_err(|_| KeyError::Encode)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// Signs `message` as is: Ed25519, or ECDSA P-256 over its SHA-256 with RFC 6979 nonces,
    /// DER-encoded as Sigstore and cosign write it.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match &self.inner {
            SigningInner::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            SigningInner::P256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, message);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("algorithm", &self.algorithm()).field("keyid", &self.public.keyid).finish()
    }
}

impl PublicKey {
    fn new(inner: PublicInner) -> Result<Self, KeyError> {
        let der = match &inner {
            PublicInner::Ed25519(k) => k.to_public_key_der(),
            PublicInner::P256(k) => k.to_public_key_der(),
        }
        .map_err(|_| KeyError::Encode)?;
        let keyid = format!("sha256:{}", hex::encode(Sha256::digest(der.as_bytes())));
        Ok(PublicKey { inner, keyid })
    }

    /// Reads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        let inner = if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            PublicInner::Ed25519(k)
        } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            PublicInner::P256(k)
        } else {
            return Err(KeyError::NotAPublicKey);
        };
        Self::new(inner)
    }

    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        let le = p256::pkcs8::LineEnding::LF;
        match &self.inner {
            PublicInner::Ed25519(k) => k.to_public_key_pem(le),
            PublicInner::P256(k) => k.to_public_key_pem(le),
        }
        .map_err(|_| KeyError::Encode)
    }

    /// `sha256:` and the hex SHA-256 of the SPKI DER encoding.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            PublicInner::Ed25519(_) => Algorithm::Ed25519,
            PublicInner::P256(_) => Algorithm::P256,
        }
    }

    /// Whether `sig` is this key's signature over `message`. Ed25519 uses the strict check
    /// (no small-order keys, canonical encodings); a P-256 signature may be DER or the raw
    /// 64-byte `r || s` of the DSSE specification's example.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.inner {
            PublicInner::Ed25519(k) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(s) => k.verify_strict(message, &s).is_ok(),
                Err(_) => false,
            },
            PublicInner::P256(k) => {
                let parsed = p256::ecdsa::Signature::from_der(sig).or_else(|_| p256::ecdsa::Signature::from_slice(sig));
                match parsed {
                    Ok(s) => p256::ecdsa::signature::Verifier::verify(k, message, &s).is_ok(),
                    Err(_) => false,
                }
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("algorithm", &self.algorithm()).field("keyid", &self.keyid).finish()
    }
}

/// The DSSE pre-authentication encoding that signatures cover:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in bytes, in decimal.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// One file of a model: its path relative to the model directory (with `/`) and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub digest: [u8; 32],
}

/// What a statement says about a model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    name: String,
    resources: Vec<Resource>,
    ignore_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("the payload is not an in-toto statement: {0}")]
    Json(String),
    #[error("statement type is {0:?}, expected {STATEMENT_TYPE:?}")]
    StatementType(String),
    #[error("predicate type is {0:?}, expected {PREDICATE_TYPE:?}")]
    PredicateType(String),
    #[error("the statement must have exactly one subject, it has {0}")]
    Subjects(usize),
    #[error("serialization {0} is not supported (only method \"files\" with hash_type \"sha256\")")]
    Serialization(String),
    #[error("resource {name:?}: {reason}")]
    Resource { name: String, reason: String },
    #[error("the subject digest does not match the resources it summarises")]
    SubjectDigest,
}

/// What was found on disk at one path of a model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A file (or a link to a file inside the directory) with this SHA-256.
    Digest([u8; 32]),
    /// Something that was not read, and why: a link that leaves the directory, a special file,
    /// a read error.
    Refused(String),
}

/// Why a directory does not match a statement, one per path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{path}: changed (SHA-256 is {actual}, the signature says {expected})")]
    Changed { path: String, expected: String, actual: String },
    #[error("{path}: missing (signed, but not in the directory)")]
    Missing { path: String },
    #[error("{path}: extra (in the directory, but not signed)")]
    Extra { path: String },
    #[error("{path}: {reason}")]
    Refused { path: String, reason: String },
}

impl Problem {
    /// `changed`, `missing`, `extra` or `refused`.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Changed { .. } => "changed",
            Problem::Missing { .. } => "missing",
            Problem::Extra { .. } => "extra",
            Problem::Refused { .. } => "refused",
        }
    }

    pub fn path(&self) -> &str {
        match self {
            Problem::Changed { path, .. }
            | Problem::Missing { path }
            | Problem::Extra { path }
            | Problem::Refused { path, .. } => path,
        }
    }
}

/// Orders paths component by component (`a/b` before `a-b`), as model-signing sorts its
/// resources.
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// A relative path with `/` separators, without empty, `.` or `..` components or NUL.
fn check_path(name: &str) -> Result<(), String> {
    if name.is_empty() || name.starts_with('/') {
        return Err("must be a relative path".into());
    }
    if name.contains('\0') {
        return Err("contains NUL".into());
    }
    if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("must not have empty, '.' or '..' components".into());
    }
    Ok(())
}

impl Statement {
    /// The statement for a model named `name` with these files. Paths are checked (relative,
    /// no `..`) and must be unique; resources are sorted by [`path_order`].
    pub fn new(name: &str, files: Vec<(String, [u8; 32])>, ignore_paths: Vec<String>) -> Result<Self, StatementError> {
        let mut resources: Vec<Resource> = files.into_iter().map(|(name, digest)| Resource { name, digest }).collect();
        resources.sort_by(|a, b| path_order(&a.name, &b.name));
        check_resources(&resources)?;
        Ok(Statement { name: name.to_string(), resources, ignore_paths })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// The paths the signer says it left out. Recorded, never used for verification.
    pub fn ignore_paths(&self) -> &[String] {
        &self.ignore_paths
    }

    /// SHA-256 over the raw digests of the resources, in order: the subject's digest.
    pub fn subject_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for r in &self.resources {
            h.update(r.digest);
        }
        h.finalize().into()
    }

    /// The canonical JSON: keys in lexicographic order, no insignificant whitespace.
    pub fn to_json(&self) -> Vec<u8> {
        let json = StatementJson {
            type_: STATEMENT_TYPE.into(),
            predicate: PredicateJson {
                resources: self
                    .resources
                    .iter()
                    .map(|r| ResourceJson {
                        algorithm: "sha256".into(),
                        digest: hex::encode(r.digest),
                        name: r.name.clone(),
                    })
                    .collect(),
                serialization: SerializationJson {
                    allow_symlinks: true,
                    hash_type: "sha256".into(),
                    ignore_paths: self.ignore_paths.clone(),
                    method: "files".into(),
                },
            },
            predicate_type: PREDICATE_TYPE.into(),
            subject: vec![SubjectJson {
                digest: BTreeMap::from([("sha256".to_string(), hex::encode(self.subject_digest()))]),
                name: self.name.clone(),
            }],
        };
        // Serialising plain structs of strings and booleans cannot fail.
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// Reads and checks a statement: the types, one subject whose digest matches the resources,
    /// file serialization with SHA-256, valid and unique resource paths. Unknown fields are
    /// ignored, as the predicate's v1.0 asks of verifiers.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatementError> {
        let json: StatementJson = serde_json::from_slice(bytes).map_err(|e| StatementError::Json(e.to_string()))?;
        if json.type_ != STATEMENT_TYPE {
            return Err(StatementError::StatementType(json.type_));
        }
        if json.predicate_type != PREDICATE_TYPE {
            return Err(StatementError::PredicateType(json.predicate_type));
        }
        let [subject] = <[SubjectJson; 1]>::try_from(json.subject).map_err(|s| StatementError::Subjects(s.len()))?;
        let s = &json.predicate.serialization;
        if s.method != "files" || s.hash_type != "sha256" {
            return Err(StatementError::Serialization(format!("method {:?}, hash_type {:?}", s.method, s.hash_type)));
        }
        let mut resources = Vec::with_capacity(json.predicate.resources.len());
        for r in json.predicate.resources {
            let bad = |reason: &str| StatementError::Resource { name: r.name.clone(), reason: reason.into() };
            if r.algorithm != "sha256" {
                return Err(bad("algorithm must be sha256"));
            }
            let digest = parse_digest(&r.digest).ok_or_else(|| bad("digest must be 64 lowercase hex digits"))?;
            resources.push(Resource { name: r.name, digest });
        }
        check_resources(&resources)?;
        let statement =
            Statement { name: subject.name, resources, ignore_paths: json.predicate.serialization.ignore_paths };
        let claimed = subject.digest.get("sha256").and_then(|d| parse_digest(d));
        if claimed != Some(statement.subject_digest()) {
            return Err(StatementError::SubjectDigest);
        }
        Ok(statement)
    }

    /// Compares what is on disk with the statement: every signed path must be there with its
    /// digest, and nothing else may be. One problem per path, in [`path_order`].
    pub fn compare(&self, observed: &BTreeMap<String, Observation>) -> Vec<Problem> {
        let mut problems = Vec::new();
        for r in &self.resources {
            match observed.get(&r.name) {
                None => problems.push(Problem::Missing { path: r.name.clone() }),
                Some(Observation::Refused(reason)) => {
                    problems.push(Problem::Refused { path: r.name.clone(), reason: reason.clone() })
                }
                Some(Observation::Digest(d)) if *d != r.digest => problems.push(Problem::Changed {
                    path: r.name.clone(),
                    expected: hex::encode(r.digest),
                    actual: hex::encode(d),
                }),
                Some(Observation::Digest(_)) => {}
            }
        }
        let signed: BTreeSet<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
        for (path, obs) in observed {
            if signed.contains(path.as_str()) {
                continue;
            }
            problems.push(match obs {
                Observation::Refused(reason) => Problem::Refused { path: path.clone(), reason: reason.clone() },
                Observation::Digest(_) => Problem::Extra { path: path.clone() },
            });
        }
        problems.sort_by(|a, b| path_order(a.path(), b.path()));
        problems
    }
}

fn check_resources(resources: &[Resource]) -> Result<(), StatementError> {
    let mut seen = BTreeSet::new();
    for r in resources {
        check_path(&r.name).map_err(|reason| StatementError::Resource { name: r.name.clone(), reason })?;
        if !seen.insert(r.name.as_str()) {
            return Err(StatementError::Resource { name: r.name.clone(), reason: "listed twice".into() });
        }
    }
    Ok(())
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

// Wire shapes. Fields are declared in lexicographic order, so serde_json writes canonical JSON
// whatever its map features are.

#[derive(Serialize, Deserialize)]
struct StatementJson {
    #[serde(rename = "_type")]
    type_: String,
    predicate: PredicateJson,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    subject: Vec<SubjectJson>,
}

#[derive(Serialize, Deserialize)]
struct PredicateJson {
    resources: Vec<ResourceJson>,
    serialization: SerializationJson,
}

#[derive(Serialize, Deserialize)]
struct SerializationJson {
    allow_symlinks: bool,
    hash_type: String,
    #[serde(default)]
    ignore_paths: Vec<String>,
    method: String,
}

#[derive(Serialize, Deserialize)]
struct ResourceJson {
    algorithm: String,
    digest: String,
    name: String,
}

#[derive(Serialize, Deserialize)]
struct SubjectJson {
    digest: BTreeMap<String, String>,
    name: String,
}

/// One DSSE signature: an optional key id hint and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub keyid: Option<String>,
    pub sig: Vec<u8>,
}

/// A DSSE envelope: a payload, its type, and signatures over [`pae`] of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the signature file is not a DSSE envelope: {0}")]
    Json(String),
    #[error("the envelope's {0} is not valid base64")]
    Base64(&'static str),
    #[error("the envelope has {0} signatures; at most {MAX_SIGNATURES} are accepted")]
    TooManySignatures(usize),
}

/// Why an envelope is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no trusted public key was given")]
    NoTrustedKeys,
    #[error("the envelope has no signatures")]
    NoSignatures,
    /// A signature names a trusted key but does not verify: the payload or the signature was
    /// changed.
    #[error("bad signature: the signature by trusted key {keyid} does not match the signed content (it was changed)")]
    BadSignature { keyid: String },
    /// No signature verifies and none names a trusted key.
    #[error("untrusted key: no signature verifies with a trusted key (signed by {})", keyids_text(.keyids))]
    UntrustedKey { keyids: Vec<String> },
    #[error("payload type is {0:?}, expected {PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error(transparent)]
    Statement(#[from] StatementError),
}

fn keyids_text(keyids: &[String]) -> String {
    if keyids.is_empty() {
        "keys without a key id".into()
    } else {
        keyids.join(", ")
    }
}

impl VerifyError {
    /// True when the signature itself failed (changed content, wrong or missing key); false when
    /// the signed content could not be understood.
    pub fn is_signature_failure(&self) -> bool {
        matches!(self, VerifyError::NoSignatures | VerifyError::BadSignature { .. } | VerifyError::UntrustedKey { .. })
    }
}

/// A statement whose signature verified with a trusted key. Only [`Envelope::verify`] makes one.
#[derive(Debug, Clone)]
pub struct Verified {
    statement: Statement,
    keyid: String,
}

impl Verified {
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The key id of the trusted key whose signature verified.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }
}

#[derive(Serialize, Deserialize)]
struct EnvelopeJson {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Serialize, Deserialize)]
struct SignatureJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
    sig: String,
}

/// Standard or URL-safe base64, padded or not: DSSE verifiers must accept either alphabet.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    standard.decode(text).or_else(|_| url_safe.decode(text)).ok()
}

impl Envelope {
    /// Signs a statement: the payload is its canonical JSON.
    pub fn sign(statement: &Statement, key: &SigningKey) -> Self {
        Self::sign_payload(PAYLOAD_TYPE, statement.to_json(), key)
    }

    /// Signs any payload with its type.
    pub fn sign_payload(payload_type: &str, payload: Vec<u8>, key: &SigningKey) -> Self {
        let sig = key.sign(&pae(payload_type, &payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload,
            signatures: vec![EnvelopeSignature { keyid: Some(key.public_key().keyid().to_string()), sig }],
        }
    }

    /// The envelope as JSON (standard base64, pretty-printed, ending in a newline).
    pub fn to_json(&self) -> String {
        let json = EnvelopeJson {
            payload: STANDARD.encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| SignatureJson { keyid: s.keyid.clone(), sig: STANDARD.encode(&s.sig) })
                .collect(),
        };
        // Plain structs of strings cannot fail to serialise.
        let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads an envelope. An empty `keyid` counts as none.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let json: EnvelopeJson = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        if json.signatures.len() > MAX_SIGNATURES {
            return Err(EnvelopeError::TooManySignatures(json.signatures.len()));
        }
        let payload = decode_base64(&json.payload).ok_or(EnvelopeError::Base64("payload"))?;
        let signatures = json
            .signatures
            .into_iter()
            .map(|s| {
                let sig = decode_base64(&s.sig).ok_or(EnvelopeError::Base64("signature"))?;
                Ok(EnvelopeSignature { keyid: s.keyid.filter(|k| !k.is_empty()), sig })
            })
            .collect::<Result<_, EnvelopeError>>()?;
        Ok(Envelope { payload_type: json.payload_type, payload, signatures })
    }

    /// DSSE verification with a threshold of one: the first trusted key that verifies some
    /// signature over the PAE. Key id hints never decide; they only pick the error message.
    pub fn verify_signatures<'k>(&self, trusted: &'k [PublicKey]) -> Result<&'k PublicKey, VerifyError> {
        if trusted.is_empty() {
            return Err(VerifyError::NoTrustedKeys);
        }
        if self.signatures.is_empty() {
            return Err(VerifyError::NoSignatures);
        }
        let message = pae(&self.payload_type, &self.payload);
        for s in &self.signatures {
            if let Some(key) = trusted.iter().find(|k| k.verify(&message, &s.sig)) {
                return Ok(key);
            }
        }
        let named_trusted = self
            .signatures
            .iter()
            .filter_map(|s| s.keyid.as_deref())
            .find(|id| trusted.iter().any(|k| k.keyid() == *id));
        match named_trusted {
            Some(keyid) => Err(VerifyError::BadSignature { keyid: keyid.to_string() }),
            None => Err(VerifyError::UntrustedKey {
                keyids: self.signatures.iter().filter_map(|s| s.keyid.clone()).collect(),
            }),
        }
    }

    /// Verifies the signature with the trusted keys, then checks the payload type and reads the
    /// statement, in the order the DSSE protocol gives.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<Verified, VerifyError> {
        let key = self.verify_signatures(trusted)?;
        if self.payload_type != PAYLOAD_TYPE {
            return Err(VerifyError::PayloadType(self.payload_type.clone()));
        }
        let statement = Statement::from_json(&self.payload)?;
        Ok(Verified { statement, keyid: key.keyid().to_string() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_sort_by_component_and_bad_paths_are_refused() {
        let mut names = vec!["a-b", "a/b", "a", "b/c", "a/b/c"];
        names.sort_by(|a, b| path_order(a, b));
        assert_eq!(names, ["a", "a/b", "a/b/c", "a-b", "b/c"]);
        for bad in ["", "/abs", "a/../b", "a//b", "./a", "a/", "x\0y"] {
            assert!(Statement::new("m", vec![(bad.into(), [0; 32])], vec![]).is_err(), "{bad:?}");
        }
        assert!(Statement::new("m", vec![("a".into(), [0; 32]), ("a".into(), [1; 32])], vec![]).is_err());
    }

    #[test]
    fn compare_reports_one_problem_per_path_in_order() {
        let s = Statement::new("m", vec![("b".into(), [1; 32]), ("a".into(), [2; 32]), ("c".into(), [3; 32])], vec![])
            .unwrap();
        let observed = BTreeMap::from([
            ("a".to_string(), Observation::Digest([2; 32])),
            ("b".to_string(), Observation::Digest([9; 32])),
            ("d".to_string(), Observation::Digest([4; 32])),
            ("e".to_string(), Observation::Refused("symbolic link pointing outside the directory".into())),
        ]);
        let kinds: Vec<_> = s.compare(&observed).iter().map(|p| (p.kind(), p.path().to_string())).collect();
        assert_eq!(
            kinds,
            [("changed", "b".into()), ("missing", "c".into()), ("extra", "d".into()), ("refused", "e".into())]
        );
    }
}
