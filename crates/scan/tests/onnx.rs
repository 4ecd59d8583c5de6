//! ONNX: a small valid model passes; external data that leaves the model's directory, custom
//! operator domains (also inside subgraphs) and malformed protobuf are caught; hostile bytes
//! never panic. Every model is built here as protobuf bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_scan::onnx::{self, external_locations, location_problem};
use perimeter_scan::{Format, Report, Severity, Verdict};
use proptest::prelude::*;

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited field.
fn ld(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(number << 3 | 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

fn vi(number: u64, value: u64) -> Vec<u8> {
    let mut out = varint(number << 3);
    out.extend(varint(value));
    out
}

fn s(number: u64, text: &str) -> Vec<u8> {
    ld(number, text.as_bytes())
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn opset(domain: &str, version: u64) -> Vec<u8> {
    ld(8, &cat(&[s(1, domain), vi(2, version)]))
}

fn node(op_type: &str, domain: &str, attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut n = cat(&[s(1, "x"), s(1, "w"), s(2, "y"), s(3, "n0"), s(4, op_type)]);
    if !domain.is_empty() {
        n.extend(s(7, domain));
    }
    for a in attributes {
        n.extend(ld(5, a));
    }
    n
}

/// A TensorProto with inline raw data.
fn tensor(name: &str) -> Vec<u8> {
    cat(&[vi(1, 2), vi(1, 2), vi(2, 1), s(8, name), ld(9, &[0u8; 16])])
}

/// A TensorProto whose data lives in another file.
fn external_tensor(name: &str, location: &str) -> Vec<u8> {
    cat(&[
        vi(1, 4),
        vi(2, 1),
        s(8, name),
        ld(13, &cat(&[s(1, "location"), s(2, location)])),
        ld(13, &cat(&[s(1, "offset"), s(2, "0")])),
        ld(13, &cat(&[s(1, "length"), s(2, "16")])),
        vi(14, 1),
    ])
}

fn graph(nodes: &[Vec<u8>], initializers: &[Vec<u8>]) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        g.extend(ld(1, n));
    }
    g.extend(s(2, "main"));
    for t in initializers {
        g.extend(ld(5, t));
    }
    // An input and an output ValueInfoProto (skipped by the scanner).
    g.extend(ld(11, &s(1, "x")));
    g.extend(ld(12, &s(1, "y")));
    g
}

fn model(graph: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut m = cat(&[vi(1, 8), s(2, "perimeter-tests"), s(3, "1.0"), ld(7, graph), opset("", 17)]);
    for e in extra {
        m.extend_from_slice(e);
    }
    m
}

fn valid() -> Vec<u8> {
    model(&graph(&[node("MatMul", "", &[])], &[tensor("w")]), &[])
}

enum Expect<'a> {
    Clean,
    Unsafe(&'a [&'a str]),
    Unparseable(&'a str),
}

