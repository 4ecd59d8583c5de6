//! Data-driven detection tests: the cases in `tests/data/*.txt` (format in
//! `tests/data/README.md`), plus checks on scores, evidence and the invariants every finding
//! must satisfy (character boundaries, order, no overlap).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{assert_well_formed, detector};

use std::path::PathBuf;

use perimeter_detect::{kind_counts, level_of, Detector, Finding};
use perimeter_types::{EntityKind, Level};

/// Runs the detector on `input` and returns (kind, covered text) pairs.
fn detect(input: &str) -> Vec<(EntityKind, String)> {
    let findings = detector().detect(input);
    assert_well_formed(input, &findings);
    findings.iter().map(|f| (f.kind, input[f.start..f.end].to_owned())).collect()
}

/// Compares findings with expectations; returns a description of the difference.
fn check(input: &str, expect: &[(EntityKind, String)]) -> Result<(), String> {
    let got = detect(input);
    if got == expect {
        return Ok(());
    }
    let show = |v: &[(EntityKind, String)]| v.iter().map(|(k, s)| format!("\n    {k} {s:?}")).collect::<String>();
    Err(format!("input {input:?}\n  expected:{}\n  got:{}", show(expect), show(&got)))
}

/// `\n`, `\r`, `\t`, `\\` and `\u{…}` escapes.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("bad escape \\{other:?} in {s:?}"),
        }
    }
    out
}

struct Case {
    line: usize,
    input: String,
    expect: Vec<(EntityKind, String)>,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut current: Option<Case> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.is_empty() {
            cases.extend(current.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some(input) = line.strip_prefix('>') {
            let input = unescape(input.strip_prefix(' ').unwrap_or(input));
            match &mut current {
                Some(c) if c.expect.is_empty() => {
                    c.input.push('\n');
                    c.input.push_str(&input);
                }
                Some(_) => panic!("line {}: input after expectations", i + 1),
                None => current = Some(Case { line: i + 1, input, expect: Vec::new() }),
            }
            continue;
        }
        let case = current.as_mut().unwrap_or_else(|| panic!("line {}: expectation without input", i + 1));
        if line == "none" {
            continue;
        }
        let (kind, covered) = line.split_once(' ').unwrap_or_else(|| panic!("line {}: want KIND text", i + 1));
        let kind: EntityKind = kind.parse().unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        case.expect.push((kind, unescape(covered)));
    }
    cases.extend(current);
    cases
}

fn run_file(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let cases = parse_cases(&text);
    assert!(!cases.is_empty(), "{name} has no cases");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(&c.input, &c.expect).err().map(|e| format!("{name}:{}: {e}", c.line)))
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn contact_cases() {
    run_file("contact.txt");
}

#[test]
fn finance_cases() {
    run_file("finance.txt");
}

#[test]
fn national_id_cases() {
    run_file("national.txt");
}

#[test]
fn health_cases() {
    run_file("health.txt");
}

#[test]
fn secret_cases() {
    run_file("secrets.txt");
}

#[test]
fn person_cases() {
    run_file("person.txt");
}

#[test]
fn address_cases() {
    run_file("address.txt");
}

#[test]
fn regression_cases() {
    run_file("regressions.txt");
}

#[test]
fn mixed_cases() {
    run_file("mixed.txt");
}

#[test]
fn normalization_cases() {
    run_file("normalization.txt");
}

#[test]
fn hl7_cases() {
    run_file("hl7.txt");
}

fn only(input: &str) -> Finding {
    let f = detector().detect(input);
    assert_eq!(f.len(), 1, "{input:?}: {f:?}");
    f.into_iter().next().unwrap()
}

#[test]
fn example_keys_and_placeholders_are_not_reported() {
    assert!(detector().detect("aws_access_key_id = AKIAIOSFODNN7EXAMPLE").is_empty());
    assert!(detector().detect("STRIPE_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx").is_empty());
    let f = only("AKIAQWERTYUIOPASDFGH");
    assert!(!f.evidence.contains(&"example-key") && f.score >= 0.9, "{f:?}");
}

#[test]
fn evidence_names_the_validator_and_context() {
    let f = only("Card number: 4111 1111 1111 1111");
    assert_eq!(f.evidence, ["luhn", "iin", "context:card"]);
    assert_eq!(f.score, 1.0);
    assert_eq!(only("GB82WEST12345698765432").evidence, ["mod97"]);
    assert_eq!(only("DOB: 14/03/1951").evidence, ["context:dob"]);
    let f = only("token = yvHNsG9eh6Yo4gfqrc5XlrWi0B26R08q");
    assert_eq!(f.kind, EntityKind::GenericSecret);
    assert!(f.evidence.contains(&"entropy"), "{f:?}");
    assert!(only("Mr Smith").evidence.contains(&"title"));
    assert!(only("then Michael Johnson said").evidence.contains(&"name-list"));
}

#[test]
fn context_words_move_scores() {
    let plain = only("4111 1111 1111 1111").score;
    let card = only("card 4111 1111 1111 1111").score;
    let order = only("Order paid by card 4111 1111 1111 1111").score;
    assert!(card > plain && order < card, "{plain} {card} {order}");
    assert!(detector().detect("Order #4111 1111 1111 1111").is_empty());
}

#[test]
fn levels_and_counts_follow_the_kinds() {
    let f = detector().detect("Mail jane.doe@example.com or card 4111 1111 1111 1111, jo@example.org");
    assert_eq!(level_of(&f), Some(Level::Restricted));
    let counts = kind_counts(&f);
    assert_eq!(counts[&EntityKind::Email], 2);
    assert_eq!(counts[&EntityKind::CreditCard], 1);
    assert_eq!(level_of(&detector().detect("nothing to see here")), None);
    assert_eq!(level_of(&detector().detect("mail jane.doe@example.com")), Some(Level::Confidential));
}

#[test]
fn invalid_utf8_runs_are_scanned_separately_with_offsets_into_the_bytes() {
    let bytes = b"card 4111 1111 1111 1111 \xff\xfe email a@b.co \xc3";
    let f = detector().detect_bytes(bytes);
    let got: Vec<(EntityKind, &[u8])> = f.iter().map(|f| (f.kind, &bytes[f.start..f.end])).collect();
    assert_eq!(got, [(EntityKind::CreditCard, &b"4111 1111 1111 1111"[..]), (EntityKind::Email, &b"a@b.co"[..])]);
    // Valid UTF-8 takes the same path as `detect`.
    let text = "mail jane.doe@example.com";
    assert_eq!(detector().detect_bytes(text.as_bytes()), detector().detect(text));
    // An invalid byte splits a number: neither half is a card.
    assert!(detector().detect_bytes(b"4111 1111\xff1111 1111").is_empty());
}

#[test]
fn empty_and_tiny_inputs() {
    for s in ["", " ", "@", "a@", "-----", "\u{200B}", "é", "0", "+", "(", "\n\n"] {
        assert!(detect(s).is_empty(), "{s:?}");
    }
    assert!(detector().detect_bytes(b"\xff\xfe\xfd").is_empty());
}

#[test]
fn detector_is_shareable_across_threads() {
    let d = detector();
    let handles: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || d.detect(&format!("thread {i} mail t{i}@example.com")).len()))
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}

