//! Keras `.keras`: a clean model passes; Lambda layers (also nested), function objects, modules
//! outside Keras and unsafe-deserialization switches are caught; a missing or broken
//! config.json is unparseable; hostile bytes never panic. Every archive is built here as bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_scan::keras::{self, scan_config};
use perimeter_scan::{Format, Report, Severity, Verdict};
use proptest::prelude::*;
use serde_json::{json, Value};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A zip of stored (uncompressed) members, as `zipfile` writes them.
fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let header = |sig: u32, central: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if central {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(0u16.to_le_bytes()); // stored
            h.extend(0u16.to_le_bytes()); // time
            h.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
            h.extend(crc.to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attributes
                h.extend(0u32.to_le_bytes()); // external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend_from_slice(data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

fn keras_file(config: &Value) -> Vec<u8> {
    let config = serde_json::to_vec(config).unwrap();
    let metadata = br#"{"keras_version": "3.6.0", "date_saved": "2024-10-01@12:00:00"}"#;
    zip(&[("metadata.json", metadata), ("config.json", &config), ("model.weights.h5", b"\x89HDF\r\n\x1a\n")])
}

fn layer(class_name: &str, config: Value) -> Value {
    json!({"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": null})
}

fn dense(name: &str) -> Value {
    layer(
        "Dense",
        json!({
            "name": name, "trainable": true,
            "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null},
            "units": 10, "activation": "relu", "use_bias": true,
            "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null},
            "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": null},
            "kernel_regularizer": null, "bias_regularizer": null, "kernel_constraint": null, "bias_constraint": null
        }),
    )
}

fn sequential(layers: Vec<Value>) -> Value {
    json!({
        "module": "keras", "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": true, "dtype": "float32", "layers": layers},
        "registered_name": null,
        "build_config": {"input_shape": [null, 4]},
        "compile_config": {
            "optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {"learning_rate": 0.001}, "registered_name": null},
            "loss": "mse", "metrics": ["mae"], "loss_weights": null, "jit_compile": false
        }
    })
}

fn input() -> Value {
    layer("InputLayer", json!({"batch_shape": [null, 4], "dtype": "float32", "sparse": false, "name": "input_layer"}))
}

fn lambda(name: &str) -> Value {
    layer(
        "Lambda",
        json!({
            "name": name,
            "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAAD", "defaults": null, "closure": null}},
            "output_shape": null, "arguments": {}
        }),
    )
}

enum Expect<'a> {
    Clean,
    Unsafe(&'a [(&'a str, Severity)]),
    Unparseable(&'a str),
}

fn check(bytes: &[u8], expect: Expect) -> Report {
    let report = keras::scan(&bytes.to_vec());
    assert_eq!(report.format, Format::Keras);
    match expect {
        Expect::Clean => {
            assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
            assert!(report.findings.iter().all(|f| f.severity == Severity::Info), "{report:#?}");
        }
        Expect::Unsafe(kinds) => {
            assert_eq!(report.verdict, Verdict::Unsafe, "{report:#?}");
            for (kind, severity) in kinds {
                assert!(
                    report.findings.iter().any(|f| f.kind == *kind && f.severity == *severity),
                    "no {severity:?} {kind} in {report:#?}"
                );
            }
        }
        Expect::Unparseable(text) => {
            assert_eq!(report.verdict, Verdict::Unparseable, "{report:#?}");
            let error = report.error.clone().unwrap_or_default();
            assert!(error.contains(text), "error {error:?} does not mention {text:?}");
        }
    }
    report
}

#[test]
fn clean_dense_model_is_clean() {
    let report = check(&keras_file(&sequential(vec![input(), dense("dense"), dense("dense_1")])), Expect::Clean);
    assert!(report.findings.is_empty(), "{report:#?}");
}

#[test]
fn clean_functional_model_from_keras_src_is_clean() {
    let config = json!({
        "module": "keras.src.models.functional", "class_name": "Functional",
        "config": {"name": "f", "layers": [input(), dense("d")], "input_layers": [["input_layer", 0, 0]], "output_layers": [["d", 0, 0]]},
        "registered_name": "Functional"
    });
    check(&keras_file(&config), Expect::Clean);
}

#[test]
fn lambda_layer_is_high() {
    let report = check(
        &keras_file(&sequential(vec![input(), lambda("exfiltrate"), dense("d")])),
        Expect::Unsafe(&[("keras_lambda_layer", Severity::High), ("keras_function_object", Severity::High)]),
    );
    let f = report.findings.iter().find(|f| f.kind == "keras_lambda_layer").unwrap();
    assert!(f.detail.contains("`exfiltrate`"), "{f:?}");
    assert_eq!(f.location, "config.json: config.layers[1]");
}

