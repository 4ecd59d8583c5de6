//! The pickle scanner on a corpus built as bytes here (`common/pickle_writer.rs`): benign
//! checkpoints must be `Clean`, every evasion technique must be caught with the expected kind,
//! severity and global, and arbitrary bytes must never panic or hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/pickle_writer.rs"]
mod pickle_writer;

// The `scan_pickle` fuzz target runs here on stable against generated inputs (as
// `crates/redact/tests/fuzz_target.rs` does): its `use libfuzzer_sys::fuzz_target` resolves to
// this crate, whose `fuzz_target!` turns the body into a plain function.
extern crate self as libfuzzer_sys;

/// Stand-in for libfuzzer-sys's macro: the closure body becomes `scan_pickle::run`.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
}

#[allow(unused_attributes, unused_imports)]
#[path = "../../../fuzz/fuzz_targets/scan_pickle.rs"]
mod scan_pickle;

use std::time::{Duration, Instant};

use perimeter_scan::{pickle, scan, Format, Report, Severity, Verdict};
use pickle_writer::*;
use proptest::prelude::*;

fn check(bytes: &[u8]) -> Report {
    pickle::scan_bytes(bytes)
}

#[track_caller]
fn assert_clean(bytes: &[u8]) {
    let r = check(bytes);
    assert_eq!(r.verdict, Verdict::Clean, "{r:#?}");
    assert!(r.findings.is_empty(), "{r:#?}");
}

/// The report is `Unsafe` and has a finding of `kind` at `severity` whose detail contains
/// `detail`.
#[track_caller]
fn assert_caught(r: &Report, kind: &str, severity: Severity, detail: &str) {
    assert_eq!(r.verdict, Verdict::Unsafe, "{r:#?}");
    assert!(
        r.findings.iter().any(|f| f.kind == kind && f.severity == severity && f.detail.contains(detail)),
        "expected {kind} {severity:?} {detail:?} in {r:#?}"
    );
}

// --- Benign ----------------------------------------------------------------------------------

#[test]
fn state_dict_protocol_2_is_clean() {
    assert_clean(&state_dict(&[("fc.weight", "0", 4), ("fc.bias", "1", 2)]));
}

#[test]
fn state_dict_protocol_0_is_clean() {
    // OrderedDict() with two items, text opcodes, memo by PUT/GET.
    let p = P::new()
        .global("collections", "OrderedDict")
        .put(0)
        .mark()
        .tuple()
        .reduce()
        .put(1)
        .unicode0("fc.weight")
        .put(2)
        .global("torch._utils", "_rebuild_tensor_v2")
        .put(3)
        .mark()
        .mark()
        .string0("'storage'")
        .global("torch", "FloatStorage")
        .string0("'0'")
        .string0("'cpu'")
        .int0(4)
        .tuple()
        .persid("0")
        .int0(0)
        .mark()
        .int0(4)
        .tuple()
        .mark()
        .int0(1)
        .tuple()
        .int0(0)
        .global("collections", "OrderedDict")
        .mark()
        .tuple()
        .reduce()
        .tuple()
        .reduce()
        .setitem()
        .unicode0("fc.bias")
        .get(3)
        .mark()
        .string0("'x'")
        .tuple()
        .reduce()
        .setitem()
        .stop()
        .bytes();
    assert_clean(&p);
}

#[test]
fn protocol_4_framed_with_memoize_is_clean() {
    let body = P::new()
        .str("collections")
        .memoize()
        .str("OrderedDict")
        .memoize()
        .stack_global()
        .memoize()
        .empty_tuple()
        .reduce()
        .memoize()
        .str("w")
        .memoize()
        .str("torch._utils")
        .memoize()
        .str("_rebuild_tensor_v2")
        .memoize()
        .stack_global()
        .memoize()
        .mark()
        .str("storage")
        .binget(0) // "collections" reused harmlessly as a value
        .tuple1()
        .binpersid()
        .int(0)
        .int(2)
        .tuple1()
        .int(1)
        .tuple1()
        .newfalse()
        .binget(2) // OrderedDict class, from the memo
        .empty_tuple()
        .reduce()
        .tuple()
        .reduce()
        .setitem()
        .stop()
        .bytes();
    assert_clean(&framed(&body));
}

