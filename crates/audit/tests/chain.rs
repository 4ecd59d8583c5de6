//! The audit chain detects tampering: any single-byte change, deleted, reordered and inserted
//! records, forged or removed checkpoints; a torn last line is reported as torn, not tampered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_audit::*;
use proptest::prelude::*;

fn key(n: u8) -> SigningKey {
    signing_key_from_seed(&[n; 32])
}

fn decision(i: u64) -> Record {
    let mut r = Record::new(if i % 3 == 2 { RecordKind::Completion } else { RecordKind::Decision });
    r.id = new_id(1_764_403_200_000 + i, [i as u8; 10]);
    r.time = format_time(1_764_403_200_000 + i * 1000);
    r.tenant = Some("acme".into());
    r.level = Some(if i.is_multiple_of(2) { "restricted" } else { "internal" }.into());
    r.entities.insert("EMAIL".into(), 2);
    r.entities.insert("IBAN".into(), 1);
    r.documents = vec![format!("doc_{i}")];
    r.decision = Some("route".into());
    r.backend = Some("vllm-onprem".into());
    r.reasons = vec!["level restricted: self-hosted only".into()];
    r.query_hmac = Some(query_hmac(b"k", &format!("query {i}")));
    r.cost = Some("0.0012".into());
    r.request_id = Some(format!("req-{i}"));
    r
}

fn segment_start(every: u64) -> Record {
    let mut r = Record::new(RecordKind::Segment);
    r.time = format_time(1_764_403_200_000);
    r.detail.insert(CHECKPOINT_EVERY.into(), every.to_string());
    r
}

/// A log of `n` ordinary records with a checkpoint after every `every` of them.
fn log(n: u64, every: u64, k: &SigningKey) -> Vec<Sealed> {
    let mut out = vec![seal_signed(&Head::genesis(), segment_start(every), k)];
    let mut since = 0;
    for i in 0..n {
        let head = out.last().unwrap().head();
        out.push(seal(&head, decision(i)));
        since += 1;
        if since == every {
            let head = out.last().unwrap().head();
            let mut cp = Record::new(RecordKind::Checkpoint);
            cp.time = format_time(1_764_403_300_000 + i);
            out.push(seal_signed(&head, cp, k));
            since = 0;
        }
    }
    out
}

fn bytes(records: &[Sealed]) -> Vec<u8> {
    records.iter().flat_map(|s| s.line.clone()).collect()
}

fn lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|&c| c == b'\n').map(<[u8]>::to_vec).collect()
}

