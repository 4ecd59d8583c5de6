//! The audit log's embedded sink: append-only JSON-lines files under `<data>/audit/`, the keys
//! that go with them, verification of whole files and segments, and export. Sealing and
//! verifying are `perimeter_audit`'s (pure); this module reads the clock, draws randomness, locks,
//! writes and fsyncs.
//!
//! Layout of `<data>/audit/`:
//! - `audit.log`, then `audit.1.log`, `audit.2.log`… : segments. Each starts with a signed
//!   `segment` record; a later segment is started only when the current one does not verify and
//!   the operator asked for it (`AuditOptions::new_segment`), and its first record links to the
//!   last verified hash and the SHA-256 of the previous file and says why.
//! - `signing.key` (Ed25519, PKCS#8 PEM, mode 0600), `signing.pub` (SPKI PEM),
//!   `hmac.key` (32 random bytes, mode 0600: the key of `query_hmac`).
//!
//! Appends take an exclusive advisory lock (`flock`) on the segment for the duration of the
//! write, so `perimeter serve` and CLI commands can append at the same time; a writer that finds
//! the file longer than it left it reads and verifies the new tail before sealing onto it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use fs4::fs_std::FileExt;
use perimeter_audit::{
    format_time, new_id, parse_public_key, public_key_pem, query_hmac, seal, seal_signed, signing_key_from_pem,
    signing_key_from_seed, signing_key_to_pem, Filter, Head, KeyError, Record, RecordKind, Report, Sealed, SigningKey,
    Status, Verifier, VerifyingKey, Zeroizing, CHECKPOINT_EVERY, ZERO_HASH,
};
use sha2::{Digest, Sha256};

/// The folder under the data directory.
pub const AUDIT_DIR: &str = "audit";
/// The first segment.
pub const LOG_FILE: &str = "audit.log";
pub const SIGNING_KEY_FILE: &str = "signing.key";
pub const PUBLIC_KEY_FILE: &str = "signing.pub";
pub const HMAC_KEY_FILE: &str = "hmac.key";

/// A line longer than this is not a record; reading stops buffering there.
const MAX_LINE: u64 = 4 << 20;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// A record is on disk (`fdatasync`) before `append` returns, so one that was acknowledged
    /// survives a power cut. Concurrent appends share a flush (group commit), so the cost is
    /// about one flush per batch of requests in flight (0.1–2 ms on SSDs, more on network disks).
    #[default]
    Always,
    /// Leave it to the operating system: much faster, but a power cut (not a process crash)
    /// can lose the last seconds of records. The chain still verifies up to what was kept, so a
    /// loss shows only as a shorter log.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    pub fsync: Fsync,
    /// A signed checkpoint after this many records (default 1000). Recorded in a new segment's
    /// first record, which makes it the most a verifier accepts between two signatures.
    pub checkpoint_every: u64,
    /// …or at the first append once this many seconds have passed since the last (default 60).
    pub checkpoint_seconds: u64,
    /// When the current segment does not verify, start a new, linked one instead of refusing.
    pub new_segment: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { fsync: Fsync::Always, checkpoint_every: 1000, checkpoint_seconds: 60, new_segment: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{}: the audit log does not verify ({status}); refusing to append to it. Starting a new linked segment (the break stays on record) continues the log",
        path.display()
    )]
    Unverified { path: PathBuf, status: Status },
    #[error("{}: the file shrank from {expected} to {found} bytes after this process wrote to it (records were cut)", path.display())]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    #[error("{}: line {line} is not an audit record (run `perimeter audit verify`)", path.display())]
    Unreadable { path: PathBuf, line: u64 },
    #[error("{}: {source}", path.display())]
    Key { path: PathBuf, source: KeyError },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuditLogError + '_ {
    move |source| AuditLogError::Io { path: path.to_path_buf(), source }
}

/// `<data>/audit`.
pub fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(AUDIT_DIR)
}