#[test]
fn protocol_5_bytearray_is_clean() {
    let p = P::proto(5)
        .mark()
        .bytearray8(&[1, 2, 3])
        .global("builtins", "bytearray")
        .binbytes(b"xy")
        .tuple1()
        .reduce()
        .op(b'l')
        .stop()
        .bytes();
    assert_clean(&p);
}

#[test]
fn numpy_arrays_are_clean() {
    assert_clean(&numpy_array_proto2());
    assert_clean(&numpy_array_proto4());
}

#[test]
fn protocol_0_strings_with_escapes_are_clean() {
    let p = P::new().mark().string0(r"'it\'s \x41\n\101\\'").string0(r#""say \"hi\"""#).op(b'l').stop().bytes();
    assert_clean(&p);
}

#[test]
fn concatenated_benign_pickles_are_clean() {
    let mut b = state_dict(&[("a", "0", 1)]);
    b.extend(numpy_array_proto2());
    b.extend(P::proto(2).int(7).stop().bytes());
    assert_clean(&b);
}

#[test]
fn a_plain_pickle_named_bin_or_pt_is_scanned_as_a_pickle() {
    let bytes = os_system();
    for name in ["pytorch_model.bin", "model.pt", "weights.pth", "x.pkl"] {
        let r = scan(name, &bytes);
        assert_eq!(r.format, Format::Pickle, "{name}");
        assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    }
    let r = scan("pytorch_model.bin", &state_dict(&[("a", "0", 1)]));
    assert_eq!((r.format, r.verdict), (Format::Pickle, Verdict::Clean), "{r:#?}");
}

// --- Imports ---------------------------------------------------------------------------------

#[test]
fn os_system_via_global() {
    let r = check(&os_system());
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert_eq!(r.findings[0].location, "byte 0");
}

#[test]
fn os_system_via_stack_global_with_operands_from_the_memo() {
    // The strings are memoised, popped, and fetched back with BINGET / LONG_BINGET.
    let p = P::proto(4)
        .str("os")
        .binput(7)
        .op(b'0')
        .str("system")
        .long_binput(70000)
        .op(b'0')
        .binget(7)
        .long_binget(70000)
        .stack_global()
        .str("id")
        .tuple1()
        .reduce()
        .stop()
        .bytes();
    assert_caught(&check(&p), "pickle_global", Severity::Critical, "os.system");
    // And with the protocol 0 memo.
    let p = P::new()
        .unicode0("os")
        .put(1)
        .op(b'0')
        .unicode0("system")
        .put(2)
        .op(b'0')
        .get(1)
        .get(2)
        .stack_global()
        .stop()
        .bytes();
    assert_caught(&check(&p), "pickle_global", Severity::Critical, "os.system");
}

#[test]
fn stack_global_with_protocol_0_string_operands_and_escapes() {
    let p = P::new().string0(r"'o\x73'").string0(r"'sys\164em'").stack_global().stop().bytes();
    assert_caught(&check(&p), "pickle_global", Severity::Critical, "os.system");
    let p = P::proto(2).short_binstring(b"os").short_binstring(b"system").stack_global().stop().bytes();
    assert_caught(&check(&p), "pickle_global", Severity::Critical, "os.system");
}

#[test]
fn dotted_name_through_another_module() {
    let p = P::proto(4).str("pathlib").str("os.system").stack_global().str("id").tuple1().reduce().stop().bytes();
    assert_caught(&check(&p), "pickle_global", Severity::Critical, "pathlib.os.system");
    // Dunder traversal from an allow-listed class.
    let p = P::proto(4).str("collections").str("OrderedDict.__init__.__globals__").stack_global().stop().bytes();
    assert_caught(&check(&p), "pickle_global", Severity::High, "collections.OrderedDict.__init__.__globals__");
    // An allow-listed name used as a module prefix is not allowed.
    let p = P::proto(4).str("torch").str("Size.__reduce_ex__").stack_global().stop().bytes();
    assert_caught(&check(&p), "pickle_global", Severity::High, "torch.Size.__reduce_ex__");
}

#[test]
fn builtins_getattr_chains() {
    // getattr(__import__('os'), 'system')('id')
    let p = P::new()
        .global("builtins", "getattr")
        .mark()
        .global("builtins", "__import__")
        .mark()
        .unicode0("os")
        .tuple()
        .reduce()
        .unicode0("system")
        .tuple()
        .reduce()
        .mark()
        .unicode0("id")
        .tuple()
        .reduce()
        .stop()
        .bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::High, "builtins.getattr");
    assert_caught(&r, "pickle_global", Severity::Critical, "builtins.__import__");
    assert_caught(&r, "pickle_getattr", Severity::Critical, "\"system\"");
    assert_caught(&r, "pickle_call_non_global", Severity::Critical, "builtins.getattr");
    // The attribute as a protocol 0 `STRING`.
    let p = P::new()
        .global("builtins", "getattr")
        .mark()
        .global("builtins", "globals")
        .mark()
        .tuple()
        .reduce()
        .string0("'__builtins__'")
        .tuple()
        .reduce()
        .stop()
        .bytes();
    assert_caught(&check(&p), "pickle_getattr", Severity::Critical, "__builtins__");
    // getattr on an allow-listed class still is a finding of its own.
    let p = P::proto(2)
        .global("__builtin__", "getattr")
        .global("collections", "OrderedDict")
        .binunicode("fromkeys")
        .tuple2()
        .reduce()
        .stop()
        .bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::High, "__builtin__.getattr");
    assert_caught(&r, "pickle_getattr", Severity::High, "fromkeys");
}

