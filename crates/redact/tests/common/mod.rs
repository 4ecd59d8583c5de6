//! Input generators shared by the property tests and the stable run of the fuzz target: texts
//! rich in `<`, `>`, `_`, digits, multi-byte characters and literal placeholder-looking strings,
//! and spans on character boundaries.
#![allow(dead_code)]

use perimeter_redact::{Span, Tokens};
use perimeter_types::EntityKind;
use proptest::prelude::*;
use proptest::sample::select;

pub const KEY: &[u8] = b"property-test-key-0123456789";

/// Few kinds, so values collide across kinds and numbering per kind is exercised.
pub const KINDS: [EntityKind; 4] = [EntityKind::Person, EntityKind::Email, EntityKind::Iban, EntityKind::CreditCard];

const PIECES: &[&str] = &[
    "Alice",
    "Bob",
    "alice",
    "é",
    "日本",
    "🦀",
    " ",
    " ",
    "\n",
    "<",
    ">",
    "_",
    "1",
    "2",
    "a",
    "PERSON",
    "<PERSON_1>",
    "<PERSON_2>",
    "<EMAIL_1>",
    "<IBAN_1>",
    "<PERSON_",
    "_1>",
    "<PERSON_1",
    "<person_1>",
    "<<PERSON_1>>",
    "DE89 3704",
];

/// One piece of text: mostly from `PIECES`, sometimes any character at all.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![4 => select(PIECES).prop_map(String::from), 1 => any::<char>().prop_map(String::from)]
}

pub fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..40).prop_map(|v| v.concat())
}

/// Raw spans: a kind and two positions, turned into a valid span of a text by [`spans_in`].
pub fn raw_spans() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    prop::collection::vec((0..KINDS.len(), any::<usize>(), any::<usize>()), 0..12)
}

/// Valid spans of `text` (on character boundaries, possibly empty, overlapping and unsorted).
pub fn spans_in(text: &str, raw: &[(usize, usize, usize)]) -> Vec<Span> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    raw.iter()
        .map(|&(k, a, b)| {
            let (a, b) = (bounds[a % bounds.len()], bounds[b % bounds.len()]);
            Span::new(KINDS[k], a.min(b), a.max(b))
        })
        .collect()
}

pub fn tokens() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        Just(Tokens::Sequential),
        (8usize..=16).prop_map(|hex_len| Tokens::Keyed { key: KEY.to_vec(), hex_len })
    ]
}
