//! The Keras scanner on arbitrary bytes, both as a whole `.keras` archive and as a bare
//! `config.json`: never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_scan::{keras, Verdict};

fuzz_target!(|data: &[u8]| {
    let report = keras::scan(&data.to_vec());
    if report.verdict == Verdict::Clean {
        assert!(report.error.is_none());
    }
    let _ = keras::scan_config(data);
});