#[test]
fn operator_attrgetter_and_methodcaller() {
    let p = P::proto(2).global("_operator", "attrgetter").binunicode("system").tuple1().reduce().stop().bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::High, "_operator.attrgetter");
    assert_caught(&r, "pickle_getattr", Severity::Critical, "system");
    let p = P::proto(2).global("operator", "methodcaller").binunicode("x").tuple1().reduce().stop().bytes();
    assert_caught(&check(&p), "pickle_global", Severity::High, "operator.methodcaller");
}

#[test]
fn platform_aliases_and_python_2_names() {
    for (module, name, sev) in [
        ("posix", "system", Severity::Critical),
        ("nt", "system", Severity::Critical),
        ("os.path", "join", Severity::Critical),
        ("__builtin__", "eval", Severity::Critical),
        ("__builtins__", "exec", Severity::Critical),
        ("builtins", "compile", Severity::Critical),
        ("builtins", "open", Severity::High),
        ("_pickle", "loads", Severity::Critical),
        ("cPickle", "loads", Severity::Critical),
        ("marshal", "loads", Severity::Critical),
        ("subprocess", "Popen", Severity::Critical),
        ("runpy", "_run_code", Severity::Critical),
        ("pty", "spawn", Severity::Critical),
        ("importlib", "import_module", Severity::Critical),
        ("types", "FunctionType", Severity::Critical),
        ("code", "InteractiveInterpreter", Severity::Critical),
        ("joblib", "load", Severity::Critical),
        ("dill", "loads", Severity::Critical),
        ("torch.serialization", "load", Severity::Critical),
        ("torch.storage", "_load_from_bytes", Severity::Critical),
        ("numpy.testing._private.utils", "runstring", Severity::Critical),
        ("sys", "modules", Severity::High),
        ("socket", "create_connection", Severity::High),
        ("shutil", "rmtree", Severity::High),
        ("requests", "get", Severity::High),
        ("urllib.request", "urlopen", Severity::High),
        ("webbrowser", "open", Severity::High),
        ("functools", "partial", Severity::High),
        ("mypackage.models", "Net", Severity::Medium),
        ("builtins", "print", Severity::Medium),
        ("copyreg", "_reconstructor", Severity::Medium),
    ] {
        let p = P::new().global(module, name).stop().bytes();
        let r = check(&p);
        assert_caught(&r, "pickle_global", sev, &format!("{module}.{name}"));
    }
}

