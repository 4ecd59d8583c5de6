//! GGUF (ggml's `docs/gguf.md`): the header, every metadata value, the tensor infos and the
//! layout of the data section, read through a bounded buffered reader. Tensor data is never read.
//! The chat template (`tokenizer.chat_template` and its `tokenizer.chat_template.*` variants) is
//! checked for Jinja template-injection constructs.
//!
//! `Unparseable` (the file cannot be read the way llama.cpp reads it): a bad magic, a version
//! other than 2 or 3, counts or lengths larger than the remaining bytes can hold, an unknown
//! metadata value type, a bool other than 0 or 1, arrays nested deeper than
//! [`MAX_ARRAY_DEPTH`], a duplicate key or tensor name, a `general.alignment` that is not a
//! uint32 power of two, a tensor name of 64 bytes or more, more than 4 dimensions, an unknown
//! ggml type (its size cannot be known, so it is never guessed), a first dimension that is not a
//! multiple of the type's block size, sizes that overflow, a misaligned tensor offset, and tensor
//! data past the end of the file.
//!
//! Findings: `gguf_template_injection` (High) for each dangerous construct in a chat template;
//! `gguf_overlap` (Medium) for tensors sharing bytes; `gguf_gap` and `gguf_trailing_data`
//! (Medium) for bytes that belong to no tensor beyond alignment padding.

use std::collections::HashSet;

use crate::safetensors::clip;
use crate::{read_exact_at, Finding, Format, Report, Severity, Source};

/// Arrays of arrays may nest this deep.
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// More tensors or metadata entries than any real model has; beyond this a file is refused
/// rather than indexed.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// At most this many template findings are listed.
const MAX_FINDINGS: usize = 256;
/// A chat template larger than this is refused rather than read.
pub const MAX_TEMPLATE_BYTES: u64 = 16 << 20;
const MAX_KEY_BYTES: u64 = 65_535;
/// `GGML_MAX_NAME` is 64 including the terminating NUL.
const MAX_TENSOR_NAME_BYTES: u64 = 63;
const GGML_MAX_DIMS: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;
/// The smallest metadata entry: an empty key (8), the type (4), a one-byte value.
const MIN_KV_BYTES: u64 = 13;
/// The smallest tensor info: an empty name (8), n_dims (4), the type (4), the offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;

// Metadata value types.
const T_UINT8: u32 = 0;
const T_INT8: u32 = 1;
const T_UINT16: u32 = 2;
const T_INT16: u32 = 3;
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_UINT64: u32 = 10;
const T_INT64: u32 = 11;
const T_FLOAT64: u32 = 12;

/// A ggml tensor type: its id in the file, name, elements per block and bytes per block
/// (`ggml_blck_size`, `ggml_type_size`; the block structs are in ggml-common.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    pub id: u32,
    pub name: &'static str,
    pub block: u64,
    pub bytes: u64,
}

const fn t(id: u32, name: &'static str, block: u64, bytes: u64) -> GgmlType {
    GgmlType { id, name, block, bytes }
}

/// The types a GGUF file may hold. Ids 4, 5 (Q4_2, Q4_3), 31–33 (Q4_0_4_4 …) and 36–38
/// (IQ4_NL_4_4 …) were removed from ggml and are refused, as is anything not listed.
pub const GGML_TYPES: &[GgmlType] = &[
    t(0, "F32", 1, 4),
    t(1, "F16", 1, 2),
    t(2, "Q4_0", 32, 18),
    t(3, "Q4_1", 32, 20),
    t(6, "Q5_0", 32, 22),
    t(7, "Q5_1", 32, 24),
    t(8, "Q8_0", 32, 34),
    t(9, "Q8_1", 32, 36),
    t(10, "Q2_K", 256, 84),
    t(11, "Q3_K", 256, 110),
    t(12, "Q4_K", 256, 144),
    t(13, "Q5_K", 256, 176),
    t(14, "Q6_K", 256, 210),
    t(15, "Q8_K", 256, 292),
    t(16, "IQ2_XXS", 256, 66),
    t(17, "IQ2_XS", 256, 74),
    t(18, "IQ3_XXS", 256, 98),
    t(19, "IQ1_S", 256, 50),
    t(20, "IQ4_NL", 32, 18),
    t(21, "IQ3_S", 256, 110),
    t(22, "IQ2_S", 256, 82),
    t(23, "IQ4_XS", 256, 136),
    t(24, "I8", 1, 1),
    t(25, "I16", 1, 2),
    t(26, "I32", 1, 4),
    t(27, "I64", 1, 8),
    t(28, "F64", 1, 8),
    t(29, "IQ1_M", 256, 56),
    t(30, "BF16", 1, 2),
    t(34, "TQ1_0", 256, 54),
    t(35, "TQ2_0", 256, 66),
    t(39, "MXFP4", 32, 17),
    t(40, "NVFP4", 64, 36),
];

