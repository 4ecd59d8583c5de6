//! Properties of redaction over generated texts and spans, in both token modes: restoring is the
//! identity, the redacted text is exactly the unredacted parts with the expected placeholders
//! between them, no value survives outside those parts, and streaming restore equals whole-text
//! restore for every chunking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{raw_spans, spans_in, text, tokens, KEY};
use hmac::{Hmac, Mac};
use perimeter_redact::{redact, redact_many, restore, Mapping, Restorer, Span, Tokens};
use perimeter_types::EntityKind;
use proptest::prelude::*;
use sha2::Sha256;

/// Every `<…>` in `text` with no `<` inside: what `restore` would look up (written independently
/// of the crate's scanner).
fn literal_placeholders(text: &str) -> BTreeSet<&str> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices('<') {
        if let Some(j) = text[i + 1..].find('>') {
            let candidate = &text[i..i + 1 + j + 1];
            if !candidate[1..].contains('<') {
                found.insert(candidate);
            }
        }
    }
    found
}

/// The spans the brief says are kept: by start, longer first, earlier given first; a span that
/// overlaps a kept one is dropped; empty spans are ignored.
fn kept_spans(spans: &[Span]) -> Vec<Span> {
    let mut order: Vec<usize> = (0..spans.len()).filter(|&i| spans[i].start < spans[i].end).collect();
    order.sort_by_key(|&i| (spans[i].start, std::cmp::Reverse(spans[i].end), i));
    let mut kept: Vec<Span> = Vec::new();
    for i in order {
        if kept.last().is_none_or(|k| spans[i].start >= k.end) {
            kept.push(spans[i]);
        }
    }
    kept
}

/// The placeholders the brief asks for, given in order of first appearance: (kind, value) ->
/// placeholder.
fn expected_placeholders<'t>(
    texts: &[&'t str],
    kept: &[Vec<Span>],
    tokens: &Tokens,
) -> BTreeMap<(EntityKind, &'t str), String> {
    let literal: BTreeSet<&str> = texts.iter().flat_map(|t| literal_placeholders(t)).collect();
    let mut named: BTreeMap<(EntityKind, &str), String> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut next: BTreeMap<EntityKind, u64> = BTreeMap::new();
    for (text, spans) in texts.iter().zip(kept) {
        for s in spans {
            let value = &text[s.start..s.end];
            if named.contains_key(&(s.kind, value)) {
                continue;
            }
            let free = |p: &String| !literal.contains(p.as_str()) && !used.contains(p);
            let p = match tokens {
                Tokens::Sequential => {
                    let n = next.entry(s.kind).or_insert(1);
                    let mut p = format!("<{}_{n}>", s.kind);
                    while !free(&p) {
                        *n += 1;
                        p = format!("<{}_{n}>", s.kind);
                    }
                    *n += 1;
                    p
                }
                Tokens::Keyed { key, hex_len } => {
                    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
                    mac.update(format!("{}\0{value}", s.kind).as_bytes());
                    let digest = hex::encode(mac.finalize().into_bytes());
                    (*hex_len..=64)
                        .map(|len| format!("<{}_{}>", s.kind, &digest[..len]))
                        .find(|p| free(p))
                        .expect("a 64-hex-digit collision in a test")
                }
            };
            used.insert(p.clone());
            named.insert((s.kind, value), p);
        }
    }
    named
}

/// Whether an occurrence of `value` in a redacted text must lie inside an unredacted part: a
/// placeholder consists of ASCII letters, digits, `_`, `<` and `>`, so a value with no `<` or
/// `>` and some other character can neither straddle a placeholder's edge nor lie within one.
fn cannot_touch_a_placeholder(value: &str) -> bool {
    !value.contains(['<', '>']) && value.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_'))
}