#[test]
fn inst_obj_newobj_and_newobj_ex() {
    let inst = P::new().mark().string0("'id'").inst("os", "system").stop().bytes();
    assert_caught(&check(&inst), "pickle_global", Severity::Critical, "os.system");
    let obj = P::new().mark().global("subprocess", "Popen").string0("'id'").obj().stop().bytes();
    assert_caught(&check(&obj), "pickle_global", Severity::Critical, "subprocess.Popen");
    let newobj = P::proto(2).global("subprocess", "Popen").binunicode("id").tuple1().newobj().stop().bytes();
    assert_caught(&check(&newobj), "pickle_global", Severity::Critical, "subprocess.Popen");
    let newobj_ex = P::proto(4)
        .str("subprocess")
        .str("Popen")
        .stack_global()
        .str("id")
        .tuple1()
        .empty_dict()
        .newobj_ex()
        .stop()
        .bytes();
    assert_caught(&check(&newobj_ex), "pickle_global", Severity::Critical, "subprocess.Popen");
    // OBJ whose class is not an import.
    let obj = P::new().mark().unicode0("os").unicode0("x").obj().stop().bytes();
    assert_caught(&check(&obj), "pickle_call_non_global", Severity::Medium, "a string");
}

#[test]
fn extension_registry_codes_are_unsafe() {
    for p in [
        P::proto(2).ext1(1).empty_tuple().reduce().stop().bytes(),
        P::proto(2).ext2(0x1234).empty_tuple().reduce().stop().bytes(),
        P::proto(2).ext4(0x0102_0304).empty_tuple().reduce().stop().bytes(),
    ] {
        assert_caught(&check(&p), "pickle_extension", Severity::Medium, "extension registry code");
    }
    let r = check(&P::proto(2).ext2(0x1234).stop().bytes());
    assert_caught(&r, "pickle_extension", Severity::Medium, "4660");
}

// --- Nested pickles --------------------------------------------------------------------------

#[test]
fn torch_load_of_nested_bytes_is_flagged_and_scanned() {
    // torch.load(io.BytesIO(b"<os.system pickle>"))
    let p = P::proto(3)
        .global("torch", "load")
        .global("io", "BytesIO")
        .binbytes(&os_system())
        .tuple1()
        .reduce()
        .tuple1()
        .reduce()
        .stop()
        .bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::Critical, "torch.load");
    let nested = r.findings.iter().find(|f| f.detail == "os.system").expect("nested payload scanned");
    assert!(nested.location.contains("torch.load payload"), "{nested:?}");
    assert_eq!(nested.severity, Severity::Critical);
}

#[test]
fn pickle_loads_of_nested_bytes() {
    let p = P::proto(2).global("pickle", "loads").binbytes(&os_system()).tuple1().reduce().stop().bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::Critical, "pickle.loads");
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    // Through _codecs.encode (how protocol 2 spells bytes).
    let inner: String = os_system().iter().map(|&b| b as char).collect();
    let p = P::proto(2)
        .global("_pickle", "loads")
        .global("_codecs", "encode")
        .binunicode(&inner)
        .binunicode("latin1")
        .tuple2()
        .reduce()
        .tuple1()
        .reduce()
        .stop()
        .bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::Critical, "_pickle.loads");
    assert!(r.findings.iter().any(|f| f.detail == "os.system" && f.location.contains("payload")), "{r:#?}");
}

