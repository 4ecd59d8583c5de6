//! Verification of a segment, line by line so a sink can stream a large file: canonical
//! encoding, hashes, the chain, `seq` continuity, signatures and checkpoint spacing. It stops at
//! the first bad record and names it; a last line without a newline is reported as torn.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::record::{Record, RecordKind};
use crate::seal::{canonical, key_id, record_hash, signature_valid, Head, Sealed, ZERO_HASH};

/// The detail key of a segment record that fixes the checkpoint spacing the verifier enforces.
pub const CHECKPOINT_EVERY: &str = "checkpoint_every";

/// Why a record is bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A complete line that is not a record (changed bytes, a stray newline, an inserted line).
    Unparseable,
    /// It parses, but its bytes are not the canonical encoding of what it says (changed bytes).
    NotCanonical,
    /// Its content does not match its hash (changed).
    HashMismatch,
    /// Its `seq` is higher than the next one: records before it were deleted.
    Deleted { expected: u64, found: u64 },
    /// Its `seq` is lower than the next one: records were reordered or inserted.
    Reordered { expected: u64, found: u64 },
    /// Its `prev_hash` is not the previous record's hash: a record was inserted or replaced.
    BrokenLink,
    /// The first record of a segment is not a segment record.
    NotASegmentStart,
    /// A checkpoint or segment record whose signature does not verify (forged).
    BadSignature,
    /// A checkpoint or segment record without a signature.
    MissingSignature,
    /// A signature on a kind that is never signed.
    UnexpectedSignature,
    /// Signed by another key than the one given.
    UnknownKey { key_id: String },
    /// More records since the last signed record than the segment's checkpoint spacing allows:
    /// checkpoints were removed.
    CheckpointMissing { since: u64, every: u64 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unparseable => f.write_str("not a valid record (changed, or an inserted line)"),
            Reason::NotCanonical => f.write_str("not in canonical form (bytes were changed)"),
            Reason::HashMismatch => f.write_str("its content does not match its hash (the record was changed)"),
            Reason::Deleted { expected, found } => {
                write!(f, "seq {found} where {expected} was expected (records were deleted)")
            }
            Reason::Reordered { expected, found } => {
                write!(f, "seq {found} where {expected} was expected (records were reordered or inserted)")
            }
            Reason::BrokenLink => {
                f.write_str("its prev_hash is not the previous record's hash (a record was inserted or replaced)")
            }
            Reason::NotASegmentStart => f.write_str("the first record is not a segment record"),
            Reason::BadSignature => f.write_str("its signature does not verify (forged checkpoint)"),
            Reason::MissingSignature => f.write_str("a checkpoint or segment record without a signature"),
            Reason::UnexpectedSignature => f.write_str("a signature on a record kind that is never signed"),
            Reason::UnknownKey { key_id } => write!(f, "signed by key {key_id}, not by the key given"),
            Reason::CheckpointMissing { since, every } => write!(
                f,
                "{since} records since the last checkpoint, more than the segment's {every} (checkpoints were removed)"
            ),
        }
    }
}

/// The outcome of verifying a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Intact,
    /// The first bad record: its 1-based line and, when it parsed, its `seq`.
    Tampered {
        line: u64,
        seq: Option<u64>,
        reason: Reason,
    },
    /// The last line has no newline: a write was cut short (a crash), or the file was truncated
    /// inside a record. Everything before it verified.
    Torn {
        line: u64,
        bytes: u64,
    },
}

impl Status {
    pub fn is_intact(&self) -> bool {
        matches!(self, Status::Intact)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Intact => f.write_str("intact"),
            Status::Tampered { line, seq: Some(seq), reason } => {
                write!(f, "tampered at line {line} (seq {seq}): {reason}")
            }
            Status::Tampered { line, seq: None, reason } => write!(f, "tampered at line {line}: {reason}"),
            Status::Torn { line, bytes } => {
                write!(f, "torn last record at line {line} ({bytes} bytes without a trailing newline)")
            }
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub status: Status,
    /// Records that verified, before the first bad one.
    pub records: u64,
    /// Signed records (checkpoints and segment records) among them.
    pub checkpoints: u64,
    /// Whether signatures were checked against a key (without one, only their presence is).
    pub signatures_checked: bool,
    /// The last verified record's `seq` and hash (the link a new segment starts from).
    pub last_seq: Option<u64>,
    pub last_hash: String,
    /// Verified records after the last signed one: not yet covered by a signature.
    pub unsealed: u64,
    /// The first record when it verified (a segment record: its link and detail).
    #[serde(skip)]
    pub first: Option<Record>,
}

/// Verifies a whole segment held in memory. See [`Verifier`] for the rules.
pub fn verify(bytes: &[u8], public_key: Option<&VerifyingKey>) -> Report {
    let mut v = Verifier::new(public_key);
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        if v.push_line(&rest[..end]).is_err() {
            return v.finish(b"");
        }
        rest = &rest[end + 1..];
    }
    v.finish(rest)
}

