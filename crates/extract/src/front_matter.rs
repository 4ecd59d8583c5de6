//! Front matter: the `---` block at the top of text and markdown files, and the shared rules
//! for the metadata keys (`title`, `collection`, `label`, `groups`) that HTML meta tags use too.
//!
//! This is deliberately not a YAML parser: only flat `key: value` lines and one-level `- item`
//! lists are understood, which is all the metadata needs and keeps a large parser away from
//! untrusted input.

use perimeter_types::Level;

use crate::{ExtractError, FrontMatter};

/// The closing fence must start within this many bytes, so a stray `---` at the top of a huge
/// file does not make us scan all of it.
const SEARCH_LIMIT: usize = 64 * 1024;

/// Splits front matter from the body. Without a complete block the whole text is the body.
pub(crate) fn split(text: &str) -> Result<(FrontMatter, &str), ExtractError> {
    let Some((block, body)) = find_block(text) else {
        return Ok((FrontMatter::default(), text));
    };
    let mut sink = MetaSink::new("front matter");
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            continue;
        }
        let value = scalar(value);
        if !value.is_empty() {
            sink.set(key, Value::Scalar(value))?;
            continue;
        }
        // `key:` followed by indented or bare `- item` lines is a block list.
        let mut items = Vec::new();
        while let Some(item) = lines.peek().and_then(|next| list_item(next)) {
            items.push(item);
            lines.next();
        }
        let value = if items.is_empty() { Value::Scalar(value) } else { Value::List(items) };
        sink.set(key, value)?;
    }
    Ok((sink.finish(), body))
}

/// A metadata value as written: one scalar, or the items of a block list.
pub(crate) enum Value {
    Scalar(String),
    List(Vec<String>),
}

/// Collects metadata keys, enforcing the same rules for every source format.
pub(crate) struct MetaSink {
    format: &'static str,
    meta: FrontMatter,
}

impl MetaSink {
    pub(crate) fn new(format: &'static str) -> MetaSink {
        MetaSink { format, meta: FrontMatter::default() }
    }

    /// Records one key. Unknown keys are ignored; a key given twice is an error because a
    /// document that states two labels must not quietly get the weaker one.
    pub(crate) fn set(&mut self, key: &str, value: Value) -> Result<(), ExtractError> {
        let key = key.to_ascii_lowercase();
        let duplicate = match key.as_str() {
            "title" => self.meta.title.is_some(),
            "collection" => self.meta.collection.is_some(),
            "label" => self.meta.label.is_some(),
            "groups" => self.meta.groups.is_some(),
            _ => return Ok(()),
        };
        if duplicate {
            return Err(self.malformed(format!("duplicate key: {key}")));
        }
        match (key.as_str(), value) {
            ("groups", value) => self.meta.groups = Some(groups(value)),
            (_, Value::List(_)) => {
                return Err(self.malformed(format!("{key}: expected a single value, not a list")));
            }
            ("label", Value::Scalar(value)) => {
                let level = value.parse::<Level>().map_err(|_| {
                    self.malformed(
                        "label: unknown level (expected public, internal, confidential or restricted)".to_owned(),
                    )
                })?;
                self.meta.label = Some(level);
            }
            ("title", Value::Scalar(value)) => self.meta.title = non_empty(value),
            ("collection", Value::Scalar(value)) => self.meta.collection = non_empty(value),
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> FrontMatter {
        self.meta
    }

    fn malformed(&self, reason: String) -> ExtractError {
        ExtractError::Malformed { format: self.format, reason }
    }
}

/// Returns (front matter lines, body) when the text opens with `---` and a later `---` line
/// closes the block within [`SEARCH_LIMIT`].
fn find_block(text: &str) -> Option<(&str, &str)> {
    let (first, mut offset) = next_line(text, 0)?;
    if first.trim_end() != "---" {
        return None;
    }
    let block_start = offset;
    while offset < text.len() && offset < SEARCH_LIMIT {
        let (line, next) = next_line(text, offset)?;
        if line.trim_end() == "---" {
            return Some((text.get(block_start..offset)?, text.get(next..)?));
        }
        offset = next;
    }
    None
}

/// The line starting at `offset` (without its newline) and the offset of the next line.
fn next_line(text: &str, offset: usize) -> Option<(&str, usize)> {
    let rest = text.get(offset..)?;
    Some(match rest.find('\n') {
        Some(newline) => (&rest[..newline], offset + newline + 1),
        None => (rest, text.len()),
    })
}

/// `- item` (after optional indentation) as an unquoted item.
fn list_item(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('-')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some(scalar(rest))
}

/// A YAML-ish scalar: trimmed, unquoted, and without a trailing ` # comment` when unquoted.
fn scalar(raw: &str) -> String {
    let value = raw.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner.to_owned();
        }
    }
    let value = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(comment) => &value[..comment],
        None => value,
    };
    value.trim().to_owned()
}