/// Scans one GGUF file.
pub fn scan(source: &dyn Source) -> Report {
    let mut findings = Vec::new();
    match parse(source, &mut findings) {
        Ok(()) => Report::from_findings(Format::Gguf, findings),
        Err(e) => Report::unparseable(Format::Gguf, findings, e),
    }
}

fn parse(source: &dyn Source, findings: &mut Vec<Finding>) -> Result<(), String> {
    let mut r = Reader::new(source);
    if r.len() < 4 || r.take(4)? != b"GGUF" {
        return Err("not a GGUF file (bad magic)".into());
    }
    match r.u32()? {
        2 | 3 => {}
        1 => return Err("GGUF version 1 (32-bit counts) is not supported".into()),
        v => return Err(format!("unsupported GGUF version {v}")),
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    let room = r.remaining();
    if n_kv > MAX_ENTRIES || n_kv > room / MIN_KV_BYTES {
        return Err(format!("the header declares {n_kv} metadata entries; {room} remaining bytes cannot hold them"));
    }
    if n_tensors > MAX_ENTRIES || n_tensors > room / MIN_TENSOR_INFO_BYTES {
        return Err(format!("the header declares {n_tensors} tensors; {room} remaining bytes cannot hold them"));
    }
    if n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES > room {
        return Err(format!(
            "the header declares {n_kv} metadata entries and {n_tensors} tensors; {room} remaining bytes cannot hold them"
        ));
    }

    let mut keys = HashSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let at = r.pos();
        let key = read_key(&mut r).map_err(|e| format!("metadata entry at byte {at}: {e}"))?;
        let in_key = |e: String| format!("metadata `{}`: {e}", clip(&key));
        if !keys.insert(key.clone()) {
            return Err(in_key("duplicate key".into()));
        }
        let vtype = r.u32().map_err(in_key)?;
        if key == "general.alignment" {
            if vtype != T_UINT32 {
                return Err(in_key(format!("must be a uint32, is value type {vtype}")));
            }
            let a = r.u32().map_err(in_key)?;
            if !a.is_power_of_two() {
                return Err(in_key(format!("{a} is not a power of two")));
            }
            alignment = u64::from(a);
        } else if is_template_key(&key) && vtype == T_STRING {
            let len = r.u64().map_err(in_key)?;
            if len > MAX_TEMPLATE_BYTES {
                return Err(in_key(format!("a chat template of {len} bytes is larger than the 16 MiB limit")));
            }
            if len > r.remaining() {
                return Err(in_key(format!("a string of {len} bytes runs past the end of the file")));
            }
            let bytes = r.take(len as usize).map_err(in_key)?;
            let text = String::from_utf8_lossy(bytes);
            for construct in template_constructs(&text) {
                if findings.len() >= MAX_FINDINGS {
                    break;
                }
                findings.push(Finding {
                    kind: "gguf_template_injection",
                    severity: Severity::High,
                    location: format!("metadata `{}`", clip(&key)),
                    detail: format!("the chat template uses {construct}"),
                });
            }
        } else {
            skip_value(&mut r, vtype, 0).map_err(in_key)?;
        }
    }

    let mut names = HashSet::new();
    let mut tensors: Vec<(u64, u64, String)> = Vec::new();
    for i in 0..n_tensors {
        let at = r.pos();
        let name_len = r.u64()?;
        if name_len > MAX_TENSOR_NAME_BYTES {
            return Err(format!("tensor info {i} at byte {at}: a name of {name_len} bytes is longer than 63"));
        }
        let name = String::from_utf8_lossy(r.take(name_len as usize)?).into_owned();
        let in_tensor = |e: String| format!("tensor `{}`: {e}", clip(&name));
        if !names.insert(name.clone()) {
            return Err(in_tensor("duplicate tensor name".into()));
        }
        let n_dims = r.u32()?;
        if n_dims > GGML_MAX_DIMS {
            return Err(in_tensor(format!("{n_dims} dimensions, more than ggml's {GGML_MAX_DIMS}")));
        }
        let mut dims = [1u64; GGML_MAX_DIMS as usize];
        for d in dims.iter_mut().take(n_dims as usize) {
            *d = r.u64()?;
            if *d > i64::MAX as u64 {
                return Err(in_tensor(format!("dimension {d} is negative as int64")));
            }
        }
        let type_id = r.u32()?;
        let ty = GGML_TYPES
            .iter()
            .find(|g| g.id == type_id)
            .ok_or_else(|| in_tensor(format!("unknown ggml type {type_id}")))?;
        let offset = r.u64()?;
        if !offset.is_multiple_of(alignment) {
            return Err(in_tensor(format!("data offset {offset} is not a multiple of the alignment {alignment}")));
        }
        let size = tensor_bytes(&dims, ty).map_err(in_tensor)?;
        tensors.push((offset, size, name));
    }

    let header_end = r.pos();
    let data_start = align_up(header_end, alignment).ok_or_else(|| "the data section's start overflows".to_string())?;
    let len = r.len();
    if tensors.is_empty() {
        let expected = data_start.min(len);
        if len > expected {
            findings.push(trailing(expected, len));
        }
        return Ok(());
    }
    if data_start > len {
        return Err(format!("the data section would start at byte {data_start}, past the end of the file"));
    }
    let data_len = len - data_start;
    for (offset, size, name) in &tensors {
        if offset.checked_add(*size).is_none_or(|end| end > data_len) {
            return Err(format!(
                "tensor `{}`: {size} bytes at data offset {offset} run past the end of the file ({data_len} data bytes)",
                clip(name)
            ));
        }
    }

    tensors.sort_unstable();
    let mut covered = 0u64;
    let mut listed = 0usize;
    for (offset, size, name) in &tensors {
        // `covered <= data_len` and alignment <= 2^31, so this cannot overflow.
        let padded = align_up(covered, alignment).unwrap_or(u64::MAX);
        if *offset < covered {
            if listed < 32 {
                findings.push(Finding {
                    kind: "gguf_overlap",
                    severity: Severity::Medium,
                    location: format!("tensor `{}`", clip(name)),
                    detail: format!("starts at data offset {offset}, inside bytes already used up to {covered}"),
                });
            }
            listed += 1;
        } else if *offset > padded {
            if listed < 32 {
                findings.push(Finding {
                    kind: "gguf_gap",
                    severity: Severity::Medium,
                    location: format!("data bytes {padded}..{offset}"),
                    detail: format!("{} bytes before tensor `{}` belong to no tensor", offset - padded, clip(name)),
                });
            }
            listed += 1;
        }
        covered = covered.max(offset + size);
    }
    let end = data_start + covered;
    // Writers pad the last tensor to the alignment; anything beyond that belongs to no tensor.
    let padded_end = align_up(end, alignment).unwrap_or(u64::MAX).min(len);
    if len > padded_end {
        findings.push(trailing(padded_end, len));
    }
    Ok(())
}