/// A streaming verifier. Feed it each complete line (without its newline), then the bytes after
/// the last newline to [`Verifier::finish`]. Rules: every line is the canonical encoding of a
/// record whose hash matches; `seq` runs 0, 1, 2…; each `prev_hash` is the previous hash; the
/// first record is a signed segment record (its `prev_hash` is 64 zeros or the link to the
/// previous segment); only checkpoint and segment records are signed, and with a key their
/// signatures verify; no more unsigned records follow a signed one than the segment's
/// `checkpoint_every`.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: Option<(VerifyingKey, String)>,
    line: u64,
    next_seq: u64,
    last_hash: String,
    records: u64,
    checkpoints: u64,
    last_signed_seq: u64,
    last_signed_millis: Option<u64>,
    every: Option<u64>,
    first: Option<Record>,
    problem: Option<Status>,
}

impl Verifier {
    pub fn new(public_key: Option<&VerifyingKey>) -> Self {
        Verifier {
            key: public_key.map(|k| (*k, key_id(k))),
            line: 0,
            next_seq: 0,
            last_hash: ZERO_HASH.to_string(),
            records: 0,
            checkpoints: 0,
            last_signed_seq: 0,
            last_signed_millis: None,
            every: None,
            first: None,
            problem: None,
        }
    }

    /// Verifies the next complete line. After the first bad line every call fails.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Record, Status> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        self.line += 1;
        match self.check(line) {
            Ok(record) => {
                self.accept(&record);
                Ok(record)
            }
            Err((seq, reason)) => {
                let status = Status::Tampered { line: self.line, seq, reason };
                self.problem = Some(status.clone());
                Err(status)
            }
        }
    }

    /// Moves the chain past a record this process sealed itself (no re-verification).
    pub fn advance(&mut self, sealed: &Sealed) {
        self.line += 1;
        self.accept(&sealed.record);
    }

    fn accept(&mut self, record: &Record) {
        if self.first.is_none() && record.seq == 0 {
            self.first = Some(record.clone());
            self.every = record.detail.get(CHECKPOINT_EVERY).and_then(|e| e.parse().ok()).filter(|&e| e > 0);
        }
        if record.kind.is_signed() {
            self.checkpoints += 1;
            self.last_signed_seq = record.seq;
            self.last_signed_millis = record.unix_millis();
        }
        self.next_seq = record.seq + 1;
        self.last_hash.clone_from(&record.hash);
        self.records += 1;
    }

    fn check(&self, line: &[u8]) -> Result<Record, (Option<u64>, Reason)> {
        let record: Record = serde_json::from_slice(line).map_err(|_| (None, Reason::Unparseable))?;
        let seq = Some(record.seq);
        if canonical(&record) != line {
            return Err((seq, Reason::NotCanonical));
        }
        if record_hash(&record) != record.hash {
            return Err((seq, Reason::HashMismatch));
        }
        if record.seq > self.next_seq {
            return Err((seq, Reason::Deleted { expected: self.next_seq, found: record.seq }));
        }
        if record.seq < self.next_seq {
            return Err((seq, Reason::Reordered { expected: self.next_seq, found: record.seq }));
        }
        if record.seq == 0 {
            if record.kind != RecordKind::Segment {
                return Err((seq, Reason::NotASegmentStart));
            }
        } else if record.prev_hash != self.last_hash {
            return Err((seq, Reason::BrokenLink));
        }
        if record.kind.is_signed() {
            let (Some(_), Some(kid)) = (&record.signature, &record.key_id) else {
                return Err((seq, Reason::MissingSignature));
            };
            if let Some((key, id)) = &self.key {
                if kid != id {
                    return Err((seq, Reason::UnknownKey { key_id: kid.clone() }));
                }
                if !signature_valid(&record, key) {
                    return Err((seq, Reason::BadSignature));
                }
            }
        } else {
            if record.signature.is_some() || record.key_id.is_some() {
                return Err((seq, Reason::UnexpectedSignature));
            }
            if let Some(every) = self.every {
                let since = record.seq - self.last_signed_seq;
                if since > every {
                    return Err((seq, Reason::CheckpointMissing { since, every }));
                }
            }
        }
        Ok(record)
    }

    /// The head after the last verified record.
    pub fn head(&self) -> Head {
        Head { next_seq: self.next_seq, hash: self.last_hash.clone() }
    }

    /// Verified records after the last signed one.
    pub fn since_signed(&self) -> u64 {
        if self.records == 0 {
            0
        } else {
            self.next_seq - 1 - self.last_signed_seq
        }
    }

    /// The time of the last signed record, when there is one.
    pub fn last_signed_millis(&self) -> Option<u64> {
        self.last_signed_millis
    }

    /// The segment's checkpoint spacing, from its first record.
    pub fn checkpoint_every(&self) -> Option<u64> {
        self.every
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Lines seen so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    pub fn failed(&self) -> Option<&Status> {
        self.problem.as_ref()
    }

    /// The report, given the bytes after the last newline (empty when the file ends with one).
    pub fn finish(self, tail: &[u8]) -> Report {
        let status = match self.problem {
            Some(problem) => problem,
            None if !tail.is_empty() => Status::Torn { line: self.line + 1, bytes: tail.len() as u64 },
            None => Status::Intact,
        };
        let unsealed = if self.records == 0 { 0 } else { self.next_seq - 1 - self.last_signed_seq };
        Report {
            status,
            records: self.records,
            checkpoints: self.checkpoints,
            signatures_checked: self.key.is_some(),
            last_seq: self.next_seq.checked_sub(1).filter(|_| self.records > 0),
            last_hash: self.last_hash,
            unsealed,
            first: self.first,
        }
    }
}
