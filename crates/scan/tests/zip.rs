//! The zip reader's public API (used by the PyTorch and Keras scanners): directories read and
//! cross-checked, members read stored or deflated with size bounds and CRC checks, zip64, and
//! no panic on arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/pickle_writer.rs"]
mod pickle_writer;

use perimeter_scan::zip::{self, Archive};
use perimeter_scan::Severity;
use pickle_writer::*;
use proptest::prelude::*;

fn kinds(a: &Archive) -> Vec<&str> {
    a.findings.iter().map(|f| f.kind).collect()
}

#[test]
fn reads_stored_and_deflated_members() {
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let bytes = build_zip(
        &[ZipMember::stored("a.txt", b"hello"), ZipMember::deflated("dir/b.bin", &big), ZipMember::stored("dir/", b"")],
        &[],
    );
    let a = zip::read_archive(&bytes).unwrap();
    assert!(a.findings.is_empty(), "{:#?}", a.findings);
    assert_eq!(a.entries.len(), 3);
    let e = &a.entries[1];
    assert_eq!((e.name.as_str(), e.method, e.size), ("dir/b.bin", 8, big.len() as u64));
    assert!(e.compressed_size < e.size);
    assert!(a.entries[2].is_dir());
    assert_eq!(zip::read_entry(&bytes, &a.entries[0], 1 << 20).unwrap(), b"hello");
    assert_eq!(zip::read_entry(&bytes, e, 1 << 30).unwrap(), big);
    assert_eq!(zip::read_prefix(&bytes, e, 8).unwrap(), big[..8]);
    assert!(zip::check_entry(&bytes, e, u64::MAX).unwrap());
    let w = zip::stored_window(&bytes, &a.entries[0]).unwrap();
    assert_eq!(perimeter_scan::read_exact_at(&w, 0, 5).unwrap(), b"hello");
    assert!(zip::stored_window(&bytes, e).is_none());
}

#[test]
fn size_limits_hold_for_stored_and_deflated_members() {
    let data = vec![0u8; 1 << 20];
    let bytes = build_zip(&[ZipMember::deflated("zeros", &data), ZipMember::stored("s", &data)], &[]);
    let a = zip::read_archive(&bytes).unwrap();
    for e in &a.entries {
        assert!(zip::read_entry(&bytes, e, 1000).unwrap_err().contains("over the limit"));
    }
}

#[test]
fn a_member_that_inflates_beyond_its_declared_size_is_refused() {
    // A zip bomb lying about its size: 4 MiB of zeros declared as 1 KiB.
    let data = vec![0u8; 4 << 20];
    let mut bytes = build_zip(&[ZipMember::deflated("bomb", &data)], &[]);
    let a = zip::read_archive(&bytes).unwrap();
    let e = a.entries[0].clone();
    // Patch the declared size in the central directory and the local header.
    let cd = bytes.len() - 22 - (46 + 4);
    bytes[cd + 24..cd + 28].copy_from_slice(&1024u32.to_le_bytes());
    bytes[22..26].copy_from_slice(&1024u32.to_le_bytes());
    let a = zip::read_archive(&bytes).unwrap();
    assert_eq!(a.entries[0].size, 1024);
    assert!(zip::read_entry(&bytes, &a.entries[0], 1 << 30).unwrap_err().contains("more data than"), "{e:?}");
}

#[test]
fn crc_mismatch_is_an_error_for_read_entry_and_a_flag_for_the_lenient_reads() {
    let mut m = ZipMember::stored("x", b"payload");
    m.crc = Some(42);
    let bytes = build_zip(&[m], &[]);
    let a = zip::read_archive(&bytes).unwrap();
    let e = &a.entries[0];
    assert!(zip::read_entry(&bytes, e, 100).unwrap_err().contains("CRC"));
    assert_eq!(zip::read_entry_lenient(&bytes, e, 100).unwrap(), (b"payload".to_vec(), false));
    assert!(!zip::check_entry(&bytes, e, 100).unwrap());
}

#[test]
fn encrypted_members_are_findings_and_unreadable() {
    let mut m = ZipMember::stored("x", b"payload");
    m.flags = 1;
    let bytes = build_zip(&[m], &[]);
    let a = zip::read_archive(&bytes).unwrap();
    assert_eq!(kinds(&a), ["zip_encrypted"]);
    assert!(a.findings.iter().all(|f| f.severity == Severity::Medium));
    assert!(zip::read_entry(&bytes, &a.entries[0], 100).unwrap_err().contains("encrypted"));
}

#[test]
fn directory_tricks_are_findings() {
    let mut renamed = ZipMember::stored("a", b"1");
    renamed.local_name = Some("b".into());
    let mut descriptor = ZipMember::stored("c", b"2");
    descriptor.descriptor = true;
    descriptor.descriptor_crc = Some(7);
    let bytes = build_zip(
        &[
            renamed,
            descriptor,
            ZipMember::stored("../evil", b"3"),
            ZipMember::stored("d", b"4"),
            ZipMember::stored("d", b"5"),
        ],
        &[("alias", 3)],
    );
    let a = zip::read_archive(&bytes).unwrap();
    let k = kinds(&a);
    for want in ["zip_name_mismatch", "zip_data_descriptor", "zip_path", "zip_duplicate_name", "zip_overlap"] {
        assert!(k.contains(&want), "{want} missing in {:#?}", a.findings);
    }
}

