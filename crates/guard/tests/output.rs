//! The output guard's streaming invariant: for any split of an answer into pieces, the guarded
//! stream equals the guarded whole answer, and the report is the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_detect::Detector;
use perimeter_guard::{guard_text, OutputGuard};
use perimeter_types::EntityKind;
use proptest::prelude::*;

fn detector() -> &'static Detector {
    static D: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
    D.get_or_init(|| Detector::new().unwrap())
}

const CONTEXT: &str = "Sources: [1] Billing\nThe customer's card on file is 5500 0000 0000 0004.";

fn answers() -> Vec<String> {
    vec![
        "Your card 4111 1111 1111 1111 expires soon; the one on file is 5500-0000-0000-0004 [1].".into(),
        format!(
            "{}Use key AKIAQYLPMN5HHHFPZAM2 with secret aws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ\". {}",
            "Some long preamble about the system. ".repeat(6),
            "Then mail jane.doe@corp.example or call 020 7946 0958.".repeat(3)
        ),
        "Ｃａｒｄ: ４１１１ １１１１ １１１１ １１１１ — and IBAN GB82 WEST 1234 5698 7654 32 for transfers.".into(),
        format!("-----BEGIN RSA PRIVATE KEY-----\n{}-----END RSA PRIVATE KEY-----\nok", "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n".repeat(8)),
        "No sensitive data at all, just a reasonably long answer about leave policy and holidays. ".repeat(8),
    ]
}

fn stream(detector: &Detector, text: &str, cuts: &[usize]) -> (String, perimeter_guard::GuardReport) {
    let mut bounds: Vec<usize> =
        cuts.iter().map(|c| c % (text.len() + 1)).filter(|c| text.is_char_boundary(*c)).collect();
    bounds.push(0);
    bounds.push(text.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut g = OutputGuard::new(detector, &[CONTEXT]);
    let mut out = String::new();
    for w in bounds.windows(2) {
        out.push_str(&g.push(&text[w[0]..w[1]]));
    }
    let (rest, report) = g.finish();
    out.push_str(&rest);
    (out, report)
}

#[test]
fn fixed_answers_are_guarded() {
    let d = Detector::new().unwrap();
    let a = answers();
    let (out, report) = guard_text(&d, &[CONTEXT], &a[0]);
    assert!(out.contains("[REDACTED:CREDIT_CARD] expires"), "{out}");
    assert!(out.contains("5500-0000-0000-0004"), "in the context: {out}");
    assert_eq!(report.redacted.get(&EntityKind::CreditCard), Some(&1));
    assert_eq!(report.passed.get(&EntityKind::CreditCard), Some(&1));
    let (out, report) = guard_text(&d, &[CONTEXT], &a[1]);
    assert!(!out.contains("AKIAQYLPMN5HHHFPZAM2"), "{out}");
    assert!(!out.contains("jane.doe@corp.example"), "{out}");
    assert!(report.redacted.contains_key(&EntityKind::AwsAccessKey), "{report:?}");
    let (out, _) = guard_text(&d, &[CONTEXT], &a[2]);
    assert!(!out.contains("４１１１"), "{out}");
    let (out, report) = guard_text(&d, &[CONTEXT], &a[4]);
    assert_eq!(out, a[4]);
    assert_eq!(report.redacted_total(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_split_equals_the_whole(which in 0usize..5, cuts in proptest::collection::vec(0usize..2000, 0..40)) {
        let d = detector();
        let text = &answers()[which];
        let whole = guard_text(d, &[CONTEXT], text);
        let streamed = stream(d, text, &cuts);
        prop_assert_eq!(streamed, whole);
    }

    #[test]
    fn arbitrary_text_splits_equal_the_whole(text in "[a-z0-9 @.\\-\n]{0,600}", cuts in proptest::collection::vec(0usize..700, 0..20)) {
        let d = detector();
        let whole = guard_text(d, &[], &text);
        let streamed = stream(d, &text, &cuts);
        prop_assert_eq!(streamed, whole);
    }
}
