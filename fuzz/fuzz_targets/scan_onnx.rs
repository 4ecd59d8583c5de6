//! The ONNX protobuf walker on arbitrary bytes: never a panic, a hang or unbounded recursion;
//! the locations it lists for the CLI agree with the scan's verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_scan::{onnx, Verdict};

fuzz_target!(|data: &[u8]| {
    let report = onnx::scan(&data.to_vec());
    let locations = onnx::external_locations(&data.to_vec());
    assert_eq!(locations.is_err(), report.error.is_some());
    if report.verdict == Verdict::Clean {
        for location in locations.unwrap_or_default() {
            assert!(onnx::location_problem(&location).is_none());
        }
    }
});
