//! Normalisation of untrusted text before matching, with a map from every normalised byte back
//! to the original bytes it came from.
//!
//! Pure ASCII is already in normal form and is scanned as is. Anything else is rewritten one
//! cluster at a time (a character and the combining marks that follow it): Unicode NFKC (which
//! folds full-width digits and letters, ligatures and most odd spaces), invisible characters
//! (zero-width space/joiners, word joiner, BOM, soft hyphen, bidi controls) dropped, the remaining
//! no-break and typographic spaces turned into a space, Unicode hyphens and minus signs into `-`,
//! and combining marks stacked on an ASCII character (`4̲1̲1̲1̲`) dropped. NFKC per cluster equals
//! NFKC of the whole string except for the rare compositions of two starters (conjoining Hangul
//! jamo, a few Indic vowel signs), which matter to no recogniser.

use std::borrow::Cow;
use std::sync::OnceLock;

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

use crate::scope::Runs;

/// Text as the recognisers see it. Recognisers report offsets into [`NormalizedText::as_str`];
/// the detector maps them back to the original with [`NormalizedText::to_original`].
#[derive(Debug)]
pub struct NormalizedText<'a> {
    original: &'a str,
    text: Cow<'a, str>,
    /// The normalised text in order, as pieces copied byte for byte and pieces that came from
    /// one cluster each. Empty when the text is unchanged.
    pieces: Vec<Piece>,
    /// For each 64 bytes of the normalised text, the piece holding its first byte, so a lookup
    /// is a step or two from there, even in a long text with many pieces.
    block_piece: Vec<usize>,
    /// Found on first use by a recogniser that searches runs (a `OnceLock`, so the text stays
    /// `Sync`).
    runs: OnceLock<Runs>,
}

/// Normalised bytes `start..end` came from original bytes `original..original_end`: one byte
/// each when `copied`, else all from that one cluster.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    original: usize,
    original_end: usize,
    copied: bool,
}

impl<'a> NormalizedText<'a> {
    /// Normalises `original`; free (no copy) when it is ASCII.
    pub fn new(original: &'a str) -> Self {
        let unchanged = |text| NormalizedText {
            original,
            text,
            pieces: Vec::new(),
            block_piece: Vec::new(),
            runs: OnceLock::new(),
        };
        if original.is_ascii() {
            return unchanged(Cow::Borrowed(original));
        }
        let bytes = original.as_bytes();
        let mut text = String::with_capacity(original.len());
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            // ASCII is copied as is, except an ASCII character right before a non-ASCII one,
            // which may be the base of combining marks.
            let ascii_end = bytes[at..].iter().position(|b| !b.is_ascii()).map_or(bytes.len(), |n| at + n);
            let copy_end = if ascii_end == bytes.len() { ascii_end } else { ascii_end.saturating_sub(1).max(at) };
            if copy_end > at {
                let start = text.len();
                text.push_str(&original[at..copy_end]);
                pieces.push(Piece { start, end: text.len(), original: at, original_end: copy_end, copied: true });
                at = copy_end;
                continue;
            }
            // A cluster: this character and the combining marks that follow it.
            let mut chars = original[at..].char_indices();
            let Some((_, c)) = chars.next() else { break };
            let mut end = at + c.len_utf8();
            for (i, d) in chars {
                if canonical_combining_class(d) == 0 || is_invisible(d) {
                    break;
                }
                end = at + i + d.len_utf8();
            }
            let start = text.len();
            // Most clusters are one character that NFKC and the folds leave alone (`é`, `ß`,
            // `ł`, a CJK ideograph): copied without running the normaliser's buffers.
            if end == at + c.len_utf8()
                && !is_invisible(c)
                && fold(c) == c
                && is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes
            {
                text.push(c);
                pieces.push(Piece { start, end: text.len(), original: at, original_end: end, copied: false });
                at = end;
                continue;
            }
            let mut base_ascii = None;
            for n in original[at..end].nfkc() {
                if is_invisible(n) {
                    continue;
                }
                // Marks on an ASCII base only hide it (NFKC already composed the ones that
                // make a letter like `é`).
                if base_ascii == Some(true) && canonical_combining_class(n) != 0 {
                    continue;
                }
                let n = fold(n);
                if base_ascii.is_none() {
                    base_ascii = Some(n.is_ascii());
                }
                text.push(n);
            }
            if text.len() > start {
                pieces.push(Piece { start, end: text.len(), original: at, original_end: end, copied: false });
            }
            at = end;
        }
        let mut block_piece = Vec::with_capacity(text.len() / 64 + 1);
        for (i, p) in pieces.iter().enumerate() {
            while block_piece.len() * 64 < p.end {
                block_piece.push(i);
            }
        }
        NormalizedText { pieces, block_piece, ..unchanged(Cow::Owned(text)) }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The runs of the normalised text (see [`Runs`]).
    pub(crate) fn runs(&self) -> &Runs {
        self.runs.get_or_init(|| Runs::new(&self.text))
    }

