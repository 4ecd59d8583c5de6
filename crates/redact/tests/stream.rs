//! Redaction of a text in windows: the literal scan in chunks equals the scan of the whole, and
//! the `StreamRedactor` over any sequence of cuts gives exactly the text and mapping `redact`
//! gives for the whole text, which restores to the input. Inputs are rich in placeholder-looking
//! strings, and some quote their own redacted form so that every placeholder `redact` would
//! choose first is present literally, cut across chunks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{raw_spans, spans_in, text, tokens};
use perimeter_redact::{
    redact, restore, Head, LiteralScanner, Literals, Mapping, RedactError, Span, StreamRedactor, Tokens,
};
use perimeter_types::EntityKind::{self, Email, Person};
use proptest::prelude::*;

/// The candidates of `text` that some placeholder could equal, written independently of the
/// crate's scanner: `<`, the next `>`, no `<` between, and between them a known kind, `_` and a
/// suffix of `0-9a-f_` of at most 85 bytes (64 hex digits, `_`, a `u64`).
fn placeholder_shaped(text: &str) -> BTreeSet<&str> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices('<') {
        let Some(j) = text[i + 1..].find('>') else { continue };
        let inner = &text[i + 1..i + 1 + j];
        let shaped = !inner.contains('<')
            && EntityKind::ALL.iter().any(|k| {
                inner.strip_prefix(k.as_str()).and_then(|r| r.strip_prefix('_')).is_some_and(|s| {
                    (1..=85).contains(&s.len())
                        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'_')
                })
            });
        if shaped {
            found.insert(&text[i..i + 1 + j + 1]);
        }
    }
    found
}

/// Scans `bytes` in chunks ending at `cuts` (any byte positions, also inside characters).
fn scan_in_chunks(bytes: &[u8], cuts: &[usize]) -> Literals {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut scanner = LiteralScanner::new();
    let mut last = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        scanner.push(&bytes[last..cut]);
        last = cut;
    }
    scanner.finish()
}

/// Redacts `text` as the CLI does: each window runs from where the last head ended to the end of
/// the text and carries the spans that start in it; the cut is the next of `cuts` (character
/// boundaries, taken in order; one that the last head already passed cuts at the window's start).
fn redact_in_windows(text: &str, spans: &[Span], cuts: &[usize], tokens: &Tokens, literals: Literals) -> Redacted {
    let mut redactor = StreamRedactor::new(tokens, literals).unwrap();
    let mut out = String::new();
    let mut base = 0;
    for cut in cuts.iter().copied().chain([text.len()]) {
        let window = &text[base..];
        let in_window: Vec<Span> =
            spans.iter().filter(|s| s.start >= base).map(|s| Span::new(s.kind, s.start - base, s.end - base)).collect();
        let cut = cut.max(base) - base;
        let Head { text: head, consumed } = redactor.push(window, &in_window, cut).unwrap();
        assert!(consumed >= cut && consumed <= window.len());
        out.push_str(&head);
        base += consumed;
    }
    assert_eq!(base, text.len());
    Redacted { text: out, mapping: redactor.finish() }
}

struct Redacted {
    text: String,
    mapping: Mapping,
}

fn char_cuts(text: &str, raw: &[usize]) -> Vec<usize> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let mut cuts: Vec<usize> = raw.iter().map(|c| bounds[c % bounds.len()]).collect();
    cuts.sort_unstable();
    cuts
}

