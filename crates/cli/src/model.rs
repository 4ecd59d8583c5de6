//! `perimeter model sign|verify|keygen`: signatures over whole model directories. This module
//! does the IO (walking the directory, hashing files in parallel, reading and writing keys,
//! drawing key seeds from the operating system); `perimeter_provenance::signing` builds the
//! statement, signs, verifies and compares.
//!
//! The signature file is a DSSE envelope around an OpenSSF model-signing statement (see that
//! module). It lists every regular file under the directory, except the signature file itself
//! when it lies inside; nothing else is ignored, whatever the statement's `ignore_paths` say. A
//! symbolic link to a file inside the directory is hashed as that file; a link that leaves the
//! directory, a link to a directory, and special files are refused (sign fails, verify reports
//! them).
//!
//! Exit codes of `verify`: 0 verified, 1 verification failed (the first problem is named), 2 an
//! input could not be read or parsed (directory, signature file, key). `sign` and `keygen` exit
//! 0 on success, 1 when `sign` refuses a file, 2 on unreadable or unwritable inputs.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use perimeter_provenance::signing::{
    Algorithm, Envelope, Observation, Problem, PublicKey, SigningKey, Statement, VerifyError, Zeroizing,
    DEFAULT_SIGNATURE_FILE,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Sign every file of a model directory: an OpenSSF model-signing statement (in-toto v1)
    /// in a DSSE envelope, written to DIR/model.sig.json unless --out says otherwise.
    Sign(SignArgs),
    /// Check a model directory against its signature with trusted public keys: every signed
    /// file must be there unchanged, and nothing else. Exit 0 verified, 1 failed, 2 unreadable.
    Verify(VerifyArgs),
    /// Make a key pair for `model sign`: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub
    /// (SPKI PEM).
    Keygen(KeygenArgs),
    /// Scan model files for malicious payloads without loading them (pickle, PyTorch,
    /// safetensors, GGUF, ONNX, Keras). Exit 0 clean, 1 unsafe, 2 could not be parsed.
    Scan(crate::model_scan::ScanArgs),
    /// Probe a backend for degradation and backdoor triggers with a suite of prompts.
    /// Exit 0 passed, 1 failed, 2 could not run.
    Canary(crate::canary::CanaryArgs),
}

#[derive(Args)]
pub struct SignArgs {
    /// The model directory.
    dir: PathBuf,
    /// Private key: PKCS#8 PEM, Ed25519 or P-256 (from `perimeter model keygen`).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Where to write the signature [default: DIR/model.sig.json].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The model's name in the statement [default: the directory's name].
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The model directory.
    dir: PathBuf,
    /// The signature file [default: DIR/model.sig.json].
    #[arg(long)]
    signature: Option<PathBuf>,
    /// A trusted public key (SPKI PEM); repeat for several. A signature by any of them counts.
    #[arg(long = "key", value_name = "PUBKEY", required = true)]
    keys: Vec<PathBuf>,
    /// Print one JSON document: {"verified", "model", "files", "bytes", "problems": [{"kind",
    /// "path", "message"}], "keyid"} (keyid: the trusted key whose signature verified, or null).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Writes PREFIX.key and PREFIX.pub; neither may exist.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "ed25519")]
    algorithm: KeyAlgorithm,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlgorithm {
    Ed25519,
    P256,
}

pub fn run(cmd: ModelCommand, config: &perimeter_config::Config) -> Result<i32> {
    let json = matches!(&cmd, ModelCommand::Verify(a) if a.json);
    let outcome = match cmd {
        ModelCommand::Scan(args) => crate::model_scan::run(args),
        ModelCommand::Canary(args) => crate::canary::run(config, args),
        ModelCommand::Sign(args) => sign(args),
        ModelCommand::Verify(args) => verify(args),
        ModelCommand::Keygen(args) => keygen(args),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if json {
                let report = serde_json::json!({
                    "verified": false, "model": null, "files": 0, "bytes": 0, "keyid": null,
                    "problems": [{"kind": "input", "path": null, "message": format!("{e:#}")}],
                });
                println!("{report}");
            }
            Ok(2)
        }
    }
}

/// Signature files larger than this are refused before they are read.
const MAX_SIGNATURE_BYTES: u64 = 256 << 20;
/// Files are read in chunks of this size.
const CHUNK: usize = 4 << 20;
/// Below this many bytes in all, no progress bar is drawn.
const PROGRESS_MIN_BYTES: u64 = 256 << 20;

