//! The PyTorch container scanners (zip, legacy, tar) and the zip reader on arbitrary bytes: the
//! first byte picks the container. They never panic or hang, and reading any member the zip
//! reader lists stays within the size it is given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_scan::{scan, torch, zip, Severity, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let bytes = rest.to_vec();
    let r = match selector % 5 {
        0 => torch::scan_zip(&bytes),
        1 => torch::scan_legacy(&bytes),
        2 => torch::scan_tar(&bytes),
        3 => scan("model.pt", &bytes),
        _ => {
            if let Ok(archive) = zip::read_archive(&bytes) {
                for entry in &archive.entries {
                    if let Ok(member) = zip::read_entry(&bytes, entry, 1 << 20) {
                        assert!(member.len() <= 1 << 20);
                    }
                    let _ = zip::read_prefix(&bytes, entry, 16);
                }
            }
            return;
        }
    };
    if r.verdict == Verdict::Clean {
        assert!(r.findings.iter().all(|f| f.severity == Severity::Info));
    }
});