/// The text, or the text followed by its own redacted form (so the first placeholders `redact`
/// would choose occur literally).
fn input(text: String, spans: &[Span], tokens: &Tokens, quote: bool) -> String {
    if quote {
        let first = redact(&text, spans, tokens).unwrap();
        format!("{text}{}", first.text)
    } else {
        text
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn scanning_literals_in_chunks_equals_scanning_the_whole(
        text in text(), raw in raw_spans(), tokens in tokens(), quote in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let text = input(text.clone(), &spans_in(&text, &raw), &tokens, quote);
        let whole = Literals::of(&text);
        prop_assert_eq!(&scan_in_chunks(text.as_bytes(), &cuts), &whole);
        let expected = placeholder_shaped(&text);
        prop_assert_eq!(whole.len(), expected.len());
        for p in expected {
            prop_assert!(whole.contains(p), "{} missing", p);
        }
    }

    #[test]
    fn streaming_in_windows_equals_redacting_the_whole(
        text in text(), raw in raw_spans(), tokens in tokens(), quote in any::<bool>(),
        byte_cuts in prop::collection::vec(any::<usize>(), 0..16),
        window_cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        // The spans of the text, valid in the quoted input too, and more over all of it.
        let mut spans = spans_in(&text, &raw);
        let text = input(text, &spans, &tokens, quote);
        spans.extend(spans_in(&text, &raw));
        let whole = redact(&text, &spans, &tokens).unwrap();
        let literals = scan_in_chunks(text.as_bytes(), &byte_cuts);
        let streamed = redact_in_windows(&text, &spans, &char_cuts(&text, &window_cuts), &tokens, literals);
        prop_assert_eq!(&streamed.text, &whole.text);
        prop_assert_eq!(&streamed.mapping, &whole.mapping);
        prop_assert_eq!(restore(&streamed.text, &streamed.mapping), text);
    }
}

#[test]
fn a_value_across_the_cut_ends_the_head_and_numbering_goes_on() {
    let literals = Literals::of("quoted: <EMAIL_1>");
    let mut r = StreamRedactor::new(&Tokens::Sequential, literals).unwrap();
    // "a@x.io" runs across the cut at 5; "b@y.io" starts after it and is left for the next window.
    let head = r.push("to a@x.io, b@y.io", &[Span::new(Email, 3, 9), Span::new(Email, 11, 17)], 5).unwrap();
    assert_eq!(head, Head { text: "to <EMAIL_2>".into(), consumed: 9 });
    let head = r.push(", b@y.io and a@x.io", &[Span::new(Email, 2, 8), Span::new(Email, 13, 19)], 19).unwrap();
    assert_eq!(head.text, ", <EMAIL_3> and <EMAIL_2>");
    let mapping = r.finish();
    let entries: Vec<_> = mapping.iter().collect();
    assert_eq!(entries, [("<EMAIL_2>", Email, "a@x.io"), ("<EMAIL_3>", Email, "b@y.io")]);
}

#[test]
fn a_span_dropped_for_an_overlap_does_not_move_the_head() {
    // The second span overlaps the first and is dropped, so the head ends at the cut, not at
    // its end; the third starts after the cut and is the next window's.
    let mut r = StreamRedactor::new(&Tokens::Sequential, Literals::default()).unwrap();
    let spans = [Span::new(Person, 0, 3), Span::new(Person, 1, 12), Span::new(Person, 8, 10)];
    let head = r.push("Ann and Bo, x", &spans, 6).unwrap();
    assert_eq!(head, Head { text: "<PERSON_1> an".into(), consumed: 6 });
}

#[test]
fn bad_cuts_and_spans_are_errors_and_redact_nothing() {
    let mut r = StreamRedactor::new(&Tokens::Sequential, Literals::default()).unwrap();
    assert_eq!(r.push("é", &[], 1), Err(RedactError::InvalidCut { cut: 1 }));
    assert_eq!(r.push("ab", &[], 3), Err(RedactError::InvalidCut { cut: 3 }));
    assert_eq!(
        r.push("ab", &[Span::new(Person, 0, 1), Span::new(Person, 1, 3)], 2),
        Err(RedactError::InvalidSpan { index: 1 })
    );
    assert!(r.mapping().is_empty());
    assert_eq!(r.push("", &[], 0).unwrap(), Head { text: String::new(), consumed: 0 });
    assert!(r.finish().is_empty());
    let short = Tokens::Keyed { key: b"short".to_vec(), hex_len: 8 };
    assert_eq!(StreamRedactor::new(&short, Literals::default()).err(), Some(RedactError::KeyTooShort));
}
