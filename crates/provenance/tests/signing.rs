//! Model signatures: round trips for both algorithms, tampering and untrusted keys, the DSSE
//! specification's example, and the statement's JSON shape. Keys come from fixed seeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use perimeter_provenance::signing::{
    pae, Algorithm, Envelope, Observation, PublicKey, SigningKey, Statement, StatementError, VerifyError, PAYLOAD_TYPE,
    PREDICATE_TYPE, STATEMENT_TYPE,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn key(algorithm: Algorithm, seed: u8) -> SigningKey {
    SigningKey::from_seed(algorithm, &[seed; 32]).unwrap()
}

fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn statement() -> Statement {
    Statement::new(
        "tiny-model",
        vec![
            ("weights/model.safetensors".into(), digest(b"weights")),
            ("config.json".into(), digest(b"{}")),
            ("tokenizer.json".into(), digest(b"tok")),
        ],
        vec!["model.sig.json".into()],
    )
    .unwrap()
}

#[test]
fn sign_then_verify_round_trips_for_both_algorithms() {
    for algorithm in [Algorithm::Ed25519, Algorithm::P256] {
        let signer = key(algorithm, 7);
        assert_eq!(signer.algorithm(), algorithm);
        let text = Envelope::sign(&statement(), &signer).to_json();
        let envelope = Envelope::from_json(text.as_bytes()).unwrap();
        let verified = envelope.verify(std::slice::from_ref(signer.public_key())).unwrap();
        assert_eq!(verified.statement(), &statement());
        assert_eq!(verified.keyid(), signer.public_key().keyid());
        assert!(verified.keyid().starts_with("sha256:") && verified.keyid().len() == 7 + 64);

        // Keys survive PEM: the private key in PKCS#8, the public key in SPKI.
        let again = SigningKey::from_pkcs8_pem(&signer.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let public = PublicKey::from_spki_pem(&signer.public_key().to_spki_pem().unwrap()).unwrap();
        assert_eq!(&public, signer.public_key());
        assert!(envelope.verify(&[public]).is_ok());
        assert!(signer.to_pkcs8_pem().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(signer.public_key().to_spki_pem().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
        // Debug never shows key material.
        let debug = format!("{signer:?}");
        assert!(debug.contains("keyid") && !debug.contains(&hex::encode([7u8; 32])), "{debug}");
    }
}

#[test]
fn any_changed_payload_or_signature_byte_fails() {
    for algorithm in [Algorithm::Ed25519, Algorithm::P256] {
        let signer = key(algorithm, 3);
        let trusted = [signer.public_key().clone()];
        let envelope = Envelope::sign(&statement(), &signer);
        for i in [0, envelope.payload.len() / 2, envelope.payload.len() - 1] {
            let mut tampered = envelope.clone();
            tampered.payload[i] ^= 0x01;
            let err = tampered.verify(&trusted).unwrap_err();
            assert!(matches!(err, VerifyError::BadSignature { .. }), "{algorithm:?} byte {i}: {err}");
            assert!(err.is_signature_failure());
            assert!(err.to_string().starts_with("bad signature"), "{err}");
        }
        let mut tampered = envelope.clone();
        let last = tampered.signatures[0].sig.len() - 1;
        tampered.signatures[0].sig[last] ^= 0x01;
        assert!(matches!(tampered.verify(&trusted), Err(VerifyError::BadSignature { .. })));
        let mut swapped = envelope.clone();
        swapped.payload_type = "application/json".into();
        assert!(matches!(swapped.verify(&trusted), Err(VerifyError::BadSignature { .. })));
    }
}

#[test]
fn a_signature_by_an_untrusted_key_fails() {
    let signer = key(Algorithm::Ed25519, 1);
    let envelope = Envelope::sign(&statement(), &signer);
    let others = [key(Algorithm::Ed25519, 2).public_key().clone(), key(Algorithm::P256, 1).public_key().clone()];
    match envelope.verify(&others) {
        Err(VerifyError::UntrustedKey { keyids }) => assert_eq!(keyids, [signer.public_key().keyid()]),
        other => panic!("{other:?}"),
    }
    // A forged key id hint changes nothing: the signature still has to verify.
    let mut forged = envelope.clone();
    forged.signatures[0].keyid = Some(others[0].keyid().into());
    assert!(matches!(forged.verify(&others), Err(VerifyError::BadSignature { .. })));
    // Without a hint, any trusted key is tried: the right one among several verifies.
    let mut anonymous = envelope.clone();
    anonymous.signatures[0].keyid = None;
    let mut trusted = others.to_vec();
    trusted.push(signer.public_key().clone());
    assert_eq!(anonymous.verify(&trusted).unwrap().keyid(), signer.public_key().keyid());
    assert!(matches!(envelope.verify(&[]), Err(VerifyError::NoTrustedKeys)));
    let mut unsigned = envelope;
    unsigned.signatures.clear();
    assert!(matches!(unsigned.verify(&trusted), Err(VerifyError::NoSignatures)));
}

/// The example in the DSSE protocol specification (secure-systems-lab/dsse, protocol.md, "Test
/// Vectors"): the PAE, and an ECDSA P-256/SHA-256 signature with RFC 6979 nonces, given as raw
/// `r || s` in standard base64.
#[test]
fn pae_and_signature_match_the_dsse_specification_example() {
    let payload_type = "http://example.com/HelloWorld";
    assert_eq!(pae(payload_type, b"hello world"), b"DSSEv1 29 http://example.com/HelloWorld 11 hello world");
    assert_eq!(pae(PAYLOAD_TYPE, b""), b"DSSEv1 28 application/vnd.in-toto+json 0 ");

    // d = 97358161215184420915383655311931858321456579547487070936769975997791359926199.
    let d: [u8; 32] =
        hex::decode("d73ec437fd6346e3619c5ebfdfff0f6916804955ad32ac9ac492b0ede1f6ffb7").unwrap().try_into().unwrap();
    let signer = SigningKey::from_seed(Algorithm::P256, &d).unwrap();
    // X and Y of the specification, in hex.
    let point = p256::ecdsa::SigningKey::from_bytes(&d.into()).unwrap().verifying_key().to_encoded_point(false);
    assert_eq!(hex::encode(point.x().unwrap()), "67cd390f77aa359cb08c2235f652270493a9ed832b0abcc01f70954c0390d238");
    assert_eq!(hex::encode(point.y().unwrap()), "0c782bd54e269125a44f4433aff1432ce94e12bca73aa67ac80cea12608ddf74");

    let spec = br#"{"payload": "aGVsbG8gd29ybGQ=",
 "payloadType": "http://example.com/HelloWorld",
 "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#;
    let envelope = Envelope::from_json(spec).unwrap();
    assert_eq!(envelope.payload, b"hello world");
    assert_eq!(envelope.signatures[0].keyid, None);
    let trusted = [signer.public_key().clone()];
    assert_eq!(envelope.verify_signatures(&trusted).unwrap(), signer.public_key());
    // It verifies, but is not a model statement.
    assert!(matches!(envelope.verify(&trusted), Err(VerifyError::PayloadType(_))));

    // Our signer produces the same signature (RFC 6979 is deterministic), DER-encoded.
    let ours = Envelope::sign_payload(payload_type, b"hello world".to_vec(), &signer);
    let raw = p256::ecdsa::Signature::from_der(&ours.signatures[0].sig).unwrap().to_bytes();
    assert_eq!(raw.as_slice(), envelope.signatures[0].sig.as_slice());

    // URL-safe base64 and missing padding are accepted, as the specification requires.
    let url_safe = br#"{"payload": "aGVsbG8gd29ybGQ", "payloadType": "http://example.com/HelloWorld",
 "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F-FnZ-O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA"}]}"#;
    assert!(Envelope::from_json(url_safe).unwrap().verify_signatures(&trusted).is_ok());
}