fn restore_in_chunks(text: &str, mapping: &Mapping, cuts: &[usize]) -> String {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| bounds[c % bounds.len()]).collect();
    cuts.sort_unstable();
    let longest = mapping.iter().map(|(p, _, _)| p.len()).max().unwrap_or(0);
    let mut restorer = Restorer::new(mapping);
    let mut out = String::new();
    let mut last = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        out.push_str(&restorer.push(&text[last..cut]));
        assert!(restorer.pending() < longest.max(1), "held back {} bytes", restorer.pending());
        last = cut;
    }
    out.push_str(&restorer.finish());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn restore_of_redact_is_the_identity(text in text(), raw in raw_spans(), tokens in tokens()) {
        let spans = spans_in(&text, &raw);
        let r = redact(&text, &spans, &tokens).unwrap();
        prop_assert_eq!(restore(&r.text, &r.mapping), text.clone());
        // No placeholder occurs in the input, so restoring the input changes nothing either.
        prop_assert_eq!(restore(&text, &r.mapping), text);
    }

    #[test]
    fn the_redacted_text_is_the_unredacted_parts_and_the_expected_placeholders(
        text in text(), raw in raw_spans(), tokens in tokens(),
    ) {
        let spans = spans_in(&text, &raw);
        let r = redact(&text, &spans, &tokens).unwrap();
        let kept = kept_spans(&spans);
        let expected = expected_placeholders(&[&text], std::slice::from_ref(&kept), &tokens);

        // The mapping is exactly the expected one: injective both ways, in order of appearance.
        prop_assert_eq!(r.mapping.len(), expected.len());
        for (p, kind, value) in r.mapping.iter() {
            prop_assert_eq!(Some(p), expected.get(&(kind, value)).map(String::as_str));
            prop_assert_eq!(r.mapping.get(p), Some(value));
        }

        // The text: unredacted parts with the placeholders of the kept spans between them.
        let mut built = String::new();
        let mut unredacted = String::new();
        let mut last = 0;
        for s in &kept {
            built.push_str(&text[last..s.start]);
            built.push_str(&expected[&(s.kind, &text[s.start..s.end])]);
            unredacted.push_str(&text[last..s.start]);
            unredacted.push('\0');
            last = s.end;
        }
        built.push_str(&text[last..]);
        unredacted.push_str(&text[last..]);
        prop_assert_eq!(&r.text, &built);

        // No value survives outside the unredacted parts: a value that cannot overlap a placeholder
        // occurs in the redacted text only if it occurs in an unredacted part (the parts joined by
        // NUL, which the generator's pieces do not contain and a value containing it is skipped).
        for s in &kept {
            let value = &text[s.start..s.end];
            if cannot_touch_a_placeholder(value) && !value.contains('\0') {
                prop_assert_eq!(r.text.contains(value), unredacted.contains(value), "value {:?}", value);
            }
        }
    }

    #[test]
    fn restoring_in_chunks_equals_restoring_the_whole(
        text in text(), raw in raw_spans(), tokens in tokens(),
        picks in prop::collection::vec((any::<usize>(), 0usize..4, common::text()), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let spans = spans_in(&text, &raw);
        let r = redact(&text, &spans, &tokens).unwrap();
        let placeholders: Vec<&str> = r.mapping.iter().map(|(p, _, _)| p).collect();
        // An answer as a model might write it: the redacted text, then placeholders of the mapping
        // whole or cut short, and arbitrary text (with invented placeholders) between them.
        let mut answer = r.text.clone();
        for (pick, how, filler) in picks {
            if let Some(p) = placeholders.get(pick % placeholders.len().max(1)) {
                match how {
                    0 | 1 => answer.push_str(p),
                    2 => answer.push_str(&p[..p.len() - 1]),
                    _ => answer.push_str(&p[..p.len() / 2]),
                }
            }
            answer.push_str(&filler);
        }
        prop_assert_eq!(restore_in_chunks(&answer, &r.mapping, &cuts), restore(&answer, &r.mapping));
        prop_assert_eq!(restore_in_chunks(&r.text, &r.mapping, &cuts), text);
    }

    #[test]
    fn placeholders_from_an_earlier_redaction_in_the_input_are_not_reused(
        text in text(), raw in raw_spans(), tokens in tokens(),
    ) {
        // The input quotes its own redacted form, so every placeholder redact would choose for it
        // first is now literally present and must be avoided.
        let spans = spans_in(&text, &raw);
        let first = redact(&text, &spans, &tokens).unwrap();
        let quoted = format!("{text}{}", first.text);
        let second = redact(&quoted, &spans, &tokens).unwrap();
        prop_assert_eq!(restore(&second.text, &second.mapping), quoted.clone());
        for (p, _, _) in second.mapping.iter() {
            prop_assert!(first.mapping.get(p).is_none(), "{} reused", p);
        }
    }

    #[test]
    fn redact_many_shares_one_mapping_and_restores_each_text(
        items in prop::collection::vec((text(), raw_spans()), 0..4), keyed in any::<bool>(),
    ) {
        let tokens = if keyed { Tokens::Keyed { key: KEY.to_vec(), hex_len: 8 } } else { Tokens::Sequential };
        let spans: Vec<Vec<Span>> = items.iter().map(|(t, raw)| spans_in(t, raw)).collect();
        let inputs: Vec<(&str, &[Span])> = items.iter().zip(&spans).map(|((t, _), s)| (t.as_str(), s.as_slice())).collect();
        let r = redact_many(&inputs, &tokens).unwrap();
        let texts: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
        let kept: Vec<Vec<Span>> = spans.iter().map(|s| kept_spans(s)).collect();
        let expected = expected_placeholders(&texts, &kept, &tokens);
        prop_assert_eq!(r.mapping.len(), expected.len());
        for (p, kind, value) in r.mapping.iter() {
            prop_assert_eq!(Some(p), expected.get(&(kind, value)).map(String::as_str));
        }
        for (redacted, original) in r.texts.iter().zip(&texts) {
            prop_assert_eq!(&restore(redacted, &r.mapping), original);
        }
    }
}
