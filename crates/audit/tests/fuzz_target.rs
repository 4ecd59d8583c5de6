//! Runs the `audit_verify` fuzz target (`fuzz/fuzz_targets/audit_verify.rs`) on stable against
//! generated inputs (mutated real logs and arbitrary bytes), so CI compiles it and checks its
//! invariants without nightly or cargo-fuzz.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate self as libfuzzer_sys;

/// Stand-in for libfuzzer-sys's macro: the closure body becomes `target::run`.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
}

#[allow(unused_attributes, unused_imports)]
#[path = "../../../fuzz/fuzz_targets/audit_verify.rs"]
mod target;

use perimeter_audit::*;
use proptest::prelude::*;

fn real_log() -> Vec<u8> {
    let k = signing_key_from_seed(&[3; 32]);
    let mut first = Record::new(RecordKind::Segment);
    first.detail.insert(CHECKPOINT_EVERY.into(), "10".into());
    let mut out = vec![seal_signed(&Head::genesis(), first, &k)];
    for i in 0..6u64 {
        let mut r = Record::new(RecordKind::Decision);
        r.tenant = Some(format!("t{i}"));
        r.entities.insert("EMAIL".into(), 1);
        out.push(seal(&out.last().unwrap().head(), r));
    }
    out.iter().flat_map(|s| s.line.clone()).collect()
}

#[test]
fn the_unmutated_log_is_intact() {
    assert_eq!(verify(&real_log(), None).status, Status::Intact);
    target::run(&real_log());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn the_fuzz_target_holds_on_mutated_logs(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4), cut in any::<prop::sample::Index>()) {
        let mut data = real_log();
        for (i, b) in edits {
            let i = i.index(data.len());
            data[i] = b;
        }
        let keep = cut.index(data.len() + 1);
        data.truncate(keep.max(data.len() / 2));
        target::run(&data);
    }

    #[test]
    fn the_fuzz_target_survives_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        target::run(&data);
    }
}
