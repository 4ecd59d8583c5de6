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

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::UnicodeNormalization;

/// Text as the recognisers see it. Recognisers report offsets into [`NormalizedText::as_str`];
/// the detector maps them back to the original with [`NormalizedText::to_original`].
#[derive(Debug)]
pub struct NormalizedText<'a> {
    original: &'a str,
    text: Cow<'a, str>,
    /// For normalised byte `i`, the original byte range of the cluster it came from. Empty when
    /// the text is unchanged.
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl<'a> NormalizedText<'a> {
    /// Normalises `original`; free (no copy) when it is ASCII.
    pub fn new(original: &'a str) -> Self {
        if original.is_ascii() {
            return NormalizedText { original, text: Cow::Borrowed(original), starts: Vec::new(), ends: Vec::new() };
        }
        let mut text = String::with_capacity(original.len());
        let mut starts = Vec::with_capacity(original.len());
        let mut ends = Vec::with_capacity(original.len());
        let mut chars = original.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let mut end = start + c.len_utf8();
            if c.is_ascii() && chars.peek().is_none_or(|&(_, d)| d.is_ascii()) {
                text.push(c);
                starts.push(start);
                ends.push(end);
                continue;
            }
            // A cluster: this character and the combining marks that follow it.
            while let Some(&(i, d)) = chars.peek() {
                if canonical_combining_class(d) == 0 || is_invisible(d) {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            let before = text.len();
            let mut base_ascii = None;
            for n in original[start..end].nfkc() {
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
            starts.resize(text.len(), start);
            ends.resize(text.len(), end);
            debug_assert!(before <= text.len());
        }
        NormalizedText { original, text: Cow::Owned(text), starts, ends }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
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
        let len = self.starts.len();
        if start >= len || end == 0 || start >= end {
            let at = self.starts.get(start).copied().unwrap_or(self.original.len());
            return (at, at);
        }
        (self.starts[start], self.ends[end.min(len) - 1])
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
}