fn check(bytes: &[u8], expect: Expect) -> Report {
    let report = onnx::scan(&bytes.to_vec());
    assert_eq!(report.format, Format::Onnx);
    match expect {
        Expect::Clean => {
            assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
            assert!(report.findings.iter().all(|f| f.severity == Severity::Info), "{report:#?}");
        }
        Expect::Unsafe(details) => {
            assert_eq!(report.verdict, Verdict::Unsafe, "{report:#?}");
            for d in details {
                assert!(report.findings.iter().any(|f| f.kind == *d || f.detail.contains(d)), "no {d} in {report:#?}");
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
fn small_valid_model_is_clean() {
    let report = check(&valid(), Expect::Clean);
    assert!(report.findings.is_empty());
    assert_eq!(external_locations(&valid()).unwrap(), Vec::<String>::new());
}

#[test]
fn standard_domains_are_clean() {
    let nodes = [node("Add", "ai.onnx", &[]), node("TreeEnsembleClassifier", "ai.onnx.ml", &[])];
    let bytes = model(&graph(&nodes, &[]), &[opset("ai.onnx.ml", 3), opset("ai.onnx.preview.training", 1)]);
    check(&bytes, Expect::Clean);
}

#[test]
fn relative_external_data_is_info_and_listed_for_the_cli() {
    let bytes = model(&graph(&[], &[external_tensor("w", "weights/model.onnx_data")]), &[]);
    let report = check(&bytes, Expect::Clean);
    assert!(report.findings.iter().any(|f| f.kind == "onnx_external_data" && f.detail.contains("symlink")));
    assert_eq!(external_locations(&bytes).unwrap(), vec!["weights/model.onnx_data".to_string()]);
}

#[test]
fn external_data_with_traversal_is_caught() {
    let bytes = model(&graph(&[], &[external_tensor("w", "../../etc/passwd")]), &[]);
    let report = check(&bytes, Expect::Unsafe(&["onnx_external_data_path", "parent-directory traversal"]));
    let f = report.findings.iter().find(|f| f.kind == "onnx_external_data_path").unwrap();
    assert_eq!((f.severity, f.location.as_str()), (Severity::High, "tensor `w`"));
    assert_eq!(external_locations(&bytes).unwrap(), vec!["../../etc/passwd".to_string()]);
}

#[test]
fn external_data_with_absolute_paths_is_caught() {
    for location in
        ["/etc/passwd", "C:\\Windows\\win.ini", "c:/x", "\\\\server\\share\\w.bin", "//server/w", "~/.ssh/id_rsa"]
    {
        let bytes = model(&graph(&[], &[external_tensor("w", location)]), &[]);
        check(&bytes, Expect::Unsafe(&["onnx_external_data_path"]));
    }
}

#[test]
fn many_harmless_external_tensors_cannot_hide_a_dangerous_one() {
    let mut tensors: Vec<Vec<u8>> = (0..300).map(|i| external_tensor(&format!("w{i}"), "weights.bin")).collect();
    tensors.push(external_tensor("last", "../../etc/passwd"));
    let report = check(&model(&graph(&[], &tensors), &[]), Expect::Unsafe(&["onnx_external_data_path"]));
    assert!(report.findings.len() <= 256 + 32);
    assert_eq!(external_locations(&model(&graph(&[], &tensors), &[])).unwrap().len(), 301);
}

#[test]
fn location_rules() {
    assert_eq!(location_problem("model.onnx_data"), None);
    assert_eq!(location_problem("sub/dir/w.bin"), None);
    assert_eq!(location_problem("a..b.bin"), None);
    assert!(location_problem("sub/../../w").is_some());
    assert!(location_problem("sub\\..\\w").is_some());
    assert!(location_problem("..").is_some());
    assert!(location_problem("w.bin:stream").is_some());
    assert!(location_problem("file:///etc/passwd").is_some());
    assert!(location_problem("w\0.bin").is_some());
    assert!(location_problem("").is_some());
}

#[test]
fn external_data_inside_attributes_and_sparse_initializers_is_found() {
    // A Constant node whose tensor attribute reads /etc/shadow.
    let attr = cat(&[s(1, "value"), vi(20, 4), ld(5, &external_tensor("c", "/etc/shadow"))]);
    let bytes = model(&graph(&[node("Constant", "", &[attr])], &[]), &[]);
    check(&bytes, Expect::Unsafe(&["onnx_external_data_path"]));
    // A sparse initializer whose values read ../secret.
    let sparse = cat(&[ld(1, &external_tensor("v", "../secret")), ld(2, &tensor("i")), vi(3, 4)]);
    let mut g = graph(&[], &[]);
    g.extend(ld(15, &sparse));
    check(&model(&g, &[]), Expect::Unsafe(&["onnx_external_data_path"]));
}

#[test]
fn custom_domain_is_a_medium_finding_naming_it() {
    let bytes = model(&graph(&[node("Backdoor", "com.evil", &[])], &[]), &[opset("com.evil", 1)]);
    let report = check(&bytes, Expect::Unsafe(&["onnx_custom_domain", "`com.evil`"]));
    let f = report.findings.iter().find(|f| f.kind == "onnx_custom_domain").unwrap();
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(report.findings.iter().filter(|f| f.kind == "onnx_custom_domain").count(), 1);
}

#[test]
fn custom_domain_only_in_opset_import_is_a_finding() {
    check(&model(&valid_graph(), &[opset("com.evil", 1)]), Expect::Unsafe(&["onnx_custom_domain"]));
    check(&model(&valid_graph(), &[opset("com.microsoft", 1)]), Expect::Unsafe(&["`com.microsoft`"]));
}

fn valid_graph() -> Vec<u8> {
    graph(&[node("MatMul", "", &[])], &[tensor("w")])
}

#[test]
fn custom_domain_inside_a_subgraph_is_found() {
    // An If node whose then_branch holds the custom operator, nested inside a Loop body.
    let inner = graph(&[node("Backdoor", "com.evil", &[])], &[]);
    let then_branch = cat(&[s(1, "then_branch"), vi(20, 5), ld(6, &inner)]);
    let if_node = node("If", "", &[then_branch]);
    let body = cat(&[s(1, "body"), vi(20, 10), ld(11, &graph(&[if_node], &[]))]);
    let bytes = model(&graph(&[node("Loop", "", &[body])], &[]), &[]);
    check(&bytes, Expect::Unsafe(&["`com.evil`"]));
}

#[test]
fn custom_domain_inside_a_function_body_is_found() {
    let function = cat(&[s(1, "f"), s(10, "local.fns"), ld(7, &node("Backdoor", "com.evil", &[])), opset("", 17)]);
    let bytes = model(&graph(&[node("f", "local.fns", &[])], &[]), &[opset("local.fns", 1), ld(25, &function)]);
    let report = check(&bytes, Expect::Unsafe(&["`com.evil`"]));
    // The call of the model's own function is not a custom operator.
    assert!(!report.findings.iter().any(|f| f.detail.contains("local.fns")), "{report:#?}");
}

#[test]
fn model_local_functions_are_not_custom_operators() {
    let function = cat(&[s(1, "gelu"), s(10, "pkg.local"), ld(7, &node("Erf", "", &[])), opset("", 17)]);
    let bytes = model(&graph(&[node("gelu", "pkg.local", &[])], &[]), &[opset("pkg.local", 1), ld(25, &function)]);
    check(&bytes, Expect::Clean);
    // The same domain with an op_type the model does not define is custom.
    let bytes = model(&graph(&[node("other", "pkg.local", &[])], &[]), &[ld(25, &function)]);
    check(&bytes, Expect::Unsafe(&["`pkg.local`"]));
}

#[test]
fn training_info_graphs_are_walked() {
    let training = ld(2, &graph(&[node("Backdoor", "com.evil", &[])], &[]));
    let bytes = model(&valid_graph(), &[ld(20, &training)]);
    check(&bytes, Expect::Unsafe(&["`com.evil`"]));
}

#[test]
fn truncated_varint_is_unparseable() {
    let mut bytes = valid();
    bytes.extend([0x08, 0xff, 0xff]);
    check(&bytes, Expect::Unparseable("truncated varint"));
    check(&[0x08], Expect::Unparseable("truncated varint"));
    let mut bytes = valid();
    bytes.extend([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    check(&bytes, Expect::Unparseable("longer than 64 bits"));
}

#[test]
fn malformed_protobuf_is_unparseable() {
    let mut bytes = valid();
    bytes.extend([0x3a, 0x7f, 0x00]);
    check(&bytes, Expect::Unparseable("past the end of its message"));
    check(&[0x0b, 0x00], Expect::Unparseable("groups"));
    check(&[0x0e, 0x00], Expect::Unparseable("invalid wire type 6"));
    check(&[0x00, 0x00], Expect::Unparseable("invalid field number 0"));
    check(&[0x08, 0x08, 0x39], Expect::Unparseable("past the end"));
    // The graph field sent as a varint.
    check(&cat(&[vi(1, 8), vi(7, 1)]), Expect::Unparseable("not length-delimited"));
}

#[test]
fn something_that_is_not_a_model_is_unparseable() {
    check(&[], Expect::Unparseable("no ir_version"));
    check(&vi(1, 8), Expect::Unparseable("no graph"));
    check(b"PK\x03\x04 not an onnx model at all", Expect::Unparseable(""));
}

#[test]
fn external_tensor_without_location_is_unparseable() {
    let t = cat(&[s(8, "w"), ld(13, &cat(&[s(1, "offset"), s(2, "0")])), vi(14, 1)]);
    check(&model(&graph(&[], &[t]), &[]), Expect::Unparseable("names no location"));
}

#[test]
fn nesting_is_bounded() {
    // Graphs nested through attributes, 60 levels deep (3 messages per level).
    let mut g = graph(&[node("Relu", "", &[])], &[]);
    for _ in 0..60 {
        let attr = cat(&[s(1, "g"), vi(20, 5), ld(6, &g)]);
        g = graph(&[node("If", "", &[attr])], &[]);
    }
    check(&model(&g, &[]), Expect::Unparseable("nested deeper"));
}

#[test]
fn findings_before_a_parse_error_are_kept() {
    let mut bytes = model(&graph(&[], &[external_tensor("w", "/etc/passwd")]), &[]);
    bytes.extend([0x08, 0xff]);
    let report = onnx::scan(&bytes);
    assert_eq!(report.verdict, Verdict::Unsafe);
    assert!(report.error.is_some());
    assert!(external_locations(&bytes).is_err());
}

#[test]
fn the_dispatcher_sends_onnx_files_here() {
    let report = perimeter_scan::scan("model.onnx", &valid());
    assert_eq!((report.format, report.verdict), (Format::Onnx, Verdict::Clean));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let report = onnx::scan(&bytes);
        let _ = external_locations(&bytes);
        prop_assert!(report.verdict != Verdict::Clean || !bytes.is_empty());
    }

    #[test]
    fn mutated_models_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = model(&graph(&[node("MatMul", "", &[])], &[external_tensor("w", "w.bin")]), &[opset("ai.onnx.ml", 2)]);
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let _ = onnx::scan(&bytes);
    }
}
