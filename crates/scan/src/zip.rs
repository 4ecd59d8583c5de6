//! A small, bounded zip reader for the scanners of zip-based model formats (PyTorch `.pt`/`.bin`
//! archives, Keras `.keras`). It reads the end-of-central-directory record (and its zip64
//! form), the central directory, and every local header, and cross-checks them: the tricks that
//! make two zip readers see different files (a local name that differs from the central one,
//! encryption or odd flag bits, data descriptors that disagree, overlapping members, …) are
//! returned as findings of kind `zip_*` (Medium) rather than silently skipped.
//!
//! Members are read stored or DEFLATE-compressed (`miniz_oxide`), never beyond a caller-given
//! size (zip bombs), and their CRC-32 is checked. [`read_entry`] treats a CRC mismatch as an
//! error; [`read_entry_lenient`] and [`check_entry`] return the data or the check result so that
//! a scanner can report the mismatch as a finding and still look inside the member.
//!
//! Nothing is ever written or extracted; member names are only compared, never used as paths.

use std::collections::HashSet;

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use crate::{read_exact_at, Finding, Severity, Source, SourceError};

/// One member, as the central directory describes it (zip64 values already applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Offset of the member's local header.
    pub offset: u64,
    pub compressed_size: u64,
    pub size: u64,
    /// 0 = stored, 8 = deflate; anything else cannot be read (and is a finding).
    pub method: u16,
    /// General-purpose bit flags (bit 0: encrypted, bit 3: data descriptor, bit 11: UTF-8).
    pub flags: u16,
    pub crc32: u32,
}

impl Entry {
    /// A directory entry (`name/`, no data).
    pub fn is_dir(&self) -> bool {
        self.name.ends_with('/') && self.size == 0
    }
    /// Encrypted (traditional or strong encryption): its content cannot be read.
    pub fn is_encrypted(&self) -> bool {
        self.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0
    }
}

/// The members of an archive and the zip tricks found while reading its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub entries: Vec<Entry>,
    pub findings: Vec<Finding>,
}

/// Reads the directories of a zip file: EOCD (and zip64 EOCD), the central directory, and each
/// local header, cross-checked. `Err` means the file is not a readable zip at all (no EOCD, a
/// central directory outside the file or malformed); everything a reader could still open but
/// that two readers might disagree on is a finding in [`Archive::findings`].
pub fn read_archive(source: &dyn Source) -> Result<Archive, String> {
    let len = source.len();
    let mut findings = Vec::new();
    let eocd = find_eocd(source, &mut findings)?;
    let directory = read_directory(source, &eocd, &mut findings)?;
    let mut entries = Vec::with_capacity(directory.len());
    let mut spans = Vec::with_capacity(directory.len());
    let mut seen: HashSet<String> = HashSet::new();
    for central in directory {
        let entry = central.entry;
        check_entry_fields(&entry, &central.raw_name, central.name_is_utf8, &mut findings);
        if !seen.insert(entry.name.clone()) {
            findings.push(finding("zip_duplicate_name", &entry.name, "two members with this name"));
        }
        match check_local(source, &entry, &mut findings) {
            Ok(end) => spans.push((entry.offset, end, entries.len())),
            Err(e) => findings.push(finding("zip_local_header", &entry.name, &e)),
        }
        entries.push(entry);
    }
    check_layout(source, &entries, &mut spans, eocd.cd_offset, len, &mut findings);
    Ok(Archive { entries, findings })
}

/// Reads a member whole: stored or deflate, at most `max_bytes` (and never more than the
/// central directory declares), CRC-32 checked. A CRC mismatch, an encrypted member, an
/// unsupported method or a size that disagrees with the directory is an `Err`; use
/// [`read_entry_lenient`] to get the bytes of a member whose CRC is wrong.
pub fn read_entry(source: &dyn Source, entry: &Entry, max_bytes: u64) -> Result<Vec<u8>, String> {
    let (data, crc_ok) = read_entry_lenient(source, entry, max_bytes)?;
    if !crc_ok {
        return Err(format!("member {}: CRC-32 mismatch", entry.name));
    }
    Ok(data)
}

