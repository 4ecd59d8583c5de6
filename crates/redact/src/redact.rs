//! Redaction: choosing which spans to replace, naming each distinct value once, and writing the
//! texts with placeholders.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use perimeter_types::EntityKind;
use sha2::Sha256;

use crate::literals::Literals;
use crate::mapping::Mapping;
use crate::{RedactError, Redacted, RedactedMany, Span, Tokens};

/// Replaces `spans` of `text` by placeholders.
///
/// Spans may come in any order and overlap: they are taken by start, and a span that overlaps
/// one already taken is dropped (of two with the same start the longer is taken; of two equal
/// ranges the one given first). Empty spans are ignored. A span out of bounds, reversed
/// (`start > end`) or not on character boundaries is an error and nothing is redacted.
///
/// The same kind and exact value always get the same placeholder; different values never share
/// one. No placeholder chosen occurs literally in `text`, so restoring gives `text` back exactly.
pub fn redact(text: &str, spans: &[Span], tokens: &Tokens) -> Result<Redacted, RedactError> {
    let mut many = redact_many(&[(text, spans)], tokens).map_err(|e| match e {
        RedactError::InvalidSpanInText { index, .. } => RedactError::InvalidSpan { index },
        other => other,
    })?;
    let text = many.texts.pop().unwrap_or_default();
    Ok(Redacted { text, mapping: many.mapping })
}

/// Redacts several texts of one request (system prompt, retrieved passages, the question) with
/// one numbering and one mapping, so `<PERSON_1>` means the same person in all of them and one
/// [`restore`](crate::restore) serves the answer. Same rules as [`redact`], with the literal
/// placeholder check across all texts.
pub fn redact_many(inputs: &[(&str, &[Span])], tokens: &Tokens) -> Result<RedactedMany, RedactError> {
    tokens.validate()?;
    let chosen = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, spans))| {
            choose(text, spans).map_err(|index| RedactError::InvalidSpanInText { text: i, index })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut literals = Literals::default();
    for (text, _) in inputs {
        literals.extend(Literals::of(text));
    }
    let mut namer = Namer::new(tokens, literals)?;
    let mut texts = Vec::with_capacity(inputs.len());
    for ((text, _), spans) in inputs.iter().zip(&chosen) {
        let mut out = String::with_capacity(text.len());
        let end = namer.write(text, spans, &mut out);
        out.push_str(&text[end..]);
        texts.push(out);
    }
    Ok(RedactedMany { texts, mapping: namer.mapping })
}

/// The spans to replace, sorted and without overlaps; `Err(index)` names the first invalid one.
pub(crate) fn choose(text: &str, spans: &[Span]) -> Result<Vec<Span>, usize> {
    let valid = |s: &Span| s.start <= s.end && text.is_char_boundary(s.start) && text.is_char_boundary(s.end);
    if let Some(index) = spans.iter().position(|s| !valid(s)) {
        return Err(index);
    }
    let mut sorted: Vec<Span> = spans.iter().copied().filter(|s| s.start < s.end).collect();
    // Stable: of two equal ranges the one given first stays first.
    sorted.sort_by_key(|s| (s.start, Reverse(s.end)));
    let mut kept: Vec<Span> = Vec::with_capacity(sorted.len());
    let mut end = 0;
    for span in sorted {
        if span.start >= end {
            end = span.end;
            kept.push(span);
        }
    }
    Ok(kept)
}

/// Gives each distinct (kind, value) its placeholder and records it in the mapping. It owns
/// what it keeps, so one namer can serve a text that arrives in windows ([`StreamRedactor`](crate::StreamRedactor)).
pub(crate) struct Namer {
    scheme: Scheme,
    /// Every placeholder-shaped `<…>` in the inputs: no placeholder may be one of them.
    literals: Literals,
    /// Kind → value → mapping entry. Nested so that a look-up borrows the value.
    named: BTreeMap<EntityKind, BTreeMap<String, usize>>,
    pub(crate) mapping: Mapping,
}

enum Scheme {
    Sequential { next: BTreeMap<EntityKind, u64> },
    Keyed { mac: Box<Hmac<Sha256>>, hex_len: usize },
}