fn trailing(from: u64, len: u64) -> Finding {
    Finding {
        kind: "gguf_trailing_data",
        severity: Severity::Medium,
        location: format!("file bytes {from}..{len}"),
        detail: format!("{} bytes after the last tensor belong to no tensor", len - from),
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? / alignment * alignment)
}

fn is_template_key(key: &str) -> bool {
    key == "tokenizer.chat_template" || key.starts_with("tokenizer.chat_template.")
}

/// Bytes of a tensor: `ne0 / block * bytes * ne1 * ne2 * ne3`, overflow-checked.
fn tensor_bytes(dims: &[u64], ty: &GgmlType) -> Result<u64, String> {
    let overflow = || "the tensor's size overflows".to_string();
    dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d)).filter(|n| *n <= i64::MAX as u64).ok_or_else(overflow)?;
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ty.block != 0 {
        return Err(format!("first dimension {ne0} is not a multiple of the {} block size {}", ty.name, ty.block));
    }
    dims.iter().skip(1).try_fold((ne0 / ty.block).checked_mul(ty.bytes).ok_or_else(overflow)?, |acc, d| {
        acc.checked_mul(*d).ok_or_else(overflow)
    })
}

fn read_key(r: &mut Reader) -> Result<String, String> {
    let len = r.u64()?;
    if len > MAX_KEY_BYTES {
        return Err(format!("a key of {len} bytes is longer than 65535"));
    }
    let bytes = r.take(len as usize)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| "the key is not valid UTF-8".into())
}