#[test]
fn statement_json_has_the_model_signing_shape() {
    let s = statement();
    let bytes = s.to_json();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), ["_type", "predicate", "predicateType", "subject"]);
    assert_eq!(v["_type"], STATEMENT_TYPE);
    assert_eq!(v["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(v["predicateType"], PREDICATE_TYPE);
    assert_eq!(v["predicateType"], "https://model_signing/signature/v1.0");

    let subject = v["subject"].as_array().unwrap();
    assert_eq!(subject.len(), 1);
    assert_eq!(keys(&subject[0]), ["digest", "name"]);
    assert_eq!(subject[0]["name"], "tiny-model");
    // The subject digest is SHA-256 over the raw resource digests in order.
    let mut all = Vec::new();
    for data in [&b"{}"[..], b"tok", b"weights"] {
        all.extend_from_slice(&digest(data));
    }
    assert_eq!(subject[0]["digest"], json!({ "sha256": hex::encode(digest(&all)) }));

    assert_eq!(keys(&v["predicate"]), ["resources", "serialization"]);
    assert_eq!(
        v["predicate"]["serialization"],
        json!({"allow_symlinks": true, "hash_type": "sha256", "ignore_paths": ["model.sig.json"], "method": "files"})
    );
    let resources = v["predicate"]["resources"].as_array().unwrap();
    let names: Vec<&str> = resources.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["config.json", "tokenizer.json", "weights/model.safetensors"]);
    assert_eq!(
        resources[2],
        json!({"algorithm": "sha256", "digest": hex::encode(digest(b"weights")), "name": "weights/model.safetensors"})
    );

    // Canonical: compact, keys sorted, the same bytes every time, and it reads back.
    assert!(!bytes.contains(&b'\n') && !bytes.starts_with(b"{ "));
    assert!(bytes.starts_with(
        br#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"resources":[{"algorithm":"sha256","digest":""#
    ));
    assert_eq!(bytes, statement().to_json());
    assert_eq!(Statement::from_json(&bytes).unwrap(), s);
}

