//! PyTorch checkpoints in their zip, legacy and tar containers, built as bytes here: real-shaped
//! benign files are `Clean`; payloads in any member, in any container, and the zip tricks are
//! caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/pickle_writer.rs"]
mod pickle_writer;

// The `scan_torch` fuzz target runs here on stable against generated inputs (as
// `crates/redact/tests/fuzz_target.rs` does): its `use libfuzzer_sys::fuzz_target` resolves to
// this crate, whose `fuzz_target!` turns the body into a plain function.
extern crate self as libfuzzer_sys;

/// Stand-in for libfuzzer-sys's macro: the closure body becomes `scan_torch::run`.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
}

#[allow(unused_attributes, unused_imports)]
#[path = "../../../fuzz/fuzz_targets/scan_torch.rs"]
mod scan_torch;

use perimeter_scan::{scan, torch, Format, Report, Severity, Verdict};
use pickle_writer::*;
use proptest::prelude::*;

fn benign_pkl() -> Vec<u8> {
    state_dict(&[("fc.weight", "0", 4)])
}

#[track_caller]
fn assert_caught(r: &Report, kind: &str, severity: Severity, detail: &str) -> String {
    assert_eq!(r.verdict, Verdict::Unsafe, "{r:#?}");
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == kind && f.severity == severity && f.detail.contains(detail))
        .unwrap_or_else(|| panic!("expected {kind} {severity:?} {detail:?} in {r:#?}"));
    f.location.clone()
}

// --- zip -------------------------------------------------------------------------------------

#[test]
fn real_shaped_zip_checkpoint_is_clean() {
    let bytes = torch_zip(&benign_pkl());
    let r = scan("model.pt", &bytes);
    assert_eq!(r.format, Format::PytorchZip);
    assert_eq!(r.verdict, Verdict::Clean, "{r:#?}");
    assert!(r.findings.is_empty(), "{r:#?}");
}

#[test]
fn deflated_and_data_descriptor_members_are_clean() {
    let mut members = torch_zip_members(&benign_pkl());
    members[0].deflate = true;
    members[2].deflate = true;
    members[2].descriptor = true;
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_eq!(r.verdict, Verdict::Clean, "{r:#?}");
}

#[test]
fn malicious_data_pkl() {
    let r = torch::scan_zip(&torch_zip(&os_system()));
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert_eq!(at, "archive/data.pkl: byte 0");
}

#[test]
fn a_pickle_renamed_into_a_data_member_is_caught() {
    let mut members = torch_zip_members(&benign_pkl());
    members[2].data = os_system();
    let r = torch::scan_zip(&build_zip(&members, &[]));
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert!(at.starts_with("archive/data/0: "), "{at}");
    // Protocol 2+ payloads too, and deflated ones.
    members[2].data = P::proto(4).str("os").str("system").stack_global().str("id").tuple1().reduce().stop().bytes();
    members[2].deflate = true;
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
}

#[test]
fn a_pickle_hidden_under_any_name_is_caught() {
    let mut members = torch_zip_members(&benign_pkl());
    members.push(ZipMember::stored("archive/extra.txt", &os_system()));
    let r = torch::scan_zip(&build_zip(&members, &[]));
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert!(at.starts_with("archive/extra.txt"));
    // A payload followed by raw bytes (a broken pickle that still imports) counts.
    let mut payload = P::new().global("os", "system").mark().string0("'id'").tuple().reduce().bytes();
    payload.extend([0xffu8; 64]);
    let mut members = torch_zip_members(&benign_pkl());
    members[2].data = payload;
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
}

