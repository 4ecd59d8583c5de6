//! The way back: the placeholder → value mapping, [`restore`] for a whole text and [`Restorer`]
//! for a streamed one.
//!
//! Both read text the same way. A *candidate* is a `<`, the next `>`, and what lies between
//! when that contains no other `<`. Only candidates are looked up, so a placeholder is found
//! wherever it stands, and a candidate that is not in the mapping (`<PERSON_9>` made up by the
//! model, `<div>`) is left exactly as it is.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use perimeter_types::EntityKind;
use serde::ser::{Serialize, Serializer};

/// Placeholder → original value for one request, in order of first appearance.
///
/// It holds the very values redaction hid: keep it in memory for [`restore`], never log it. Its
/// `Debug` shows the number of entries only. It serialises (for `perimeter redact --json`) as a
/// list of `{"placeholder", "kind", "value"}` objects.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    entries: Vec<Entry>,
    /// Placeholder → index in `entries`; ordered, so "is this a placeholder's prefix" is one
    /// range look-up.
    index: BTreeMap<String, usize>,
}

#[derive(Clone, PartialEq, Eq, serde::Serialize)]
struct Entry {
    placeholder: String,
    kind: EntityKind,
    value: String,
}

impl Mapping {
    /// The number of placeholders.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The original value behind `placeholder` (the whole `<KIND_…>` string).
    pub fn get(&self, placeholder: &str) -> Option<&str> {
        self.index.get(placeholder).map(|&i| self.entries[i].value.as_str())
    }

    /// `(placeholder, kind, value)` in order of first appearance.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, EntityKind, &str)> + '_ {
        self.entries.iter().map(|e| (e.placeholder.as_str(), e.kind, e.value.as_str()))
    }

    /// Adds an entry; the caller guarantees the placeholder is new. Returns its index.
    pub(crate) fn push(&mut self, placeholder: String, kind: EntityKind, value: String) -> usize {
        let i = self.entries.len();
        self.index.insert(placeholder.clone(), i);
        self.entries.push(Entry { placeholder, kind, value });
        i
    }

    pub(crate) fn placeholder_at(&self, i: usize) -> &str {
        &self.entries[i].placeholder
    }

    /// Whether some placeholder starts with `prefix`.
    fn has_prefix(&self, prefix: &str) -> bool {
        self.index
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|(p, _)| p.starts_with(prefix))
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl Serialize for Mapping {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.entries)
    }
}

/// Replaces every placeholder of `mapping` in `text` by its value. Anything else, including
/// placeholder-looking strings that are not in the mapping, is copied unchanged.
pub fn restore(text: &str, mapping: &Mapping) -> String {
    if mapping.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in candidates(text) {
        if let Some(value) = mapping.get(&text[start..end]) {
            out.push_str(&text[last..start]);
            out.push_str(value);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Restores an answer as it streams (SSE): feed the chunks to [`push`](Restorer::push) as they
/// arrive and send what it returns; [`finish`](Restorer::finish) returns the rest.
///
/// The concatenated output equals [`restore`] of the concatenated input for any chunking. Only a
/// possible placeholder prefix (`<`, `<PER`, `<PERSON_1`) is held back, so at most one byte less
/// than the longest placeholder waits for the next chunk.
pub struct Restorer<'m> {
    mapping: &'m Mapping,
    /// From the last `<` on, while that is a prefix of some placeholder; otherwise empty.
    held: String,
}

impl<'m> Restorer<'m> {
    pub fn new(mapping: &'m Mapping) -> Self {
        Restorer { mapping, held: String::new() }
    }

    /// The restored text that `chunk` completes.
    pub fn push(&mut self, chunk: &str) -> String {
        let mut out = String::with_capacity(chunk.len() + self.held.len());
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.held.is_empty() {
                match rest.find('<') {
                    None => {
                        out.push_str(rest);
                        rest = "";
                    }
                    Some(i) => {
                        out.push_str(&rest[..i]);
                        self.held.push('<');
                        rest = &rest[i + 1..];
                    }
                }
            } else {
                match rest.find(['<', '>']) {
                    None => {
                        self.held.push_str(rest);
                        rest = "";
                    }
                    Some(i) if rest.as_bytes()[i] == b'>' => {
                        // A whole candidate: its value if it is a placeholder, else itself.
                        self.held.push_str(&rest[..=i]);
                        rest = &rest[i + 1..];
                        out.push_str(self.mapping.get(&self.held).unwrap_or(&self.held));
                        self.held.clear();
                    }
                    Some(i) => {
                        // A new `<` starts before this one closes, so this one is plain text.
                        self.held.push_str(&rest[..i]);
                        rest = &rest[i..];
                        out.push_str(&self.held);
                        self.held.clear();
                    }
                }
            }
            // No placeholder starts like this, so it is plain text whatever follows.
            if !self.held.is_empty() && !self.mapping.has_prefix(&self.held) {
                out.push_str(&self.held);
                self.held.clear();
            }
        }
        out
    }

    /// What is still held back: the text ended inside a possible placeholder, so it is plain.
    pub fn finish(self) -> String {
        self.held
    }

    /// Bytes held back, waiting for the next chunk.
    pub fn pending(&self) -> usize {
        self.held.len()
    }
}

impl fmt::Debug for Restorer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer").field("mapping", self.mapping).field("pending", &self.pending()).finish()
    }
}

/// Byte ranges of the candidates in `text`, in order and disjoint: each `<`, the next `>`, with
/// no `<` between them.
pub(crate) fn candidates(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut open = None;
    text.bytes().enumerate().filter_map(move |(i, b)| match b {
        b'<' => {
            open = Some(i);
            None
        }
        b'>' => open.take().map(|start| (start, i + 1)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(pairs: &[(&str, &str)]) -> Mapping {
        let mut m = Mapping::default();
        for (p, v) in pairs {
            m.push((*p).to_owned(), EntityKind::Person, (*v).to_owned());
        }
        m
    }

    #[test]
    fn candidates_are_innermost_angle_pairs() {
        let text = "a<b>c<<d>>e<f";
        let found: Vec<&str> = candidates(text).map(|(s, e)| &text[s..e]).collect();
        assert_eq!(found, ["<b>", "<d>"]);
    }

    #[test]
    fn prefixes_are_found_by_range() {
        let m = mapping(&[("<PERSON_1>", "Alice"), ("<PERSON_12>", "Bob")]);
        for p in ["<", "<P", "<PERSON_", "<PERSON_1", "<PERSON_12", "<PERSON_12>"] {
            assert!(m.has_prefix(p), "{p}");
        }
        for p in ["<Q", "<PERSON_2", "<PERSON_1>x", "x"] {
            assert!(!m.has_prefix(p), "{p}");
        }
        assert!(!Mapping::default().has_prefix("<"));
    }

    #[test]
    fn the_restorer_holds_back_only_placeholder_prefixes() {
        let m = mapping(&[("<PERSON_1>", "Alice")]);
        let longest = "<PERSON_1>".len();
        let mut r = Restorer::new(&m);
        assert_eq!(r.push("hi <PER"), "hi ");
        assert_eq!(r.pending(), 4);
        assert_eq!(r.push("SON_1"), "");
        assert!(r.pending() < longest);
        assert_eq!(r.push("> and <PERSON_2"), "Alice and <PERSON_2");
        assert_eq!(r.pending(), 0);
        assert_eq!(r.push("<a <PERSON_"), "<a ");
        assert_eq!(r.finish(), "<PERSON_");
    }
}