#[test]
fn trailing_data_and_count_mismatch() {
    let mut bytes = build_zip(&[ZipMember::stored("a", b"1")], &[]);
    bytes.extend_from_slice(b"junk");
    let a = zip::read_archive(&bytes).unwrap();
    assert_eq!(kinds(&a), ["zip_trailing_data"]);
    let mut bytes = build_zip(&[ZipMember::stored("a", b"1"), ZipMember::stored("b", b"2")], &[]);
    let n = bytes.len();
    bytes[n - 12..n - 10].copy_from_slice(&1u16.to_le_bytes()); // total entries
    bytes[n - 14..n - 12].copy_from_slice(&1u16.to_le_bytes()); // entries on this disk
    let a = zip::read_archive(&bytes).unwrap();
    assert_eq!(a.entries.len(), 2);
    assert_eq!(kinds(&a), ["zip_count_mismatch"]);
}

#[test]
fn a_local_header_the_directory_does_not_list_is_found() {
    // Two members, but the central directory only lists the second.
    let bytes = build_zip(&[ZipMember::stored("hidden", b"x"), ZipMember::stored("shown", b"y")], &[]);
    let a = zip::read_archive(&bytes).unwrap();
    let second = a.entries[1].offset as usize;
    let mut out = bytes[..second].to_vec();
    let mut tail = build_zip(&[ZipMember::stored("shown", b"y")], &[]);
    // Shift the tail's offsets by the hidden member's size.
    let cd_len = 46 + 5;
    let n = tail.len();
    let cd_off = u32::from_le_bytes(tail[n - 6..n - 2].try_into().unwrap()) + second as u32;
    tail[n - 6..n - 2].copy_from_slice(&cd_off.to_le_bytes());
    let cd = n - 22 - cd_len;
    tail[cd + 42..cd + 46].copy_from_slice(&(second as u32).to_le_bytes());
    out.extend(tail);
    let a = zip::read_archive(&out).unwrap();
    assert_eq!(a.entries.len(), 1);
    assert_eq!(kinds(&a), ["zip_hidden_entry"]);
}

#[test]
fn zip64_archives_are_read() {
    // One stored member whose sizes and offset live in zip64 extra fields, with zip64 end records.
    let data = b"zip64 data";
    let crc = crc32(data);
    let mut out = Vec::new();
    let mut extra = vec![1, 0, 16, 0];
    extra.extend((data.len() as u64).to_le_bytes());
    extra.extend((data.len() as u64).to_le_bytes());
    out.extend(0x0403_4b50u32.to_le_bytes());
    out.extend([45, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    out.extend(crc.to_le_bytes());
    out.extend(u32::MAX.to_le_bytes());
    out.extend(u32::MAX.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend((extra.len() as u16).to_le_bytes());
    out.extend(b"z");
    out.extend(&extra);
    out.extend(data);
    let cd_offset = out.len() as u64;
    let mut cextra = vec![1, 0, 24, 0];
    cextra.extend((data.len() as u64).to_le_bytes());
    cextra.extend((data.len() as u64).to_le_bytes());
    cextra.extend(0u64.to_le_bytes());
    let mut cd = Vec::new();
    cd.extend(0x0201_4b50u32.to_le_bytes());
    cd.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    cd.extend(crc.to_le_bytes());
    cd.extend(u32::MAX.to_le_bytes());
    cd.extend(u32::MAX.to_le_bytes());
    cd.extend(1u16.to_le_bytes());
    cd.extend((cextra.len() as u16).to_le_bytes());
    cd.extend([0u8; 10]);
    cd.extend(u32::MAX.to_le_bytes());
    cd.extend(b"z");
    cd.extend(&cextra);
    out.extend(&cd);
    let z64 = out.len() as u64;
    out.extend(0x0606_4b50u32.to_le_bytes());
    out.extend(44u64.to_le_bytes());
    out.extend([45, 0, 45, 0]);
    out.extend([0u8; 8]);
    out.extend(1u64.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend((cd.len() as u64).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0x0706_4b50u32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(z64.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend([0xFF; 4]);
    out.extend([0xFF; 8]);
    out.extend(0u16.to_le_bytes());
    let a = zip::read_archive(&out).unwrap();
    assert!(a.findings.is_empty(), "{:#?}", a.findings);
    assert_eq!(a.entries[0].size, data.len() as u64);
    assert_eq!(zip::read_entry(&out, &a.entries[0], 100).unwrap(), data);
}

#[test]
fn not_a_zip_is_an_error() {
    assert!(zip::read_archive(&b"PK\x03\x04 not really".to_vec()).is_err());
    assert!(zip::read_archive(&Vec::new()).is_err());
    // A central directory pointing outside the file.
    let mut bytes = build_zip(&[ZipMember::stored("a", b"1")], &[]);
    let n = bytes.len();
    bytes[n - 6..n - 2].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
    assert!(zip::read_archive(&bytes).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_and_mutated_archives_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let _ = zip::read_archive(&bytes);
        let mut b = build_zip(
            &[ZipMember::stored("a", b"hello"), ZipMember::deflated("b", &[7u8; 3000]), ZipMember::stored("c/", b"")],
            &[],
        );
        for (i, v) in &flips {
            let n = b.len();
            b[i % n] = *v;
        }
        if let Ok(a) = zip::read_archive(&b) {
            for e in &a.entries {
                let _ = zip::read_entry(&b, e, 1 << 16);
                let _ = zip::read_prefix(&b, e, 16);
                let _ = zip::check_entry(&b, e, 1 << 16);
            }
        }
    }
}
