//! The built-in recognisers and the helpers they share.
//!
//! Patterns are compiled with Unicode off: `\b`, `\d`, `\s`, `\w` and `(?i)` are ASCII, which
//! keeps the lazy DFA on its fast path for any input (a Unicode `\b` forces a slower engine on
//! non-ASCII text). Where a class must accept non-ASCII (a password value, a name with an
//! accent) it says so with `(?u:…)`.

mod address;
mod contact;
mod finance;
mod health;
mod hl7;
mod national;
mod person;
mod phone;
mod secrets;

use std::sync::Arc;

use perimeter_types::EntityKind;
use regex::{Regex, RegexBuilder};

use crate::names::Names;
use crate::{DetectError, Finding, Recognizer};

/// Every built-in recogniser, patterns compiled.
pub(crate) fn builtin() -> Result<Vec<Box<dyn Recognizer>>, DetectError> {
    let names = Arc::new(Names::load());
    let mut all: Vec<Box<dyn Recognizer>> = Vec::new();
    contact::add(&mut all)?;
    phone::add(&mut all)?;
    finance::add(&mut all)?;
    hl7::add(&mut all)?;
    national::add(&mut all)?;
    health::add(&mut all)?;
    secrets::add(&mut all)?;
    person::add(&mut all, &names)?;
    address::add(&mut all)?;
    Ok(all)
}

/// Compiles one pattern the way all patterns are compiled (ASCII classes and boundaries).
pub(crate) fn compile(recognizer: &'static str, pattern: &str) -> Result<Regex, DetectError> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20)
        .build()
        .map_err(|e| DetectError::Pattern { recognizer, message: e.to_string() })
}

pub(crate) fn finding(kind: EntityKind, start: usize, end: usize, score: f32, evidence: &[&'static str]) -> Finding {
    // Room for the context evidence the detector may add, so adding it does not reallocate.
    let mut v = Vec::with_capacity(evidence.len() + 2);
    v.extend_from_slice(evidence);
    Finding { kind, start, end, score, evidence: v }
}

/// The byte before `i`, if any.
pub(crate) fn byte_before(text: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| text.as_bytes().get(j).copied())
}

/// The byte at `i`, if any.
pub(crate) fn byte_at(text: &str, i: usize) -> Option<u8> {
    text.as_bytes().get(i).copied()
}

/// True when the match `start..end` is glued by `.` or `-` to more letters or digits, so it is
/// part of a longer token (a UUID, a dotted version, an OID, a longer hyphenated number).
pub(crate) fn continues_token(text: &str, start: usize, end: usize) -> bool {
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    let glue = |b: Option<u8>| matches!(b, Some(b'.' | b'-'));
    let before = glue(byte_before(text, start)) && alnum(start.checked_sub(2).and_then(|j| byte_at(text, j)));
    let after = glue(byte_at(text, end)) && alnum(byte_at(text, end + 1));
    before || after
}

/// Up to 32 ASCII digit values from a match (separators skipped).
pub(crate) struct Digits {
    buf: [u8; 32],
    len: usize,
}

impl Digits {
    /// `None` when there are more than 32 digits.
    pub(crate) fn of(s: &str) -> Option<Digits> {
        let mut d = Digits { buf: [0; 32], len: 0 };
        for b in s.bytes().filter(u8::is_ascii_digit) {
            *d.buf.get_mut(d.len)? = b - b'0';
            d.len += 1;
        }
        Some(d)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Lengths of the digit groups in `s`, split at any non-digit.
pub(crate) fn group_lengths(s: &str) -> impl Iterator<Item = usize> + '_ {
    s.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).map(str::len)
}

/// A value that stands for a secret rather than being one: masks, template variables, env
/// references, type names and empty-ish words. `changeme` and `password` are real (weak)
/// passwords and are not placeholders.
pub(crate) fn is_placeholder(v: &str) -> bool {
    is_placeholder_lower(&v.to_ascii_lowercase())
}

/// [`is_placeholder`] of a value already in ASCII lower case.
fn is_placeholder_lower(l: &str) -> bool {
    let all_same_mask = l.bytes().all(|b| matches!(b, b'*' | b'x' | b'.' | b'#' | b'-' | b'_' | b'?' | b'0'));
    all_same_mask
        || (l.starts_with('<') && l.ends_with('>'))
        || (l.starts_with('[') && l.ends_with(']'))
        || (l.starts_with('{') && l.ends_with('}'))
        || l.starts_with("${")
        || l.starts_with("$(")
        || l.starts_with("{{")
        || l.starts_with("%(")
        || l.starts_with('$')
        || l.starts_with("env:")
        || l.starts_with("vault:")
        || l.contains("your_")
        || l.contains("your-")
        || l.starts_with("your")
        || matches!(
            l,
            "null"
                | "none"
                | "nil"
                | "undefined"
                | "true"
                | "false"
                | "redacted"
                | "hidden"
                | "secret_here"
                | "password_here"
                | "str"
                | "string"
                | "&str"
                | "bytes"
                | "secretstr"
                | "secretstring"
                | "optional"
                | "required"
                | "text"
                | "int"
                | "bool"
                | "n/a"
                | "na"
                | "tbd"
                | "..."
        )
}

