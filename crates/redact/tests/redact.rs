//! Behaviour of redaction and restoring on hand-written cases: naming rules, keyed tokens,
//! literal and invented placeholders, invalid spans, streaming, and what `Debug` and JSON show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use perimeter_redact::{
    redact, redact_many, restore, RedactError, Redacted, Restorer, Span, Tokens, MAX_HEX_LEN, MIN_HEX_LEN, MIN_KEY_LEN,
};
use perimeter_types::EntityKind::{self, Email, Iban, Passport, Person, Phone};

const KEY: &[u8] = b"0123456789abcdef-perimeter-test";
const OTHER_KEY: &[u8] = b"fedcba9876543210-perimeter-test";

/// Spans for each occurrence of each (kind, needle) in `text`.
fn spans(text: &str, wanted: &[(EntityKind, &str)]) -> Vec<Span> {
    wanted
        .iter()
        .flat_map(|&(kind, needle)| text.match_indices(needle).map(move |(i, _)| Span::new(kind, i, i + needle.len())))
        .collect()
}

/// Redacts `wanted` in `text` with sequential tokens, checks the result against `expect` and
/// that restoring gives `text` back.
fn check(text: &str, wanted: &[(EntityKind, &str)], expect: &str) -> Redacted {
    let r = redact(text, &spans(text, wanted), &Tokens::Sequential).unwrap();
    assert_eq!(r.text, expect);
    assert_eq!(restore(&r.text, &r.mapping), text);
    r
}

fn keyed(key: &[u8], hex_len: usize) -> Tokens {
    Tokens::keyed(key.to_vec(), hex_len).unwrap()
}

#[test]
fn the_same_value_gets_the_same_placeholder() {
    let r = check(
        "Alice met Bob; Alice left, Bob stayed.",
        &[(Person, "Alice"), (Person, "Bob")],
        "<PERSON_1> met <PERSON_2>; <PERSON_1> left, <PERSON_2> stayed.",
    );
    assert_eq!(r.mapping.len(), 2);
    assert_eq!(r.mapping.get("<PERSON_1>"), Some("Alice"));
    assert_eq!(r.mapping.get("<PERSON_2>"), Some("Bob"));
    let entries: Vec<_> = r.mapping.iter().collect();
    assert_eq!(entries, [("<PERSON_1>", Person, "Alice"), ("<PERSON_2>", Person, "Bob")]);
}

#[test]
fn numbering_is_per_kind_in_order_of_first_appearance() {
    // Spans given out of order: numbering follows the text, not the span list.
    check(
        "mail bob@x.io, IBAN DE89370400440532013000, mail amy@y.io, call Bob",
        &[(Person, "Bob"), (Email, "amy@y.io"), (Iban, "DE89370400440532013000"), (Email, "bob@x.io")],
        "mail <EMAIL_1>, IBAN <IBAN_1>, mail <EMAIL_2>, call <PERSON_1>",
    );
}

#[test]
fn values_differ_by_exact_string() {
    check("Alice, alice, Alice ", &[(Person, "Alice"), (Person, "alice")], "<PERSON_1>, <PERSON_2>, <PERSON_1> ");
}

#[test]
fn different_kinds_with_the_same_value_get_different_placeholders() {
    let text = "id 12345678 and 12345678";
    let spans = [Span::new(Phone, 3, 11), Span::new(Passport, 16, 24)];
    for tokens in [Tokens::Sequential, keyed(KEY, 8)] {
        let r = redact(text, &spans, &tokens).unwrap();
        assert_eq!(r.mapping.len(), 2);
        let placeholders: Vec<&str> = r.mapping.iter().map(|(p, _, _)| p).collect();
        assert!(placeholders[0].starts_with("<PHONE_"), "{placeholders:?}");
        assert!(placeholders[1].starts_with("<PASSPORT_"), "{placeholders:?}");
        assert_eq!(restore(&r.text, &r.mapping), text);
    }
}

#[test]
fn keyed_tokens_are_hmac_sha256_of_kind_nul_value() {
    // Expected values computed independently: Python's hmac.new(key, b"PERSON\x00Alice",
    // hashlib.sha256).hexdigest(), and the same for the IBAN.
    let text = "Alice pays DE89370400440532013000";
    let s = spans(text, &[(Person, "Alice"), (Iban, "DE89370400440532013000")]);
    let r = redact(text, &s, &keyed(KEY, 8)).unwrap();
    assert_eq!(r.text, "<PERSON_f338384e> pays <IBAN_b1dd97f6>");
    let r = redact(text, &s, &keyed(KEY, 16)).unwrap();
    assert_eq!(r.text, "<PERSON_f338384e7b600abd> pays <IBAN_b1dd97f6e8616628>");
}