fn tampered(report: &Report) -> (u64, Reason) {
    match &report.status {
        Status::Tampered { line, reason, .. } => (*line, reason.clone()),
        other => panic!("expected tampered, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_is_intact_with_and_without_the_key() {
    let k = key(1);
    let b = bytes(&log(25, 10, &k));
    let r = verify(&b, Some(&k.verifying_key()));
    assert_eq!(r.status, Status::Intact);
    assert_eq!(r.records, 28);
    assert_eq!(r.checkpoints, 3);
    assert_eq!(r.unsealed, 5);
    assert!(r.signatures_checked);
    let r = verify(&b, None);
    assert_eq!(r.status, Status::Intact);
    assert!(!r.signatures_checked);
    assert_eq!(verify(b"", None).status, Status::Intact);
}

#[test]
fn deleted_reordered_and_inserted_records_are_named() {
    let k = key(1);
    let pk = k.verifying_key();
    let l = lines(&bytes(&log(8, 100, &k)));

    let mut del = l.clone();
    del.remove(4);
    assert_eq!(tampered(&verify(&del.concat(), Some(&pk))), (5, Reason::Deleted { expected: 4, found: 5 }));

    let mut swap = l.clone();
    swap.swap(3, 4);
    assert_eq!(tampered(&verify(&swap.concat(), Some(&pk))), (4, Reason::Deleted { expected: 3, found: 4 }));

    // A copy of an earlier record inserted later.
    let mut dup = l.clone();
    dup.insert(6, l[2].clone());
    assert_eq!(tampered(&verify(&dup.concat(), Some(&pk))), (7, Reason::Reordered { expected: 6, found: 2 }));

    // A well-formed record with the right seq but sealed on another chain: the link breaks.
    let mut forged = l.clone();
    let other = seal(&Head { next_seq: 5, hash: "ab".repeat(32) }, decision(99));
    forged[5] = other.line;
    assert_eq!(tampered(&verify(&forged.concat(), Some(&pk))), (6, Reason::BrokenLink));

    // Deleting the first record.
    assert_eq!(tampered(&verify(&l[1..].concat(), Some(&pk))), (1, Reason::Deleted { expected: 0, found: 1 }));
}

#[test]
fn a_forged_or_removed_checkpoint_is_detected() {
    let k = key(1);
    let pk = k.verifying_key();
    let good = log(30, 10, &k);
    let l = lines(&bytes(&good));
    // Recompute the whole chain from line 5 on with another key: hashes and links are valid,
    // the signatures are not.
    let attacker = key(2);
    let mut rewritten: Vec<Sealed> = good[..5].to_vec();
    for s in &good[5..] {
        let head = rewritten.last().unwrap().head();
        let r = s.record.clone();
        rewritten.push(if r.kind.is_signed() { seal_signed(&head, r, &attacker) } else { seal(&head, r) });
    }
    let (line, reason) = tampered(&verify(&bytes(&rewritten), Some(&pk)));
    assert_eq!(line, 12);
    assert!(matches!(reason, Reason::UnknownKey { .. }), "{reason:?}");
    // Without a key, the rewritten chain is consistent: only a key proves who sealed it.
    assert_eq!(verify(&bytes(&rewritten), None).status, Status::Intact);

    // A signature copied from another checkpoint, with the right key id: the signature fails.
    let mut cp = good[11].record.clone();
    cp.signature = good[22].record.signature.clone();
    cp.hash = record_hash(&cp);
    let mut forged = l.clone();
    forged[11] = [canonical(&cp), b"\n".to_vec()].concat();
    assert_eq!(tampered(&verify(&forged.concat(), Some(&pk))), (12, Reason::BadSignature));

    // Checkpoints dropped and the chain re-hashed by someone without the key: the spacing rule.
    let mut dropped: Vec<Sealed> = good[..11].to_vec();
    for s in good[11..].iter().filter(|s| !s.record.kind.is_signed()) {
        let head = dropped.last().unwrap().head();
        dropped.push(seal(&head, s.record.clone()));
    }
    assert_eq!(tampered(&verify(&bytes(&dropped), None)), (12, Reason::CheckpointMissing { since: 11, every: 10 }));

    // An unsigned checkpoint.
    let mut unsigned = good[..11].to_vec();
    let head = unsigned.last().unwrap().head();
    unsigned.push(seal(&head, Record::new(RecordKind::Checkpoint)));
    assert_eq!(tampered(&verify(&bytes(&unsigned), None)), (12, Reason::MissingSignature));
}

#[test]
fn a_torn_last_line_is_reported_as_torn() {
    let k = key(1);
    let b = bytes(&log(5, 100, &k));
    for cut in [1, 10, 40] {
        let r = verify(&b[..b.len() - cut], Some(&k.verifying_key()));
        assert_eq!(r.status, Status::Torn { line: 6, bytes: (lines(&b)[5].len() - cut) as u64 }, "cut {cut}");
        assert_eq!(r.records, 5);
    }
    // A torn line that happens to parse is still torn: the writer always ends with a newline.
    let r = verify(&b[..b.len() - 1], None);
    assert!(matches!(r.status, Status::Torn { line: 6, .. }));
    // An unparseable complete last line is tampered, not torn.
    let mut junk = b.clone();
    junk.extend_from_slice(b"{\"seq\":6\n");
    assert_eq!(tampered(&verify(&junk, None)), (7, Reason::Unparseable));
}

#[test]
fn a_non_canonical_but_equivalent_line_is_refused() {
    let k = key(1);
    let b = bytes(&log(3, 100, &k));
    let text = String::from_utf8(b).unwrap();
    // Same value, different bytes: whitespace and an escaped character.
    let spaced = text.replacen("\"seq\":1,", "\"seq\": 1,", 1);
    assert_eq!(tampered(&verify(spaced.as_bytes(), None)), (2, Reason::NotCanonical));
    let escaped = text.replacen("\"acme\"", "\"\\u0061cme\"", 1);
    assert_eq!(tampered(&verify(escaped.as_bytes(), None)), (2, Reason::NotCanonical));
    let extra = text.replacen("\"seq\":1,", "\"seq\":1,\"note\":\"x\",", 1);
    assert_eq!(tampered(&verify(extra.as_bytes(), None)), (2, Reason::Unparseable));
}

#[test]
fn the_filter_selects_restricted_requests_and_where_they_went() {
    let k = key(1);
    let records: Vec<Record> = log(10, 4, &k).into_iter().map(|s| s.record).collect();
    let f = Filter { level: Some("restricted".into()), kind: Some(RecordKind::Decision), ..Filter::default() };
    let hits: Vec<_> = records.iter().filter(|r| f.matches(r)).collect();
    assert_eq!(hits.iter().map(|r| r.request_id.as_deref().unwrap()).collect::<Vec<_>>(), ["req-0", "req-4", "req-6"]);
    assert!(hits.iter().all(|r| r.backend.as_deref() == Some("vllm-onprem")));
    let window = Filter {
        since: parse_time("2025-11-29T08:00:03Z"),
        until: parse_time("2025-11-29T08:00:05Z"),
        kind: Some(RecordKind::Decision),
        ..Filter::default()
    };
    let seqs: Vec<u64> = records.iter().filter(|r| window.matches(r)).map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 2, "{seqs:?}");
}

#[test]
fn public_keys_round_trip_as_pem_and_hex() {
    let k = key(7);
    let pem = public_key_pem(&k.verifying_key()).unwrap();
    assert_eq!(parse_public_key(&pem).unwrap(), k.verifying_key());
    assert_eq!(parse_public_key(&hex::encode(k.verifying_key().as_bytes())).unwrap(), k.verifying_key());
    assert_eq!(parse_public_key("not a key"), Err(KeyError::BadPublicKey));
    let secret = signing_key_to_pem(&k).unwrap();
    assert_eq!(signing_key_from_pem(&secret).unwrap().to_bytes(), k.to_bytes());
    assert_eq!(signing_key_from_pem(&pem).err(), Some(KeyError::BadPrivateKey));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// STYLE.md: the audit chain detects any single-byte change.
    #[test]
    fn any_single_byte_change_is_detected(pos in any::<prop::sample::Index>(), byte in any::<u8>(), keyed in any::<bool>()) {
        let k = key(1);
        let b = bytes(&log(12, 5, &k));
        let i = pos.index(b.len());
        prop_assume!(b[i] != byte);
        let mut changed = b.clone();
        changed[i] = byte;
        let pk = k.verifying_key();
        let report = verify(&changed, keyed.then_some(&pk));
        prop_assert_ne!(&report.status, &Status::Intact, "byte {} -> {:#04x}", i, byte);
    }

    /// Deleting any one line, or swapping any two, is detected.
    #[test]
    fn any_deletion_or_swap_is_detected(a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let k = key(1);
        let l = lines(&bytes(&log(12, 5, &k)));
        let (i, j) = (a.index(l.len()), b.index(l.len()));
        let mut del = l.clone();
        del.remove(i);
        // Cutting the last record at a record boundary is the one change a chain cannot show.
        if i + 1 < l.len() {
            prop_assert_ne!(verify(&del.concat(), None).status, Status::Intact);
        }
        if i != j {
            let mut swap = l.clone();
            swap.swap(i, j);
            prop_assert_ne!(verify(&swap.concat(), None).status, Status::Intact);
        }
    }

    /// The verifier never panics on arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = verify(&data, None);
    }
}
