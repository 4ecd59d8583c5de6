//! Runs the `detect` fuzz target (`fuzz/fuzz_targets/detect.rs`) on stable against generated
//! inputs, so CI compiles it and checks its invariants without nightly or cargo-fuzz.
//!
//! The target's `use libfuzzer_sys::fuzz_target` resolves to this test crate, whose
//! `fuzz_target!` turns the body into a plain function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate self as libfuzzer_sys;

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
#[path = "../../../fuzz/fuzz_targets/detect.rs"]
mod target;

/// Byte strings that exercise the recognisers, spliced with random bytes.
const SEEDS: &[&[u8]] = &[
    b"card 4111 1111 1111 1111",
    b"jane dot doe at example dot com",
    b"+44 20 7946 0958",
    b"GB82 WEST 1234 5698 7654 32",
    b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
    b"password=\"hunter2\" token: yvHNsG9eh6Yo4gfqrc5XlrWi0B26R08q",
    b"Dr Jane Smith, DOB 14/03/1951, NHS 943 476 5919",
    "\u{FF14}\u{FF11}\u{200B}\u{00A0}e\u{301}".as_bytes(),
    b"\xff\xfe\xc3\x28\xe2\x82",
];

#[test]
fn the_fuzz_target_holds_on_generated_inputs() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3_000 {
        let mut data = Vec::new();
        for _ in 0..1 + next() % 6 {
            match next() % 3 {
                0 => data.extend((0..next() % 12).map(|_| next() as u8)),
                _ => data.extend_from_slice(SEEDS[(next() % SEEDS.len() as u64) as usize]),
            }
        }
        // Cut anywhere, including inside a UTF-8 sequence.
        let cut = (next() as usize) % (data.len() + 1);
        target::run(&data[..cut]);
        target::run(&data);
    }
}