#[test]
fn inconsistent_or_foreign_statements_are_refused() {
    let good: Value = serde_json::from_slice(&statement().to_json()).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        Statement::from_json(&serde_json::to_vec(&v).unwrap())
    };
    assert!(matches!(
        edit(&|v| v["_type"] = json!("https://in-toto.io/Statement/v0.1")),
        Err(StatementError::StatementType(_))
    ));
    assert!(matches!(
        edit(&|v| v["predicateType"] = json!("https://example.com/x")),
        Err(StatementError::PredicateType(_))
    ));
    assert!(matches!(edit(&|v| v["subject"] = json!([])), Err(StatementError::Subjects(0))));
    assert!(matches!(
        edit(&|v| v["predicate"]["resources"][0]["digest"] = json!(hex::encode([0u8; 32]))),
        Err(StatementError::SubjectDigest)
    ));
    assert!(matches!(
        edit(&|v| v["predicate"]["resources"][0]["name"] = json!("../escape")),
        Err(StatementError::Resource { .. })
    ));
    assert!(matches!(
        edit(&|v| v["predicate"]["serialization"]["method"] = json!("shards")),
        Err(StatementError::Serialization(_))
    ));
    // Fields a later predicate version adds are ignored.
    assert!(edit(&|v| v["predicate"]["model_card"] = json!({"x": 1})).is_ok());
}

#[test]
fn compare_names_changed_missing_extra_and_refused_files() {
    let s = statement();
    let mut observed: BTreeMap<String, Observation> =
        s.resources().iter().map(|r| (r.name.clone(), Observation::Digest(r.digest))).collect();
    assert!(s.compare(&observed).is_empty());
    observed.insert("tokenizer.json".into(), Observation::Digest(digest(b"tok!")));
    observed.remove("config.json");
    observed.insert("notes.txt".into(), Observation::Digest(digest(b"")));
    observed.insert("link".into(), Observation::Refused("symbolic link pointing outside the directory".into()));
    let problems: Vec<String> = s.compare(&observed).iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].starts_with("config.json: missing"), "{problems:?}");
    assert!(problems[1].starts_with("link: symbolic link pointing outside"), "{problems:?}");
    assert!(problems[2].starts_with("notes.txt: extra"), "{problems:?}");
    assert!(problems[3].starts_with("tokenizer.json: changed"), "{problems:?}");
}

#[test]
fn keys_and_envelopes_that_are_not_ours_are_refused() {
    assert!(SigningKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    // A public key is not a private key, and the other way round.
    let k = key(Algorithm::P256, 5);
    assert!(SigningKey::from_pkcs8_pem(&k.public_key().to_spki_pem().unwrap()).is_err());
    assert!(PublicKey::from_spki_pem(&k.to_pkcs8_pem().unwrap()).is_err());
    // Zero is not a P-256 scalar; every 32-byte string is an Ed25519 seed.
    assert!(SigningKey::from_seed(Algorithm::P256, &[0; 32]).is_err());
    assert!(SigningKey::from_seed(Algorithm::P256, &[0xff; 32]).is_err());
    assert!(SigningKey::from_seed(Algorithm::Ed25519, &[0; 32]).is_ok());
    assert!(Envelope::from_json(b"{").is_err());
    assert!(Envelope::from_json(br#"{"payload":"!!","payloadType":"x","signatures":[]}"#).is_err());
    let many = format!(r#"{{"payload":"","payloadType":"x","signatures":[{}]}}"#, vec![r#"{"sig":""}"#; 17].join(","));
    assert!(Envelope::from_json(many.as_bytes()).is_err());
}