/// A stand-in for a model-based recogniser, written against the public trait only.
struct Keyword {
    word: &'static str,
    triggers: &'static [&'static str],
}

impl perimeter_detect::Recognizer for Keyword {
    fn name(&self) -> &'static str {
        "keyword"
    }
    fn kinds(&self) -> &[EntityKind] {
        &[EntityKind::Person]
    }
    fn triggers(&self) -> &[&'static str] {
        self.triggers
    }
    fn find(&self, text: &perimeter_detect::NormalizedText<'_>, out: &mut Vec<Finding>) {
        let t = text.as_str();
        if let Some(i) = t.find(self.word) {
            out.push(Finding {
                kind: EntityKind::Person,
                start: i,
                end: i + self.word.len(),
                score: 0.9,
                evidence: vec!["model"],
            });
        }
    }
}

#[test]
fn recognisers_can_be_added_from_outside_the_crate() {
    // Without triggers it always runs; offsets into the normalised text map back to the input.
    let d = Detector::new().unwrap().with(Box::new(Keyword { word: "Zorblax", triggers: &[] })).unwrap();
    let text = "ｚ Zorblax\u{200B} mail a@example.com";
    let f = d.detect(text);
    let got: Vec<(EntityKind, &str)> = f.iter().map(|f| (f.kind, &text[f.start..f.end])).collect();
    assert_eq!(got, [(EntityKind::Person, "Zorblax"), (EntityKind::Email, "a@example.com")]);
    // With a trigger it runs only when the trigger matches.
    let d = Detector::new().unwrap().with(Box::new(Keyword { word: "Zorblax", triggers: &["(?i)alien"] })).unwrap();
    assert!(d.detect("Zorblax").is_empty());
    assert_eq!(d.detect("alien Zorblax").len(), 1);
    // A trigger that does not compile is an error naming the recogniser, not a panic.
    let err = Detector::new().unwrap().with(Box::new(Keyword { word: "x", triggers: &["("] })).unwrap_err();
    assert!(err.to_string().contains("keyword"), "{err}");
}
