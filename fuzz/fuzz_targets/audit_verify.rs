//! The audit log verifier on arbitrary bytes: it never panics; when it says intact, every line
//! is a record whose canonical encoding is exactly that line, and it counted them all; a torn
//! report means the bytes do not end with a newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_audit::{canonical, verify, Record, Status};

fuzz_target!(|data: &[u8]| {
    let report = verify(data, None);
    match report.status {
        Status::Intact => {
            let mut n = 0;
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let record: Record = serde_json::from_slice(line).expect("an intact line parses");
                assert_eq!(canonical(&record), line);
                n += 1;
            }
            assert_eq!(report.records, n);
            assert!(data.is_empty() || data.ends_with(b"\n"));
        }
        Status::Torn { .. } => assert!(!data.ends_with(b"\n")),
        Status::Tampered { line, .. } => assert!(line >= 1 && line > report.records),
    }
});
