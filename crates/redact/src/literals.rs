//! The placeholder-shaped strings already present in an input: the names redaction must not
//! choose. [`LiteralScanner`] finds them in a text fed in chunks of bytes, so an input too large
//! to hold can be scanned in a first pass before it is redacted in a second.
//!
//! Only strings that some placeholder could equal are kept: a candidate (as `restore` reads
//! them, see `mapping.rs`) of the shape `<KIND_suffix>` for a known kind, with a suffix of
//! lowercase hex digits and `_` no longer than the longest suffix [`Tokens`](crate::Tokens) can
//! make. Every other candidate differs from every placeholder, so leaving it out changes no name
//! and keeps the set small: bounded by the number of distinct placeholder-shaped strings in the
//! input, and empty for ordinary text.

use std::collections::BTreeSet;
use std::fmt;

use perimeter_types::EntityKind;

/// The longest placeholder suffix: a whole SHA-256 in hex, `_` and a `u64` (keyed tokens past the
/// digest). Sequential numbers (at most 20 digits) are shorter.
const MAX_SUFFIX_LEN: usize = 64 + 1 + 20;

/// The placeholder-shaped literals of an input, from [`LiteralScanner::finish`] or
/// [`Literals::of`]. Its `Debug` shows the count only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Literals {
    set: BTreeSet<String>,
}

impl Literals {
    /// The literals of one whole text.
    pub fn of(text: &str) -> Self {
        let mut scanner = LiteralScanner::new();
        scanner.push(text.as_bytes());
        scanner.finish()
    }

    /// Whether `placeholder` occurs literally.
    pub fn contains(&self, placeholder: &str) -> bool {
        self.set.contains(placeholder)
    }

    /// The number of distinct literals.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Adds the literals of another text (candidates never span two texts).
    pub(crate) fn extend(&mut self, other: Literals) {
        self.set.extend(other.set);
    }
}

impl fmt::Debug for Literals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Literals").field("len", &self.len()).finish_non_exhaustive()
    }
}

/// Collects the [`Literals`] of a text given as consecutive chunks of its UTF-8 bytes, cut
/// anywhere (even inside a character or a literal): [`push`](LiteralScanner::push) each chunk in
/// order, then [`finish`](LiteralScanner::finish). The result equals [`Literals::of`] the whole
/// text for any chunking.
///
/// Pure and bounded: it holds the found set and at most one partial candidate of a bounded
/// length. The bytes need not be valid UTF-8 (`<` and `>` never occur inside a multi-byte
/// character), so validation can happen alongside, in the caller.
#[derive(Clone)]
pub struct LiteralScanner {
    /// From the last `<` on, while that could still begin a placeholder-shaped candidate.
    held: Vec<u8>,
    /// Whether `held` is live; when false the bytes up to the next `<` are of no interest.
    open: bool,
    /// The longest candidate that can be placeholder-shaped, `<` and `>` included.
    max_len: usize,
    found: BTreeSet<String>,
}

impl LiteralScanner {
    pub fn new() -> Self {
        let max_kind = EntityKind::ALL.iter().map(|k| k.as_str().len()).max().unwrap_or(0);
        let max_len = 1 + max_kind + 1 + MAX_SUFFIX_LEN + 1;
        LiteralScanner { held: Vec::with_capacity(max_len), open: false, max_len, found: BTreeSet::new() }
    }

    /// Scans the next chunk of the text.
    pub fn push(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if !self.open {
                // Skip to the next `<`: nothing before it can start a candidate.
                match rest.iter().position(|&b| b == b'<') {
                    None => return,
                    Some(i) => {
                        self.held.clear();
                        self.held.push(b'<');
                        self.open = true;
                        rest = &rest[i + 1..];
                    }
                }
                continue;
            }
            let b = rest[0];
            rest = &rest[1..];
            match b {
                b'<' => {
                    // A new candidate starts; the open one was not closed, so it is none.
                    self.held.clear();
                    self.held.push(b'<');
                }
                b'>' => {
                    self.held.push(b'>');
                    if is_placeholder_shaped(&self.held) {
                        // Every byte held is ASCII (see `could_continue`).
                        self.found.insert(self.held.iter().map(|&b| char::from(b)).collect());
                    }
                    self.open = false;
                }
                _ if could_continue(b) && self.held.len() + 1 < self.max_len => self.held.push(b),
                _ => self.open = false,
            }
        }
    }

    /// The literals found. A candidate still open at the end was never closed, so it is none.
    pub fn finish(self) -> Literals {
        Literals { set: self.found }
    }
}

impl Default for LiteralScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LiteralScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteralScanner").field("found", &self.found.len()).finish_non_exhaustive()
    }
}

/// Bytes that may stand between `<` and `>` of a placeholder: kind names are `A-Z` and `_`,
/// suffixes `0-9`, `a-f` and `_`.
fn could_continue(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'a'..=b'f' | b'_')
}

/// `<KIND_suffix>` for a known kind, with a suffix of `0-9a-f_` no longer than any placeholder's.
fn is_placeholder_shaped(candidate: &[u8]) -> bool {
    let Some(inner) = candidate.strip_prefix(b"<").and_then(|c| c.strip_suffix(b">")) else {
        return false;
    };
    EntityKind::ALL.iter().any(|kind| {
        inner.strip_prefix(kind.as_str().as_bytes()).and_then(|rest| rest.strip_prefix(b"_")).is_some_and(|suffix| {
            !suffix.is_empty()
                && suffix.len() <= MAX_SUFFIX_LEN
                && suffix.iter().all(|&b| b.is_ascii_digit() || matches!(b, b'a'..=b'f' | b'_'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(chunks: &[&[u8]]) -> Vec<String> {
        let mut scanner = LiteralScanner::new();
        for c in chunks {
            scanner.push(c);
        }
        scanner.finish().set.into_iter().collect()
    }

    #[test]
    fn only_placeholder_shaped_candidates_are_kept() {
        let text = b"<EMAIL_1> <PERSON_3f9a1c2b> <CREDIT_CARD_12> <EMAIL_> <EMAIL_X> <div> <FOO_1> <email_1> \
                     <<IBAN_2>> <IBAN_3 <IBAN_4>";
        assert_eq!(
            found(&[text]),
            ["<CREDIT_CARD_12>", "<EMAIL_1>", "<IBAN_2>", "<IBAN_4>", "<PERSON_3f9a1c2b>"].map(String::from)
        );
    }

    #[test]
    fn a_literal_split_across_chunks_is_found() {
        let text = "x <EMAIL_1> y <IBAN_2>";
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(found(&[a, b]), ["<EMAIL_1>", "<IBAN_2>"].map(String::from), "cut at {cut}");
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(found(&bytes), ["<EMAIL_1>", "<IBAN_2>"].map(String::from));
    }

    #[test]
    fn the_longest_placeholders_fit_and_longer_candidates_are_dropped() {
        let digest = "0123456789abcdef".repeat(4);
        let longest = format!("<MEDICAL_RECORD_NUMBER_{digest}_{}>", u64::MAX);
        assert_eq!(found(&[longest.as_bytes()]), [longest]);
        let longer = format!("<MEDICAL_RECORD_NUMBER_{digest}_{}0>", u64::MAX);
        assert!(found(&[longer.as_bytes()]).is_empty());
        // A long run is dropped without being held, and the scan goes on after it.
        let run = format!("<EMAIL_{}> <EMAIL_2>", "1".repeat(1 << 16));
        assert_eq!(found(&[run.as_bytes()]), ["<EMAIL_2>"]);
    }
}
