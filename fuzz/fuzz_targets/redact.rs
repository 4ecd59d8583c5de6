//! Redaction on arbitrary text and spans derived from the input: invalid spans are refused with
//! the right index, restoring gives the text back, no chosen placeholder occurs in the input, and
//! the streaming restorer equals the whole-text restore for a chunking derived from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_redact::{redact, restore, RedactError, Restorer, Span, Tokens};
use perimeter_types::EntityKind;

const KEY: &[u8] = b"fuzz-key-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    // Layout: mode, span count, three bytes per span (kind, start, end), then the text.
    let [mode, count, rest @ ..] = data else { return };
    let count = usize::from(count % 16);
    if rest.len() < 3 * count {
        return;
    }
    let (raw, text) = rest.split_at(3 * count);
    let Ok(text) = std::str::from_utf8(text) else { return };
    // Positions scale over the text; 255 means one past the end. Some land inside characters.
    let pos = |b: u8| if b == 255 { text.len() + 1 } else { usize::from(b) * (text.len() + 1) / 255 };
    let kinds = &EntityKind::ALL;
    let mut spans: Vec<Span> =
        raw.chunks_exact(3).map(|c| Span::new(kinds[usize::from(c[0]) % kinds.len()], pos(c[1]), pos(c[2]))).collect();
    let tokens = if mode & 1 == 0 {
        Tokens::Sequential
    } else {
        Tokens::Keyed { key: KEY.to_vec(), hex_len: 8 + usize::from(mode >> 1) % 9 }
    };
    let valid = |s: &Span| s.start <= s.end && text.is_char_boundary(s.start) && text.is_char_boundary(s.end);

    let redacted = match redact(text, &spans, &tokens) {
        Ok(r) => {
            assert!(spans.iter().all(valid));
            r
        }
        Err(RedactError::InvalidSpan { index }) => {
            assert_eq!(spans.iter().position(|s| !valid(s)), Some(index));
            spans.retain(valid);
            redact(text, &spans, &tokens).unwrap()
        }
        Err(e) => panic!("unexpected error: {e}"),
    };
    assert_eq!(restore(&redacted.text, &redacted.mapping), text);
    assert_eq!(restore(text, &redacted.mapping), text);

    // Chunk lengths from the input bytes (an empty chunk for 0), moved forward to character
    // boundaries.
    let stream = |whole: &str| {
        let mut restorer = Restorer::new(&redacted.mapping);
        let mut out = String::new();
        let (mut at, mut k) = (0, 0);
        while at < whole.len() {
            let step = usize::from(data[k % data.len()] % 13);
            if step == 0 {
                out.push_str(&restorer.push(""));
            }
            let mut end = (at + step.max(1)).min(whole.len());
            while !whole.is_char_boundary(end) {
                end += 1;
            }
            out.push_str(&restorer.push(&whole[at..end]));
            at = end;
            k += 1;
        }
        out.push_str(&restorer.finish());
        out
    };
    assert_eq!(stream(&redacted.text), text);
    assert_eq!(stream(text), text);
});
