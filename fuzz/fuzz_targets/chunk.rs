//! The chunker on arbitrary text and budgets: chunks are exact slices of the input, in order,
//! and never split a UTF-8 character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_extract::{chunk, ChunkSpec};

fuzz_target!(|data: &[u8]| {
    let Some((&budget, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let max_tokens = 4 + budget as usize % 64;
    let spec = ChunkSpec { max_tokens, overlap_tokens: max_tokens / 4 };
    let words = |s: &str| s.split_whitespace().count();
    let mut last_start = 0;
    for c in chunk(text, &spec, &words) {
        assert_eq!(&text[c.start..c.end], c.text);
        assert!(c.start >= last_start);
        last_start = c.start;
    }
});