fn sign(args: SignArgs) -> Result<i32> {
    let key = read_private_key(&args.key)?;
    let root = canonical_dir(&args.dir)?;
    let out = args.out.unwrap_or_else(|| root.join(DEFAULT_SIGNATURE_FILE));
    let out_abs = absolute_target(&out)?;
    let walked = walk(&root, Some(&out_abs))?;
    if !walked.refused.is_empty() {
        for (path, reason) in &walked.refused {
            println!("refused: {path}: {reason}");
        }
        eprintln!("error: not signed: {} entries cannot be signed safely", walked.refused.len());
        return Ok(1);
    }
    let bytes: u64 = walked.files.iter().map(|f| f.size).sum();
    let started = Instant::now();
    let hashed = hash_all(&walked.files, progress_bar(bytes, false));
    let mut files = Vec::with_capacity(hashed.len());
    for (path, obs) in hashed {
        match obs {
            Observation::Digest(d) => files.push((path, d)),
            Observation::Refused(reason) => bail!("{path}: {reason}"),
        }
    }
    let name = match args.name {
        Some(n) => n,
        None => root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
    };
    let ignore = out_abs.strip_prefix(&root).ok().map(relative_name).into_iter().collect();
    let statement = Statement::new(&name, files, ignore).context("the directory cannot be described")?;
    let envelope = Envelope::sign(&statement, &key);
    write_atomically(&out, envelope.to_json().as_bytes())?;
    println!(
        "signed {} files ({}) of {name} in {:.1} s with {} key {}",
        statement.resources().len(),
        HumanBytes(bytes),
        started.elapsed().as_secs_f64(),
        key.algorithm().name(),
        key.public_key().keyid()
    );
    println!("signature: {}", out.display());
    Ok(0)
}

fn verify(args: VerifyArgs) -> Result<i32> {
    let root = canonical_dir(&args.dir)?;
    let sig_path = args.signature.unwrap_or_else(|| root.join(DEFAULT_SIGNATURE_FILE));
    let envelope = read_envelope(&sig_path)?;
    let keys = args.keys.iter().map(|p| read_public_key(p)).collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let verified = match envelope.verify(&keys) {
        Ok(v) => v,
        Err(e) if e.is_signature_failure() => {
            let kind = if matches!(e, VerifyError::UntrustedKey { .. }) { "untrusted_key" } else { "signature" };
            let problem = Reported { kind, path: None, message: e.to_string() };
            report(args.json, None, 0, 0, &[problem], None, started);
            return Ok(1);
        }
        Err(e) => return Err(e).with_context(|| format!("{} is not a model signature", sig_path.display())),
    };
    let statement = verified.statement();
    let walked = walk(&root, Some(&absolute_target(&sig_path)?))?;
    let bytes: u64 = walked.files.iter().map(|f| f.size).sum();
    let mut observed: BTreeMap<String, Observation> =
        hash_all(&walked.files, progress_bar(bytes, args.json)).into_iter().collect();
    for (path, reason) in walked.refused {
        observed.insert(path, Observation::Refused(reason));
    }
    let problems: Vec<Reported> = statement.compare(&observed).iter().map(Reported::from).collect();
    report(
        args.json,
        Some(statement.name()),
        statement.resources().len(),
        bytes,
        &problems,
        Some(verified.keyid()),
        started,
    );
    Ok(if problems.is_empty() { 0 } else { 1 })
}

fn keygen(args: KeygenArgs) -> Result<i32> {
    let algorithm = match args.algorithm {
        KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
        KeyAlgorithm::P256 => Algorithm::P256,
    };
    let key_path = with_suffix(&args.out, ".key");
    let pub_path = with_suffix(&args.out, ".pub");
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            bail!("{} already exists; keygen never overwrites a key", p.display());
        }
    }
    let key = generate(algorithm)?;
    let private_pem = key.to_pkcs8_pem()?;
    let public_pem = key.public_key().to_spki_pem()?;
    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    write_new(&pub_path, public_pem.as_bytes(), 0o644)?;
    println!("private key: {} (mode 0600; keep it secret)", key_path.display());
    println!("public key:  {}", pub_path.display());
    println!("{} keyid {}", algorithm.name(), key.public_key().keyid());
    Ok(0)
}

