//! The audit record (what was decided and why, never the sensitive text), its kinds, UUIDv7 ids,
//! RFC 3339 times and the keyed fingerprint of a query. Times and randomness are inputs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A request was routed or denied; written before any byte goes to the backend.
    Decision,
    /// What happened after a routed request: tokens, cost, latency, outcome.
    Completion,
    /// A request refused before a decision (bad input, over a limit).
    Refusal,
    /// An unauthenticated or unauthorised request.
    AccessDenied,
    /// A model's files were verified (or failed to verify) before loading.
    ModelVerification,
    PolicyChange,
    KeyChange,
    /// A signed seal over the chain so far.
    Checkpoint,
    /// The signed first record of every segment (file); links to the previous segment.
    Segment,
}

impl RecordKind {
    pub const ALL: [RecordKind; 9] = [
        RecordKind::Decision,
        RecordKind::Completion,
        RecordKind::Refusal,
        RecordKind::AccessDenied,
        RecordKind::ModelVerification,
        RecordKind::PolicyChange,
        RecordKind::KeyChange,
        RecordKind::Checkpoint,
        RecordKind::Segment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Decision => "decision",
            RecordKind::Completion => "completion",
            RecordKind::Refusal => "refusal",
            RecordKind::AccessDenied => "access_denied",
            RecordKind::ModelVerification => "model_verification",
            RecordKind::PolicyChange => "policy_change",
            RecordKind::KeyChange => "key_change",
            RecordKind::Checkpoint => "checkpoint",
            RecordKind::Segment => "segment",
        }
    }

    /// Checkpoints and segment records carry an Ed25519 signature; no other kind does.
    pub fn is_signed(self) -> bool {
        matches!(self, RecordKind::Checkpoint | RecordKind::Segment)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown record kind; carries the accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record kind {0:?} (expected one of: decision, completion, refusal, access_denied, model_verification, policy_change, key_change, checkpoint, segment)")]
pub struct UnknownKind(pub String);

impl FromStr for RecordKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// One audit record. The JSON field order is the struct's; `None` options and empty collections
/// are left out. The canonical encoding (what is hashed and what is on disk) is serde_json's
/// compact output of this struct, so a line that parses but is not byte-for-byte that encoding is
/// refused by the verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 0-based position in the segment's chain; set by sealing.
    pub seq: u64,
    /// UUIDv7 (see [`new_id`]).
    pub id: String,
    /// RFC 3339 UTC with milliseconds (see [`format_time`]).
    pub time: String,
    pub kind: RecordKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The API key's id, never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Keyed HMAC-SHA256 of the query (hex, see [`query_hmac`]), never the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_hmac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Entity kinds with counts, never the values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entities: BTreeMap<String, u32>,
    /// Cited document ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<String>,
    /// `route` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Whether the text sent was pseudonymised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    /// Decimal string, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Links a decision record and its completion record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Free, non-sensitive extras (model name, verification result, key id changed, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
    /// Ed25519 signature (hex) of a checkpoint or segment record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Id of the signing key (see [`crate::key_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The previous record's `hash` (64 zeros for the first record of the first segment).
    pub prev_hash: String,
    /// SHA-256 (hex) of the canonical encoding of this record with `hash` empty.
    pub hash: String,
}