#[test]
fn lambda_nested_inside_functional_inside_sequential_is_found() {
    let wrapped = layer("TimeDistributed", json!({"name": "td", "layer": lambda("inner")}));
    let functional = json!({
        "module": "keras.src.models.functional", "class_name": "Functional",
        "config": {"name": "sub", "layers": [input(), wrapped]}, "registered_name": null
    });
    let report = check(
        &keras_file(&sequential(vec![input(), functional, dense("d")])),
        Expect::Unsafe(&[("keras_lambda_layer", Severity::High)]),
    );
    let f = report.findings.iter().find(|f| f.kind == "keras_lambda_layer").unwrap();
    assert_eq!(f.location, "config.json: config.layers[1].config.layers[1].config.layer");
}

#[test]
fn module_outside_keras_is_medium() {
    let custom = json!({"module": "my_package.layers", "class_name": "Backdoor", "config": {"name": "b"}, "registered_name": "MyPkg>Backdoor"});
    let report = check(
        &keras_file(&sequential(vec![input(), custom])),
        Expect::Unsafe(&[("keras_custom_object", Severity::Medium)]),
    );
    assert!(report.findings.iter().any(|f| f.detail.contains("`my_package.layers`")), "{report:#?}");
    assert!(report.findings.iter().any(|f| f.detail.contains("`MyPkg>Backdoor`")), "{report:#?}");
}

#[test]
fn keras_namespaces_are_not_custom() {
    for module in ["keras", "keras.layers", "keras.src.layers.core.dense", "tf_keras", "tf_keras.layers"] {
        let l = json!({"module": module, "class_name": "Dense", "config": {"units": 1}, "registered_name": null});
        check(&keras_file(&sequential(vec![l])), Expect::Clean);
    }
    for module in ["kerasx", "keras_evil", "os", "builtins", "tensorflow"] {
        let l = json!({"module": module, "class_name": "Dense", "config": {"units": 1}, "registered_name": null});
        check(&keras_file(&sequential(vec![l])), Expect::Unsafe(&[("keras_custom_object", Severity::Medium)]));
    }
}

#[test]
fn safe_mode_false_anywhere_is_high() {
    let mut config = sequential(vec![input(), dense("d")]);
    config["config"]["layers"][1]["config"]["safe_mode"] = json!(false);
    check(&keras_file(&config), Expect::Unsafe(&[("keras_unsafe_deserialization", Severity::High)]));
    let mut config = sequential(vec![input()]);
    config["safe_mode"] = json!(false);
    check(&keras_file(&config), Expect::Unsafe(&[("keras_unsafe_deserialization", Severity::High)]));
    let mut config = sequential(vec![input()]);
    config["safe_mode"] = json!(true);
    check(&keras_file(&config), Expect::Clean);
}

#[test]
fn enable_unsafe_deserialization_is_high() {
    // The known bypass: a function object that calls keras.config.enable_unsafe_deserialization.
    let call = json!({"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization", "registered_name": "function"});
    let report = check(
        &keras_file(&sequential(vec![input(), layer("Activation", json!({"name": "a", "activation": call}))])),
        Expect::Unsafe(&[("keras_unsafe_deserialization", Severity::High), ("keras_function_object", Severity::High)]),
    );
    assert!(report.findings.iter().any(|f| f.detail.contains("`keras.config.enable_unsafe_deserialization`")));
    let mut config = sequential(vec![input()]);
    config["config"]["enable_unsafe_deserialization"] = json!(true);
    check(&keras_file(&config), Expect::Unsafe(&[("keras_unsafe_deserialization", Severity::High)]));
}

#[test]
fn function_objects_are_high() {
    let f = json!({"module": "os", "class_name": "function", "config": "system", "registered_name": "function"});
    let report = check(
        &keras_file(&sequential(vec![input(), layer("Activation", json!({"name": "a", "activation": f}))])),
        Expect::Unsafe(&[("keras_function_object", Severity::High), ("keras_custom_object", Severity::Medium)]),
    );
    assert!(report.findings.iter().any(|f| f.detail.contains("`os.system`")), "{report:#?}");
}

#[test]
fn tf_op_lambda_is_high() {
    let l = json!({"class_name": "TFOpLambda", "config": {"name": "tf.io.write_file", "function": "io.write_file"}});
    check(&keras_file(&sequential(vec![input(), l])), Expect::Unsafe(&[("keras_lambda_layer", Severity::High)]));
}