#[test]
fn tensor_data_that_starts_like_a_pickle_is_not_a_finding() {
    // Raw bytes that begin with PROTO 2, with a protocol 0 opcode, or with `c` and lines.
    let samples: Vec<Vec<u8>> = vec![
        [&[0x80u8, 0x02][..], &[0x3f, 0x80, 0, 0, 0x40, 0, 0, 0, 0xc0, 0x49, 0x0f, 0xdb]].concat(),
        b"(\x00\x00\x80?\x00\x00\x00@".to_vec(),
        b"c\x01\xff\n\x07\x00\n\x00\x00".to_vec(),
        b"\x80\x02NNNR\x00\x00\x00\x00".to_vec(),
        b"\x80\x05\x82\x01\x00\x00".to_vec(),
        b"\x80\x04h\x07\x00\x00".to_vec(),
    ];
    for data in samples {
        let mut members = torch_zip_members(&benign_pkl());
        members[2].data = data.clone();
        let r = torch::scan_zip(&build_zip(&members, &[]));
        assert_eq!(r.verdict, Verdict::Clean, "{data:?}: {r:#?}");
    }
}

#[test]
fn a_broken_data_pkl_is_unparseable() {
    let r = torch::scan_zip(&torch_zip(b"\x80\x02\xff\xff"));
    assert_eq!(r.verdict, Verdict::Unparseable, "{r:#?}");
    // An archive without any pickle is not a checkpoint.
    let r = torch::scan_zip(&build_zip(&[ZipMember::stored("archive/version", b"3\n")], &[]));
    assert_eq!(r.verdict, Verdict::Unparseable, "{r:#?}");
}

#[test]
fn zip_name_mismatch() {
    let mut members = torch_zip_members(&benign_pkl());
    members[1].local_name = Some("archive/data.pkl".into());
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_name_mismatch", Severity::Medium, "archive/data.pkl");
}

#[test]
fn zip_encrypted_flag() {
    let mut members = torch_zip_members(&benign_pkl());
    members[2].flags = 1;
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_encrypted", Severity::Medium, "encrypted");
}

#[test]
fn zip_odd_flag_bits() {
    let mut members = torch_zip_members(&benign_pkl());
    members[3].flags = 1 << 5;
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_flags", Severity::Medium, "0x0020");
}

#[test]
fn zip_crc_mismatch_is_reported_and_the_member_still_scanned() {
    let mut members = torch_zip_members(&os_system());
    members[0].crc = Some(0xDEAD_BEEF);
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_crc_mismatch", Severity::Medium, "CRC");
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    let mut members = torch_zip_members(&benign_pkl());
    members[2].crc = Some(0);
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_crc_mismatch", Severity::Medium, "CRC");
}

#[test]
fn zip_data_descriptor_disagreeing() {
    let mut members = torch_zip_members(&benign_pkl());
    members[2].descriptor = true;
    members[2].descriptor_crc = Some(1);
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_data_descriptor", Severity::Medium, "descriptor");
}

#[test]
fn zip_overlapping_entries() {
    let members = torch_zip_members(&benign_pkl());
    let r = torch::scan_zip(&build_zip(&members, &[("archive/data/1", 2)]));
    assert_caught(&r, "zip_overlap", Severity::Medium, "archive/data/0");
}

#[test]
fn zip_duplicate_names() {
    let mut members = torch_zip_members(&benign_pkl());
    members.push(ZipMember::stored("archive/data.pkl", &benign_pkl()));
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_duplicate_name", Severity::Medium, "two members");
}

#[test]
fn nested_zip_is_reported_and_scanned() {
    let inner = torch_zip(&os_system());
    let mut members = torch_zip_members(&benign_pkl());
    members.push(ZipMember::stored("archive/extra/inner.pt", &inner));
    let r = torch::scan_zip(&build_zip(&members, &[]));
    assert_caught(&r, "zip_nested_archive", Severity::Medium, "zip archive inside");
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert_eq!(at, "archive/extra/inner.pt > archive/data.pkl: byte 0");
    // Nesting is bounded.
    let mut z = torch_zip(&benign_pkl());
    for _ in 0..8 {
        let mut members = torch_zip_members(&benign_pkl());
        members.push(ZipMember::deflated("archive/n.zip", &z));
        z = build_zip(&members, &[]);
    }
    let r = torch::scan_zip(&z);
    assert_caught(&r, "zip_nested_archive", Severity::Medium, "zip archive inside");
}