/// Like [`read_entry`], but a CRC mismatch is not an error: the bytes are returned with
/// `false`, so that the caller can report `zip_crc_mismatch` and still scan them.
pub fn read_entry_lenient(source: &dyn Source, entry: &Entry, max_bytes: u64) -> Result<(Vec<u8>, bool), String> {
    if entry.size > max_bytes {
        return Err(format!("member {} is {} bytes, over the limit of {max_bytes}", entry.name, entry.size));
    }
    // `size <= max_bytes` and the stream is stopped as soon as it exceeds `size`.
    let mut out = Vec::with_capacity(entry.size.min(1 << 20) as usize);
    let crc = stream_entry(source, entry, max_bytes, &mut |chunk| {
        out.extend_from_slice(chunk);
        true
    })?;
    Ok((out, crc == Some(entry.crc32)))
}

/// Reads a member without keeping it, and says whether its CRC-32 matches the directory.
/// Memory stays bounded whatever the member's size; `max_bytes` bounds the work.
pub fn check_entry(source: &dyn Source, entry: &Entry, max_bytes: u64) -> Result<bool, String> {
    if entry.size > max_bytes {
        return Err(format!("member {} is {} bytes, over the limit of {max_bytes}", entry.name, entry.size));
    }
    let crc = stream_entry(source, entry, max_bytes, &mut |_| true)?;
    Ok(crc == Some(entry.crc32))
}

/// The first (up to) `n` bytes of a member's uncompressed content, for sniffing. No CRC check.
pub fn read_prefix(source: &dyn Source, entry: &Entry, n: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(n);
    stream_entry(source, entry, u64::MAX, &mut |chunk| {
        let take = (n - out.len()).min(chunk.len());
        out.extend_from_slice(&chunk[..take]);
        out.len() < n
    })?;
    Ok(out)
}

/// Where a member's (compressed) data starts: after its local header, name and extra field.
pub fn data_offset(source: &dyn Source, entry: &Entry) -> Result<u64, String> {
    let header = read_at(source, entry.offset, LOCAL_HEADER_LEN)?;
    if u32le(&header, 0) != LOCAL_SIG {
        return Err(format!("member {}: no local header at byte {}", entry.name, entry.offset));
    }
    let name_len = u64::from(u16le(&header, 26));
    let extra_len = u64::from(u16le(&header, 28));
    Ok(entry.offset + LOCAL_HEADER_LEN as u64 + name_len + extra_len)
}

/// A stored member's bytes as a [`Source`] of their own, without reading them. `None` for a
/// compressed or encrypted member, or one whose data does not fit in the file.
pub fn stored_window<'a>(source: &'a dyn Source, entry: &Entry) -> Option<Window<'a>> {
    if entry.method != 0 || entry.is_encrypted() || entry.compressed_size != entry.size {
        return None;
    }
    let start = data_offset(source, entry).ok()?;
    let end = start.checked_add(entry.size)?;
    (end <= source.len()).then(|| Window::new(source, start, entry.size))
}

/// A byte range of another [`Source`], itself a [`Source`] (a stored zip member, a tar member,
/// a bytes literal inside a pickle). Reads beyond its end return nothing.
#[derive(Clone, Copy)]
pub struct Window<'a> {
    source: &'a dyn Source,
    start: u64,
    len: u64,
}

impl<'a> Window<'a> {
    /// The range `start..start + len` of `source`, clamped to its end.
    pub fn new(source: &'a dyn Source, start: u64, len: u64) -> Window<'a> {
        let total = source.len();
        let start = start.min(total);
        Window { source, start, len: len.min(total - start) }
    }
    /// Where the window starts in the underlying source.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl Source for Window<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        self.source.read_at(self.start + offset, &mut buf[..n])
    }
}

// ---------------------------------------------------------------------------------------------

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const CENTRAL_HEADER_LEN: usize = 46;
const EOCD_LEN: usize = 22;

