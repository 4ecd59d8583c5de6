//! safetensors: benign files pass, every structural violation is caught, hostile bytes never
//! panic. Every file is built here as bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_scan::{safetensors, Format, Report, Severity, Verdict};
use proptest::prelude::*;

/// A safetensors file: the header length, the header, the data.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    file_bytes(header.as_bytes(), data_len)
}

fn file_bytes(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend((0..data_len).map(|i| i as u8));
    out
}

enum Expect<'a> {
    Clean,
    /// Unsafe, with these finding kinds among the findings.
    Unsafe(&'a [&'a str]),
    /// Unparseable, with this text in the error.
    Unparseable(&'a str),
}

fn check(bytes: &[u8], expect: Expect) -> Report {
    let report = safetensors::scan(&bytes.to_vec());
    assert_eq!(report.format, Format::Safetensors);
    match expect {
        Expect::Clean => {
            assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
            assert!(report.findings.iter().all(|f| f.severity == Severity::Info), "{report:#?}");
        }
        Expect::Unsafe(kinds) => {
            assert_eq!(report.verdict, Verdict::Unsafe, "{report:#?}");
            for kind in kinds {
                assert!(report.findings.iter().any(|f| f.kind == *kind), "no {kind} in {report:#?}");
            }
        }
        Expect::Unparseable(text) => {
            assert_eq!(report.verdict, Verdict::Unparseable, "{report:#?}");
            let error = report.error.clone().unwrap_or_default();
            assert!(error.contains(text), "error {error:?} does not mention {text:?}");
        }
    }
    report
}

const A: &str = r#""a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"#;
const B: &str = r#""b":{"dtype":"I8","shape":[3],"data_offsets":[16,19]}"#;

