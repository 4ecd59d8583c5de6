//! The pickle scanner (protocols 0–5). It never unpickles: it walks the opcodes with a small
//! model of the unpickler's stack and memo, resolves every import the stream would make
//! (`GLOBAL`, `STACK_GLOBAL` with operands from the stack or the memo, `INST`, the extension
//! registry `EXT1/2/4`) and decides by an **allow-list** of globals that model weights need.
//! Every other import is unsafe (Medium); a deny-list only raises the severity of known
//! code-execution, file, network and nested-pickle primitives to High or Critical.
//!
//! What is modelled, and why:
//! - Calls (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`): the callee must be an imported
//!   global; calling anything else (the result of `getattr`, a string) is a finding. The
//!   arguments are looked at for three things: the attribute name given to `getattr` /
//!   `attrgetter` / `methodcaller` (a dangerous one makes the chain Critical), the codec given to
//!   `_codecs.encode`, and a bytes literal given to a loader (`pickle.loads`, `torch.load`,
//!   `numpy.load`, …, directly or wrapped as in `torch.load(io.BytesIO(b"…"))`), which is then
//!   scanned as a nested pickle (or zip, or `.npy`) up to [`MAX_NESTED_DEPTH`] levels.
//! - Mutations (`BUILD`, `SETITEM(S)`, `APPEND(S)`, `ADDITEMS`) of an imported global itself
//!   rather than of an instance: that is monkey-patching a module or class.
//! - The memo: `GET` of a slot that was never set fails in Python; here it is a finding and
//!   the end of the parse (`Unsafe`), never a crash or a silent skip.
//! - Several pickles in one stream are all scanned (a legacy PyTorch file is five). Bytes after
//!   the last complete pickle that do not form one are reported as `pickle_trailing_bytes`
//!   (Info) and make the report `Unparseable` (the scanner did not understand them, so the file
//!   is never `Clean`); findings made before a parse error are kept (`Report::unparseable`
//!   then says `Unsafe`).
//!
//! `_codecs.encode` is allow-listed because NumPy pickles arrays' bytes with it (protocols
//! 0–2): it only turns a string into bytes. With care: a codec other than Latin-1, UTF-8 or
//! ASCII is a finding (`pickle_codecs_encode`), and its result is tracked as bytes so that
//! `pickle.loads(_codecs.encode("…", "latin1"))` is still scanned as a nested pickle.
//!
//! Bounds: the stack, the marks and the memo have fixed maximum sizes; every length operand is
//! checked against the bytes that remain before anything is read; bytes literals are never
//! copied (they are kept as byte ranges of the source); text over 64 KiB is not kept; nested
//! scans are limited in depth and number; findings are de-duplicated and capped.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::zip::Window;
use crate::{read_exact_at, Finding, Format, Report, Severity, Source};

/// Whether the first bytes look like a pickle: a `PROTO` opcode (protocol 0–5) or an opcode a
/// protocol 0/1 pickle starts with.
pub fn looks_like(head: &[u8]) -> bool {
    match head {
        [0x80, v, ..] => *v <= 5,
        [b, ..] => PROTO0_START.contains(b),
        [] => false,
    }
}

/// Scans a file that is one pickle (or several concatenated).
pub fn scan_source(source: &dyn Source) -> Report {
    let mut ctx = Ctx::default();
    let error = scan_file_stream(source, "", 0, &mut ctx);
    ctx.report(Format::Pickle, error)
}

/// Scans in-memory pickle bytes (tests, nested payloads).
pub fn scan_bytes(bytes: &[u8]) -> Report {
    let v = bytes.to_vec();
    scan_source(&v)
}