/// A value (`l`, in ASCII lower case) that contains "example", "sample" or "dummy": a
/// documented example key (`AKIAIOSFODNN7EXAMPLE`), which is not reported.
fn is_example_lower(l: &str) -> bool {
    l.contains("example") || l.contains("sample") || l.contains("dummy")
}

/// Words that make up a placeholder key body (`xoxb-your-token-here`, `sk_test_fake_key`).
#[rustfmt::skip]
const PLACEHOLDER_WORDS: &[&str] = &[
    "your", "my", "here", "token", "key", "secret", "api", "apikey", "insert", "replace", "put", "goes", "fake",
    "test", "testing", "example", "sample", "dummy", "placeholder", "changeme", "change", "me", "todo", "fixme",
    "redacted", "xxx", "xxxx", "abc", "foo", "bar", "baz", "bot", "user", "app", "value", "live", "not", "real",
];

/// A key-shaped value that stands for a key: a documented example, a template word
/// ([`is_placeholder`]), a body of placeholder words (`your-token-here`), or a body with too
/// little variety to be random (`xxxxxxxxxxxxxxxxxxxxxxxx`, `1234123412341234`). `v` is the
/// whole match; its lower-case prefix segments (`sk_live_`, `xoxb-`, `github_pat_`) are
/// skipped before the body is judged.
pub(crate) fn is_placeholder_key(v: &str) -> bool {
    // One lower-case copy serves the example, placeholder and word checks.
    let lower = v.to_ascii_lowercase();
    let l = lower.as_str();
    if is_example_lower(l) || is_placeholder_lower(l) {
        return true;
    }
    for word in ["changeme", "change_me", "change-me", "placeholder", "your_", "your-", "xxxxx"] {
        if l.contains(word) {
            return true;
        }
    }
    // Skip the prefix: leading segments of lower-case letters ended by `_` or `-`.
    let mut body = v;
    for _ in 0..3 {
        let seg = body.bytes().take_while(u8::is_ascii_lowercase).count();
        match body.as_bytes().get(seg) {
            Some(b'_' | b'-') if seg > 0 => body = &body[seg + 1..],
            _ => break,
        }
    }
    if body.is_empty() {
        return true;
    }
    // Every segment a placeholder word, or alphabetic and shaped like `here`/`key`.
    // (The words are lower-case ASCII, so an ASCII-case-insensitive comparison is the same
    // test as comparing the lower-cased segment.)
    let mut segments = body.split(['-', '_', '.']).filter(|s| !s.is_empty()).peekable();
    if segments.peek().is_some()
        && segments.all(|s| {
            PLACEHOLDER_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) || s.bytes().all(|b| matches!(b, b'x' | b'X'))
        })
    {
        return true;
    }
    // Too little variety for a random body (one repeated character, a short repeated cycle).
    let distinct = {
        let mut seen = [false; 256];
        body.bytes().for_each(|b| seen[usize::from(b)] = true);
        seen.iter().filter(|&&s| s).count()
    };
    body.len() >= 8 && (distinct <= 2 || crate::validate::entropy(body) < 2.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(continues_token("123e4567-e89b", 0, 8) || continues_token("x-12345678-y", 2, 10));
        assert!(!continues_token("card 4111.", 5, 9));
        assert_eq!(Digits::of("4111-1111").map(|d| d.as_slice().len()), Some(8));
        assert!(Digits::of(&"1".repeat(40)).is_none());
        assert_eq!(group_lengths("3782 822463 10005").collect::<Vec<_>>(), [4, 6, 5]);
        for p in ["****", "<password>", "${DB_PASS}", "xxx", "XXXX", "null", "your_password", "{{ secret }}"] {
            assert!(is_placeholder(p), "{p}");
        }
        for p in ["changeme", "hunter2", "password", "S3cr3t!"] {
            assert!(!is_placeholder(p), "{p}");
        }
        for k in [
            "AKIAIOSFODNN7EXAMPLE",
            "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
            "sk_test_0000000000000000000000000",
            "xoxb-your-token-here",
            "xoxp-insert-token-here",
            "ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "sk-proj-changeme",
            "rk_live_abababababababababababab",
        ] {
            assert!(is_placeholder_key(k), "{k}");
        }
        for k in [
            "AKIAQWERTYUIOPASDFGH",
            "sk_live_nCkhvMdgaKjIg8xNbe3nNyjO",
            "xoxb-632122330792-4402685995289-PRVdD53X83RZJzzzzgEOzdme",
            "ghp_RIBXuDL7DxtpYlSXpfKtHF4vUCsMehGAkWvj",
        ] {
            assert!(!is_placeholder_key(k), "{k}");
        }
    }
}