fn fixed_size(vtype: u32) -> Option<u64> {
    match vtype {
        T_UINT8 | T_INT8 => Some(1),
        T_UINT16 | T_INT16 => Some(2),
        T_UINT32 | T_INT32 | T_FLOAT32 => Some(4),
        T_UINT64 | T_INT64 | T_FLOAT64 => Some(8),
        _ => None,
    }
}

/// Reads past one value, checking every length against the bytes that remain.
fn skip_value(r: &mut Reader, vtype: u32, depth: u32) -> Result<(), String> {
    if let Some(size) = fixed_size(vtype) {
        return r.skip(size);
    }
    match vtype {
        T_BOOL => check_bools(r, 1),
        T_STRING => {
            let len = r.u64()?;
            r.skip(len)
        }
        T_ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
            }
            let etype = r.u32()?;
            let count = r.u64()?;
            let too_many = || format!("an array of {count} elements runs past the end of the file");
            if let Some(size) = fixed_size(etype) {
                return r.skip(count.checked_mul(size).ok_or_else(too_many)?);
            }
            match etype {
                T_BOOL => check_bools(r, count),
                T_STRING => {
                    if count > r.remaining() / 8 {
                        return Err(too_many());
                    }
                    for _ in 0..count {
                        let len = r.u64()?;
                        r.skip(len)?;
                    }
                    Ok(())
                }
                T_ARRAY => {
                    if count > r.remaining() / 12 {
                        return Err(too_many());
                    }
                    for _ in 0..count {
                        skip_value(r, T_ARRAY, depth + 1)?;
                    }
                    Ok(())
                }
                other => Err(format!("unknown array element type {other}")),
            }
        }
        other => Err(format!("unknown value type {other}")),
    }
}

/// `count` bools, each 0 or 1.
fn check_bools(r: &mut Reader, count: u64) -> Result<(), String> {
    if count > r.remaining() {
        return Err(format!("{count} bools run past the end of the file"));
    }
    let mut left = count;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if r.take(n)?.iter().any(|b| *b > 1) {
            return Err("a bool is neither 0 nor 1".into());
        }
        left -= n as u64;
    }
    Ok(())
}

// ---- Chat-template check ----

/// Names that have no business in a chat template: Python/Jinja escape hatches and the Flask
/// globals that server-side template injection reaches for.
const DANGEROUS_NAMES: &[&str] = &[
    "import",
    "include",
    "extends",
    "os",
    "subprocess",
    "popen",
    "eval",
    "exec",
    "compile",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "builtins",
    "lipsum",
    "self",
    "request",
    "config",
    "url_for",
    "get_flashed_messages",
    "mro",
    "subclasses",
    "func_globals",
    "f_globals",
    "gi_frame",
];
/// Names that are dangerous when called.
const DANGEROUS_CALLS: &[&str] = &["open", "system"];
/// Jinja globals that are harmless to call but whose attributes lead to Python internals.
const ABUSABLE_GLOBALS: &[&str] = &["cycler", "joiner", "namespace", "range", "dict"];
/// String literals that only make sense as a lookup of something dangerous.
const DANGEROUS_STRINGS: &[&str] = &["os", "subprocess", "popen", "eval", "exec", "builtins", "getattr", "import"];