/// Whether the first bytes of an archive member (whatever its name) are worth parsing as a
/// pickle: a `PROTO` opcode for protocol 2–5, or an opcode a protocol 0/1 pickle starts with.
/// Tensor data is raw bytes, so this is only a cheap first filter; see [`scan_member`].
pub(crate) fn sniff_member(head: &[u8]) -> bool {
    match head {
        [0x80, v, ..] => (2..=5).contains(v),
        [b, ..] => PROTO0_START.contains(b),
        [] => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Findings shared by one file's scan (pickles, archives, nested payloads).

/// At most this many findings are listed; the rest are summarised in one.
const MAX_FINDINGS: usize = 1000;
/// Nested payloads scanned per file at most.
const MAX_NESTED_SCANS: u32 = 64;
/// Nested pickles / archives are followed this deep.
pub(crate) const MAX_NESTED_DEPTH: u32 = 3;

/// The findings of one file, de-duplicated by (kind, severity, detail, scope) and capped.
#[derive(Default)]
pub(crate) struct Ctx {
    findings: Vec<Finding>,
    seen: HashSet<(&'static str, u8, String, String)>,
    dropped: usize,
    dropped_max: Option<Severity>,
    nested_scans: u32,
}

impl Ctx {
    /// Adds a finding; `scope` (an archive member, a nested payload) keeps the same finding in
    /// two places apart, while repeats within one scope are listed once.
    pub(crate) fn push(
        &mut self,
        scope: &str,
        kind: &'static str,
        severity: Severity,
        location: String,
        detail: String,
    ) {
        if self.findings.len() >= MAX_FINDINGS {
            self.dropped += 1;
            self.dropped_max = self.dropped_max.max(Some(severity));
            return;
        }
        if !self.seen.insert((kind, severity as u8, detail.clone(), scope.to_string())) {
            return;
        }
        self.findings.push(Finding { kind, severity, location, detail });
    }

    pub(crate) fn push_finding(&mut self, scope: &str, f: Finding) {
        self.push(scope, f.kind, f.severity, f.location, f.detail);
    }

    fn has_global_since(&self, mark: usize) -> bool {
        self.findings.iter().skip(mark).any(|f| f.kind == "pickle_global")
    }

    fn truncate(&mut self, mark: usize) {
        self.findings.truncate(mark);
    }

    /// The report: `error` makes it `Unparseable` (or `Unsafe` when something was found).
    pub(crate) fn report(mut self, format: Format, error: Option<String>) -> Report {
        if let Some(severity) = self.dropped_max {
            self.findings.push(Finding {
                kind: "findings_truncated",
                severity,
                location: String::new(),
                detail: format!("{} more findings not listed", self.dropped),
            });
        }
        match error {
            Some(e) => Report::unparseable(format, self.findings, e),
            None => Report::from_findings(format, self.findings),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points for the containers (torch.rs).

/// Scans a stream of pickles as a file or a declared pickle member (`data.pkl`): a parse error
/// or trailing bytes are returned as the error that makes the report `Unparseable`.
pub(crate) fn scan_file_stream(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) -> Option<String> {
    let mut m = Machine::new(src, prefix, depth, false, ctx);
    let mut complete = 0usize;
    while m.r.remaining() > 0 {
        let start = m.r.pos;
        match m.parse_one() {
            Ok(_) => complete += 1,
            Err(e) if complete == 0 => return Some(format!("{prefix}{e}")),
            Err(e) => {
                let n = src.len() - start;
                m.ctx.push(
                    prefix,
                    "pickle_trailing_bytes",
                    Severity::Info,
                    format!("{prefix}byte {start}"),
                    format!("{n} bytes after the last complete pickle"),
                );
                return Some(format!("{prefix}{n} bytes after the last complete pickle do not parse: {e}"));
            }
        }
    }
    (complete == 0).then(|| format!("{prefix}empty pickle"))
}

/// What scanning an archive member found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Member {
    /// At least one complete pickle (its findings are in the context).
    Pickle,
    /// Not a pickle after all (a sniffed member that did not parse and found no import).
    NotPickle,
}

/// Scans an archive member that was *sniffed* as a possible pickle (tensor data is raw bytes
/// and may start like one by chance). Heuristic: the member counts as a pickle when its first
/// pickle parses to `STOP`, or when the parse, complete or not, imported a global
/// (`pickle_global`) — the way a pickle reaches code (the extension registry that `EXT1/2/4`
/// read is empty unless the loading program fills it). A parse that fails without such an
/// import is raw data and leaves no finding. In this mode a `GLOBAL` or `STACK_GLOBAL` whose
/// module or name is not a dotted Python identifier ends the parse (random bytes rarely form
/// two identifier lines, and no real module has such a name), so random tensor bytes do not
/// produce `pickle_global` findings.
pub(crate) fn scan_member(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) -> Member {
    let mark = ctx.findings.len();
    let mut m = Machine::new(src, prefix, depth, true, ctx);
    let first = m.parse_one();
    let mut complete = usize::from(first.is_ok());
    while complete > 0 && m.r.remaining() > 0 {
        if m.parse_one().is_err() {
            break;
        }
        complete += 1;
    }
    if complete > 0 || ctx.has_global_since(mark) {
        Member::Pickle
    } else {
        ctx.truncate(mark);
        Member::NotPickle
    }
}

/// A value of the stack model, as much as the scanner needs to know about it.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Int(i64),
    /// Text (`str`).
    Str(Rc<str>),
    /// Text too long to keep.
    LongStr,
    /// `bytes` / `bytearray`.
    Bytes(Blob),
    /// A protocol 0–2 `str` (`STRING`, `BINSTRING`): text to Python 3, bytes to Python 2.
    OldStr(Blob),
    Global(Rc<Global>),
    /// The result of a call.
    Call(Rc<Call>),
    /// A tuple of at most [`MAX_TUPLE`] items, none of them a tuple (so values stay flat).
    Tuple(Rc<[Value]>),
    Other,
}

/// Bytes of a literal: a range of the scanned source, or decoded (protocol 0 escapes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Blob {
    Range { start: u64, len: u64 },
    Inline(Rc<[u8]>),
}

/// An imported global and what the scanner decided about it.
#[derive(Debug)]
pub(crate) struct Global {
    /// `module.name`, as the stream spells it.
    pub(crate) dotted: String,
    /// `None` when allow-listed.
    pub(crate) severity: Option<Severity>,
    special: Special,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    /// `getattr(obj, name)` (argument 1) or `attrgetter(name)` / `methodcaller(name)` (0).
    Getattr(usize),
    /// Unpickles its bytes argument.
    Loader,
    CodecsEncode,
}

/// What a call returned.
#[derive(Debug)]
pub(crate) struct Call {
    callee: String,
    /// The attribute a `getattr`-like call looks up, when a literal.
    attr: Option<Rc<str>>,
    /// A bytes argument, kept so that `loads(BytesIO(b))` still finds `b`.
    bytes: Option<Blob>,
}

impl Value {
    /// Text as Python 3 sees it, for import names.
    fn text(&self, src: &dyn Source) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::OldStr(blob) => {
                let bytes = blob_bytes(blob, src, STR_KEEP)?;
                Some(bytes.iter().map(|&b| b as char).collect())
            }
            _ => None,
        }
    }
    fn blob(&self) -> Option<&Blob> {
        match self {
            Value::Bytes(b) | Value::OldStr(b) => Some(b),
            Value::Call(c) => c.bytes.as_ref(),
            _ => None,
        }
    }
    fn describe(&self) -> String {
        match self {
            Value::Call(c) => match &c.attr {
                Some(a) => format!("the result of {}(…, {a:?})", c.callee),
                None => format!("the result of {}(…)", c.callee),
            },
            Value::Str(_) | Value::LongStr | Value::OldStr(_) => "a string".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Int(_) => "a number".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::Global(g) => g.dotted.clone(),
            Value::Other => "a non-callable value".into(),
        }
    }
}

fn blob_bytes(blob: &Blob, src: &dyn Source, max: usize) -> Option<Vec<u8>> {
    match blob {
        Blob::Inline(b) => (b.len() <= max).then(|| b.to_vec()),
        Blob::Range { start, len } => {
            if *len > max as u64 {
                return None;
            }
            read_exact_at(src, *start, *len as usize).ok()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The allow-list and the deny-list.

/// Globals that model weights need and that can do nothing but build tensors and containers.
const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"),
    ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"),
    ("torch._utils", "_rebuild_nested_tensor"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.serialization", "_get_layout"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),
];

/// `torch.<name>`: tensor and storage classes, dtypes, layouts, memory formats, quantisation
/// schemes — values and constructors that touch nothing outside the tensor.
#[rustfmt::skip]
const TORCH_ALLOWED: &[&str] = &[
    "Tensor", "Size", "device", "UntypedStorage", "DoubleStorage", "FloatStorage",
    "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage", "ShortStorage",
    "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage", "ComplexDoubleStorage",
    "QUInt8Storage", "QInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage",
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32",
    "chalf", "complex64", "cfloat", "complex128", "cdouble", "uint8", "uint16", "uint32",
    "uint64", "int8", "int16", "short", "int32", "int", "int64", "long", "bool", "qint8",
    "quint8", "qint32", "quint4x2", "quint2x4", "float8_e4m3fn", "float8_e5m2",
    "float8_e4m3fnuz", "float8_e5m2fnuz", "strided", "sparse_coo", "sparse_csr", "sparse_csc",
    "sparse_bsr", "sparse_bsc", "_mkldnn", "contiguous_format", "channels_last",
    "channels_last_3d", "preserve_format", "per_tensor_affine", "per_channel_affine",
    "per_tensor_symmetric", "per_channel_symmetric", "per_channel_affine_float_qparams",
];

/// Module aliases (Python 2 names, C accelerators, platform modules) mapped to the module whose
/// entry in [`DENY`] applies. Applied to every component of a dotted path.
const ALIASES: &[(&str, &str)] = &[
    ("__builtin__", "builtins"),
    ("__builtins__", "builtins"),
    ("exceptions", "builtins"),
    ("posix", "os"),
    ("nt", "os"),
    ("posixpath", "os"),
    ("ntpath", "os"),
    ("_posixsubprocess", "subprocess"),
    ("_operator", "operator"),
    ("_pickle", "pickle"),
    ("cPickle", "pickle"),
    ("pickle5", "pickle"),
    ("_io", "io"),
    ("_socket", "socket"),
    ("copy_reg", "copyreg"),
    ("_ctypes", "ctypes"),
    ("_multiprocessing", "multiprocessing"),
    ("_lsprof", "cProfile"),
    ("_functools", "functools"),
];

use Severity::{Critical, High};

/// Known-dangerous paths. A path matches when it contains the pattern as consecutive
/// components anywhere (so `pathlib.os.system` matches `os`). Only the severity comes from
/// here: everything not allow-listed is unsafe already.
const DENY: &[(&[&str], Severity)] = &[
    // Processes and code execution.
    (&["os"], Critical),
    (&["subprocess"], Critical),
    (&["pty"], Critical),
    (&["runpy"], Critical),
    (&["commands"], Critical),
    (&["popen2"], Critical),
    (&["platform", "popen"], Critical),
    (&["multiprocessing"], Critical),
    (&["ctypes"], Critical),
    (&["cffi"], Critical),
    (&["code"], Critical),
    (&["codeop"], Critical),
    (&["types"], Critical),
    (&["marshal"], Critical),
    (&["timeit"], Critical),
    (&["pdb"], Critical),
    (&["bdb"], Critical),
    (&["trace"], Critical),
    (&["profile"], Critical),
    (&["cProfile"], Critical),
    (&["importlib"], Critical),
    (&["imp"], Critical),
    (&["zipimport"], Critical),
    (&["builtins", "eval"], Critical),
    (&["builtins", "exec"], Critical),
    (&["builtins", "execfile"], Critical),
    (&["builtins", "compile"], Critical),
    (&["builtins", "__import__"], Critical),
    (&["builtins", "breakpoint"], Critical),
    (&["asyncio", "create_subprocess_shell"], Critical),
    (&["asyncio", "create_subprocess_exec"], Critical),
    (&["asyncio", "subprocess"], Critical),
    (&["runstring"], Critical), // numpy.testing._private.utils.runstring: exec
    // Nested pickles: a loader runs a second, unscanned unpickler.
    (&["pickle"], Critical),
    (&["dill"], Critical),
    (&["cloudpickle"], Critical),
    (&["joblib"], Critical),
    (&["shelve"], Critical),
    (&["torch", "load"], Critical),
    (&["torch", "serialization", "load"], Critical),
    (&["torch", "jit", "load"], Critical),
    (&["torch", "storage", "_load_from_bytes"], Critical),
    (&["torch", "hub"], Critical),
    (&["torch", "package"], Critical),
    (&["torch", "utils", "cpp_extension"], Critical),
    (&["numpy", "load"], Critical),
    (&["numpy", "loads"], Critical),
    (&["npyio", "load"], Critical),
    (&["numpy", "lib", "format", "read_array"], Critical),
    (&["numpy", "ctypeslib"], Critical),
    (&["numpy", "f2py"], Critical),
    (&["numpy", "distutils"], Critical),
    // Attribute access and call gadgets.
    (&["builtins", "getattr"], High),
    (&["builtins", "setattr"], High),
    (&["builtins", "delattr"], High),
    (&["builtins", "globals"], High),
    (&["builtins", "locals"], High),
    (&["builtins", "vars"], High),
    (&["builtins", "open"], High),
    (&["builtins", "input"], High),
    (&["builtins", "raw_input"], High),
    (&["builtins", "help"], High),
    (&["builtins", "exit"], High),
    (&["builtins", "quit"], High),
    (&["builtins", "type"], High),
    (&["builtins", "__build_class__"], High),
    (&["builtins", "__loader__"], High),
    (&["operator"], High),
    (&["functools"], High),
    (&["sys"], High),
    (&["gc"], High),
    (&["inspect"], High),
    (&["pkgutil"], High),
    (&["site"], High),
    (&["atexit"], High),
    (&["signal"], High),
    (&["threading"], High),
    (&["_thread"], High),
    (&["asyncio"], High),
    (&["torch", "_C"], High),
    (&["torch", "jit"], High),
    (&["torch", "serialization"], High),
    (&["torch", "storage"], High),
    (&["torch", "distributed"], High),
    (&["numpy", "testing"], High),
    (&["yaml"], High),
    // Files.
    (&["io"], High),
    (&["shutil"], High),
    (&["tempfile"], High),
    (&["fileinput"], High),
    (&["glob"], High),
    (&["pathlib"], High),
    (&["zipfile"], High),
    (&["tarfile"], High),
    (&["sqlite3"], High),
    (&["codecs", "open"], High),
    (&["numpy", "fromfile"], High),
    (&["numpy", "memmap"], High),
    (&["numpy", "save"], High),
    (&["numpy", "savez"], High),
    (&["numpy", "savetxt"], High),
    (&["numpy", "loadtxt"], High),
    (&["numpy", "genfromtxt"], High),
    // Network.
    (&["socket"], High),
    (&["ssl"], High),
    (&["http"], High),
    (&["httplib"], High),
    (&["urllib"], High),
    (&["urllib2"], High),
    (&["urllib3"], High),
    (&["requests"], High),
    (&["httpx"], High),
    (&["aiohttp"], High),
    (&["ftplib"], High),
    (&["smtplib"], High),
    (&["telnetlib"], High),
    (&["poplib"], High),
    (&["imaplib"], High),
    (&["xmlrpc"], High),
    (&["socketserver"], High),
    (&["SocketServer"], High),
    (&["webbrowser"], High),
];

/// A path ending in one of these unpickles (or loads) its argument: the bytes are scanned.
const LOADERS: &[&[&str]] = &[
    &["pickle", "loads"],
    &["pickle", "load"],
    &["pickle", "_loads"],
    &["pickle", "_load"],
    &["pickle", "Unpickler"],
    &["dill", "loads"],
    &["dill", "load"],
    &["cloudpickle", "loads"],
    &["cloudpickle", "load"],
    &["joblib", "load"],
    &["torch", "load"],
    &["torch", "serialization", "load"],
    &["torch", "storage", "_load_from_bytes"],
    &["numpy", "load"],
    &["numpy", "loads"],
    &["npyio", "load"],
    &["numpy", "lib", "format", "read_array"],
];

/// A last component that names an execution or attribute primitive is at least High, whatever
/// module it was reached through.
#[rustfmt::skip]
const DANGEROUS_NAMES: &[&str] = &[
    "eval", "exec", "execfile", "compile", "system", "popen", "spawnl", "spawnv", "spawnve",
    "execv", "execve", "execvp", "__import__", "loads", "getattr", "setattr", "attrgetter",
    "methodcaller", "check_output", "check_call", "run_path", "run_module", "Popen",
    "import_module",
];

/// An attribute looked up by a `getattr` chain that makes it Critical.
#[rustfmt::skip]
const CRITICAL_ATTRS: &[&str] = &[
    "system", "popen", "eval", "exec", "execfile", "compile", "__import__", "spawnl", "spawnv",
    "spawnve", "execv", "execve", "execvp", "Popen", "call", "run", "check_output",
    "check_call", "loads", "load", "load_module", "import_module", "__globals__",
    "__builtins__", "__subclasses__", "__code__", "remove", "unlink", "rmtree", "open", "write",
    "write_text", "write_bytes",
];

fn normalize(component: &str) -> &str {
    ALIASES.iter().find(|(a, _)| *a == component).map_or(component, |(_, to)| to)
}

/// Classifies `module.name` (either may be dotted).
pub(crate) fn classify(module: &str, name: &str) -> Global {
    let dotted = format!("{module}.{name}");
    let allowed = ALLOWED.contains(&(module, name)) || (module == "torch" && TORCH_ALLOWED.contains(&name));
    if allowed {
        let special = if (module, name) == ("_codecs", "encode") { Special::CodecsEncode } else { Special::None };
        return Global { dotted, severity: None, special };
    }
    let parts: Vec<&str> = module.split('.').chain(name.split('.')).map(normalize).collect();
    let mut severity = Severity::Medium;
    for i in 0..parts.len() {
        for (pattern, s) in DENY {
            if parts[i..].starts_with(pattern) {
                severity = severity.max(*s);
            }
        }
    }
    let dunder = name.split('.').any(|c| c.len() > 4 && c.starts_with("__") && c.ends_with("__"));
    if dunder || parts.last().is_some_and(|l| DANGEROUS_NAMES.contains(l)) {
        severity = severity.max(High);
    }
    let special = if LOADERS.iter().any(|l| parts.ends_with(l)) {
        Special::Loader
    } else if parts.ends_with(&["builtins", "getattr"]) {
        Special::Getattr(1)
    } else if parts.ends_with(&["operator", "attrgetter"]) || parts.ends_with(&["operator", "methodcaller"]) {
        Special::Getattr(0)
    } else {
        Special::None
    };
    Global { dotted, severity: Some(severity), special }
}

/// A dotted Python identifier (ASCII), as a real module or attribute name is.
fn is_dotted_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|c| {
            let mut chars = c.chars();
            chars.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        })
}

// ---------------------------------------------------------------------------------------------
// The opcode walker.

const MAX_STACK: usize = 1 << 20;
const MAX_MARKS: usize = 1 << 16;
const MAX_MEMO: usize = 1 << 21;
/// Tuples longer than this are not kept item by item (calls never need more).
const MAX_TUPLE: usize = 8;
/// Text longer than this is not kept.
const STR_KEEP: usize = 64 << 10;
/// Once this much text is kept by one parse, only short strings (import names) are.
const TEXT_BUDGET: usize = 64 << 20;
const SHORT_TEXT: usize = 256;
/// Longest `GLOBAL`/`INST` line, number line or memo index line.
const NAME_LINE: usize = 4096;
const BUF: usize = 64 << 10;

/// Protocol 0/1 opcodes a pickle can start with.
const PROTO0_START: &[u8] = b"(c]})NILFSVXUTGJKM";
/// Codecs `_codecs.encode` may be given (NumPy uses latin1).
const PLAIN_CODECS: &[&str] =
    &["latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1", "utf-8", "utf8", "utf_8", "ascii"];

#[derive(Debug)]
struct PErr {
    at: u64,
    msg: String,
}

impl std::fmt::Display for PErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {}: {}", self.at, self.msg)
    }
}

