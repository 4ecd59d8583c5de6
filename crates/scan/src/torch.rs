//! PyTorch checkpoints in their three containers, scanned without loading anything:
//!
//! - **zip** (`torch.save` since 1.6): every member is looked at, whatever its name. Members
//!   named `*.pkl` (`archive/data.pkl`, TorchScript's `constants.pkl`) must parse as pickles.
//!   Every other member (tensor data in `archive/data/0`, …) is raw bytes: its first bytes are
//!   sniffed ([`crate::pickle`]'s member sniff: `PROTO` 2–5 or a protocol 0/1 start opcode) and
//!   only then is it parsed, and a parse that fails without importing anything is taken as
//!   tensor data, not as a pickle (`pickle::scan_member` documents the heuristic). So a
//!   malicious pickle renamed into `data/` is still found, and random float data is not
//!   mistaken for one. Every member's CRC-32 is checked; a zip inside the archive is reported
//!   (`zip_nested_archive`) and scanned in turn, up to a depth. The zip tricks that
//!   [`crate::zip::read_archive`] finds are findings of the report.
//! - **legacy** (`_use_new_zipfile_serialization=False`): five pickles — the magic number
//!   `0x1950a86a20f9469cfc6c`, the protocol version (1001), `sys_info`, the object, the list
//!   of storage keys — then raw storage bytes, which are not pickles and are not parsed.
//! - **tar** (torch ≤ 0.1.x): members `sys_info`, `pickle`, `storages` and `tensors`.
//!   `storages` and `tensors` interleave small pickles (each one unpickled by the loader) with
//!   raw data whose length the records give; both are walked record by record. Links and
//!   other member types are findings; unknown members are sniffed like zip data members.

use std::collections::HashSet;

use crate::pickle::{self, Ctx, Member, Stream, Value, MAX_NESTED_DEPTH};
use crate::zip::{self, Entry, Window};
use crate::{read_exact_at, Format, Report, Severity, Source};

/// The first pickle of a legacy file is this number.
const LEGACY_MAGIC: u128 = 0x1950_a86a_20f9_469c_fc6c;
/// The second is this protocol version.
const LEGACY_PROTOCOL: i64 = 1001;

/// Whether `head` starts with a pickled legacy magic number (`LONG1`/`LONG4` at any protocol,
/// or the protocol 0/1 text form `L…L`).
pub fn is_legacy(head: &[u8]) -> bool {
    let body = match head {
        [0x80, _, rest @ ..] => rest,
        _ => head,
    };
    match body {
        [0x8a, n, rest @ ..] => le_magic(rest.get(..usize::from(*n))),
        [0x8b, a, b, c, d, rest @ ..] => {
            let n = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
            le_magic(rest.get(..n))
        }
        [b'L', rest @ ..] => {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else { return false };
            let text = rest[..end].strip_suffix(b"L").unwrap_or(&rest[..end]);
            std::str::from_utf8(text).ok().and_then(|t| t.parse::<u128>().ok()) == Some(LEGACY_MAGIC)
        }
        _ => false,
    }
}

fn le_magic(bytes: Option<&[u8]>) -> bool {
    let Some(b) = bytes.filter(|b| b.len() <= 16 && b.last().is_some_and(|l| l & 0x80 == 0)) else { return false };
    let mut a = [0u8; 16];
    a[..b.len()].copy_from_slice(b);
    u128::from_le_bytes(a) == LEGACY_MAGIC
}

/// Scans a zip-format checkpoint.
pub fn scan_zip(source: &dyn Source) -> Report {
    let mut ctx = Ctx::default();
    let error = scan_zip_into(source, "", 0, &mut ctx).err();
    ctx.report(Format::PytorchZip, error)
}

/// Scans a legacy (non-zip, non-tar) checkpoint.
pub fn scan_legacy(source: &dyn Source) -> Report {
    let mut ctx = Ctx::default();
    let error = legacy_into(source, &mut ctx).err();
    ctx.report(Format::PytorchLegacy, error)
}

/// Scans a tar-format checkpoint.
pub fn scan_tar(source: &dyn Source) -> Report {
    let mut ctx = Ctx::default();
    let error = tar_into(source, "", 0, &mut ctx).err();
    ctx.report(Format::PytorchTar, error)
}

// ---------------------------------------------------------------------------------------------

/// A compressed member is inflated into memory to be scanned; more than this is refused.
const MAX_INFLATED_MEMBER: u64 = 1 << 30;
/// Deflated output checked (CRC) per archive, in all: overlapping members can repeat one
/// deflate stream many times.
const MAX_INFLATED_TOTAL: u64 = 16 << 30;