/// The audit keys: the checkpoint signing key and the query HMAC key. Never printed.
pub struct AuditKeys {
    signing: SigningKey,
    hmac: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl AuditKeys {
    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn key_id(&self) -> String {
        perimeter_audit::key_id(&self.signing.verifying_key())
    }

    /// The key of [`query_hmac`].
    pub fn hmac_key(&self) -> &[u8] {
        &self.hmac
    }
}

/// What [`load_or_create_keys`] found or made.
#[derive(Debug)]
pub struct KeysInit {
    pub keys: AuditKeys,
    /// Whether any key file was created now.
    pub created: bool,
    pub dir: PathBuf,
}

/// Loads the audit keys under `<data>/audit/`, creating the folder and whichever key is missing
/// (idempotent; safe when several processes race: a key file appears whole or not at all, and
/// the loser of a race loads the winner's key). `signing.pub` is rewritten from `signing.key`
/// when missing.
pub fn load_or_create_keys(data_dir: &Path) -> Result<KeysInit, AuditLogError> {
    let dir = audit_dir(data_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut created = false;

    let key_path = dir.join(SIGNING_KEY_FILE);
    if !key_path.exists() {
        let mut seed = Zeroizing::new([0u8; 32]);
        random(seed.as_mut())?;
        let pem = signing_key_to_pem(&signing_key_from_seed(&seed))
            .map_err(|source| AuditLogError::Key { path: key_path.clone(), source })?;
        created |= write_new(&key_path, pem.as_bytes(), 0o600).map_err(io_err(&key_path))?;
    }
    let pem = Zeroizing::new(fs::read_to_string(&key_path).map_err(io_err(&key_path))?);
    let signing = signing_key_from_pem(&pem).map_err(|source| AuditLogError::Key { path: key_path.clone(), source })?;

    let pub_path = dir.join(PUBLIC_KEY_FILE);
    if !pub_path.exists() {
        let pem = public_key_pem(&signing.verifying_key())
            .map_err(|source| AuditLogError::Key { path: pub_path.clone(), source })?;
        created |= write_new(&pub_path, pem.as_bytes(), 0o644).map_err(io_err(&pub_path))?;
    }

    let hmac_path = dir.join(HMAC_KEY_FILE);
    if !hmac_path.exists() {
        let mut key = Zeroizing::new([0u8; 32]);
        random(key.as_mut())?;
        created |= write_new(&hmac_path, key.as_ref(), 0o600).map_err(io_err(&hmac_path))?;
    }
    let hmac = Zeroizing::new(fs::read(&hmac_path).map_err(io_err(&hmac_path))?);
    if hmac.len() < 32 {
        return Err(AuditLogError::Io {
            path: hmac_path,
            source: io::Error::new(io::ErrorKind::InvalidData, "the HMAC key is shorter than 32 bytes"),
        });
    }
    if created {
        sync_dir(&dir).map_err(io_err(&dir))?;
    }
    Ok(KeysInit { keys: AuditKeys { signing, hmac }, created, dir })
}

/// The public key that checks a log under `<data>/audit/`: derived from `signing.key` when it is
/// readable, else read from `signing.pub`; `None` when neither exists. (An attacker who can
/// rewrite the log may rewrite these too: auditors keep an exported copy and pass it.)
pub fn load_public_key(data_dir: &Path) -> Result<Option<VerifyingKey>, AuditLogError> {
    let dir = audit_dir(data_dir);
    let key_path = dir.join(SIGNING_KEY_FILE);
    if let Ok(pem) = fs::read_to_string(&key_path).map(Zeroizing::new) {
        let key = signing_key_from_pem(&pem).map_err(|source| AuditLogError::Key { path: key_path, source })?;
        return Ok(Some(key.verifying_key()));
    }
    read_public_key_file(&dir.join(PUBLIC_KEY_FILE)).map(Some).or_else(|e| match e {
        AuditLogError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Ok(None),
        e => Err(e),
    })
}

/// A public key file: SPKI PEM or 64 hex digits.
pub fn read_public_key_file(path: &Path) -> Result<VerifyingKey, AuditLogError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_public_key(&text).map_err(|source| AuditLogError::Key { path: path.to_path_buf(), source })
}

/// What [`AuditLog::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The segment appends go to.
    pub segment: PathBuf,
    /// Records in it after opening (including the ones written by opening).
    pub records: u64,
    /// Whether audit keys were created (the server logs it: `perimeter init` was never run).
    pub created_keys: bool,
    /// Whether the log was empty and a first segment was started.
    pub created_log: bool,
    /// When a new segment was started: what was wrong with the previous one.
    pub replaced: Option<(PathBuf, Status)>,
}

/// The append-only audit log. `append` takes `&self` and is safe from many threads and, through
/// a file lock, from several processes.
#[derive(Debug)]
pub struct AuditLog {
    data_dir: PathBuf,
    opts: AuditOptions,
    keys: AuditKeys,
    opened: Opened,
    inner: Mutex<Inner>,
    /// Group commit: bytes this process has written (all segments), and how many of them are
    /// known to be on disk. A thread that needs its record durable syncs once for every record
    /// written before it, so concurrent appends share one `fdatasync`.
    written: std::sync::atomic::AtomicU64,
    synced: Mutex<u64>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    verifier: Verifier,
    /// Bytes of the file this process has verified or written.
    offset: u64,
}