/// The template-injection constructs in a Jinja chat template, each named once (in backticks).
/// Only code is examined (`{{ … }}` and `{% … %}`, with string literals decoded); literal text
/// and `{# comments #}` are output or ignored by Jinja and cannot execute. The embedded engine
/// never renders a GGUF template; this check protects any other engine that would.
pub fn template_constructs(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let b = template.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != b'{' || !matches!(b[i + 1], b'{' | b'%' | b'#') {
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'#' => match find(b, i + 2, b"#}") {
                Some(end) => i = end + 2,
                // An unterminated comment does not compile; its text is examined all the same.
                None => {
                    scan_code(template, i + 2, b'#', &mut found);
                    break;
                }
            },
            kind => {
                let (end, first) = scan_code(template, i + 2, kind, &mut found);
                i = end;
                if kind == b'%' && first.as_deref() == Some("raw") {
                    // `{% raw %}` … `{% endraw %}` is literal text.
                    match find(b, i, b"endraw").and_then(|e| find(b, e, b"%}")) {
                        Some(e) => i = e + 2,
                        None => break,
                    }
                }
            }
        }
    }
    found
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev<'a> {
    Start,
    Dot,
    Pipe,
    Ident(&'a str),
    Other,
}

/// At most this many distinct constructs are named per template.
const MAX_CONSTRUCTS: usize = 64;

fn note(found: &mut Vec<String>, construct: String) {
    if found.len() < MAX_CONSTRUCTS && !found.contains(&construct) {
        found.push(construct);
    }
}

/// Tokenizes Jinja code from `from` to the closing delimiter of `kind` (`{`: `}}`, `%`: `%}`),
/// as Jinja's lexer does: brackets are balanced, and a delimiter inside a string or bracket does
/// not close. Returns the index after the delimiter and the first identifier.
fn scan_code(t: &str, from: usize, kind: u8, found: &mut Vec<String>) -> (usize, Option<String>) {
    let b = t.as_bytes();
    let closer: &[u8] = match kind {
        b'{' => b"}}",
        b'%' => b"%}",
        _ => b"#}",
    };
    let mut j = from;
    if j < b.len() && matches!(b[j], b'-' | b'+') {
        j += 1;
    }
    let mut depth = 0usize;
    let mut prev = Prev::Start;
    let mut first: Option<String> = None;
    while j < b.len() {
        let c = b[j];
        if depth == 0 {
            if b[j..].starts_with(closer) {
                return (j + 2, first);
            }
            if matches!(c, b'-' | b'+') && b[j + 1..].starts_with(closer) {
                return (j + 3, first);
            }
        }
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => j += 1,
            b'\'' | b'"' => {
                let (value, next) = string_literal(t, j);
                check_string(&value, found);
                prev = Prev::Other;
                j = next;
            }
            b'0'..=b'9' => {
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
                    j += 1;
                }
                prev = Prev::Other;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = j;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
                    j += 1;
                }
                // Identifiers end on ASCII bytes, so `start..j` is on character boundaries.
                let ident = &t[start..j];
                let next = b[j..].iter().find(|c| !c.is_ascii_whitespace()).copied();
                check_ident(ident, prev, next, found);
                if first.is_none() {
                    first = Some(ident.to_string());
                }
                prev = Prev::Ident(ident);
            }
            b'.' => {
                j += 1;
                prev = Prev::Dot;
            }
            b'|' => {
                j += 1;
                prev = Prev::Pipe;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                j += 1;
                prev = Prev::Other;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                j += 1;
                prev = Prev::Other;
            }
            _ => {
                j += 1;
                prev = Prev::Other;
            }
        }
    }
    (b.len(), first)
}

fn check_ident(ident: &str, prev: Prev, next: Option<u8>, found: &mut Vec<String>) {
    let shown = clip(ident);
    if ident.contains("_TemplateReference__context") {
        note(found, "`_TemplateReference__context`".into());
    } else if ident.starts_with("__") {
        note(found, format!("`{shown}`"));
    } else if prev == Prev::Dot && ident.starts_with('_') {
        note(found, format!("the private attribute `{shown}`"));
    }
    if prev == Prev::Pipe && ident == "attr" {
        note(found, "the `attr` filter".into());
    }
    if DANGEROUS_NAMES.contains(&ident) {
        note(found, format!("`{ident}`"));
    }
    if DANGEROUS_CALLS.contains(&ident) && (next == Some(b'(') || prev == Prev::Dot) {
        note(found, format!("`{ident}(`"));
    }
    if ABUSABLE_GLOBALS.contains(&ident) && prev != Prev::Dot && matches!(next, Some(b'.' | b'[' | b'|')) {
        note(found, format!("attribute access on the `{ident}` global"));
    }
}