fn err<T>(at: u64, msg: impl Into<String>) -> Result<T, PErr> {
    Err(PErr { at, msg: msg.into() })
}

/// Buffered random-access reads over a [`Source`].
struct Reader<'s> {
    src: &'s dyn Source,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

enum Line {
    Short(Vec<u8>),
    Long,
}

impl<'s> Reader<'s> {
    fn new(src: &'s dyn Source) -> Reader<'s> {
        Reader { src, len: src.len(), pos: 0, buf: Vec::new(), buf_start: 0 }
    }

    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    #[inline]
    fn avail(&self) -> usize {
        match self.pos.checked_sub(self.buf_start) {
            Some(off) if off < self.buf.len() as u64 => self.buf.len() - off as usize,
            _ => 0,
        }
    }

    fn fill(&mut self, n: usize) -> Result<(), PErr> {
        if self.avail() >= n {
            return Ok(());
        }
        if n as u64 > self.remaining() {
            return err(self.pos, format!("truncated: {n} bytes needed, {} left", self.remaining()));
        }
        let want = (n.max(BUF) as u64).min(self.remaining()) as usize;
        self.buf.resize(want, 0);
        let mut done = 0;
        while done < want {
            let k = self
                .src
                .read_at(self.pos + done as u64, &mut self.buf[done..])
                .map_err(|e| PErr { at: self.pos, msg: e.to_string() })?;
            if k == 0 {
                return err(self.pos + done as u64, "unexpected end of data");
            }
            done += k;
        }
        self.buf_start = self.pos;
        Ok(())
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, PErr> {
        if self.avail() == 0 {
            self.fill(1)?;
        }
        let b = self.buf[(self.pos - self.buf_start) as usize];
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PErr> {
        self.fill(n)?;
        let off = (self.pos - self.buf_start) as usize;
        self.pos += n as u64;
        Ok(&self.buf[off..off + n])
    }

    fn u16(&mut self) -> Result<u16, PErr> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PErr> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PErr> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Checks that `n` bytes remain, then skips them; returns where they start.
    fn skip(&mut self, n: u64) -> Result<u64, PErr> {
        if n > self.remaining() {
            return err(self.pos, format!("truncated: {n} bytes declared, {} left", self.remaining()));
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    /// A newline-terminated line; lines longer than `keep` are skipped and returned as `Long`.
    fn line(&mut self, keep: usize) -> Result<Line, PErr> {
        let start = self.pos;
        let mut p = start;
        loop {
            if p >= self.len {
                return err(start, "line without a newline");
            }
            self.pos = p;
            self.fill(1)?;
            let off = (p - self.buf_start) as usize;
            if let Some(i) = self.buf[off..].iter().position(|&b| b == b'\n') {
                let len = p - start + i as u64;
                self.pos = start;
                if len <= keep as u64 {
                    let line = self.take(len as usize + 1)?;
                    return Ok(Line::Short(line[..len as usize].to_vec()));
                }
                self.pos = start + len + 1;
                return Ok(Line::Long);
            }
            p = self.buf_start + self.buf.len() as u64;
        }
    }

    fn short_line(&mut self, what: &str) -> Result<Vec<u8>, PErr> {
        let at = self.pos;
        match self.line(NAME_LINE)? {
            Line::Short(l) => Ok(l),
            Line::Long => err(at, format!("{what} line longer than {NAME_LINE} bytes")),
        }
    }
}

struct Machine<'s, 'c> {
    r: Reader<'s>,
    prefix: &'c str,
    depth: u32,
    /// A sniffed archive member: invalid import names end the parse.
    sniffed: bool,
    ctx: &'c mut Ctx,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    scanned: HashSet<Blob>,
    /// Bytes of text kept in values so far (bounded by [`TEXT_BUDGET`]).
    kept_text: usize,
}

impl<'s, 'c> Machine<'s, 'c> {
    fn new(src: &'s dyn Source, prefix: &'c str, depth: u32, sniffed: bool, ctx: &'c mut Ctx) -> Machine<'s, 'c> {
        Machine {
            r: Reader::new(src),
            prefix,
            depth,
            sniffed,
            ctx,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            scanned: HashSet::new(),
            kept_text: 0,
        }
    }

    /// The longest text to keep now.
    fn keep(&self) -> usize {
        if self.kept_text < TEXT_BUDGET {
            STR_KEEP
        } else {
            SHORT_TEXT
        }
    }

    fn finding(&mut self, kind: &'static str, severity: Severity, at: u64, detail: String) {
        let location = format!("{}byte {at}", self.prefix);
        self.ctx.push(self.prefix, kind, severity, location, detail);
    }

    fn push(&mut self, v: Value) -> Result<(), PErr> {
        if self.stack.len() >= MAX_STACK {
            return err(self.r.pos, "stack deeper than the scanner's limit");
        }
        self.stack.push(v);
        Ok(())
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, at: u64) -> Result<Value, PErr> {
        if self.stack.len() <= self.fence() {
            return err(at, "stack underflow");
        }
        self.stack.pop().map_or_else(|| err(at, "stack underflow"), Ok)
    }

    fn top(&self, at: u64) -> Result<&Value, PErr> {
        if self.stack.len() <= self.fence() {
            return err(at, "stack underflow");
        }
        self.stack.last().map_or_else(|| err(at, "stack underflow"), Ok)
    }

    fn pop_mark(&mut self, at: u64) -> Result<Vec<Value>, PErr> {
        let Some(mark) = self.marks.pop() else { return err(at, "MARK not found") };
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn tuple(items: Vec<Value>) -> Value {
        if items.len() > MAX_TUPLE {
            return Value::Other;
        }
        let flat: Vec<Value> =
            items.into_iter().map(|v| if matches!(v, Value::Tuple(_)) { Value::Other } else { v }).collect();
        Value::Tuple(flat.into())
    }

    fn memo_put(&mut self, at: u64, index: u64) -> Result<(), PErr> {
        let v = self.top(at)?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return err(at, "memo larger than the scanner's limit");
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, at: u64, index: u64) -> Result<(), PErr> {
        match self.memo.get(&index) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => {
                self.finding(
                    "pickle_memo_missing",
                    Severity::Medium,
                    at,
                    format!("memo slot {index} read before it was set"),
                );
                err(at, format!("memo slot {index} is not set"))
            }
        }
    }

    fn import(&mut self, at: u64, module: &str, name: &str) -> Result<Value, PErr> {
        if self.sniffed && !(is_dotted_identifier(module) && is_dotted_identifier(name)) {
            return err(at, "import of a name that is not a Python identifier");
        }
        let g = classify(module, name);
        if let Some(severity) = g.severity {
            self.finding("pickle_global", severity, at, g.dotted.clone());
        }
        Ok(Value::Global(Rc::new(g)))
    }

    /// `op` mutates the value on top of the stack. Like CPython's unpickler, the target of the
    /// item opcodes may sit right below the current mark; `BUILD`'s may not.
    fn mutate(&mut self, at: u64, op: &str) -> Result<(), PErr> {
        let target = if op == "BUILD" {
            self.top(at)?
        } else {
            self.stack.last().ok_or(PErr { at, msg: "stack underflow".into() })?
        };
        if let Value::Global(g) = target {
            let detail = format!("{op} on {}", g.dotted);
            self.finding("pickle_mutate_global", Severity::Medium, at, detail);
        }
        Ok(())
    }

    /// Models a call of `callee` with `args`; returns what it yields.
    fn call(&mut self, at: u64, callee: Value, args: &[Value]) -> Value {
        let g = match callee {
            Value::Global(g) => g,
            other => {
                let (severity, detail) = match &other {
                    Value::Call(c) if c.attr.as_deref().is_some_and(|a| CRITICAL_ATTRS.contains(&a)) => {
                        (Severity::Critical, format!("call of {}", other.describe()))
                    }
                    Value::Call(c) if c.attr.is_some() => (Severity::High, format!("call of {}", other.describe())),
                    _ => (Severity::Medium, format!("call of {}", other.describe())),
                };
                self.finding("pickle_call_non_global", severity, at, detail);
                return Value::Other;
            }
        };
        let bytes = args.iter().find_map(|a| a.blob().cloned());
        let mut attr = None;
        match g.special {
            Special::Getattr(i) => {
                if let Some(a) = args.get(i).and_then(|v| v.text(self.r.src)) {
                    let severity =
                        if CRITICAL_ATTRS.contains(&a.as_str()) { Severity::Critical } else { Severity::High };
                    self.finding("pickle_getattr", severity, at, format!("{}(…, {a:?})", g.dotted));
                    attr = Some(Rc::from(a));
                }
            }
            Special::CodecsEncode => {
                let codec = match args.get(1) {
                    None => Some("utf-8".to_string()),
                    Some(v) => v.text(self.r.src),
                };
                let plain = codec.as_deref().is_some_and(|c| PLAIN_CODECS.contains(&c.to_ascii_lowercase().as_str()));
                if !plain {
                    let detail = match codec {
                        Some(c) => format!("_codecs.encode with codec {c:?}"),
                        None => "_codecs.encode with a codec that is not a literal".to_string(),
                    };
                    self.finding("pickle_codecs_encode", Severity::Medium, at, detail);
                }
                // The result is bytes: keep them when the text is a literal Latin-1 string.
                if let Some(Value::Str(s)) = args.first() {
                    if s.chars().all(|c| (c as u32) < 256) {
                        let b: Vec<u8> = s.chars().map(|c| c as u8).collect();
                        return Value::Bytes(Blob::Inline(b.into()));
                    }
                }
                return Value::Other;
            }
            Special::Loader => {
                if let Some(blob) = &bytes {
                    self.nested(at, blob.clone(), &g.dotted);
                }
            }
            Special::None => {}
        }
        Value::Call(Rc::new(Call { callee: g.dotted.clone(), attr, bytes }))
    }

    /// Scans a bytes literal handed to a loader.
    fn nested(&mut self, at: u64, blob: Blob, loader: &str) {
        if !self.scanned.insert(blob.clone()) {
            return;
        }
        if self.depth + 1 > MAX_NESTED_DEPTH || self.ctx.nested_scans >= MAX_NESTED_SCANS {
            self.finding(
                "pickle_nested_limit",
                Severity::Medium,
                at,
                format!("payload of {loader} not scanned: too many nested levels"),
            );
            return;
        }
        self.ctx.nested_scans += 1;
        let prefix = format!("{}byte {at} ({loader} payload) > ", self.prefix);
        let depth = self.depth + 1;
        match blob {
            Blob::Range { start, len } => {
                let w = Window::new(self.r.src, start, len);
                scan_nested(&w, &prefix, depth, self.ctx);
            }
            Blob::Inline(b) => {
                let v = b.to_vec();
                scan_nested(&v, &prefix, depth, self.ctx);
            }
        }
    }

    /// Parses one pickle, to its `STOP`; returns the value it would return.
    fn parse_one(&mut self) -> Result<Value, PErr> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        loop {
            let at = self.r.pos;
            let op = self.r.u8()?;
            match op {
                // STOP
                b'.' => return self.pop(at),
                // PROTO
                0x80 => {
                    let v = self.r.u8()?;
                    if v > 5 {
                        return err(at, format!("unsupported pickle protocol {v}"));
                    }
                }
                // FRAME: a length hint that must fit.
                0x95 => {
                    let n = self.r.u64()?;
                    if n > self.r.remaining() {
                        return err(at, "frame longer than the data");
                    }
                }
                // MARK
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return err(at, "too many marks");
                    }
                    self.marks.push(self.stack.len());
                }
                // POP: a value, or the mark when the stack is at it.
                b'0' => {
                    if self.stack.len() == self.fence() && !self.marks.is_empty() {
                        self.marks.pop();
                    } else {
                        self.pop(at)?;
                    }
                }
                // POP_MARK
                b'1' => {
                    self.pop_mark(at)?;
                }
                // DUP
                b'2' => {
                    let v = self.top(at)?.clone();
                    self.push(v)?;
                }
                // Numbers.
                b'I' => {
                    let line = self.r.short_line("INT")?;
                    let v = parse_int_line(&line).ok_or_else(|| PErr { at, msg: "malformed INT".into() })?;
                    self.push(v)?;
                }
                b'L' => {
                    let at_line = self.r.pos;
                    let v = match self.r.line(NAME_LINE)? {
                        Line::Short(l) => {
                            let l = l.strip_suffix(b"L").unwrap_or(&l);
                            parse_int_line(l).ok_or_else(|| PErr { at: at_line, msg: "malformed LONG".into() })?
                        }
                        Line::Long => Value::Other,
                    };
                    self.push(v)?;
                }
                b'F' => {
                    let line = self.r.short_line("FLOAT")?;
                    let ok = std::str::from_utf8(&line).ok().is_some_and(|s| s.trim().parse::<f64>().is_ok());
                    if !ok {
                        return err(at, "malformed FLOAT");
                    }
                    self.push(Value::Other)?;
                }
                b'J' => {
                    let v = self.r.u32()? as i32;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.r.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.r.u16()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'G' => {
                    self.r.skip(8)?;
                    self.push(Value::Other)?;
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        u64::from(self.r.u8()?)
                    } else {
                        let n = self.r.u32()? as i32;
                        if n < 0 {
                            return err(at, "negative LONG4 length");
                        }
                        n as u64
                    };
                    let start = self.r.skip(n)?;
                    let v = if n <= 8 {
                        let b = read_exact_at(self.r.src, start, n as usize)
                            .map_err(|e| PErr { at, msg: e.to_string() })?;
                        Value::Int(long_value(&b))
                    } else {
                        Value::Other
                    };
                    self.push(v)?;
                }
                // Constants.
                b'N' | 0x88 | 0x89 => self.push(Value::Other)?,
                // Text.
                b'S' => {
                    let v = match self.r.line(self.keep())? {
                        Line::Short(l) => {
                            self.kept_text += l.len();
                            let decoded =
                                decode_string_line(&l).ok_or_else(|| PErr { at, msg: "malformed STRING".into() })?;
                            Value::OldStr(Blob::Inline(decoded.into()))
                        }
                        Line::Long => Value::Other,
                    };
                    self.push(v)?;
                }
                b'V' => {
                    let v = match self.r.line(self.keep())? {
                        Line::Short(l) => {
                            self.kept_text += l.len();
                            Value::Str(decode_raw_unicode_escape(&l).into())
                        }
                        Line::Long => Value::LongStr,
                    };
                    self.push(v)?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u64::from(self.r.u32()?),
                        0x8c => u64::from(self.r.u8()?),
                        _ => self.r.u64()?,
                    };
                    if n > self.r.remaining() {
                        return err(at, "string longer than the data");
                    }
                    let v = if n <= self.keep() as u64 {
                        self.kept_text += n as usize;
                        let b = self.r.take(n as usize)?;
                        Value::Str(String::from_utf8_lossy(b).into())
                    } else {
                        self.r.skip(n)?;
                        Value::LongStr
                    };
                    self.push(v)?;
                }
                b'T' | b'U' => {
                    let n = if op == b'U' {
                        u64::from(self.r.u8()?)
                    } else {
                        let n = self.r.u32()? as i32;
                        if n < 0 {
                            return err(at, "negative BINSTRING length");
                        }
                        n as u64
                    };
                    let start = self.r.skip(n)?;
                    self.push(Value::OldStr(Blob::Range { start, len: n }))?;
                }
                // Bytes.
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => u64::from(self.r.u32()?),
                        b'C' => u64::from(self.r.u8()?),
                        _ => self.r.u64()?,
                    };
                    let start = self.r.skip(n)?;
                    self.push(Value::Bytes(Blob::Range { start, len: n }))?;
                }
                // Out-of-band buffers (protocol 5): supplied by the caller, if at all.
                0x97 => self.push(Value::Other)?,
                0x98 => {
                    self.top(at)?;
                }
                // Containers.
                b')' | b']' | b'}' | 0x8f => {
                    self.push(if op == b')' { Value::Tuple(Rc::from(Vec::new())) } else { Value::Other })?
                }
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Self::tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at)?);
                    }
                    items.reverse();
                    self.push(Self::tuple(items))?;
                }
                b'l' | 0x91 => {
                    self.pop_mark(at)?;
                    self.push(Value::Other)?;
                }
                b'd' => {
                    let items = self.pop_mark(at)?;
                    if items.len() % 2 != 0 {
                        return err(at, "odd number of items for DICT");
                    }
                    self.push(Value::Other)?;
                }
                b'a' => {
                    self.pop(at)?;
                    self.mutate(at, "APPEND")?;
                }
                b'e' => {
                    self.pop_mark(at)?;
                    self.mutate(at, "APPENDS")?;
                }
                b's' => {
                    self.pop(at)?;
                    self.pop(at)?;
                    self.mutate(at, "SETITEM")?;
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    if items.len() % 2 != 0 {
                        return err(at, "odd number of items for SETITEMS");
                    }
                    self.mutate(at, "SETITEMS")?;
                }
                0x90 => {
                    self.pop_mark(at)?;
                    self.mutate(at, "ADDITEMS")?;
                }
                b'b' => {
                    self.pop(at)?;
                    self.mutate(at, "BUILD")?;
                }
                // Memo.
                b'p' => {
                    let line = self.r.short_line("PUT")?;
                    let i = parse_index(&line).ok_or_else(|| PErr { at, msg: "malformed PUT".into() })?;
                    self.memo_put(at, i)?;
                }
                b'q' => {
                    let i = u64::from(self.r.u8()?);
                    self.memo_put(at, i)?;
                }
                b'r' => {
                    let i = u64::from(self.r.u32()?);
                    self.memo_put(at, i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(at, i)?;
                }
                b'g' => {
                    let line = self.r.short_line("GET")?;
                    let i = parse_index(&line).ok_or_else(|| PErr { at, msg: "malformed GET".into() })?;
                    self.memo_get(at, i)?;
                }
                b'h' => {
                    let i = u64::from(self.r.u8()?);
                    self.memo_get(at, i)?;
                }
                b'j' => {
                    let i = u64::from(self.r.u32()?);
                    self.memo_get(at, i)?;
                }
                // Imports.
                b'c' => {
                    let module = self.r.short_line("GLOBAL")?;
                    let name = self.r.short_line("GLOBAL")?;
                    let v = self.import(at, &latin1(&module), &latin1(&name))?;
                    self.push(v)?;
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    let v = match (module.text(self.r.src), name.text(self.r.src)) {
                        (Some(m), Some(n)) => self.import(at, &m, &n)?,
                        _ => {
                            if self.sniffed {
                                return err(at, "STACK_GLOBAL of non-strings");
                            }
                            let detail = format!("STACK_GLOBAL of {} and {}", module.describe(), name.describe());
                            self.finding("pickle_stack_global_non_string", Severity::Medium, at, detail);
                            Value::Global(Rc::new(Global {
                                dotted: "<non-string STACK_GLOBAL>".into(),
                                severity: Some(Severity::Medium),
                                special: Special::None,
                            }))
                        }
                    };
                    self.push(v)?;
                }
                0x82..=0x84 => {
                    let code = match op {
                        0x82 => u32::from(self.r.u8()?),
                        0x83 => u32::from(self.r.u16()?),
                        _ => self.r.u32()?,
                    };
                    self.finding("pickle_extension", Severity::Medium, at, format!("extension registry code {code}"));
                    self.push(Value::Global(Rc::new(Global {
                        dotted: format!("<extension {code}>"),
                        severity: Some(Severity::Medium),
                        special: Special::None,
                    })))?;
                }
                // Calls.
                b'R' => {
                    let args = self.pop(at)?;
                    let callee = self.pop(at)?;
                    let args = tuple_items(&args);
                    let v = self.call(at, callee, &args);
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop(at)?;
                    let cls = self.pop(at)?;
                    let args = tuple_items(&args);
                    let v = self.call(at, cls, &args);
                    self.push(v)?;
                }
                0x92 => {
                    let _kwargs = self.pop(at)?;
                    let args = self.pop(at)?;
                    let cls = self.pop(at)?;
                    let args = tuple_items(&args);
                    let v = self.call(at, cls, &args);
                    self.push(v)?;
                }
                b'i' => {
                    let module = self.r.short_line("INST")?;
                    let name = self.r.short_line("INST")?;
                    let args = self.pop_mark(at)?;
                    let cls = self.import(at, &latin1(&module), &latin1(&name))?;
                    let v = self.call(at, cls, &args);
                    self.push(v)?;
                }
                b'o' => {
                    let mut items = self.pop_mark(at)?;
                    if items.is_empty() {
                        return err(at, "OBJ without a class");
                    }
                    let cls = items.remove(0);
                    let v = self.call(at, cls, &items);
                    self.push(v)?;
                }
                // Persistent ids: resolved by the loader (PyTorch: storages).
                b'P' => {
                    self.r.line(STR_KEEP)?;
                    self.push(Value::Other)?;
                }
                b'Q' => {
                    self.pop(at)?;
                    self.push(Value::Other)?;
                }
                _ => return err(at, format!("unknown opcode 0x{op:02x}")),
            }
        }
    }
}