impl Record {
    /// An empty record of a kind; sealing fills `seq`, `prev_hash` and `hash`, the sink `id` and
    /// `time`.
    pub fn new(kind: RecordKind) -> Self {
        Record {
            seq: 0,
            id: String::new(),
            time: String::new(),
            kind,
            tenant: None,
            principal: None,
            query_hmac: None,
            level: None,
            entities: BTreeMap::new(),
            documents: Vec::new(),
            decision: None,
            backend: None,
            jurisdiction: None,
            reasons: Vec::new(),
            redaction: None,
            tokens_in: None,
            tokens_out: None,
            cost: None,
            latency_ms: None,
            outcome: None,
            request_id: None,
            detail: BTreeMap::new(),
            signature: None,
            key_id: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// `record.time` as Unix milliseconds, when it is a valid time.
    pub fn unix_millis(&self) -> Option<u64> {
        parse_time(&self.time)
    }
}

/// A UUIDv7 (RFC 9562) from a Unix time in milliseconds and 10 random bytes (74 bits are used).
pub fn new_id(unix_millis: u64, random: [u8; 10]) -> String {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&unix_millis.to_be_bytes()[2..]);
    b[6] = 0x70 | (random[0] & 0x0f);
    b[7] = random[1];
    b[8] = 0x80 | (random[2] & 0x3f);
    b[9..].copy_from_slice(&random[3..]);
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// HMAC-SHA256 of a query under the deployment's key, hex. Equal queries give equal
/// fingerprints under one key, so an auditor can match a known query without the log holding it.
#[expect(clippy::expect_used, reason = "HMAC accepts keys of any length; new_from_slice cannot fail")]
pub fn query_hmac(key: &[u8], text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds: `2026-11-29T08:15:02.123Z`.
pub fn format_time(unix_millis: u64) -> String {
    let secs = unix_millis / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, unix_millis % 1000)
}

/// Parses a time to Unix milliseconds: RFC 3339 (`2026-11-29T08:15:02Z`, fractions, offsets
/// such as `+01:00`, a space instead of `T`) or a plain date (`2026-11-29`, midnight UTC).
/// Times before 1970 and malformed input give `None`.
pub fn parse_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let mut millis = days * 86_400_000;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        millis += (h * 3600 + mi * 60 + sec) * 1000;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
            // Milliseconds: the first three digits, padded with zeros.
            let digits = &b[start..i];
            let mut frac = 0;
            for k in 0..3 {
                frac = frac * 10 + digits.get(k).map_or(0, |c| i64::from(c - b'0'));
            }
            millis += frac;
        }
        match b.get(i..)? {
            [b'Z' | b'z'] => {}
            [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let offset = (oh * 60 + om) * 60_000;
                millis += if *sign == b'+' { -offset } else { offset };
            }
            _ => return None,
        }
    }
    u64::try_from(millis).ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_parse_the_usual_forms() {
        for ms in [0, 1_764_403_200_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_time(&format_time(ms)), Some(ms), "{}", format_time(ms));
        }
        assert_eq!(format_time(1_764_403_200_123), "2025-11-29T08:00:00.123Z");
        assert_eq!(parse_time("2026-11-29"), parse_time("2026-11-29T00:00:00Z"));
        assert_eq!(parse_time("2026-11-29T01:00:00+01:00"), parse_time("2026-11-29T00:00:00.000Z"));
        assert_eq!(parse_time("2026-11-29 00:00:00.5Z"), parse_time("2026-11-29T00:00:00.500Z"));
        for bad in ["", "2026-13-01", "2026-02-30", "2026-11-29T", "2026-11-29T00:00:00", "1969-12-31", "yesterday"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_uuid_v7_with_the_time_first() {
        let id = new_id(1_764_403_200_123, [0xff; 10]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "7");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert!(new_id(1, [0; 10]) < new_id(2, [0; 10]));
    }

    #[test]
    fn query_fingerprints_depend_on_key_and_text() {
        let a = query_hmac(b"k1", "what is the dosage");
        assert_eq!(a.len(), 64);
        assert_eq!(a, query_hmac(b"k1", "what is the dosage"));
        assert_ne!(a, query_hmac(b"k2", "what is the dosage"));
        assert_ne!(a, query_hmac(b"k1", "what is the dosage?"));
    }

    #[test]
    fn kinds_parse_from_their_names() {
        for k in RecordKind::ALL {
            assert_eq!(k.as_str().parse::<RecordKind>(), Ok(k));
        }
        assert!("Decision".parse::<RecordKind>().is_err());
    }
}