fn check_string(value: &str, found: &mut Vec<String>) {
    if value.contains("_TemplateReference__context") {
        note(found, "`_TemplateReference__context` in a string".into());
    } else if let Some(p) = value.find("__") {
        let word: String = value[p..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').take(40).collect();
        note(found, format!("`{word}` in a string"));
    }
    if DANGEROUS_STRINGS.contains(&value.trim()) {
        note(found, format!("the string `{}`", value.trim()));
    }
}

/// A Jinja string literal at `at` (a quote), decoded as Python decodes its escapes. Returns the
/// value and the index after the closing quote (or the end of the text).
fn string_literal(t: &str, at: usize) -> (String, usize) {
    let b = t.as_bytes();
    let quote = b[at];
    let mut out = String::new();
    let mut j = at + 1;
    while j < b.len() {
        let c = b[j];
        if c == quote {
            return (out, j + 1);
        }
        if c != b'\\' || j + 1 >= b.len() {
            let ch = t[j..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            j += ch.len_utf8();
            continue;
        }
        let e = b[j + 1];
        j += 2;
        let hex = |j: usize, n: usize| -> Option<char> {
            let s = t.get(j..j + n)?;
            char::from_u32(u32::from_str_radix(s, 16).ok()?)
        };
        match e {
            b'x' | b'u' | b'U' => {
                let n = match e {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                match hex(j, n) {
                    Some(ch) => {
                        out.push(ch);
                        j += n;
                    }
                    None => out.push('\u{fffd}'),
                }
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut k = 0;
                while k < 2 && j < b.len() && (b'0'..=b'7').contains(&b[j]) {
                    v = v * 8 + u32::from(b[j] - b'0');
                    j += 1;
                    k += 1;
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'\\' => out.push('\\'),
            b'\'' => out.push('\''),
            b'"' => out.push('"'),
            b'N' => out.push('\u{fffd}'),
            b'a' | b'b' | b'f' | b'v' => out.push(' '),
            other if other < 0x80 => {
                out.push('\\');
                out.push(char::from(other));
            }
            _ => {
                // A backslash before a multi-byte character: keep the character.
                j -= 1;
                out.push('\\');
            }
        }
    }
    (out, b.len())
}

// ---- A bounded, buffered reader over a `Source` (shared with the ONNX parser) ----

const CHUNK: usize = 1 << 16;

/// Sequential reads over a [`Source`] with a 64 KiB window; every read is checked against the
/// file's length before anything is allocated.
pub(crate) struct Reader<'a> {
    source: &'a dyn Source,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(source: &'a dyn Source) -> Reader<'a> {
        Reader { source, len: source.len(), pos: 0, buf: Vec::new(), buf_start: 0 }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    pub(crate) fn seek(&mut self, pos: u64) -> Result<(), String> {
        if pos > self.len {
            return Err(format!("offset {pos} is past the end of the file"));
        }
        self.pos = pos;
        Ok(())
    }

    pub(crate) fn skip(&mut self, n: u64) -> Result<(), String> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.len => {
                self.pos = end;
                Ok(())
            }
            _ => Err(format!("{n} bytes at byte {} run past the end of the file", self.pos)),
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n as u64 > self.remaining() {
            return Err(format!("{n} bytes at byte {} run past the end of the file", self.pos));
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos + n as u64 > buf_end {
            let want = (n.max(CHUNK) as u64).min(self.remaining()) as usize;
            self.buf = read_exact_at(self.source, self.pos, want).map_err(|e| e.to_string())?;
            self.buf_start = self.pos;
        }
        let off = (self.pos - self.buf_start) as usize;
        self.pos += n as u64;
        Ok(&self.buf[off..off + n])
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}