fn tuple_items(v: &Value) -> Vec<Value> {
    match v {
        Value::Tuple(items) => items.to_vec(),
        _ => Vec::new(),
    }
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn parse_int_line(line: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(line).ok()?.trim();
    if s == "00" || s == "01" {
        return Some(Value::Int(i64::from(s == "01")));
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<i64>().map_or(Value::Other, Value::Int))
}

fn parse_index(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// A little-endian two's-complement integer of at most 8 bytes.
fn long_value(b: &[u8]) -> i64 {
    if b.is_empty() {
        return 0;
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xFF } else { 0 };
    let mut a = [fill; 8];
    a[..b.len()].copy_from_slice(b);
    i64::from_le_bytes(a)
}

/// The argument of protocol 0 `STRING`: a quoted Python literal with backslash escapes.
fn decode_string_line(line: &[u8]) -> Option<Vec<u8>> {
    let q = *line.first()?;
    if line.len() < 2 || (q != b'\'' && q != b'"') || line[line.len() - 1] != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let h = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xFF) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// The argument of protocol 0 `UNICODE`: raw-unicode-escape (`\uXXXX`, `\UXXXXXXXX`, other
/// bytes Latin-1).
fn decode_raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'\\' && matches!(line.get(i + 1), Some(b'u' | b'U')) {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            if let Some(ch) = line
                .get(i + 2..i + 2 + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
            {
                out.push(ch);
                i += 2 + n;
                continue;
            }
        }
        out.push(c as char);
        i += 1;
    }
    out
}

/// A nested payload: a zip (PyTorch), a `.npy` (object arrays are pickles) or a pickle.
fn scan_nested(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) {
    let head = read_exact_at(src, 0, src.len().min(16) as usize).unwrap_or_default();
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        let _ = crate::torch::scan_zip_into(src, prefix, depth, ctx);
    } else if head.starts_with(b"\x93NUMPY") && head.len() >= 10 {
        // .npy: magic, version, header length (2 bytes in v1, 4 in v2/v3), header, data.
        let (header_len, fixed) = if head[6] == 1 {
            (u64::from(u16::from_le_bytes([head[8], head[9]])), 10)
        } else if head.len() >= 12 {
            (u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])), 12)
        } else {
            return;
        };
        let start = fixed + header_len;
        let w = Window::new(src, start, src.len().saturating_sub(start));
        let _ = scan_file_stream(&w, prefix, depth, ctx);
    } else {
        let _ = scan_file_stream(src, prefix, depth, ctx);
    }
}