impl AuditLog {
    /// Opens (or creates) the log under `<data>/audit/`, creating missing keys, and verifies the
    /// current segment, streaming it. A segment that does not verify, or whose last record is
    /// torn, is refused with [`AuditLogError::Unverified`] naming the first bad record, unless
    /// `opts.new_segment`: then a new segment is started that links to its last verified record
    /// and records why. Nothing is ever truncated.
    pub fn open(data_dir: &Path, opts: AuditOptions) -> Result<AuditLog, AuditLogError> {
        let keys = load_or_create_keys(data_dir)?;
        let public = keys.keys.public_key();
        let existing = segments(data_dir)?;
        let path = existing.last().cloned().unwrap_or_else(|| audit_dir(data_dir).join(LOG_FILE));
        let file = open_append(&path)?;
        let lock = FileLock::exclusive(&file, &path)?;
        let mut verifier = Verifier::new(Some(&public));
        let scan = read_lines(&file, &path, 0, &mut verifier, true)?;
        let mut opened = Opened {
            segment: path.clone(),
            records: 0,
            created_keys: keys.created,
            created_log: false,
            replaced: None,
        };
        let status = verifier.clone().finish(&scan.tail).status;
        let mut inner = Inner { path: path.clone(), file, verifier, offset: scan.end };
        let new_segment = opts.new_segment;
        // Exactly one branch below builds the log.
        let build = move |inner: Inner, opened: Opened| AuditLog {
            data_dir: data_dir.to_path_buf(),
            opts,
            keys: keys.keys,
            opened,
            inner: Mutex::new(inner),
            written: Default::default(),
            synced: Mutex::new(0),
        };
        let log = if scan.end == 0 && scan.tail.is_empty() {
            // A new (or empty) log: its first segment record.
            let mut log = build(inner, opened);
            let mut inner = log.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let mut first = Record::new(RecordKind::Segment);
            first.reasons.push("new log".into());
            log.write_signed(&mut inner, first, Head::genesis())?;
            inner.file.sync_data().map_err(io_err(&path))?;
            sync_dir(&audit_dir(data_dir)).map_err(io_err(&path))?;
            drop(inner);
            log.opened.created_log = true;
            log
        } else if status.is_intact() {
            build(inner, opened)
        } else if !new_segment {
            return Err(AuditLogError::Unverified { path, status });
        } else {
            // Keep the old segment locked while the new one is made, so no one appends to it.
            let next = audit_dir(data_dir).join(format!("audit.{}.log", existing.len().max(1)));
            let file =
                OpenOptions::new().read(true).append(true).create_new(true).open(&next).map_err(io_err(&next))?;
            let _next_lock = FileLock::exclusive(&file, &next)?;
            let link = inner.verifier.head().hash;
            let last_seq = inner.verifier.records().checked_sub(1);
            inner = Inner { path: next.clone(), file, verifier: Verifier::new(Some(&public)), offset: 0 };
            opened.segment = next.clone();
            opened.replaced = Some((path.clone(), status.clone()));
            let log = build(inner, opened);
            let mut guard = log.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let mut first = Record::new(RecordKind::Segment);
            first.reasons.push(format!("the previous segment does not verify: {status}"));
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            first.detail.insert("previous_segment".into(), name);
            first.detail.insert("previous_sha256".into(), scan.sha256.clone());
            if let Some(seq) = last_seq {
                first.detail.insert("previous_last_seq".into(), seq.to_string());
            }
            log.write_signed(&mut guard, first, Head::linked(link))?;
            guard.file.sync_data().map_err(io_err(&next))?;
            sync_dir(&audit_dir(data_dir)).map_err(io_err(&next))?;
            drop(guard);
            log
        };
        drop(lock);
        let records = log.inner.lock().unwrap_or_else(PoisonError::into_inner).verifier.records();
        let mut log = log;
        log.opened.records = records;
        Ok(log)
    }

