//! Reversible pseudonymisation: sensitive spans become placeholders such as `<PERSON_1>` before
//! text leaves the perimeter, and the placeholders in the answer become the original values again,
//! whole ([`restore`]) or chunk by chunk as it streams ([`Restorer`]).
//!
//! A text too large to hold is redacted in two passes: a [`LiteralScanner`] collects the
//! placeholder-looking strings it already contains, then a [`StreamRedactor`] redacts it window by
//! window with one numbering, exactly as [`redact`] would the whole.
//!
//! The crate is pure: text, spans and a key in, text and a [`Mapping`] out. It does no IO, reads
//! no clock and uses no randomness; even its maps are B-trees, so nothing is seeded by the OS and
//! the output depends only on the input.
//!
//! The invariant everything here serves: `restore(&redact(x, spans, t)?.text, &mapping) == x` for
//! every text `x`, including texts that already contain placeholder-looking strings. Placeholders
//! are chosen so that none of them occurs literally in the input (see [`redact`]).

mod literals;
mod mapping;
mod redact;
mod stream;

use std::fmt;

use perimeter_types::EntityKind;

pub use literals::{LiteralScanner, Literals};
pub use mapping::{restore, Mapping, Restorer};
pub use redact::{redact, redact_many};
pub use stream::{Head, StreamRedactor};

/// The shortest key [`Tokens::Keyed`] accepts, in bytes. A shorter key could be guessed, and
/// with it every value behind a keyed placeholder could be confirmed by trying candidates.
pub const MIN_KEY_LEN: usize = 16;
/// The shortest hex token [`Tokens::Keyed`] accepts.
pub const MIN_HEX_LEN: usize = 8;
/// The longest hex token [`Tokens::Keyed`] accepts.
pub const MAX_HEX_LEN: usize = 16;

/// A span to replace: kind and UTF-8 byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub kind: EntityKind,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(kind: EntityKind, start: usize, end: usize) -> Self {
        Span { kind, start, end }
    }
}

/// How placeholders are made.
#[derive(Clone)]
pub enum Tokens {
    /// `<PERSON_1>`, `<IBAN_2>`: numbered per kind in order of first appearance within one
    /// request. Numbers that occur literally in the input (`<PERSON_1>` typed by the user) are
    /// skipped.
    Sequential,
    /// `<PERSON_3f9a1c2b>`: the first `hex_len` lowercase hex characters of
    /// HMAC-SHA256(key, kind name || 0x00 || value), so the same value gets the same token across
    /// requests (joins) without revealing it. `hex_len` is `MIN_HEX_LEN..=MAX_HEX_LEN`; the key
    /// at least [`MIN_KEY_LEN`] bytes and never printed.
    ///
    /// Within one request a token is lengthened (more hex characters of the same MAC) when its
    /// short form is already taken by another value of the same kind or occurs literally in the
    /// input, so the same value may get a longer token in a request where that happens.
    Keyed { key: Vec<u8>, hex_len: usize },
}

impl Tokens {
    /// Keyed tokens with the key and length checked now rather than at the first [`redact`].
    pub fn keyed(key: Vec<u8>, hex_len: usize) -> Result<Self, RedactError> {
        let tokens = Tokens::Keyed { key, hex_len };
        tokens.validate()?;
        Ok(tokens)
    }

    pub(crate) fn validate(&self) -> Result<(), RedactError> {
        match self {
            Tokens::Sequential => Ok(()),
            Tokens::Keyed { key, .. } if key.len() < MIN_KEY_LEN => Err(RedactError::KeyTooShort),
            Tokens::Keyed { hex_len, .. } if !(MIN_HEX_LEN..=MAX_HEX_LEN).contains(hex_len) => {
                Err(RedactError::InvalidHexLen { hex_len: *hex_len })
            }
            Tokens::Keyed { .. } => Ok(()),
        }
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tokens::Sequential => f.write_str("Sequential"),
            Tokens::Keyed { key: _, hex_len } => {
                f.debug_struct("Keyed").field("key", &"<redacted>").field("hex_len", hex_len).finish()
            }
        }
    }
}

/// One text with its placeholders, and the way back.
#[derive(Debug, Clone)]
pub struct Redacted {
    /// The text with placeholders.
    pub text: String,
    /// Placeholder -> original value, kept in memory for [`restore`]; its `Debug` shows counts only.
    pub mapping: Mapping,
}

/// Several texts of one request redacted together (see [`redact_many`]): one numbering, one
/// mapping.
#[derive(Debug, Clone)]
pub struct RedactedMany {
    /// The texts with placeholders, in the order given.
    pub texts: Vec<String>,
    /// Placeholder -> original value for all of them.
    pub mapping: Mapping,
}

/// Why spans could not be redacted. Messages name positions only, never text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// From [`redact`]: span `index` (in the order given) is out of bounds, reversed or not on
    /// character boundaries.
    #[error("span {index} is out of bounds, reversed or not on a character boundary")]
    InvalidSpan { index: usize },
    /// From [`redact_many`]: span `index` of text `text` is out of bounds, reversed or not on
    /// character boundaries.
    #[error("span {index} of text {text} is out of bounds, reversed or not on a character boundary")]
    InvalidSpanInText { text: usize, index: usize },
    /// From [`StreamRedactor::push`]: the cut is past the end of the window or inside a character.
    #[error("cut {cut} is past the end of the window or not on a character boundary")]
    InvalidCut { cut: usize },
    #[error("keyed token length {hex_len} is outside {MIN_HEX_LEN}..={MAX_HEX_LEN}")]
    InvalidHexLen { hex_len: usize },
    #[error("the pseudonymisation key is shorter than {MIN_KEY_LEN} bytes")]
    KeyTooShort,
}
