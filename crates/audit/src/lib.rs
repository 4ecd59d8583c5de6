//! The tamper-evident audit log, pure part: the record, its canonical encoding, the hash chain,
//! signed checkpoints, verification and export filters. Values in, values out: the sink
//! (`perimeter_store::audit_file`) reads the clock, draws randomness and does the file IO.
//!
//! A log is one or more segments (files). Each is a chain of JSON lines: record `n` carries the
//! hash of record `n-1`. The first record of a segment is a signed `segment` record (its
//! `prev_hash` is 64 zeros, or the last verified hash of the previous segment), and a signed
//! `checkpoint` follows at least every `checkpoint_every` records, so rewriting the chain needs
//! the signing key. What a chain alone cannot show: records cut from its end at a record
//! boundary. The signatures bound that to the unsealed tail (see [`Report::unsealed`]).

mod filter;
mod record;
mod seal;
mod verify;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use filter::Filter;
pub use record::{format_time, new_id, parse_time, query_hmac, Record, RecordKind, UnknownKind};
pub use seal::{
    canonical, key_id, parse_public_key, public_key_pem, record_hash, seal, seal_signed, signing_key_from_pem,
    signing_key_from_seed, signing_key_to_pem, Head, KeyError, Sealed, SIGNATURE_DOMAIN, ZERO_HASH,
};
pub use verify::{verify, Reason, Report, Status, Verifier, CHECKPOINT_EVERY};
pub use zeroize::Zeroizing;