    /// Creates the data folder's audit keys if missing (`perimeter init`).
    pub fn keys_init(data_dir: &Path) -> Result<KeysInit, AuditLogError> {
        load_or_create_keys(data_dir)
    }

    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.keys.public_key()
    }

    pub fn key_id(&self) -> String {
        self.keys.key_id()
    }

    /// The keyed fingerprint of a query for `Record::query_hmac`.
    pub fn query_hmac(&self, text: &str) -> String {
        query_hmac(self.keys.hmac_key(), text)
    }

    /// Seals and appends a record: `seq`, `prev_hash`, `hash` and `time` (now) are set here, and
    /// `id` when empty (UUIDv7). A signed checkpoint follows when one is due. Returns the sealed
    /// record as written.
    pub fn append(&self, record: Record) -> Result<Sealed, AuditLogError> {
        self.append_with(record, true)
    }

    /// [`AuditLog::append`]; with `durable = false` the record is written (a process crash
    /// keeps it) but not flushed: the next durable append, checkpoint or the operating system
    /// flushes it. For records whose loss on a power cut is acceptable (a completion, whose
    /// routing record was flushed before the request went out).
    pub fn append_with(&self, record: Record, durable: bool) -> Result<Sealed, AuditLogError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = FileLock::exclusive(&inner.file, &inner.path)?;
        self.catch_up(&mut inner)?;
        let now = now_millis();
        let mut record = record;
        record.time = format_time(now);
        if record.id.is_empty() {
            record.id = fresh_id(now)?;
        }
        let sealed = seal(&inner.verifier.head(), record);
        self.write(&mut inner, &sealed)?;
        if self.checkpoint_due(&inner.verifier, now) {
            let head = inner.verifier.head();
            self.write_signed(&mut inner, Record::new(RecordKind::Checkpoint), head)?;
        }
        // The file lock goes before the mutex: the lock is shared by this process's handles (one
        // open file description), so releasing it while another thread of this process already
        // holds the mutex would let another process write in the middle of that thread's append.
        drop(lock);
        if durable {
            self.make_durable(inner)?;
        }
        Ok(sealed)
    }

    /// With `Fsync::Always`, returns once everything this process wrote up to now is on disk.
    /// The sync runs outside the log's lock, so other appends go on writing meanwhile, and one
    /// sync covers every record written before it started (group commit).
    fn make_durable(&self, inner: std::sync::MutexGuard<'_, Inner>) -> Result<(), AuditLogError> {
        if self.opts.fsync != Fsync::Always {
            return Ok(());
        }
        let mine = self.written.load(std::sync::atomic::Ordering::SeqCst);
        let path = inner.path.clone();
        let file = inner.file.try_clone().map_err(io_err(&path))?;
        drop(inner);
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if *synced >= mine {
            return Ok(());
        }
        // Everything counted in `written` was written before it was counted.
        let upto = self.written.load(std::sync::atomic::Ordering::SeqCst);
        file.sync_data().map_err(io_err(&path))?;
        *synced = upto;
        Ok(())
    }

    /// Writes a signed checkpoint now if any record follows the last one (the server calls this
    /// on a timer and at shutdown, so a clean log ends sealed).
    pub fn checkpoint_now(&self) -> Result<Option<Sealed>, AuditLogError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = FileLock::exclusive(&inner.file, &inner.path)?;
        self.catch_up(&mut inner)?;
        if inner.verifier.since_signed() == 0 {
            return Ok(None);
        }
        let head = inner.verifier.head();
        let sealed = self.write_signed(&mut inner, Record::new(RecordKind::Checkpoint), head)?;
        drop(lock); // before the mutex, as in `append_with`
        self.make_durable(inner)?;
        Ok(Some(sealed))
    }

    /// Records matching `filter`, over every segment (see [`export`]).
    pub fn export(&self, filter: &Filter) -> Result<Export, AuditLogError> {
        export(&self.data_dir, filter)
    }

    fn checkpoint_due(&self, v: &Verifier, now: u64) -> bool {
        let every = self.opts.checkpoint_every.min(v.checkpoint_every().unwrap_or(u64::MAX)).max(1);
        let since = v.since_signed();
        since >= every
            || (since > 0
                && v.last_signed_millis().is_some_and(|t| now.saturating_sub(t) >= self.opts.checkpoint_seconds * 1000))
    }

    fn write_signed(&self, inner: &mut Inner, mut record: Record, head: Head) -> Result<Sealed, AuditLogError> {
        let now = now_millis();
        record.time = format_time(now);
        record.id = fresh_id(now)?;
        if record.kind == RecordKind::Segment {
            record.detail.insert(CHECKPOINT_EVERY.into(), self.opts.checkpoint_every.max(1).to_string());
        }
        let sealed = seal_signed(&head, record, &self.keys.signing);
        self.write(inner, &sealed)?;
        Ok(sealed)
    }

    /// One `write` of the whole line. On failure the partial line is cut off again (it was never
    /// a record), so the next append does not build on a torn one.
    fn write(&self, inner: &mut Inner, sealed: &Sealed) -> Result<(), AuditLogError> {
        if let Err(e) = (&inner.file).write_all(&sealed.line) {
            let _ = inner.file.set_len(inner.offset);
            return Err(AuditLogError::Io { path: inner.path.clone(), source: e });
        }
        // Durability is the caller's `make_durable`, after the lock is released (group commit).
        inner.offset += sealed.line.len() as u64;
        inner.verifier.advance(sealed);
        self.written.fetch_add(sealed.line.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Reads and verifies what other writers appended since this process last wrote.
    fn catch_up(&self, inner: &mut Inner) -> Result<(), AuditLogError> {
        let len = inner.file.metadata().map_err(io_err(&inner.path))?.len();
        if len < inner.offset {
            return Err(AuditLogError::Truncated { path: inner.path.clone(), expected: inner.offset, found: len });
        }
        if len == inner.offset {
            return Ok(());
        }
        let scan = read_lines(&inner.file, &inner.path, inner.offset, &mut inner.verifier, false)?;
        if let Some(status) = inner.verifier.failed() {
            return Err(AuditLogError::Unverified { path: inner.path.clone(), status: status.clone() });
        }
        if !scan.tail.is_empty() {
            let status = Status::Torn { line: inner.verifier.lines() + 1, bytes: scan.tail.len() as u64 };
            return Err(AuditLogError::Unverified { path: inner.path.clone(), status });
        }
        inner.offset = scan.end;
        Ok(())
    }
}

/// The segments under `<data>/audit/`, in order: `audit.log`, `audit.1.log`, `audit.2.log`…
pub fn segments(data_dir: &Path) -> Result<Vec<PathBuf>, AuditLogError> {
    let dir = audit_dir(data_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditLogError::Io { path: dir, source: e }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let index = if name == LOG_FILE {
            Some(0)
        } else {
            name.strip_prefix("audit.").and_then(|r| r.strip_suffix(".log")).and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(i) = index {
            found.push((i, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// One segment's verification.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub report: Report,
    /// SHA-256 of the whole file (what a next segment's link records).
    pub sha256: String,
    /// What is wrong with its link to the previous segment, if anything.
    pub link_problem: Option<String>,
}

impl SegmentReport {
    pub fn is_intact(&self) -> bool {
        self.report.status.is_intact() && self.link_problem.is_none()
    }
}

/// Verifies one file, streaming it (memory stays flat for any size).
pub fn verify_file(path: &Path, key: Option<&VerifyingKey>) -> Result<SegmentReport, AuditLogError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut verifier = Verifier::new(key);
    let scan = read_lines(&file, path, 0, &mut verifier, true)?;
    Ok(SegmentReport {
        path: path.to_path_buf(),
        report: verifier.finish(&scan.tail),
        sha256: scan.sha256,
        link_problem: None,
    })
}

/// Verifies every segment under `<data>/audit/` and the links between them. A log with no
/// segment is an error (`NotFound`).
pub fn verify_log(data_dir: &Path, key: Option<&VerifyingKey>) -> Result<Vec<SegmentReport>, AuditLogError> {
    let paths = segments(data_dir)?;
    if paths.is_empty() {
        let path = audit_dir(data_dir).join(LOG_FILE);
        return Err(AuditLogError::Io { path, source: io::Error::from(io::ErrorKind::NotFound) });
    }
    let mut out: Vec<SegmentReport> = Vec::new();
    for path in paths {
        let mut seg = verify_file(&path, key)?;
        seg.link_problem = match (out.last(), &seg.report.first) {
            (_, None) => None,
            (None, Some(first)) if first.prev_hash != ZERO_HASH => {
                Some("the first segment links to a previous segment that is missing".into())
            }
            (None, Some(_)) => None,
            (Some(prev), Some(first)) => link_problem(prev, first),
        };
        out.push(seg);
    }
    Ok(out)
}

fn link_problem(prev: &SegmentReport, first: &Record) -> Option<String> {
    let prev_name = prev.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if first.detail.get("previous_segment") != Some(&prev_name) {
        return Some(format!("its segment record does not name {prev_name} as the previous segment"));
    }
    if first.prev_hash != prev.report.last_hash {
        return Some(format!("it does not link to the last verified record of {prev_name}"));
    }
    if first.detail.get("previous_sha256") != Some(&prev.sha256) {
        return Some(format!("{prev_name} changed after this segment was started (its SHA-256 differs)"));
    }
    None
}

/// A torn last line found while exporting (it is reported, never skipped silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub line: u64,
    pub bytes: u64,
}

/// Records matching a filter.
#[derive(Debug, Clone, Default)]
pub struct Export {
    pub records: Vec<Record>,
    pub torn: Vec<TornTail>,
}

/// Every record matching `filter` over all segments, in log order, up to `filter.limit`.
/// Export reads, it does not verify (that is `verify_log`); a complete line that is not a
/// record is an error naming it.
pub fn export(data_dir: &Path, filter: &Filter) -> Result<Export, AuditLogError> {
    let mut records = Vec::new();
    let torn = export_with(data_dir, filter, |r| {
        records.push(r);
        ControlFlow::Continue(())
    })?;
    Ok(Export { records, torn })
}

/// Streams the records matching `filter` to `visit` (which may stop early); returns torn tails.
pub fn export_with(
    data_dir: &Path,
    filter: &Filter,
    mut visit: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<Vec<TornTail>, AuditLogError> {
    let mut torn = Vec::new();
    let mut left = filter.limit.unwrap_or(usize::MAX);
    for path in segments(data_dir)? {
        if left == 0 {
            break;
        }
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            line += 1;
            if buf.last() != Some(&b'\n') {
                if n as u64 >= MAX_LINE {
                    return Err(AuditLogError::Unreadable { path, line });
                }
                torn.push(TornTail { path: path.clone(), line, bytes: buf.len() as u64 });
                break;
            }
            let record: Record = serde_json::from_slice(&buf[..buf.len() - 1])
                .map_err(|_| AuditLogError::Unreadable { path: path.clone(), line })?;
            if filter.matches(&record) {
                left -= 1;
                if visit(record).is_break() || left == 0 {
                    return Ok(torn);
                }
            }
        }
    }
    Ok(torn)
}

struct Scan {
    /// Offset just after the last complete line.
    end: u64,
    /// Bytes after the last newline.
    tail: Vec<u8>,
    /// SHA-256 of the whole file when asked for (from offset 0).
    sha256: String,
}

/// Feeds the complete lines from `from` to the end of the file to `verifier`.
fn read_lines(
    file: &File,
    path: &Path,
    from: u64,
    verifier: &mut Verifier,
    digest: bool,
) -> Result<Scan, AuditLogError> {
    let mut f = file;
    f.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut reader = BufReader::with_capacity(1 << 16, f);
    let mut hasher = Sha256::new();
    let mut buf = Vec::new();
    let mut end = from;
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        if digest {
            hasher.update(&buf);
        }
        if buf.last() == Some(&b'\n') {
            end += n as u64;
            let _ = verifier.push_line(&buf[..buf.len() - 1]);
        } else if n as u64 >= MAX_LINE {
            // Not a record and not a torn write either; the verifier names it.
            end += n as u64;
            let _ = verifier.push_line(&buf);
        } else {
            return Ok(Scan {
                end,
                tail: buf,
                sha256: if digest { hex::encode(hasher.finalize()) } else { String::new() },
            });
        }
    }
    Ok(Scan { end, tail: Vec::new(), sha256: if digest { hex::encode(hasher.finalize()) } else { String::new() } })
}

/// An exclusive `flock` held until dropped. It holds a duplicate of the descriptor: the lock
/// belongs to the open file description both share, so the log's own handle stays free to use.
struct FileLock {
    file: File,
}

impl FileLock {
    fn exclusive(file: &File, path: &Path) -> Result<Self, AuditLogError> {
        let file = file.try_clone().map_err(io_err(path))?;
        FileExt::lock_exclusive(&file).map_err(io_err(path))?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

fn open_append(path: &Path) -> Result<File, AuditLogError> {
    OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io_err(path))
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn random(buf: &mut [u8]) -> Result<(), AuditLogError> {
    getrandom::fill(buf).map_err(|e| AuditLogError::Random(e.to_string()))
}

fn fresh_id(now: u64) -> Result<String, AuditLogError> {
    let mut r = [0u8; 10];
    random(&mut r)?;
    Ok(new_id(now, r))
}

/// Writes a new file atomically and without replacing one that exists: a temporary file, then a
/// hard link to the final name. Returns whether this call created it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(tag)));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes a new directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
