//! The pickle scanner on arbitrary bytes: it never panics or hangs, and a `Clean` report is
//! one that understood everything and found nothing above Info.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_scan::{pickle, Severity, Verdict};

fuzz_target!(|data: &[u8]| {
    let r = pickle::scan_bytes(data);
    if r.verdict == Verdict::Clean {
        assert!(r.error.is_none());
        assert!(r.findings.iter().all(|f| f.severity == Severity::Info));
    }
    if r.findings.iter().any(|f| f.severity > Severity::Info) {
        assert_eq!(r.verdict, Verdict::Unsafe);
    }
});