const FLAG_ENCRYPTED: u16 = 1 << 0;
const FLAG_DESCRIPTOR: u16 = 1 << 3;
const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;
const FLAG_UTF8: u16 = 1 << 11;
const FLAG_MASKED_HEADER: u16 = 1 << 13;
/// Bits an ordinary writer sets: deflate options (1, 2), data descriptor (3), UTF-8 names (11).
const ORDINARY_FLAGS: u16 = 0b110 | FLAG_DESCRIPTOR | FLAG_UTF8;

/// The central directory is read into memory; more than this is not a model archive.
const MAX_DIRECTORY_BYTES: u64 = 256 << 20;
/// DEFLATE cannot expand by more than about 1032:1.
const MAX_DEFLATE_RATIO: u64 = 1032;
const CHUNK: usize = 1 << 20;

struct Eocd {
    entries: u64,
    cd_size: u64,
    cd_offset: u64,
    /// Where the (zip64 or plain) end record starts: the central directory should end here.
    end_offset: u64,
}

struct Central {
    entry: Entry,
    raw_name: Vec<u8>,
    name_is_utf8: bool,
}

fn finding(kind: &'static str, location: &str, detail: &str) -> Finding {
    Finding { kind, severity: Severity::Medium, location: location.to_string(), detail: detail.to_string() }
}