    /// The text as given.
    pub fn original(&self) -> &'a str {
        self.original
    }

    /// True when normalisation changed nothing, so offsets need no mapping.
    pub fn is_identity(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    /// Maps a normalised byte range to the original byte range covering the same characters.
    /// The result always lies on character boundaries of the original.
    pub fn to_original(&self, start: usize, end: usize) -> (usize, usize) {
        if self.is_identity() {
            return (start, end);
        }
        let len = self.text.len();
        if start >= len || end == 0 || start >= end {
            let at = if start < len { self.original_range(start).0 } else { self.original.len() };
            return (at, at);
        }
        (self.original_range(start).0, self.original_range(end.min(len) - 1).1)
    }

    /// The original bytes normalised byte `i` (< the text's length) came from.
    fn original_range(&self, i: usize) -> (usize, usize) {
        let mut at = self.block_piece[i / 64];
        while self.pieces[at].end <= i {
            at += 1;
        }
        let p = self.pieces[at];
        if p.copied {
            let at = p.original + (i - p.start);
            (at, at + 1)
        } else {
            (p.original, p.original_end)
        }
    }
}

/// Characters that render as nothing and are used to break up patterns.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
    )
}

/// Folds what NFKC leaves alone but a reader sees as ASCII punctuation.
fn fold(c: char) -> char {
    match c {
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => '-',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, normalised: &str) {
        let n = NormalizedText::new(input);
        assert_eq!(n.as_str(), normalised, "{input:?}");
        // Every normalised byte maps to a boundary pair of the original.
        for i in 0..n.as_str().len() {
            let (s, e) = n.to_original(i, i + 1);
            assert!(input.is_char_boundary(s) && input.is_char_boundary(e) && s < e, "{input:?} byte {i}");
        }
    }

    #[test]
    fn ascii_is_borrowed() {
        let n = NormalizedText::new("card 4111 1111 1111 1111");
        assert!(n.is_identity());
        assert_eq!(n.to_original(5, 9), (5, 9));
    }

    #[test]
    fn folds_and_maps() {
        check("４１１１", "4111");
        check("a\u{200B}b\u{FEFF}c\u{00AD}d", "abcd");
        check("020\u{00A0}7946\u{202F}0958", "020 7946 0958");
        check("e\u{301}", "é");
        check("4\u{332}1\u{332}", "41");
        check("\u{FB01}le", "file");
        check("12\u{2011}34\u{2013}5", "12-34-5");
        check("\u{200B}", "");
        // Characters NFKC keeps are copied as they are (the quick path), next to ones it folds.
        check("Zoë Müller, 東京 ł ß", "Zoë Müller, 東京 ł ß");
        check("é４ñ\u{FB01}", "é4ñfi");
    }

    #[test]
    fn ranges_cover_whole_original_characters() {
        let input = "x ４１\u{200B}１１ y";
        let n = NormalizedText::new(input);
        assert_eq!(n.as_str(), "x 4111 y");
        let (s, e) = n.to_original(2, 6);
        assert_eq!(&input[s..e], "４１\u{200B}１１");
        // Combining sequence: "é" (2 bytes) came from "e\u{301}" (3 bytes).
        let input = "Ren e\u{301}e";
        let n = NormalizedText::new(input);
        let (s, e) = n.to_original(4, n.as_str().len());
        assert_eq!(&input[s..e], "e\u{301}e");
    }

    /// The first implementation, one map entry per normalised byte: the pieces must map every
    /// range the same way.
    fn per_byte_maps(original: &str) -> (String, Vec<usize>, Vec<usize>) {
        let mut text = String::new();
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        let mut chars = original.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let mut end = start + c.len_utf8();
            if c.is_ascii() && chars.peek().is_none_or(|&(_, d)| d.is_ascii()) {
                text.push(c);
                starts.push(start);
                ends.push(end);
                continue;
            }
            while let Some(&(i, d)) = chars.peek() {
                if canonical_combining_class(d) == 0 || is_invisible(d) {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            let mut base_ascii = None;
            for n in original[start..end].nfkc() {
                if is_invisible(n) || (base_ascii == Some(true) && canonical_combining_class(n) != 0) {
                    continue;
                }
                let n = fold(n);
                base_ascii.get_or_insert(n.is_ascii());
                text.push(n);
            }
            starts.resize(text.len(), start);
            ends.resize(text.len(), end);
        }
        (text, starts, ends)
    }

    #[test]
    fn pieces_map_like_per_byte_maps() {
        let inputs = [
            "x ４１\u{200B}１１ y",
            "Ren e\u{301}e",
            "é",
            "e\u{301}\u{302}x\u{200B}\u{301}y",
            "\u{301}abc",
            "ab\u{200B}",
            "\u{200B}\u{200B}a",
            "4\u{332}1\u{332}1\u{332}",
            "Ticket #48213 — Billing\nCustomer: Zoë Jürgen café\u{00A0}ﬁle ４１１１",
            "a\u{FEFF}",
            "東京 Łukasz",
        ];
        for input in inputs {
            let n = NormalizedText::new(input);
            let (text, starts, ends) = per_byte_maps(input);
            assert_eq!(n.as_str(), text, "{input:?}");
            let len = starts.len();
            for start in 0..=len + 1 {
                for end in 0..=len + 1 {
                    let expected = if start >= len || end == 0 || start >= end {
                        let at = starts.get(start).copied().unwrap_or(input.len());
                        (at, at)
                    } else {
                        (starts[start], ends[end.min(len) - 1])
                    };
                    assert_eq!(n.to_original(start, end), expected, "{input:?} {start}..{end}");
                }
            }
        }
    }
}