/// A key from 32 bytes of operating-system randomness. A P-256 seed outside the group order
/// (probability about 2^-32) is drawn again.
fn generate(algorithm: Algorithm) -> Result<SigningKey> {
    for _ in 0..16 {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
        if let Ok(key) = SigningKey::from_seed(algorithm, &seed) {
            return Ok(key);
        }
    }
    bail!("could not draw a valid key seed")
}

/// One line or JSON member of the verify report.
struct Reported {
    kind: &'static str,
    path: Option<String>,
    message: String,
}

impl From<&Problem> for Reported {
    fn from(p: &Problem) -> Self {
        Reported { kind: p.kind(), path: Some(p.path().to_string()), message: p.to_string() }
    }
}

/// How many problems the human report lists after the first.
const MORE_PROBLEMS: usize = 19;

fn report(
    json: bool,
    model: Option<&str>,
    files: usize,
    bytes: u64,
    problems: &[Reported],
    keyid: Option<&str>,
    started: Instant,
) {
    let verified = problems.is_empty();
    if json {
        let problems: Vec<_> = problems
            .iter()
            .map(|p| serde_json::json!({"kind": p.kind, "path": p.path, "message": p.message}))
            .collect();
        let report = serde_json::json!({
            "verified": verified, "model": model, "files": files, "bytes": bytes,
            "problems": problems, "keyid": keyid,
        });
        println!("{report}");
        return;
    }
    let seconds = started.elapsed().as_secs_f64();
    match problems.split_first() {
        None => println!(
            "verified: {} files ({}) of {} in {seconds:.2} s ({:.2} GB/s), signed by {}",
            files,
            HumanBytes(bytes),
            model.unwrap_or("?"),
            bytes as f64 / seconds.max(1e-9) / 1e9,
            keyid.unwrap_or("?")
        ),
        Some((first, rest)) => {
            println!("FAILED: {}", first.message);
            for p in rest.iter().take(MORE_PROBLEMS) {
                println!("  also: {}", p.message);
            }
            if rest.len() > MORE_PROBLEMS {
                println!("  and {} more problems", rest.len() - MORE_PROBLEMS);
            }
        }
    }
}

/// A file to hash: its name in the statement, the path to open, and what the walk saw.
struct FileToHash {
    name: String,
    path: PathBuf,
    size: u64,
    id: FileId,
}

struct Walked {
    files: Vec<FileToHash>,
    /// Entries that are not read, by name, with the reason.
    refused: Vec<(String, String)>,
}

/// Lists the regular files under `root` (canonical), skipping `exclude` (an absolute path
/// whose directory is canonical). Links are resolved and must stay inside `root`.
fn walk(root: &Path, exclude: Option<&Path>) -> Result<Walked> {
    let mut walked = Walked { files: Vec::new(), refused: Vec::new() };
    for entry in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().min_depth(1) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let Some(path) = e.path() else { return Err(e).context("could not walk the model directory") };
                let name = path.strip_prefix(root).map(relative_name).unwrap_or_else(|_| path.display().to_string());
                walked.refused.push((name, format!("could not be read: {}", io_reason(&e.to_string()))));
                continue;
            }
        };
        let path = entry.path();
        let name = path.strip_prefix(root).map(relative_name).context("walked outside the model directory")?;
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        if Some(path) == exclude {
            continue;
        }
        if name.contains('\u{FFFD}') {
            walked.refused.push((name, "file name is not UTF-8".into()));
            continue;
        }
        if kind.is_file() {
            let meta = entry.metadata().with_context(|| format!("could not read {}", path.display()))?;
            walked.files.push(FileToHash { name, path: path.to_path_buf(), size: meta.len(), id: FileId::of(&meta) });
        } else if kind.is_symlink() {
            match fs::canonicalize(path) {
                Err(_) => walked.refused.push((name, "broken symbolic link".into())),
                Ok(target) if !target.starts_with(root) => {
                    walked.refused.push((name, "symbolic link pointing outside the directory (not followed)".into()))
                }
                Ok(target) => match fs::metadata(&target) {
                    Ok(meta) if meta.is_file() => {
                        walked.files.push(FileToHash { name, path: target, size: meta.len(), id: FileId::of(&meta) })
                    }
                    Ok(meta) if meta.is_dir() => {
                        walked.refused.push((name, "symbolic link to a directory (not followed)".into()))
                    }
                    Ok(_) => {
                        walked.refused.push((name, "symbolic link to something that is not a regular file".into()))
                    }
                    Err(e) => walked.refused.push((name, format!("could not be read: {e}"))),
                },
            }
        } else {
            walked.refused.push((name, "not a regular file (device, FIFO or socket)".into()));
        }
    }
    Ok(walked)
}

