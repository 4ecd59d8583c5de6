//! The safetensors scanner on arbitrary bytes: it may refuse them, but must never panic or hang,
//! and a clean verdict means the header parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_scan::{safetensors, Verdict};

fuzz_target!(|data: &[u8]| {
    let report = safetensors::scan(&data.to_vec());
    if report.verdict == Verdict::Clean {
        assert!(report.error.is_none() && data.len() >= 10);
    }
    let _ = safetensors::looks_like(data);
});
