//! Helpers shared by the detection test files: one detector for all tests, and the invariants
//! every result must satisfy.
#![allow(dead_code)]

use std::sync::OnceLock;

use perimeter_detect::{Detector, Finding, MIN_SCORE};

pub fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| Detector::new().unwrap())
}

/// Invariants every result must satisfy, for any input.
pub fn assert_well_formed(text: &str, findings: &[Finding]) {
    let mut last_end = 0;
    for f in findings {
        assert!(f.start < f.end && f.end <= text.len(), "{f:?} out of bounds");
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end), "{f:?} splits a character");
        assert!(f.start >= last_end, "{f:?} overlaps or is out of order");
        assert!((MIN_SCORE..=1.0).contains(&f.score), "{f:?} score");
        assert!(!f.evidence.is_empty(), "{f:?} has no evidence");
        last_end = f.end;
    }
}