/// Groups from `a, b`, `[a, b]` or a block list: trimmed, unquoted, lower-cased, no empties.
fn groups(value: Value) -> Vec<String> {
    let items = match value {
        Value::List(items) => items,
        Value::Scalar(value) => {
            let value = value.trim();
            let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
            inner.split(',').map(scalar).collect()
        }
    };
    items.into_iter().map(|item| item.trim().to_lowercase()).filter(|item| !item.is_empty()).collect()
}

fn non_empty(value: String) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: FrontMatter, body: &str) {
        let got = split(input);
        assert_eq!(got, Ok((expected, body)), "input: {input:?}");
    }

    fn error(input: &str) -> String {
        match split(input) {
            Err(ExtractError::Malformed { format, reason }) => format!("{format}: {reason}"),
            other => format!("not a Malformed error: {other:?}"),
        }
    }

    #[test]
    fn all_keys() {
        let input = "---\ntitle: Leave policy\ncollection: hr\nlabel: Confidential\n\
                     groups: HR, Managers\nowner: someone # unknown keys are ignored\n---\n# Body\n";
        let expected = FrontMatter {
            title: Some("Leave policy".into()),
            collection: Some("hr".into()),
            label: Some(Level::Confidential),
            groups: Some(vec!["hr".into(), "managers".into()]),
        };
        check(input, expected, "# Body\n");
    }

    #[test]
    fn quoting_comments_and_crlf() {
        let input = "---\r\ntitle: \"A: quoted # title\"\r\nlabel: 'restricted'\r\n\
                     collection: finance # the ledger\r\n---\r\nbody";
        let expected = FrontMatter {
            title: Some("A: quoted # title".into()),
            collection: Some("finance".into()),
            label: Some(Level::Restricted),
            groups: None,
        };
        check(input, expected, "body");
    }

    #[test]
    fn group_list_syntaxes() {
        let cases: [(&str, Vec<&str>); 7] = [
            ("groups: a, B ,c", vec!["a", "b", "c"]),
            ("groups: [Eng, \"Sales\", 'ops']", vec!["eng", "sales", "ops"]),
            ("groups: [a, , b,]", vec!["a", "b"]),
            ("groups: []", vec![]),
            ("groups:", vec![]),
            ("groups:\n  - Eng\n  - \"Legal Team\"\n-  x", vec!["eng", "legal team", "x"]),
            ("groups: single", vec!["single"]),
        ];
        for (line, expected) in cases {
            let input = format!("---\n{line}\n---\nbody");
            let expected = FrontMatter {
                groups: Some(expected.into_iter().map(String::from).collect()),
                ..FrontMatter::default()
            };
            check(&input, expected, "body");
        }
    }

    #[test]
    fn bad_or_ambiguous_metadata_is_an_error() {
        assert_eq!(
            error("---\nlabel: secret\n---\nbody"),
            "front matter: label: unknown level (expected public, internal, confidential or restricted)"
        );
        assert!(error("---\nlabel:\n---\nbody").contains("label: unknown level"));
        assert!(error("---\nlabel: public\nLabel: restricted\n---\nx").contains("duplicate key: label"));
        assert!(error("---\nlabel:\n - public\n---\nx").contains("expected a single value"));
    }

    #[test]
    fn no_front_matter_without_both_fences() {
        let cases = [
            "---\ntitle: never closed\nbody",
            "text first\n---\ntitle: x\n---\n",
            " ---\ntitle: x\n---\n",
            "----\ntitle: x\n----\n",
            "",
            "---",
        ];
        for input in cases {
            check(input, FrontMatter::default(), input);
        }
    }

    #[test]
    fn closing_fence_must_be_near_the_top() {
        let filler = "x: y\n".repeat(SEARCH_LIMIT / 5 + 10);
        let input = format!("---\n{filler}---\nbody");
        check(&input, FrontMatter::default(), &input);
        let input = "---\ntitle: t\n---\n";
        let expected = FrontMatter { title: Some("t".into()), ..FrontMatter::default() };
        check(input, expected, "");
    }
}
