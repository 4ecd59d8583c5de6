//! The GGUF scanner and its chat-template check on arbitrary bytes: never a panic or a hang,
//! and a clean verdict means the whole file parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_scan::{gguf, Verdict};

fuzz_target!(|data: &[u8]| {
    let report = gguf::scan(&data.to_vec());
    if report.verdict == Verdict::Clean {
        assert!(report.error.is_none() && data.starts_with(b"GGUF"));
    }
    if let Ok(template) = std::str::from_utf8(data) {
        let _ = gguf::template_constructs(template);
    }
});