#[test]
fn duplicate_keys_are_a_finding_and_every_copy_is_checked() {
    // Python's json keeps the last `class_name`: a Lambda hidden behind a Dense.
    let config = r#"{"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "Dense", "class_name": "Lambda", "config": {"name": "x"}}]}}"#;
    let report = check(
        &zip(&[("config.json", config.as_bytes())]),
        Expect::Unsafe(&[("keras_duplicate_key", Severity::Medium), ("keras_lambda_layer", Severity::High)]),
    );
    assert_eq!(report.findings.iter().filter(|f| f.kind == "keras_duplicate_key").count(), 1);
}

#[test]
fn every_copy_of_config_json_is_checked() {
    // Two members named config.json: zip readers disagree on which one they open.
    let clean = serde_json::to_vec(&sequential(vec![input(), dense("d")])).unwrap();
    let evil = serde_json::to_vec(&sequential(vec![input(), lambda("l")])).unwrap();
    let report = keras::scan(&zip(&[("config.json", &clean), ("config.json", &evil)]));
    assert_eq!(report.verdict, Verdict::Unsafe);
    assert!(report.findings.iter().any(|f| f.kind == "keras_lambda_layer"), "{report:#?}");
}

#[test]
fn many_medium_findings_cannot_crowd_out_a_lambda() {
    let mut layers: Vec<Value> = (0..300)
        .map(|i| json!({"module": format!("pkg{i}"), "class_name": "Custom", "config": {}, "registered_name": null}))
        .collect();
    layers.push(lambda("late"));
    let report = check(&keras_file(&sequential(layers)), Expect::Unsafe(&[("keras_lambda_layer", Severity::High)]));
    assert!(report.findings.len() <= 256);
}

#[test]
fn wide_objects_and_arrays_are_checked_in_linear_time() {
    // 200,000 keys, every one duplicated, and a 1,000,000-element array.
    let mut config = String::from(r#"{"module": "keras", "class_name": "Sequential", "wide": {"#);
    for i in 0..200_000 {
        config.push_str(&format!(r#""k{i}": 0, "k{i}": 1, "#));
    }
    config.push_str(r#""end": 0}, "long": ["#);
    config.push_str(&"0,".repeat(1_000_000));
    config.push_str("0]}");
    let findings = scan_config(config.as_bytes()).unwrap();
    assert!(findings.len() <= 256);
    assert!(findings.iter().all(|f| f.kind == "keras_duplicate_key"));
}

#[test]
fn metadata_json_is_checked_too() {
    let config = serde_json::to_vec(&sequential(vec![input()])).unwrap();
    let metadata = br#"{"keras_version": "3.6.0", "safe_mode": false}"#;
    let bytes = zip(&[("metadata.json", metadata), ("config.json", &config)]);
    check(&bytes, Expect::Unsafe(&[("keras_unsafe_deserialization", Severity::High)]));
}

#[test]
fn missing_or_broken_config_is_unparseable() {
    check(&zip(&[("metadata.json", b"{}"), ("model.weights.h5", b"x")]), Expect::Unparseable("no config.json"));
    check(&zip(&[("config.json", b"{\"module\": ")]), Expect::Unparseable("not valid JSON"));
    check(&zip(&[("config.json", b"[1, 2]")]), Expect::Unparseable("not a JSON object"));
    check(&zip(&[("config.json", b"{\"a\": \"\xff\"}")]), Expect::Unparseable("not UTF-8"));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    check(&zip(&[("config.json", format!("{{\"a\": {deep}}}").as_bytes())]), Expect::Unparseable("not valid JSON"));
    let config = serde_json::to_vec(&sequential(vec![input()])).unwrap();
    check(&zip(&[("config.json", &config), ("metadata.json", b"nope")]), Expect::Unparseable("metadata.json"));
    check(b"not a zip at all", Expect::Unparseable("not a readable zip"));
}

#[test]
fn the_dispatcher_sends_dot_keras_here() {
    let bytes = keras_file(&sequential(vec![input(), dense("d")]));
    let report = perimeter_scan::scan("model.keras", &bytes);
    assert_eq!((report.format, report.verdict), (Format::Keras, Verdict::Clean));
}

#[test]
fn scan_config_reads_a_bare_config() {
    let findings = scan_config(&serde_json::to_vec(&sequential(vec![lambda("l")])).unwrap()).unwrap();
    assert!(findings.iter().any(|f| f.kind == "keras_lambda_layer"));
    assert!(scan_config(b"{").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let report = keras::scan(&bytes);
        prop_assert!(report.verdict != Verdict::Clean);
        let _ = scan_config(&bytes);
    }

    #[test]
    fn arbitrary_configs_never_panic(config in "[{}\\[\\]\":, a-z_0-9]{0,300}") {
        let _ = keras::scan(&zip(&[("config.json", config.as_bytes())]));
    }

    #[test]
    fn mutated_archives_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = keras_file(&sequential(vec![input(), dense("d")]));
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let _ = keras::scan(&bytes);
    }
}