#[test]
fn valid_file_with_metadata_is_clean() {
    let header = format!(r#"{{"__metadata__":{{"format":"pt"}},{A},{B}}}"#);
    check(&file(&header, 19), Expect::Clean);
}

#[test]
fn tensors_in_any_header_order_are_clean() {
    check(&file(&format!("{{{B},{A}}}"), 19), Expect::Clean);
}

#[test]
fn header_padded_with_spaces_is_clean() {
    // The reference writer pads the header to a multiple of 8 with spaces.
    check(&file(&format!("{{{A}}}      "), 16), Expect::Clean);
}

#[test]
fn empty_header_without_tensors_is_clean() {
    check(&file("{}", 0), Expect::Clean);
}

#[test]
fn empty_and_scalar_tensors_are_clean() {
    let header = r#"{"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}"#;
    check(&file(header, 8), Expect::Clean);
}

#[test]
fn sub_byte_dtypes_are_sized_in_bits() {
    check(&file(r#"{"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}"#, 2), Expect::Clean);
    check(&file(r#"{"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#, 2), Expect::Unparseable("whole bytes"));
}

#[test]
fn duplicate_tensor_key_is_a_finding() {
    let header = format!("{{{A},{A}}}");
    check(&file(&header, 16), Expect::Unsafe(&["safetensors_duplicate_key"]));
}

#[test]
fn duplicate_metadata_key_is_a_finding() {
    let header = format!(r#"{{"__metadata__":{{"format":"pt","format":"tf"}},{A}}}"#);
    check(&file(&header, 16), Expect::Unsafe(&["safetensors_duplicate_key"]));
}

#[test]
fn duplicate_field_inside_a_tensor_is_unparseable() {
    let header = r#"{"a":{"dtype":"F32","dtype":"I8","shape":[4],"data_offsets":[0,16]}}"#;
    check(&file(header, 16), Expect::Unparseable("duplicate field `dtype`"));
}

#[test]
fn gap_between_tensors_is_a_finding() {
    let header = format!(r#"{{{A},"b":{{"dtype":"I8","shape":[3],"data_offsets":[20,23]}}}}"#);
    let report = check(&file(&header, 23), Expect::Unsafe(&["safetensors_gap"]));
    assert!(report.findings.iter().any(|f| f.location == "data bytes 16..20"), "{report:#?}");
}

#[test]
fn gap_before_the_first_tensor_is_a_finding() {
    let header = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#;
    check(&file(header, 8), Expect::Unsafe(&["safetensors_gap"]));
}

#[test]
fn overlapping_tensors_are_a_finding() {
    let header = format!(r#"{{{A},"b":{{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}}}"#);
    check(&file(&header, 24), Expect::Unsafe(&["safetensors_overlap"]));
}

#[test]
fn size_that_does_not_match_the_shape_is_unparseable() {
    let header = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
    check(&file(header, 12), Expect::Unparseable("needs 16 bytes"));
}

#[test]
fn shape_overflow_is_unparseable() {
    let header = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#;
    check(&file(header, 16), Expect::Unparseable("overflows"));
    let header = r#"{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16]}}"#;
    check(&file(header, 16), Expect::Unparseable("overflows"));
}

#[test]
fn offsets_that_end_before_they_begin_are_unparseable() {
    let header = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#;
    check(&file(header, 4), Expect::Unparseable("end before they begin"));
}

#[test]
fn tensor_past_the_end_of_the_file_is_unparseable() {
    check(&file(&format!("{{{A}}}"), 10), Expect::Unparseable("past the end"));
}

#[test]
fn trailing_data_after_the_last_tensor_is_a_finding() {
    check(&file(&format!("{{{A}}}"), 21), Expect::Unsafe(&["safetensors_trailing_data"]));
}

#[test]
fn header_larger_than_100_mb_is_unparseable() {
    let mut bytes = 100_000_001u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    check(&bytes, Expect::Unparseable("100 MB"));
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    check(&bytes, Expect::Unparseable("100 MB"));
}

#[test]
fn header_longer_than_the_file_is_unparseable() {
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    check(&bytes, Expect::Unparseable("past the end of the file"));
    check(&[1, 0, 0], Expect::Unparseable("shorter than"));
}

#[test]
fn non_utf8_header_is_unparseable() {
    let header = b"{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    check(&file_bytes(header, 1), Expect::Unparseable("UTF-8"));
}

#[test]
fn header_that_is_not_a_json_object_is_unparseable() {
    check(&file(" {}", 0), Expect::Unparseable("does not start with `{`"));
    check(&file("{\"a\":", 0), Expect::Unparseable("not valid"));
    check(&file("{}x", 0), Expect::Unparseable("after the JSON object"));
    check(&file(r#"{"a":[1,2]}"#, 0), Expect::Unparseable("not valid"));
}

#[test]
fn metadata_that_is_not_string_to_string_is_unparseable() {
    let header = format!(r#"{{"__metadata__":{{"format":1}},{A}}}"#);
    check(&file(&header, 16), Expect::Unparseable("not valid"));
    let header = format!(r#"{{"__metadata__":["pt"],{A}}}"#);
    check(&file(&header, 16), Expect::Unparseable("not valid"));
    let header = format!(r#"{{"__metadata__":{{"nested":{{"a":"b"}}}},{A}}}"#);
    check(&file(&header, 16), Expect::Unparseable("not valid"));
}

#[test]
fn missing_or_ill_typed_fields_are_unparseable() {
    check(&file(r#"{"a":{"dtype":"F32","shape":[1]}}"#, 4), Expect::Unparseable("missing field `data_offsets`"));
    check(&file(r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, 4), Expect::Unparseable("not valid"));
    check(&file(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, 4), Expect::Unparseable("exactly two"));
    check(&file(r#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, 4), Expect::Unparseable("not valid"));
    check(
        &file(r#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#, 4),
        Expect::Unparseable("unknown dtype `Q4`"),
    );
}

#[test]
fn unknown_field_in_a_tensor_is_only_info() {
    let header = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"note":"x"}}"#;
    let report = check(&file(header, 1), Expect::Clean);
    assert!(report.findings.iter().any(|f| f.kind == "safetensors_unknown_field"));
}

#[test]
fn many_gaps_are_capped_in_the_report() {
    let entries: Vec<String> = (0..100)
        .map(|i| format!(r#""t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{},{}]}}"#, 2 * i + 1, 2 * i + 2))
        .collect();
    let report = check(&file(&format!("{{{}}}", entries.join(",")), 200), Expect::Unsafe(&["safetensors_gap"]));
    assert!(report.findings.len() <= 34, "{}", report.findings.len());
    assert!(report.findings.iter().any(|f| f.detail.contains("68 more")), "{report:#?}");
}

#[test]
fn looks_like_wants_a_plausible_length_and_a_brace() {
    let good = file(&format!("{{{A}}}"), 16);
    assert!(safetensors::looks_like(&good));
    assert!(!safetensors::looks_like(&good[..8]));
    assert!(!safetensors::looks_like(&file("[]", 0)));
    assert!(!safetensors::looks_like(b"\x80\x02}q\x00(X\x01\x00\x00\x00a"));
    let mut huge = 200_000_000u64.to_le_bytes().to_vec();
    huge.push(b'{');
    assert!(!safetensors::looks_like(&huge));
}

#[test]
fn the_dispatcher_sends_safetensors_here() {
    let bytes = file(&format!("{{{A}}}"), 16);
    let report = perimeter_scan::scan("weights.bin", &bytes);
    assert_eq!((report.format, report.verdict), (Format::Safetensors, Verdict::Clean));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let report = safetensors::scan(&bytes);
        prop_assert!(report.verdict != Verdict::Clean || bytes.len() >= 10);
    }

    #[test]
    fn arbitrary_headers_never_panic(header in "\\{[ -~]{0,200}\\}", data_len in 0usize..64) {
        let _ = safetensors::scan(&file(&header, data_len));
    }

    #[test]
    fn mutated_valid_files_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = file(&format!(r#"{{"__metadata__":{{"format":"pt"}},{A},{B}}}"#), 19);
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let report = safetensors::scan(&bytes);
        if report.verdict == Verdict::Clean {
            prop_assert!(report.error.is_none());
        }
    }
}