impl Namer {
    /// `tokens` must have been validated.
    pub(crate) fn new(tokens: &Tokens, literals: Literals) -> Result<Self, RedactError> {
        let scheme = match tokens {
            Tokens::Sequential => Scheme::Sequential { next: BTreeMap::new() },
            Tokens::Keyed { key, hex_len } => {
                // HMAC takes keys of any length; the error exists for fixed-length MACs.
                let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| RedactError::KeyTooShort)?;
                Scheme::Keyed { mac: Box::new(mac), hex_len: *hex_len }
            }
        };
        Ok(Namer { scheme, literals, named: BTreeMap::new(), mapping: Mapping::default() })
    }

    /// Writes `text` up to the end of the last of `spans` (chosen: sorted, disjoint, valid) to
    /// `out` with each span replaced by its placeholder; returns that end.
    pub(crate) fn write(&mut self, text: &str, spans: &[Span], out: &mut String) -> usize {
        let mut last = 0;
        for span in spans {
            out.push_str(&text[last..span.start]);
            let entry = self.name(span.kind, &text[span.start..span.end]);
            out.push_str(self.mapping.placeholder_at(entry));
            last = span.end;
        }
        last
    }

    /// The mapping entry for `value`, made on first sight.
    fn name(&mut self, kind: EntityKind, value: &str) -> usize {
        if let Some(&entry) = self.named.get(&kind).and_then(|values| values.get(value)) {
            return entry;
        }
        let taken = |p: &str| self.literals.contains(p) || self.mapping.get(p).is_some();
        let placeholder = match &mut self.scheme {
            Scheme::Sequential { next } => {
                let n = next.entry(kind).or_insert(1);
                loop {
                    let p = format!("<{}_{}>", kind.as_str(), n);
                    *n += 1;
                    if !taken(&p) {
                        break p;
                    }
                }
            }
            Scheme::Keyed { mac, hex_len } => {
                let mut mac = mac.as_ref().clone();
                mac.update(kind.as_str().as_bytes());
                mac.update(&[0]);
                mac.update(value.as_bytes());
                let digest = hex::encode(mac.finalize().into_bytes());
                keyed_placeholder(kind, &digest, *hex_len, taken)
            }
        };
        let entry = self.mapping.push(placeholder, kind, value.to_owned());
        self.named.entry(kind).or_default().insert(value.to_owned(), entry);
        entry
    }
}

/// The shortest prefix of `digest` (at least `hex_len` characters) whose placeholder is free;
/// past the whole digest, a numeric suffix. Some placeholder is always free: only finitely many
/// are taken.
fn keyed_placeholder(kind: EntityKind, digest: &str, hex_len: usize, taken: impl Fn(&str) -> bool) -> String {
    for len in hex_len..=digest.len() {
        let p = format!("<{}_{}>", kind.as_str(), &digest[..len]);
        if !taken(&p) {
            return p;
        }
    }
    let mut n: u64 = 2;
    loop {
        let p = format!("<{}_{}_{}>", kind.as_str(), digest, n);
        if !taken(&p) {
            return p;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_placeholders_lengthen_then_take_a_suffix_when_taken() {
        let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let person = EntityKind::Person;
        assert_eq!(keyed_placeholder(person, digest, 8, |_| false), "<PERSON_01234567>");
        let short = |p: &str| p == "<PERSON_01234567>" || p == "<PERSON_012345678>";
        assert_eq!(keyed_placeholder(person, digest, 8, short), "<PERSON_0123456789>");
        let all_hex = |p: &str| !p.ends_with("_2>");
        assert_eq!(keyed_placeholder(person, digest, 8, all_hex), format!("<PERSON_{digest}_2>"));
    }

    #[test]
    fn choose_sorts_drops_overlaps_and_ignores_empty_spans() {
        let p = EntityKind::Person;
        let e = EntityKind::Email;
        let spans =
            [Span::new(e, 6, 9), Span::new(p, 0, 3), Span::new(p, 0, 5), Span::new(e, 4, 7), Span::new(p, 9, 9)];
        assert_eq!(choose("abcdefghijkl", &spans), Ok(vec![Span::new(p, 0, 5), Span::new(e, 6, 9)]));
        // Equal ranges: the first given wins.
        assert_eq!(choose("abc", &[Span::new(e, 0, 2), Span::new(p, 0, 2)]), Ok(vec![Span::new(e, 0, 2)]));
    }
}