/// A member's bytes: a window of the file (stored) or inflated.
enum MemberBytes<'a> {
    Window(Window<'a>),
    Owned(Vec<u8>),
}

impl MemberBytes<'_> {
    fn source(&self) -> &dyn Source {
        match self {
            MemberBytes::Window(w) => w,
            MemberBytes::Owned(v) => v,
        }
    }
}

fn member_bytes<'a>(src: &'a dyn Source, entry: &Entry) -> Result<MemberBytes<'a>, String> {
    if let Some(w) = zip::stored_window(src, entry) {
        return Ok(MemberBytes::Window(w));
    }
    zip::read_entry_lenient(src, entry, MAX_INFLATED_MEMBER).map(|(v, _)| MemberBytes::Owned(v))
}

/// Scans a zip archive into `ctx`; `Err` when the archive or a declared pickle cannot be
/// parsed, or when it holds no pickle at all. Also used for zips nested in pickles.
pub(crate) fn scan_zip_into(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) -> Result<(), String> {
    let archive = zip::read_archive(src).map_err(|e| format!("{prefix}{e}"))?;
    for mut f in archive.findings {
        f.location = format!("{prefix}{}", f.location);
        ctx.push_finding(prefix, f);
    }
    let mut pickles = 0usize;
    let mut error = None;
    let mut inflated = 0u64;
    for entry in &archive.entries {
        // Directories hold nothing; encrypted members and unknown methods are findings already.
        if entry.is_dir() || entry.is_encrypted() || !(entry.method == 0 || entry.method == 8) {
            continue;
        }
        let loc = format!("{prefix}{}", entry.name);
        let medium = |ctx: &mut Ctx, kind: &'static str, detail: String| {
            ctx.push(prefix, kind, Severity::Medium, loc.clone(), detail);
        };
        if entry.method == 8 {
            inflated = inflated.saturating_add(entry.size);
            if inflated > MAX_INFLATED_TOTAL {
                medium(ctx, "zip_too_large", "more compressed data than the scanner inflates".into());
                continue;
            }
        }
        match zip::check_entry(src, entry, u64::MAX) {
            Ok(true) => {}
            Ok(false) => medium(ctx, "zip_crc_mismatch", "the CRC-32 of the data differs from the directory".into()),
            Err(e) => {
                medium(ctx, "zip_unreadable", e);
                continue;
            }
        }
        let head = match zip::read_prefix(src, entry, 16) {
            Ok(h) => h,
            Err(e) => {
                medium(ctx, "zip_unreadable", e);
                continue;
            }
        };
        let nested_zip = head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06");
        let declared = entry.name.ends_with(".pkl");
        if !(nested_zip || declared || pickle::sniff_member(&head)) {
            continue;
        }
        let bytes = match member_bytes(src, entry) {
            Ok(b) => b,
            Err(e) => {
                medium(ctx, "zip_unreadable", e);
                continue;
            }
        };
        let member = bytes.source();
        if nested_zip {
            medium(ctx, "zip_nested_archive", "a zip archive inside the archive".into());
            if depth + 1 > MAX_NESTED_DEPTH {
                continue;
            }
            if let Err(e) = scan_zip_into(member, &format!("{loc} > "), depth + 1, ctx) {
                medium(ctx, "zip_nested_archive", format!("the nested archive cannot be read: {e}"));
            }
        } else if declared {
            match pickle::scan_file_stream(member, &format!("{loc}: "), depth, ctx) {
                Some(e) => {
                    error.get_or_insert(e);
                }
                None => pickles += 1,
            }
        } else if pickle::scan_member(member, &format!("{loc}: "), depth, ctx) == Member::Pickle {
            pickles += 1;
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    if pickles == 0 {
        return Err(format!("{prefix}no pickle in the archive"));
    }
    Ok(())
}

fn legacy_into(src: &dyn Source, ctx: &mut Ctx) -> Result<(), String> {
    let head = read_exact_at(src, 0, src.len().min(64) as usize).map_err(|e| e.to_string())?;
    if !is_legacy(&head) {
        return Err("no legacy PyTorch magic number".into());
    }
    let mut s = Stream::new(src, "", 0, ctx);
    s.next()?; // magic number
    match s.next()? {
        Value::Int(LEGACY_PROTOCOL) => {}
        _ => return Err("unknown legacy PyTorch protocol version".into()),
    }
    s.next()?; // sys_info
    s.next()?; // the object, with persistent ids for storages
    s.next()?; // storage keys; raw storage bytes follow
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tar.

struct TarMember {
    name: String,
    offset: u64,
    size: u64,
    typeflag: u8,
}

fn tar_into(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) -> Result<(), String> {
    let members = read_tar(src, prefix, ctx)?;
    let mut has_pickle = false;
    let mut error: Option<String> = None;
    let mut names = HashSet::new();
    for m in &members {
        let loc = format!("{prefix}{}", m.name);
        if !names.insert(m.name.as_str()) {
            ctx.push(prefix, "tar_duplicate_name", Severity::Medium, loc.clone(), "two members with this name".into());
        }
        match m.typeflag {
            b'0' | 0 | b'7' => {}
            b'5' => continue,
            b'1' | b'2' => {
                ctx.push(
                    prefix,
                    "tar_link",
                    Severity::Medium,
                    loc,
                    "a link member (extracting it reads another file)".into(),
                );
                continue;
            }
            t => {
                ctx.push(prefix, "tar_member_type", Severity::Medium, loc, format!("member of type {:?}", t as char));
                continue;
            }
        }
        let w = Window::new(src, m.offset, m.size);
        let member_prefix = format!("{loc}: ");
        let result = match m.name.as_str() {
            "pickle" => {
                has_pickle = true;
                pickle::scan_file_stream(&w, &member_prefix, depth, ctx).map_or(Ok(()), Err)
            }
            "sys_info" => pickle::scan_file_stream(&w, &member_prefix, depth, ctx).map_or(Ok(()), Err),
            "storages" => walk_storages(&w, &member_prefix, depth, ctx),
            "tensors" => walk_tensors(&w, &member_prefix, depth, ctx),
            _ => {
                let head = read_exact_at(&w, 0, w.len().min(16) as usize).unwrap_or_default();
                if head.starts_with(b"PK\x03\x04") {
                    ctx.push(
                        prefix,
                        "zip_nested_archive",
                        Severity::Medium,
                        loc.clone(),
                        "a zip archive inside the archive".into(),
                    );
                    if depth < MAX_NESTED_DEPTH {
                        let _ = scan_zip_into(&w, &format!("{loc} > "), depth + 1, ctx);
                    }
                } else if pickle::sniff_member(&head) {
                    pickle::scan_member(&w, &member_prefix, depth, ctx);
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            error.get_or_insert(e);
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    if !has_pickle {
        return Err(format!("{prefix}no 'pickle' member in the tar archive"));
    }
    Ok(())
}

/// A count pickle: a non-negative int that fits in what remains.
fn count(v: Value, remaining: u64, what: &str) -> Result<u64, String> {
    match v {
        Value::Int(n) if n >= 0 && (n as u64) <= remaining => Ok(n as u64),
        _ => Err(format!("{what}: the record count is not a plausible number")),
    }
}

/// `storages`: a count, then per storage a pickle `(key, location, storage type)`, an int64
/// element count and the raw elements; then a pickle of storage views.
fn walk_storages(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) -> Result<(), String> {
    let mut s = Stream::new(src, prefix, depth, ctx);
    let first = s.next()?;
    let n = count(first, s.remaining(), prefix)?;
    for _ in 0..n {
        let record = s.next()?;
        let element = match &record {
            Value::Tuple(items) if items.len() == 3 => match &items[2] {
                Value::Global(g) if g.severity.is_none() => element_size(&g.dotted),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| format!("{prefix}byte {}: a storage record of an unknown storage type", s.pos()))?;
        let raw = s.raw(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&raw);
        let numel = u64::try_from(i64::from_le_bytes(a)).map_err(|_| format!("{prefix}negative storage size"))?;
        let bytes = numel.checked_mul(element).ok_or_else(|| format!("{prefix}storage size overflows"))?;
        s.skip(bytes)?;
    }
    s.next()?; // storage views
    Ok(())
}

/// `tensors`: a count, then per tensor a pickle `(key, storage id, tensor type)`, an int32
/// `ndim`, 4 padding bytes, `ndim` sizes, `ndim` strides and a storage offset (int64 each).
fn walk_tensors(src: &dyn Source, prefix: &str, depth: u32, ctx: &mut Ctx) -> Result<(), String> {
    let mut s = Stream::new(src, prefix, depth, ctx);
    let first = s.next()?;
    let n = count(first, s.remaining(), prefix)?;
    for _ in 0..n {
        s.next()?;
        let raw = s.raw(4)?;
        let ndim = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if !(0..=64).contains(&ndim) {
            return Err(format!("{prefix}byte {}: implausible tensor rank {ndim}", s.pos()));
        }
        s.skip(4 + 16 * ndim as u64 + 8)?;
    }
    Ok(())
}

/// Bytes per element of an allow-listed `torch.*Storage` class.
fn element_size(dotted: &str) -> Option<u64> {
    let class = dotted.strip_prefix("torch.")?;
    Some(match class {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QUInt8Storage" | "QInt8Storage" | "QUInt4x2Storage"
        | "QUInt2x4Storage" | "UntypedStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Reads the members of a tar archive (ustar, GNU long names, pax `path`/`size`). A header
/// with a bad checksum ends the archive for Python's `tarfile`; after the first member that is
/// a finding (bytes after it are invisible to the loader), at the start an error.
fn read_tar(src: &dyn Source, prefix: &str, ctx: &mut Ctx) -> Result<Vec<TarMember>, String> {
    let len = src.len();
    let mut pos = 0u64;
    let mut out = Vec::new();
    let mut long_name: Option<String> = None;
    let mut pax_path: Option<String> = None;
    let mut pax_size: Option<u64> = None;
    while pos + 512 <= len {
        let h = read_exact_at(src, pos, 512).map_err(|e| e.to_string())?;
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let stored = parse_octal(&h[148..156]);
        let unsigned: u64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        let signed: i64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i64::from(b as i8) }).sum();
        if stored.is_none_or(|c| c != unsigned && c as i64 != signed) {
            if pos == 0 {
                return Err(format!("{prefix}not a tar archive: bad header checksum"));
            }
            ctx.push(
                prefix,
                "tar_bad_header",
                Severity::Medium,
                format!("{prefix}byte {pos}"),
                "a header with a bad checksum hides the rest of the archive from tarfile".into(),
            );
            break;
        }
        let typeflag = h[156];
        let header_size = parse_size(&h[124..136]).ok_or_else(|| format!("{prefix}byte {pos}: malformed size"))?;
        let regular = !matches!(typeflag, b'L' | b'K' | b'x' | b'g');
        let size = if regular { pax_size.take().unwrap_or(header_size) } else { header_size };
        let data = pos + 512;
        if size > len - data {
            return Err(format!("{prefix}byte {pos}: member runs past the end of the archive"));
        }
        match typeflag {
            b'L' => long_name = Some(cstr(&read_small(src, data, size)?)),
            b'x' => {
                let records = read_small(src, data, size)?;
                for (key, value) in pax_records(&records) {
                    match key.as_str() {
                        "path" => pax_path = Some(value),
                        "size" => pax_size = value.parse().ok(),
                        _ => {}
                    }
                }
            }
            b'K' | b'g' => {}
            _ => {
                let mut name = cstr(&h[0..100]);
                if &h[257..263] == b"ustar\0" {
                    let p = cstr(&h[345..500]);
                    if !p.is_empty() {
                        name = format!("{p}/{name}");
                    }
                }
                let name = pax_path.take().or(long_name.take()).unwrap_or(name);
                out.push(TarMember { name, offset: data, size, typeflag });
            }
        }
        pos = data + size.div_ceil(512) * 512;
    }
    if out.is_empty() {
        return Err(format!("{prefix}empty tar archive"));
    }
    Ok(out)
}

fn read_small(src: &dyn Source, at: u64, size: u64) -> Result<Vec<u8>, String> {
    if size > 1 << 20 {
        return Err("tar extended header larger than 1 MiB".into());
    }
    read_exact_at(src, at, size as usize).map_err(|e| e.to_string())
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn parse_octal(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A size field: octal, or base-256 (GNU) when the high bit of the first byte is set.
fn parse_size(b: &[u8]) -> Option<u64> {
    if b[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(b[0] & 0x7F);
        for &c in &b[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(c))?;
        }
        return Some(v);
    }
    parse_octal(b)
}

/// pax records: `"<len> <key>=<value>\n"`.
fn pax_records(b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let Some(sp) = b[p..].iter().position(|&c| c == b' ') else { break };
        let Some(n) = std::str::from_utf8(&b[p..p + sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
        if n <= sp + 1 || p + n > b.len() {
            break;
        }
        let record = &b[p + sp + 1..p + n];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&c| c == b'=') {
            out.push((
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            ));
        }
        p += n;
    }
    out
}