#[test]
fn numpy_load_is_critical_and_its_npy_payload_scanned() {
    // An .npy of an object array: magic, version 1.0, header, then a pickle.
    let header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }          \n";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header);
    npy.extend(os_system());
    let p = P::proto(3)
        .global("numpy", "load")
        .global("io", "BytesIO")
        .binbytes(&npy)
        .tuple1()
        .reduce()
        .newtrue()
        .tuple2()
        .reduce()
        .stop()
        .bytes();
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::Critical, "numpy.load");
    assert!(r.findings.iter().any(|f| f.detail == "os.system" && f.location.contains("numpy.load payload")), "{r:#?}");
}

#[test]
fn nested_pickles_are_followed_to_a_bounded_depth() {
    let mut inner = os_system();
    for _ in 0..6 {
        inner = P::proto(3).global("pickle", "loads").binbytes(&inner).tuple1().reduce().stop().bytes();
    }
    let r = check(&inner);
    assert_caught(&r, "pickle_global", Severity::Critical, "pickle.loads");
    assert_caught(&r, "pickle_nested_limit", Severity::Medium, "pickle.loads");
}

// --- Malformed streams -----------------------------------------------------------------------

#[test]
fn get_of_an_unset_memo_slot_is_unsafe_not_a_crash() {
    for p in [
        P::proto(2).binget(5).stop().bytes(),
        P::proto(2).long_binget(123_456).stop().bytes(),
        P::new().get(9).stop().bytes(),
    ] {
        let r = check(&p);
        assert_caught(&r, "pickle_memo_missing", Severity::Medium, "memo slot");
        assert!(r.error.is_some());
    }
}

#[test]
fn non_string_stack_global_operands() {
    let p = P::proto(4).int(1).int(2).stack_global().stop().bytes();
    assert_caught(&check(&p), "pickle_stack_global_non_string", Severity::Medium, "a number");
    let p = P::proto(4).binbytes(b"os").binbytes(b"system").stack_global().empty_tuple().reduce().stop().bytes();
    assert_caught(&check(&p), "pickle_stack_global_non_string", Severity::Medium, "bytes");
    let p = P::proto(4).global("builtins", "set").str("x").stack_global().stop().bytes();
    assert_caught(&check(&p), "pickle_stack_global_non_string", Severity::Medium, "builtins.set");
}

#[test]
fn payload_before_garbage_is_reported() {
    let mut p = P::new().global("os", "system").mark().string0("'id'").tuple().reduce().bytes();
    p.extend_from_slice(b"\xff\xfe garbage");
    let r = check(&p);
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert!(r.error.is_some(), "{r:#?}");
}

#[test]
fn a_malicious_second_pickle_is_caught() {
    let mut b = state_dict(&[("a", "0", 1)]);
    let first = b.len();
    b.extend(os_system());
    let r = check(&b);
    assert_caught(&r, "pickle_global", Severity::Critical, "os.system");
    assert_eq!(r.findings[0].location, format!("byte {first}"));
    assert!(r.error.is_none());
}

#[test]
fn trailing_bytes_make_the_report_unparseable_with_an_info_finding() {
    let mut b = state_dict(&[("a", "0", 1)]);
    b.extend_from_slice(b"\x00\x01\x02");
    let r = check(&b);
    assert_eq!(r.verdict, Verdict::Unparseable, "{r:#?}");
    assert!(r.findings.iter().any(|f| f.kind == "pickle_trailing_bytes" && f.severity == Severity::Info), "{r:#?}");
}

#[test]
fn mutating_an_imported_global_is_unsafe() {
    let p = P::new()
        .global("collections", "OrderedDict")
        .empty_dict()
        .unicode0("x")
        .int0(1)
        .setitem()
        .build()
        .stop()
        .bytes();
    assert_caught(&check(&p), "pickle_mutate_global", Severity::Medium, "BUILD on collections.OrderedDict");
}

