//! The detector on arbitrary bytes: findings lie inside the input, in order, without overlap,
//! cover only valid UTF-8, and start and end on character boundaries.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perimeter_detect::Detector;

fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| Detector::new().expect("built-in patterns compile"))
}

fuzz_target!(|data: &[u8]| {
    let mut last_end = 0;
    for f in detector().detect_bytes(data) {
        assert!(f.start < f.end && f.end <= data.len(), "out of bounds");
        assert!(f.start >= last_end, "out of order or overlapping");
        assert!(std::str::from_utf8(&data[f.start..f.end]).is_ok(), "covers invalid UTF-8");
        last_end = f.end;
    }
});
