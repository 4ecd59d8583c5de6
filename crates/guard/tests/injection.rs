//! The labelled injection set (`tests/data/guard/injection.txt`): every case is scanned, and
//! precision and recall over (case, kind) pairs are asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use perimeter_guard::{scan_instructions, InjectionKind};

struct Case {
    name: String,
    expect: BTreeSet<InjectionKind>,
    text: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\u{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let close = after.find('}').expect("closed \\u{ escape");
        let code = u32::from_str_radix(&after[..close], 16).expect("hex escape");
        out.push(char::from_u32(code).expect("a character"));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn kind(name: &str) -> InjectionKind {
    InjectionKind::ALL.into_iter().find(|k| k.as_str() == name).unwrap_or_else(|| panic!("unknown kind {name}"))
}

fn cases() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/guard/injection.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("=== ") {
            let (name, kinds) = header.split_once(" | ").expect("=== name | kinds");
            let expect = match kinds.trim() {
                "none" => BTreeSet::new(),
                list => list.split(',').map(|k| kind(k.trim())).collect(),
            };
            cases.push(Case { name: name.trim().to_string(), expect, text: String::new() });
        } else if let Some(case) = cases.last_mut() {
            case.text.push_str(&unescape(line));
            case.text.push('\n');
        } else {
            assert!(line.starts_with('#') || line.is_empty(), "text before the first case: {line}");
        }
    }
    for c in &mut cases {
        c.text = c.text.trim_end().to_string();
    }
    cases
}

#[test]
fn labelled_set_precision_and_recall() {
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut report = Vec::new();
    for c in &cases {
        let flags = scan_instructions(&c.text);
        for f in &flags {
            assert!(f.start < f.end && f.end <= c.text.len(), "{}: span {f:?}", c.name);
            assert!(c.text.is_char_boundary(f.start) && c.text.is_char_boundary(f.end), "{}: {f:?}", c.name);
        }
        let got: BTreeSet<InjectionKind> = flags.iter().map(|f| f.kind).collect();
        tp += got.intersection(&c.expect).count();
        let extra: Vec<_> = got.difference(&c.expect).collect();
        let missed: Vec<_> = c.expect.difference(&got).collect();
        fp += extra.len();
        fn_ += missed.len();
        if !extra.is_empty() || !missed.is_empty() {
            report.push(format!("{}: extra {extra:?}, missed {missed:?}", c.name));
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    eprintln!("injection set: precision {precision:.3}, recall {recall:.3}\n{}", report.join("\n"));
    // Every false positive is a bug in the rules: hard negatives must stay clean.
    assert_eq!(fp, 0, "false positives:\n{}", report.join("\n"));
    // The known misses (letter-spaced words, paraphrase) are the only ones allowed.
    assert!(recall >= 0.94, "recall {recall:.3}:\n{}", report.join("\n"));
    for r in &report {
        assert!(r.starts_with("known-miss-"), "unexpected miss: {r}");
    }
}

#[test]
fn long_benign_text_is_clean() {
    let prose = "The committee met on Tuesday to review the budget, the hiring plan and the office \
                 move. Members asked the finance team to act as a liaison with the landlord. ";
    let text = prose.repeat(500);
    assert!(scan_instructions(&text).is_empty());
}