/// Parses pickles one at a time at chosen positions (PyTorch legacy and tar formats interleave
/// pickles with raw storage bytes).
pub(crate) struct Stream<'s, 'c> {
    m: Machine<'s, 'c>,
}

impl<'s, 'c> Stream<'s, 'c> {
    pub(crate) fn new(src: &'s dyn Source, prefix: &'c str, depth: u32, ctx: &'c mut Ctx) -> Stream<'s, 'c> {
        Stream { m: Machine::new(src, prefix, depth, false, ctx) }
    }
    /// Parses the next pickle; returns its value.
    pub(crate) fn next(&mut self) -> Result<Value, String> {
        let prefix = self.m.prefix;
        self.m.parse_one().map_err(|e| format!("{prefix}{e}"))
    }
    pub(crate) fn pos(&self) -> u64 {
        self.m.r.pos
    }
    pub(crate) fn remaining(&self) -> u64 {
        self.m.r.remaining()
    }
    /// Reads raw bytes (at most a few) at the current position.
    pub(crate) fn raw(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let prefix = self.m.prefix;
        self.m.r.take(n).map(<[u8]>::to_vec).map_err(|e| format!("{prefix}{e}"))
    }
    /// Skips raw bytes, checked against what remains.
    pub(crate) fn skip(&mut self, n: u64) -> Result<(), String> {
        let prefix = self.m.prefix;
        self.m.r.skip(n).map(|_| ()).map_err(|e| format!("{prefix}{e}"))
    }
}
