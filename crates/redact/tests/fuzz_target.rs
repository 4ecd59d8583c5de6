//! Runs the `redact` fuzz target (`fuzz/fuzz_targets/redact.rs`) on stable against generated
//! inputs, so CI compiles it and checks its invariants without nightly or cargo-fuzz.
//!
//! The target's `use libfuzzer_sys::fuzz_target` resolves to this test crate, whose
//! `fuzz_target!` turns the body into a plain function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate self as libfuzzer_sys;

mod common;

/// Stand-in for libfuzzer-sys's macro: the closure body becomes `target::run`.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
}

// `#![no_main]` is a crate-level attribute, meaningless in a module, and the macro is in scope
// already, so the target's import of it goes unused here.
#[allow(unused_attributes, unused_imports)]
#[path = "../../../fuzz/fuzz_targets/redact.rs"]
mod target;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn the_fuzz_target_holds(mode in any::<u8>(), raw in prop::collection::vec(any::<[u8; 3]>(), 0..16), text in common::text()) {
        let mut data = vec![mode, raw.len() as u8];
        data.extend(raw.iter().flatten());
        data.extend(text.as_bytes());
        target::run(&data);
    }

    #[test]
    fn the_fuzz_target_survives_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        target::run(&data);
    }
}