fn read_at(source: &dyn Source, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    read_exact_at(source, offset, len).map_err(|e| e.to_string())
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64le(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Finds the last end-of-central-directory record whose comment fits in the file (what Python's
/// `zipfile` and miniz do), and its zip64 form when there is one.
fn find_eocd(source: &dyn Source, findings: &mut Vec<Finding>) -> Result<Eocd, String> {
    let len = source.len();
    if len < EOCD_LEN as u64 {
        return Err("too short to be a zip file".into());
    }
    let tail_len = len.min(EOCD_LEN as u64 + 0xFFFF) as usize;
    let tail_start = len - tail_len as u64;
    let tail = read_at(source, tail_start, tail_len)?;
    let mut found = None;
    for p in (0..=tail_len - EOCD_LEN).rev() {
        if u32le(&tail, p) == EOCD_SIG {
            let comment_len = u16le(&tail, p + 20) as usize;
            if p + EOCD_LEN + comment_len <= tail_len {
                found = Some(p);
                break;
            }
        }
    }
    let p = found.ok_or("no end-of-central-directory record: not a zip file")?;
    let rec = &tail[p..p + EOCD_LEN];
    let eocd_offset = tail_start + p as u64;
    let comment_len = u16le(rec, 20) as usize;
    if p + EOCD_LEN + comment_len < tail_len {
        findings.push(finding(
            "zip_trailing_data",
            "end of central directory",
            &format!("{} bytes after the archive comment", tail_len - p - EOCD_LEN - comment_len),
        ));
    }
    let disk = u16le(rec, 4);
    let cd_disk = u16le(rec, 6);
    let on_disk = u16le(rec, 8);
    let total = u16le(rec, 10);
    if disk != 0 || cd_disk != 0 || on_disk != total {
        findings.push(finding("zip_multi_disk", "end of central directory", "a split (multi-disk) archive"));
    }
    let mut eocd = Eocd {
        entries: u64::from(total),
        cd_size: u64::from(u32le(rec, 12)),
        cd_offset: u64::from(u32le(rec, 16)),
        end_offset: eocd_offset,
    };
    // A zip64 locator sits right before the EOCD.
    if eocd_offset >= 20 {
        let loc = read_at(source, eocd_offset - 20, 20)?;
        if u32le(&loc, 0) == ZIP64_LOCATOR_SIG {
            let z_off = u64le(&loc, 8);
            if z_off.checked_add(56).is_none_or(|end| end > eocd_offset - 20) {
                return Err("zip64 end record outside the file".into());
            }
            let z = read_at(source, z_off, 56)?;
            if u32le(&z, 0) != ZIP64_EOCD_SIG {
                return Err("zip64 locator points at no zip64 end record".into());
            }
            if u32le(&z, 16) != 0 || u32le(&z, 20) != 0 || u64le(&z, 24) != u64le(&z, 32) {
                findings.push(finding(
                    "zip_multi_disk",
                    "zip64 end of central directory",
                    "a split (multi-disk) archive",
                ));
            }
            let fits16 = |v: u64, short: u64| short == 0xFFFF || v == short;
            let fits32 = |v: u64, short: u64| short == 0xFFFF_FFFF || v == short;
            let (entries, cd_size, cd_offset) = (u64le(&z, 32), u64le(&z, 40), u64le(&z, 48));
            if !(fits16(entries, eocd.entries) && fits32(cd_size, eocd.cd_size) && fits32(cd_offset, eocd.cd_offset)) {
                findings.push(finding(
                    "zip_directory_mismatch",
                    "zip64 end of central directory",
                    "the zip64 and plain end records disagree",
                ));
            }
            eocd = Eocd { entries, cd_size, cd_offset, end_offset: z_off };
        }
    }
    match eocd.cd_offset.checked_add(eocd.cd_size) {
        Some(end) if end <= eocd.end_offset => {
            if end < eocd.end_offset {
                // Python's zipfile shifts every offset by this gap (self-extracting archives);
                // miniz (PyTorch) does not: the two would read different bytes.
                findings.push(finding(
                    "zip_directory_mismatch",
                    "end of central directory",
                    &format!("{} bytes between the central directory and its end record", eocd.end_offset - end),
                ));
            }
        }
        _ => return Err("central directory outside the file".into()),
    }
    if eocd.cd_size > MAX_DIRECTORY_BYTES {
        return Err(format!("central directory of {} bytes is over the limit", eocd.cd_size));
    }
    Ok(eocd)
}

/// Parses every central header in the directory's byte range (Python's zipfile reads by size,
/// miniz by count; a count that disagrees is a finding).
fn read_directory(source: &dyn Source, eocd: &Eocd, findings: &mut Vec<Finding>) -> Result<Vec<Central>, String> {
    let cd = read_at(source, eocd.cd_offset, eocd.cd_size as usize)?;
    let mut out = Vec::new();
    let mut p = 0usize;
    while p < cd.len() {
        if cd.len() - p < CENTRAL_HEADER_LEN || u32le(&cd, p) != CENTRAL_SIG {
            return Err(format!("malformed central directory at byte {}", eocd.cd_offset + p as u64));
        }
        let h = &cd[p..p + CENTRAL_HEADER_LEN];
        let name_len = u16le(h, 28) as usize;
        let extra_len = u16le(h, 30) as usize;
        let comment_len = u16le(h, 32) as usize;
        let var_end = p + CENTRAL_HEADER_LEN + name_len + extra_len + comment_len;
        if var_end > cd.len() {
            return Err(format!("malformed central directory at byte {}", eocd.cd_offset + p as u64));
        }
        let raw_name = cd[p + CENTRAL_HEADER_LEN..p + CENTRAL_HEADER_LEN + name_len].to_vec();
        let extra = &cd[p + CENTRAL_HEADER_LEN + name_len..p + CENTRAL_HEADER_LEN + name_len + extra_len];
        let flags = u16le(h, 8);
        let mut size = u64::from(u32le(h, 24));
        let mut compressed_size = u64::from(u32le(h, 20));
        let mut offset = u64::from(u32le(h, 42));
        let disk_start = u16le(h, 34);
        apply_zip64(extra, &mut [(&mut size, true), (&mut compressed_size, true), (&mut offset, true)]);
        let (name, name_is_utf8) = match std::str::from_utf8(&raw_name) {
            Ok(s) => (s.to_string(), true),
            Err(_) => (String::from_utf8_lossy(&raw_name).into_owned(), false),
        };
        if disk_start != 0 && disk_start != 0xFFFF {
            findings.push(finding("zip_multi_disk", &name, "member on another disk"));
        }
        let entry = Entry { name, offset, compressed_size, size, method: u16le(h, 10), flags, crc32: u32le(h, 16) };
        out.push(Central { entry, raw_name, name_is_utf8 });
        p = var_end;
    }
    if out.len() as u64 != eocd.entries {
        findings.push(finding(
            "zip_count_mismatch",
            "end of central directory",
            &format!("{} members listed, {} in the central directory", eocd.entries, out.len()),
        ));
    }
    Ok(out)
}

/// Replaces each 32-bit field that is `0xFFFFFFFF` by the next value of the zip64 extra field
/// (tag 1), in the order size, compressed size, offset. The `bool` says whether the field
/// takes part (a local header has no offset).
fn apply_zip64(extra: &[u8], fields: &mut [(&mut u64, bool)]) {
    let mut p = 0;
    while p + 4 <= extra.len() {
        let tag = u16le(extra, p);
        let len = u16le(extra, p + 2) as usize;
        let body = &extra[(p + 4).min(extra.len())..(p + 4 + len).min(extra.len())];
        if tag == 1 {
            let mut q = 0;
            for (field, used) in fields.iter_mut() {
                if *used && **field == 0xFFFF_FFFF && q + 8 <= body.len() {
                    **field = u64le(body, q);
                    q += 8;
                }
            }
            return;
        }
        p += 4 + len;
    }
}

fn check_entry_fields(entry: &Entry, raw_name: &[u8], name_is_utf8: bool, findings: &mut Vec<Finding>) {
    let name = entry.name.as_str();
    if entry.is_encrypted() || entry.flags & FLAG_MASKED_HEADER != 0 {
        findings.push(finding("zip_encrypted", name, &format!("encrypted member (flags 0x{:04x})", entry.flags)));
    }
    let odd = entry.flags & !(ORDINARY_FLAGS | FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADER);
    if odd != 0 {
        findings.push(finding("zip_flags", name, &format!("unusual general-purpose flag bits 0x{odd:04x}")));
    }
    if entry.method != 0 && entry.method != 8 {
        findings.push(finding(
            "zip_method",
            name,
            &format!("compression method {} (only stored and deflate are read)", entry.method),
        ));
    }
    if entry.method == 0 && entry.compressed_size != entry.size {
        findings.push(finding(
            "zip_size_mismatch",
            name,
            "stored member whose compressed and uncompressed sizes differ",
        ));
    }
    if entry.method == 8 && entry.size > entry.compressed_size.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024) {
        findings.push(finding("zip_size_mismatch", name, "declared size larger than deflate can produce"));
    }
    if !name_is_utf8 {
        findings.push(finding("zip_name_encoding", name, "member name is not UTF-8"));
    }
    let unsafe_path = name.is_empty()
        || raw_name.contains(&0)
        || name.starts_with('/')
        || name.contains('\\')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split('/').any(|c| c == "..");
    if unsafe_path {
        findings.push(finding("zip_path", name, "member name is empty, absolute, or escapes the archive"));
    }
}

/// Cross-checks a member's local header (and data descriptor) with its central entry. Returns
/// where the member's bytes end (data, then descriptor).
fn check_local(source: &dyn Source, entry: &Entry, findings: &mut Vec<Finding>) -> Result<u64, String> {
    let name = entry.name.as_str();
    let header = read_at(source, entry.offset, LOCAL_HEADER_LEN)
        .map_err(|_| format!("local header at byte {} is outside the file", entry.offset))?;
    if u32le(&header, 0) != LOCAL_SIG {
        return Err(format!("no local header at byte {}", entry.offset));
    }
    let name_len = u16le(&header, 26) as usize;
    let extra_len = u16le(&header, 28) as usize;
    let var = read_at(source, entry.offset + LOCAL_HEADER_LEN as u64, name_len + extra_len)
        .map_err(|_| "local header runs past the end of the file".to_string())?;
    let local_name = &var[..name_len];
    if local_name != entry.name.as_bytes() && String::from_utf8_lossy(local_name) != entry.name {
        findings.push(finding(
            "zip_name_mismatch",
            name,
            &format!("local header names it {:?}", String::from_utf8_lossy(local_name)),
        ));
    }
    let flags = u16le(&header, 6);
    let method = u16le(&header, 8);
    if flags != entry.flags {
        findings.push(finding(
            "zip_local_mismatch",
            name,
            &format!("flags 0x{flags:04x} in the local header, 0x{:04x} in the central directory", entry.flags),
        ));
    }
    if method != entry.method {
        findings.push(finding(
            "zip_local_mismatch",
            name,
            &format!("method {method} in the local header, {} in the central directory", entry.method),
        ));
    }
    let crc = u32le(&header, 14);
    let mut compressed = u64::from(u32le(&header, 18));
    let mut size = u64::from(u32le(&header, 22));
    apply_zip64(&var[name_len..], &mut [(&mut size, true), (&mut compressed, true)]);
    let data_start = entry.offset + (LOCAL_HEADER_LEN + name_len + extra_len) as u64;
    let data_end = data_start
        .checked_add(entry.compressed_size)
        .filter(|end| *end <= source.len())
        .ok_or_else(|| "member data runs past the end of the file".to_string())?;
    let descriptor = flags & FLAG_DESCRIPTOR != 0 || entry.flags & FLAG_DESCRIPTOR != 0;
    // With a data descriptor a streaming writer leaves the local values zero; otherwise, and
    // wherever they are given, they must agree with the central directory.
    let agrees = |local: u64, central: u64| local == central || (descriptor && local == 0);
    if !(agrees(u64::from(crc), u64::from(entry.crc32))
        && agrees(compressed, entry.compressed_size)
        && agrees(size, entry.size))
    {
        findings.push(finding(
            "zip_local_mismatch",
            name,
            "CRC or sizes in the local header differ from the central directory",
        ));
    }
    if !descriptor {
        return Ok(data_end);
    }
    // Data descriptor: optional signature, CRC, then 4- or 8-byte sizes.
    let avail = (source.len() - data_end).min(24) as usize;
    let d = read_at(source, data_end, avail)?;
    let parse = |d: &[u8], wide: bool| -> Option<(u32, u64, u64, u64)> {
        let skip = if d.len() >= 4 && u32le(d, 0) == DESCRIPTOR_SIG { 4 } else { 0 };
        let need = skip + 4 + if wide { 16 } else { 8 };
        if d.len() < need {
            return None;
        }
        let crc = u32le(d, skip);
        let (c, s) = if wide {
            (u64le(d, skip + 4), u64le(d, skip + 12))
        } else {
            (u64::from(u32le(d, skip + 4)), u64::from(u32le(d, skip + 8)))
        };
        Some((crc, c, s, need as u64))
    };
    let matches = |v: Option<(u32, u64, u64, u64)>| {
        v.filter(|(crc, c, s, _)| *crc == entry.crc32 && *c == entry.compressed_size && *s == entry.size)
    };
    match matches(parse(&d, false)).or_else(|| matches(parse(&d, true))) {
        Some((_, _, _, len)) => Ok(data_end + len),
        None => {
            findings.push(finding(
                "zip_data_descriptor",
                name,
                "the data descriptor after the member disagrees with the central directory",
            ));
            Ok(data_end)
        }
    }
}

/// Members whose bytes overlap each other or the central directory, and bytes between members
/// that hold a local header the central directory does not list.
fn check_layout(
    source: &dyn Source,
    entries: &[Entry],
    spans: &mut [(u64, u64, usize)],
    cd_offset: u64,
    len: u64,
    findings: &mut Vec<Finding>,
) {
    spans.sort_unstable();
    let mut covered_to = 0u64;
    let mut last: Option<usize> = None;
    for &(start, end, i) in spans.iter() {
        if let Some(prev) = last.filter(|_| start < covered_to) {
            findings.push(finding(
                "zip_overlap",
                &entries[i].name,
                &format!("overlaps member {:?}", entries[prev].name),
            ));
        } else if start > covered_to && hidden_header(source, covered_to) {
            findings.push(finding(
                "zip_hidden_entry",
                &format!("byte {covered_to}"),
                "a local header that the central directory does not list",
            ));
        }
        if end > cd_offset {
            findings.push(finding("zip_overlap", &entries[i].name, "overlaps the central directory"));
        }
        if end > covered_to {
            covered_to = end;
            last = Some(i);
        }
    }
    if covered_to < cd_offset && cd_offset <= len && hidden_header(source, covered_to) {
        findings.push(finding(
            "zip_hidden_entry",
            &format!("byte {covered_to}"),
            "a local header that the central directory does not list",
        ));
    }
}

fn hidden_header(source: &dyn Source, at: u64) -> bool {
    read_at(source, at, 4).is_ok_and(|b| u32le(&b, 0) == LOCAL_SIG)
}

/// Streams a member's uncompressed bytes to `sink` (which returns `false` to stop early) and
/// returns the CRC-32 of everything produced, or `None` when stopped early. Output beyond the
/// declared size, or beyond `max_bytes`, is an error.
fn stream_entry(
    source: &dyn Source,
    entry: &Entry,
    max_bytes: u64,
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<Option<u32>, String> {
    if entry.is_encrypted() {
        return Err(format!("member {} is encrypted", entry.name));
    }
    let start = data_offset(source, entry)?;
    if start.checked_add(entry.compressed_size).is_none_or(|end| end > source.len()) {
        return Err(format!("member {}: data runs past the end of the file", entry.name));
    }
    let limit = entry.size.min(max_bytes);
    let mut hasher = crc32fast::Hasher::new();
    let mut produced = 0u64;
    let mut emit = |chunk: &[u8], hasher: &mut crc32fast::Hasher| -> Result<bool, String> {
        produced += chunk.len() as u64;
        if produced > limit {
            return Err(if produced > entry.size {
                format!("member {}: more data than the directory declares", entry.name)
            } else {
                format!("member {}: over the limit of {max_bytes} bytes", entry.name)
            });
        }
        hasher.update(chunk);
        Ok(sink(chunk))
    };
    match entry.method {
        0 => {
            if entry.compressed_size != entry.size {
                return Err(format!("member {}: stored sizes differ", entry.name));
            }
            let mut pos = 0u64;
            while pos < entry.size {
                let n = (entry.size - pos).min(CHUNK as u64) as usize;
                let chunk = read_at(source, start + pos, n)?;
                if !emit(&chunk, &mut hasher)? {
                    return Ok(None);
                }
                pos += n as u64;
            }
        }
        8 => {
            let mut state = InflateState::new_boxed(DataFormat::Raw);
            let mut input = Vec::new();
            let mut output = vec![0u8; 256 << 10];
            let mut in_pos = 0u64; // read from the member so far
            let mut in_off = 0usize; // consumed from `input`
            loop {
                let mut refilled = false;
                if in_off == input.len() && in_pos < entry.compressed_size {
                    let n = (entry.compressed_size - in_pos).min(CHUNK as u64) as usize;
                    input = read_at(source, start + in_pos, n)?;
                    in_pos += n as u64;
                    in_off = 0;
                    refilled = true;
                }
                let r = inflate(&mut state, &input[in_off..], &mut output, MZFlush::None);
                in_off += r.bytes_consumed;
                if r.bytes_written > 0 && !emit(&output[..r.bytes_written], &mut hasher)? {
                    return Ok(None);
                }
                let exhausted = in_off == input.len() && in_pos == entry.compressed_size;
                let progress = refilled || r.bytes_consumed > 0 || r.bytes_written > 0;
                match r.status {
                    Ok(MZStatus::StreamEnd) => break,
                    Ok(_) | Err(MZError::Buf) if progress && !(exhausted && r.bytes_written == 0) => {}
                    Ok(_) | Err(MZError::Buf) if exhausted => {
                        return Err(format!("member {}: truncated deflate stream", entry.name))
                    }
                    _ => return Err(format!("member {}: corrupt deflate stream", entry.name)),
                }
            }
        }
        m => return Err(format!("member {}: unsupported compression method {m}", entry.name)),
    }
    if produced != entry.size {
        return Err(format!("member {}: {produced} bytes, the directory declares {}", entry.name, entry.size));
    }
    Ok(Some(hasher.finalize()))
}