/// Hashes the files in parallel on the rayon pool, the largest first so that one big file does
/// not start last. The order of the result is the order of completion.
fn hash_all(files: &[FileToHash], bar: ProgressBar) -> Vec<(String, Observation)> {
    let mut order: Vec<&FileToHash> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.size));
    let results: Vec<(String, Observation)> =
        order.par_iter().with_max_len(1).map(|f| (f.name.clone(), hash_file(f, &bar))).collect();
    bar.finish_and_clear();
    results
}

/// SHA-256 of one file, read in large chunks so that memory stays small for any size. The file
/// that is opened must be the one the walk saw (same device and inode), so a file swapped for a
/// link or another file in between is refused.
fn hash_file(f: &FileToHash, bar: &ProgressBar) -> Observation {
    let mut file = match File::open(&f.path) {
        Ok(file) => file,
        Err(e) => return Observation::Refused(format!("could not be read: {e}")),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() && FileId::of(&meta) == f.id => {}
        Ok(_) => return Observation::Refused("changed while it was being checked".into()),
        Err(e) => return Observation::Refused(format!("could not be read: {e}")),
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; (f.size as usize).clamp(64 << 10, CHUNK)];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                bar.inc(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Observation::Refused(format!("could not be read: {e}")),
        }
    }
    Observation::Digest(hasher.finalize().into())
}

/// Which file a path named when it was looked at.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    #[cfg(unix)]
    fn of(meta: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileId { dev: meta.dev(), ino: meta.ino() }
    }

    #[cfg(not(unix))]
    fn of(meta: &fs::Metadata) -> Self {
        FileId { dev: 0, ino: meta.len() }
    }
}

/// Progress on stderr, only for a terminal, without --json, and for directories big enough to
/// take a while.
fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || total < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} hashing {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The path of a file relative to the model directory, with `/` separators.
fn relative_name(rel: &Path) -> String {
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Strips walkdir's "IO error for operation on PATH:" prefix down to the reason.
fn io_reason(message: &str) -> &str {
    message.rsplit(": ").next().unwrap_or(message)
}

fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    let root = fs::canonicalize(dir).with_context(|| format!("cannot open the model directory {}", dir.display()))?;
    if !root.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(root)
}

/// An absolute path for a file that may not exist yet: its directory made canonical.
fn absolute_target(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = fs::canonicalize(parent).with_context(|| format!("cannot open {}", parent.display()))?;
    Ok(parent.join(name))
}

fn read_private_key(path: &Path) -> Result<SigningKey> {
    let pem = Zeroizing::new(
        fs::read_to_string(path).with_context(|| format!("cannot read the private key {}", path.display()))?,
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                eprintln!("warning: {} can be read by other users; chmod 600 it", path.display());
            }
        }
    }
    SigningKey::from_pkcs8_pem(&pem).with_context(|| format!("{}", path.display()))
}

fn read_public_key(path: &Path) -> Result<PublicKey> {
    let pem = fs::read_to_string(path).with_context(|| format!("cannot read the public key {}", path.display()))?;
    PublicKey::from_spki_pem(&pem).with_context(|| format!("{}", path.display()))
}

fn read_envelope(path: &Path) -> Result<Envelope> {
    let file = File::open(path).with_context(|| format!("cannot read the signature {}", path.display()))?;
    let size = file.metadata().with_context(|| format!("cannot read the signature {}", path.display()))?.len();
    if size > MAX_SIGNATURE_BYTES {
        bail!("{} is {size} bytes; signatures over {MAX_SIGNATURE_BYTES} bytes are refused", path.display());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_SIGNATURE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the signature {}", path.display()))?;
    Envelope::from_json(&bytes).with_context(|| format!("{}", path.display()))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates a file that must not exist yet, with `mode` from the start (on Unix), so a private
/// key is never readable by others, not even for a moment.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes through a temporary file beside the target and a rename, so a reader never sees half
/// a signature.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = with_suffix(path, &format!(".tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, 0o644)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