#[test]
fn keyed_tokens_are_stable_across_calls_and_differ_with_another_key() {
    let first = redact("Alice", &[Span::new(Person, 0, 5)], &keyed(KEY, 8)).unwrap();
    // Another request, with other values around it: Alice's token is the same (a join key).
    let text = "Bob and Alice";
    let second = redact(text, &spans(text, &[(Person, "Bob"), (Person, "Alice")]), &keyed(KEY, 8)).unwrap();
    assert!(second.text.ends_with(&format!("and {}", first.text)), "{} / {}", first.text, second.text);
    let other = redact("Alice", &[Span::new(Person, 0, 5)], &keyed(OTHER_KEY, 8)).unwrap();
    assert_ne!(other.text, first.text);
    assert_eq!(other.text.len(), first.text.len());
}

#[test]
fn keyed_tokens_lengthen_on_a_prefix_collision_between_two_values() {
    // Find two names whose 8-hex tokens collide (a 32-bit prefix: the birthday bound makes this
    // quick), computing the MAC independently of the crate.
    use hmac::{Hmac, Mac};
    let token = |value: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
        mac.update(format!("PERSON\0{value}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let (a, b) = (0u32..)
        .find_map(|i| {
            let value = format!("name{i}");
            let digest = token(&value);
            seen.insert(digest[..8].to_owned(), value.clone()).map(|earlier| (earlier, value))
        })
        .unwrap();
    let text = format!("{a} {b} {a} {b}");
    let r = redact(&text, &spans(&text, &[(Person, &a), (Person, &b)]), &keyed(KEY, 8)).unwrap();
    let (ta, tb) = (token(&a), token(&b));
    let (pa, pb) = (format!("<PERSON_{}>", &ta[..8]), format!("<PERSON_{}>", &tb[..9]));
    assert_eq!(r.text, format!("{pa} {pb} {pa} {pb}"));
    assert_eq!(r.mapping.get(&pa), Some(a.as_str()));
    assert_eq!(r.mapping.get(&pb), Some(b.as_str()));
    assert_eq!(restore(&r.text, &r.mapping), text);
}

#[test]
fn literal_placeholders_in_the_input_are_not_used() {
    // The user typed `<PERSON_1>` themselves: Alice must not get it, or restoring would turn the
    // literal into "Alice".
    let r = check(
        "I wrote <PERSON_1> and <PERSON_3>; Alice, Bob and Carol read it",
        &[(Person, "Alice"), (Person, "Bob"), (Person, "Carol")],
        "I wrote <PERSON_1> and <PERSON_3>; <PERSON_2>, <PERSON_4> and <PERSON_5> read it",
    );
    assert_eq!(r.mapping.get("<PERSON_1>"), None);
    // A literal made of the redacted value and its surroundings counts too.
    check("<Alice>", &[(Person, "Alice")], "<<PERSON_1>>");
    check("<PERSON_1> <Alice>", &[(Person, "Alice")], "<PERSON_1> <<PERSON_2>>");
}

#[test]
fn literal_keyed_placeholders_in_the_input_are_not_used() {
    let plain = redact("Alice", &[Span::new(Person, 0, 5)], &keyed(KEY, 8)).unwrap();
    let text = format!("{} is Alice", plain.text);
    let r = redact(&text, &spans(&text, &[(Person, "Alice")]), &keyed(KEY, 8)).unwrap();
    assert_eq!(r.text, format!("{} is <PERSON_f338384e7>", plain.text));
    assert_eq!(restore(&r.text, &r.mapping), text);
}

#[test]
fn invented_placeholders_are_left_alone() {
    let r = check("Alice and Bob", &[(Person, "Alice"), (Person, "Bob")], "<PERSON_1> and <PERSON_2>");
    let answer = "<PERSON_9> told <PERSON_1>, <person_2>, <PERSON_2 >, <PERSON_2>> and <<PERSON_1>";
    assert_eq!(restore(answer, &r.mapping), "<PERSON_9> told Alice, <person_2>, <PERSON_2 >, Bob> and <Alice");
}

#[test]
fn invalid_spans_are_errors_that_name_no_text() {
    let text = "héllo wörld";
    let cases = [
        Span::new(Person, 0, 99),  // past the end
        Span::new(Person, 2, 5),   // starts inside "é"
        Span::new(Person, 0, 2),   // ends inside "é"
        Span::new(Person, 5, 3),   // reversed
        Span::new(Person, 99, 99), // empty but out of bounds
    ];
    for bad in cases {
        let spans = [Span::new(Email, 0, 1), bad];
        let err = redact(text, &spans, &Tokens::Sequential).unwrap_err();
        assert_eq!(err, RedactError::InvalidSpan { index: 1 }, "{bad:?}");
        let message = err.to_string();
        assert!(!message.contains("llo") && !message.contains('é') && !message.contains("wör"), "{message}");
    }
    let err = redact_many(&[("ok", &[]), (text, &[Span::new(Person, 2, 5)])], &Tokens::Sequential).unwrap_err();
    assert_eq!(err, RedactError::InvalidSpanInText { text: 1, index: 0 });
}

#[test]
fn empty_overlapping_and_unsorted_spans() {
    let text = "0123456789";
    let spans = [
        Span::new(Phone, 6, 9),
        Span::new(Person, 3, 3), // empty: ignored
        Span::new(Person, 0, 4),
        Span::new(Email, 0, 2), // same start, shorter: dropped
        Span::new(Iban, 2, 7),  // overlaps the kept 0..4: dropped
        Span::new(Email, 4, 6),
    ];
    let r = redact(text, &spans, &Tokens::Sequential).unwrap();
    assert_eq!(r.text, "<PERSON_1><EMAIL_1><PHONE_1>9");
    assert_eq!(restore(&r.text, &r.mapping), text);
    let none = redact(text, &[], &Tokens::Sequential).unwrap();
    assert_eq!(none.text, text);
    assert!(none.mapping.is_empty());
}

#[test]
fn bad_keys_and_lengths_are_refused() {
    assert_eq!(Tokens::keyed(vec![7; MIN_KEY_LEN - 1], 8).unwrap_err(), RedactError::KeyTooShort);
    assert_eq!(Tokens::keyed(KEY.to_vec(), MIN_HEX_LEN - 1).unwrap_err(), RedactError::InvalidHexLen { hex_len: 7 });
    assert_eq!(Tokens::keyed(KEY.to_vec(), MAX_HEX_LEN + 1).unwrap_err(), RedactError::InvalidHexLen { hex_len: 17 });
    // The fields are public, so redact checks them too.
    let raw = Tokens::Keyed { key: b"short".to_vec(), hex_len: 8 };
    assert_eq!(redact("Alice", &[Span::new(Person, 0, 5)], &raw).unwrap_err(), RedactError::KeyTooShort);
}

#[test]
fn debug_shows_neither_values_nor_keys() {
    let text = "Alice's card 4111111111111111";
    let r =
        redact(text, &spans(text, &[(Person, "Alice"), (EntityKind::CreditCard, "4111111111111111")]), &keyed(KEY, 8))
            .unwrap();
    for shown in [
        format!("{:?}", r.mapping),
        format!("{:#?}", r.mapping),
        format!("{r:?}"),
        format!("{:?}", Restorer::new(&r.mapping)),
    ] {
        assert!(!shown.contains("Alice") && !shown.contains("4111"), "{shown}");
    }
    assert_eq!(format!("{:?}", r.mapping), "Mapping { len: 2, .. }");
    let tokens = keyed(KEY, 8);
    let shown = format!("{tokens:?} {tokens:#?}");
    let key_bytes = format!("{:?}", KEY.to_vec());
    assert!(!shown.contains("perimeter") && !shown.contains(&key_bytes[1..20]), "{shown}");
    assert!(shown.contains("hex_len: 8"), "{shown}");
}

#[test]
fn the_mapping_serialises_as_placeholder_kind_value_objects() {
    let r = check("Alice at a@b.io", &[(Person, "Alice"), (Email, "a@b.io")], "<PERSON_1> at <EMAIL_1>");
    assert_eq!(
        serde_json::to_string(&r.mapping).unwrap(),
        r#"[{"placeholder":"<PERSON_1>","kind":"PERSON","value":"Alice"},{"placeholder":"<EMAIL_1>","kind":"EMAIL","value":"a@b.io"}]"#
    );
}

#[test]
fn a_placeholder_split_across_chunks_is_restored() {
    let r = check("Alice", &[(Person, "Alice")], "<PERSON_1>");
    let mut restorer = Restorer::new(&r.mapping);
    assert_eq!(restorer.push("<PER"), "");
    assert_eq!(restorer.push("SON_1> said hi to <PERSON_9> and <"), "Alice said hi to <PERSON_9> and ");
    assert_eq!(restorer.push("PERSON_1"), "");
    assert_eq!(restorer.push(""), "");
    assert_eq!(restorer.push(">."), "Alice.");
    assert_eq!(restorer.finish(), "");
    // A stream that ends inside a possible placeholder gives the held text back unchanged.
    let mut restorer = Restorer::new(&r.mapping);
    assert_eq!(restorer.push("bye <PERS"), "bye ");
    assert_eq!(restorer.finish(), "<PERS");
}

#[test]
fn redact_many_numbers_across_texts_and_avoids_literals_in_any() {
    let texts = ["Alice asked", "about Bob and Alice", "quoting <PERSON_2>"];
    let s: Vec<Vec<Span>> = texts.iter().map(|t| spans(t, &[(Person, "Alice"), (Person, "Bob")])).collect();
    let inputs: Vec<(&str, &[Span])> = texts.iter().zip(&s).map(|(t, s)| (*t, s.as_slice())).collect();
    let r = redact_many(&inputs, &Tokens::Sequential).unwrap();
    assert_eq!(r.texts, ["<PERSON_1> asked", "about <PERSON_3> and <PERSON_1>", "quoting <PERSON_2>"]);
    for (redacted, original) in r.texts.iter().zip(texts) {
        assert_eq!(restore(redacted, &r.mapping), original);
    }
}