#[test]
fn torch_load_of_a_nested_zip_checkpoint() {
    let p = P::proto(3)
        .global("torch", "load")
        .global("io", "BytesIO")
        .binbytes(&torch_zip(&os_system()))
        .tuple1()
        .reduce()
        .tuple1()
        .reduce()
        .stop()
        .bytes();
    let r = torch::scan_zip(&torch_zip(&p));
    assert_caught(&r, "pickle_global", Severity::Critical, "torch.load");
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert!(at.contains("torch.load payload") && at.contains("archive/data.pkl"), "{at}");
}

// --- legacy ----------------------------------------------------------------------------------

#[test]
fn legacy_format_is_recognised_and_clean() {
    let bytes = torch_legacy(&benign_pkl());
    assert!(torch::is_legacy(&bytes));
    let r = scan("model.pt", &bytes);
    assert_eq!(r.format, Format::PytorchLegacy);
    assert_eq!(r.verdict, Verdict::Clean, "{r:#?}");
    // Protocol 0 spelling of the magic number.
    assert!(torch::is_legacy(b"L119547037146038801333356L\n."));
    assert!(!torch::is_legacy(&benign_pkl()));
    assert!(!torch::is_legacy(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x18."));
}

#[test]
fn legacy_format_malicious() {
    let r = scan("model.pt", &torch_legacy(&os_system()));
    assert_eq!(r.format, Format::PytorchLegacy);
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    // A truncated legacy file is unparseable.
    let b = torch_legacy(&benign_pkl());
    let r = torch::scan_legacy(&b[..40].to_vec());
    assert_eq!(r.verdict, Verdict::Unparseable, "{r:#?}");
}

// --- tar -------------------------------------------------------------------------------------

#[test]
fn tar_format_is_recognised_and_clean() {
    let bytes = tar(&torch_tar_members(benign_pkl()));
    let r = scan("model.pt", &bytes);
    assert_eq!(r.format, Format::PytorchTar);
    assert_eq!(r.verdict, Verdict::Clean, "{r:#?}");
}

#[test]
fn tar_format_malicious_pickle_member() {
    let r = scan("model.pt", &tar(&torch_tar_members(os_system())));
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert_eq!(at, "pickle: byte 0");
}

#[test]
fn tar_format_malicious_storage_record() {
    let mut members = torch_tar_members(benign_pkl());
    let mut storages = P::proto(2).int(1).stop().bytes();
    storages.extend(os_system());
    members[2].1 = storages;
    let r = torch::scan_tar(&tar(&members));
    let at = assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert!(at.starts_with("storages: "), "{at}");
}

#[test]
fn tar_links_and_hidden_members() {
    let mut bytes = Vec::new();
    for (name, data) in torch_tar_members(benign_pkl()) {
        bytes.extend(tar_member(name, &data, b'0'));
    }
    bytes.extend(tar_member("extra", &os_system(), b'0'));
    bytes.extend(tar_member("pickle", b"", b'2'));
    bytes.extend(vec![0u8; 1024]);
    let r = torch::scan_tar(&bytes);
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert_caught(&r, "tar_link", Severity::Medium, "link");
    assert_caught(&r, "tar_duplicate_name", Severity::Medium, "two members");
}

// --- robustness ------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_archives_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        for base in [torch_zip(&benign_pkl()), torch_legacy(&benign_pkl()), tar(&torch_tar_members(benign_pkl()))] {
            let mut b = base;
            for (i, v) in &flips {
                let n = b.len();
                b[i % n] = *v;
            }
            let _ = scan("model.pt", &b);
            let _ = torch::scan_zip(&b);
            let _ = torch::scan_legacy(&b);
            let _ = torch::scan_tar(&b);
            for selector in 0..5u8 {
                let mut input = vec![selector];
                input.extend(&b);
                scan_torch::run(&input);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = torch::scan_zip(&bytes);
        let _ = torch::scan_legacy(&bytes);
        let _ = torch::scan_tar(&bytes);
        let _ = torch::is_legacy(&bytes);
    }
}
