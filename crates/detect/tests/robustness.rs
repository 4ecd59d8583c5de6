//! Robustness: pathological inputs stay linear and never panic, and pseudo-random inputs built
//! from detection-relevant fragments always give well-formed findings. No timing assertions:
//! a blow-up shows as a test that does not finish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{assert_well_formed, detector};
use perimeter_detect::Finding;

fn run(text: &str) -> Vec<Finding> {
    let f = detector().detect(text);
    assert_well_formed(text, &f);
    f
}

#[test]
fn a_megabyte_of_digits() {
    run(&"1234567890".repeat(100_000));
    run(&"4111 ".repeat(200_000));
    run(&"1.".repeat(500_000));
}

#[test]
fn a_megabyte_of_at_signs() {
    run(&"a@".repeat(500_000));
    run(&"a@b.".repeat(250_000));
    run(&"jane dot ".repeat(100_000));
}

#[test]
fn repeated_pem_headers() {
    let begins = "-----BEGIN PRIVATE KEY-----".repeat(200_000 / 27);
    assert!(run(&begins).is_empty());
    let with_body = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n".repeat(4_000);
    run(&with_body);
}

#[test]
fn long_runs_of_name_and_key_shapes() {
    run(&"John Smith ".repeat(50_000));
    run(&"password=".repeat(50_000));
    run(&"AKIA".repeat(100_000));
    run(&"eyJ".repeat(100_000));
    run(&"::".repeat(200_000));
    run(&"ab:".repeat(200_000));
    run(&"Dr ".repeat(100_000));
    run(&"\u{200B}".repeat(100_000));
    run(&"４".repeat(100_000));
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FRAGMENTS: &[&str] = &[
    "4111",
    "1111",
    "0",
    "9",
    "12",
    " ",
    "-",
    ".",
    ":",
    "/",
    "@",
    "(at)",
    " dot ",
    "[dot]",
    "example",
    "com",
    "+44",
    "020",
    "7946",
    "(",
    ")",
    "\n",
    "\t",
    "AKIA",
    "ghp_",
    "xoxb-",
    "sk_live_",
    "sk-",
    "AIza",
    "eyJ",
    "-----BEGIN ",
    "PRIVATE KEY-----",
    "-----END ",
    "password=",
    "\"",
    "'",
    "token: ",
    "GB82",
    "WEST",
    "DE89",
    "NHS",
    "SSN",
    "DOB:",
    "born",
    "14/03/1951",
    "MRN",
    "Dr ",
    "Jane",
    "Smith",
    "Dear ",
    "Street",
    "221B",
    "Baker",
    "NW1 6XE",
    "::",
    "fe80",
    "192.168.",
    "é",
    "東京",
    "\u{200B}",
    "\u{00A0}",
    "\u{00AD}",
    "４",
    "＠",
    "e\u{301}",
    "\u{332}",
    "ß",
    "İ",
    "\u{FEFF}",
    "bc1q",
    "1A1z",
    "0x",
    "E11.9",
    "patient",
    "diabetes",
    "passport",
    "ITIN",
    "AB",
    "C",
    "v1.2.3.4",
    "ISBN",
];

#[test]
fn pseudo_random_fragment_soup() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4_000 {
        let n = 1 + rng.next() % 40;
        let text: String = (0..n).map(|_| rng.pick(FRAGMENTS)).collect();
        run(&text);
    }
}

#[test]
fn pseudo_random_bytes() {
    let mut rng = Rng(42);
    for _ in 0..2_000 {
        let n = (rng.next() % 200) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| match rng.next() % 4 {
                // Mostly printable ASCII, some high bytes (often invalid UTF-8).
                0 => (rng.next() % 256) as u8,
                _ => 0x20 + (rng.next() % 95) as u8,
            })
            .collect();
        let findings = detector().detect_bytes(&bytes);
        let mut last_end = 0;
        for f in &findings {
            assert!(f.start < f.end && f.end <= bytes.len() && f.start >= last_end, "{f:?}");
            assert!(std::str::from_utf8(&bytes[f.start..f.end]).is_ok(), "{f:?} covers invalid UTF-8");
            last_end = f.end;
        }
    }
}