#[test]
fn codecs_encode_with_an_unusual_codec() {
    let p = P::proto(2)
        .global("_codecs", "encode")
        .binunicode("x")
        .binunicode("zlib_codec")
        .tuple2()
        .reduce()
        .stop()
        .bytes();
    assert_caught(&check(&p), "pickle_codecs_encode", Severity::Medium, "zlib_codec");
}

#[test]
fn truncated_and_malformed_streams_are_unparseable() {
    for b in [
        &b""[..],
        b"\x80\x02",
        b"\x80\x09N.",
        b"\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xff.",
        b"\x80\x02X\xff\xff\xff\x7f",
        b"\x80\x02T\xff\xff\xff\xff.",
        b"cos\nsystem",
        b"\x80\x02R.",
        b"\x80\x02t.",
        b"\x80\x02\xff.",
        b"\x80\x02(K\x01K\x02K\x03d.",
    ] {
        let r = check(b);
        assert_ne!(r.verdict, Verdict::Clean, "{b:?}: {r:#?}");
        assert!(r.error.is_some(), "{b:?}");
    }
}

#[test]
fn pathological_shapes_stay_bounded() {
    // A million nested one-tuples (dropping nested values must not recurse).
    let mut p = P::proto(2).none();
    for _ in 0..1_000_000 {
        p = p.tuple1();
    }
    assert_clean(&p.stop().bytes());
    // Marks without end, a flood of memo entries.
    let r = check(&vec![b'('; 2_000_000]);
    assert_ne!(r.verdict, Verdict::Clean);
    let mut p = P::proto(4).none();
    for _ in 0..3_000_000 {
        p = p.memoize();
    }
    assert_ne!(check(&p.stop().bytes()).verdict, Verdict::Clean);
}

#[test]
fn repeated_findings_are_listed_once() {
    let mut p = P::proto(2);
    for _ in 0..5000 {
        p = p.global("os", "system").op(b'0');
    }
    let r = check(&p.none().stop().bytes());
    assert_eq!(r.findings.len(), 1, "{r:#?}");
    // Many distinct globals are capped, with the cap reported at the highest dropped severity.
    let mut p = P::proto(2);
    for i in 0..1500 {
        p = p.global("os", &format!("f{i}")).op(b'0');
    }
    let r = check(&p.none().stop().bytes());
    assert!(r.findings.len() <= 1001);
    assert!(r.findings.iter().any(|f| f.kind == "findings_truncated" && f.severity == Severity::Critical));
}

// --- Properties ------------------------------------------------------------------------------

fn bounded(bytes: &[u8]) -> Report {
    let t = Instant::now();
    let r = check(bytes);
    assert!(t.elapsed() < Duration::from_secs(5), "scan took {:?}", t.elapsed());
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        bounded(&bytes);
        scan_pickle::run(&bytes);
        // Also behind a PROTO header, where more of the walker is reached.
        let mut b = vec![0x80, 4];
        b.extend(&bytes);
        bounded(&b);
    }

    #[test]
    fn mutated_checkpoints_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        for base in [state_dict(&[("a", "0", 3)]), numpy_array_proto4(), numpy_array_proto2()] {
            let mut b = base;
            for (i, v) in &flips {
                let n = b.len();
                b[i % n] = *v;
            }
            bounded(&b);
        }
    }

    /// Documented choice: trailing bytes that do not form complete pickles make the report
    /// `Unparseable` (with a `pickle_trailing_bytes` Info finding). The only way to stay
    /// `Clean` is for the trailing bytes to be clean pickles themselves.
    #[test]
    fn benign_pickle_with_trailing_garbage_is_never_clean(garbage in proptest::collection::vec(any::<u8>(), 1..256)) {
        let mut b = state_dict(&[("a", "0", 1)]);
        b.extend(&garbage);
        let r = bounded(&b);
        if r.verdict == Verdict::Clean {
            prop_assert_eq!(check(&garbage).verdict, Verdict::Clean);
        } else if r.verdict == Verdict::Unparseable {
            prop_assert!(r.findings.iter().any(|f| f.kind == "pickle_trailing_bytes"));
        }
    }
}
