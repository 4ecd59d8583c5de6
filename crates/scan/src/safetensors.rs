//! safetensors: a strict parse of the header, and the tensor layout checked against it. The
//! tensor data is never read, so the scan costs the same for 100 MB and 100 GB.
//!
//! The format (huggingface/safetensors): an 8-byte little-endian header length `N`, `N` bytes of
//! UTF-8 JSON starting with `{` (trailing JSON whitespace allowed), then the data region. The
//! JSON maps tensor names to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to
//! the data region) and may hold `__metadata__`, a string-to-string map.
//!
//! What the reference loader would refuse, and what cannot be read unambiguously, is
//! `Unparseable`: a header length over 100 MB or past the end of the file, a header that is not
//! UTF-8 or not a JSON object, a missing or ill-typed field, a duplicate field inside one tensor,
//! an unknown dtype, a size that does not match shape × dtype (or overflows), a tensor that ends
//! past the file, a `__metadata__` that is not a string-to-string map.
//!
//! What parses but leaves room for a second reading of the file is a finding (`Medium`): a
//! duplicate tensor or metadata key (`safetensors_duplicate_key`: serde_json keeps the last,
//! other parsers the first), unindexed bytes between tensors (`safetensors_gap`) or after the
//! last one (`safetensors_trailing_data`), where a polyglot payload would live, and tensors that
//! share bytes (`safetensors_overlap`). An unknown field in a tensor entry is `Info`.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{read_exact_at, Finding, Format, Report, Severity, Source};

/// The reference implementation's limit on the JSON header.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// At most this many findings of one kind are listed; the rest are counted in the last one.
const MAX_FINDINGS_PER_KIND: usize = 32;

/// Every dtype the reference implementation knows, with its width in bits.
pub const DTYPES: &[(&str, u64)] = &[
    ("BOOL", 8),
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
    ("U8", 8),
    ("I8", 8),
    ("F8_E5M2", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("I16", 16),
    ("U16", 16),
    ("F16", 16),
    ("BF16", 16),
    ("I32", 32),
    ("U32", 32),
    ("F32", 32),
    ("C64", 64),
    ("F64", 64),
    ("I64", 64),
    ("U64", 64),
];

/// A plausible header length (2 bytes up to the 100 MB limit) followed by `{`.
pub fn looks_like(head: &[u8]) -> bool {
    if head.len() < 9 {
        return false;
    }
    let n = header_len(head);
    (2..=MAX_HEADER_BYTES).contains(&n) && head[8] == b'{'
}

/// Scans one safetensors file.
pub fn scan(source: &dyn Source) -> Report {
    match check(source) {
        Ok(findings) => Report::from_findings(Format::Safetensors, findings),
        Err(e) => Report::unparseable(Format::Safetensors, Vec::new(), e),
    }
}

fn header_len(head: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&head[..8]);
    u64::from_le_bytes(b)
}

fn check(source: &dyn Source) -> Result<Vec<Finding>, String> {
    let file_len = source.len();
    if file_len < 8 {
        return Err(format!("the file is {file_len} bytes, shorter than the 8-byte header length"));
    }
    let n = header_len(&read_exact_at(source, 0, 8).map_err(|e| e.to_string())?);
    if n > MAX_HEADER_BYTES {
        return Err(format!("the header length {n} exceeds the 100 MB limit"));
    }
    if n > file_len - 8 {
        return Err(format!("the header length {n} runs past the end of the file ({file_len} bytes)"));
    }
    // n <= 100 MB, so this allocation is bounded.
    let bytes = read_exact_at(source, 8, n as usize).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| format!("the header is not valid UTF-8 (at header byte {})", e.valid_up_to()))?;
    if !text.starts_with('{') {
        return Err("the header does not start with `{`".into());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let header = de
        .deserialize_map(HeaderVisitor)
        .map_err(|e| format!("the header is not valid: {}", clip_to(&e.to_string(), 400)))?;
    de.end().map_err(|e| format!("the header has data after the JSON object: {}", clip_to(&e.to_string(), 400)))?;

    let data_len = file_len - 8 - n;
    let mut findings = Findings::default();
    for name in &header.duplicate_keys {
        findings.push(Finding {
            kind: "safetensors_duplicate_key",
            severity: Severity::Medium,
            location: format!("header key `{}`", clip(name)),
            detail: "the key appears more than once; JSON parsers disagree on which entry wins".into(),
        });
    }
    for (tensor, field) in &header.unknown_fields {
        findings.push(Finding {
            kind: "safetensors_unknown_field",
            severity: Severity::Info,
            location: format!("tensor `{}`", clip(tensor)),
            detail: format!("unknown field `{}` (ignored by loaders)", clip(field)),
        });
    }

    let mut spans = Vec::with_capacity(header.tensors.len());
    for t in &header.tensors {
        let bits = DTYPES
            .iter()
            .find(|(d, _)| *d == t.dtype)
            .map(|(_, b)| *b)
            .ok_or_else(|| format!("tensor `{}`: unknown dtype `{}`", clip(&t.name), clip(&t.dtype)))?;
        let elements =
            t.elements.ok_or_else(|| format!("tensor `{}`: the shape's element count overflows", clip(&t.name)))?;
        let nbits = elements
            .checked_mul(bits)
            .ok_or_else(|| format!("tensor `{}`: the shape's size in bits overflows", clip(&t.name)))?;
        if !nbits.is_multiple_of(8) {
            return Err(format!(
                "tensor `{}`: {elements} elements of {} do not fill whole bytes",
                clip(&t.name),
                t.dtype
            ));
        }
        let (begin, end) = t.offsets;
        if end < begin {
            return Err(format!("tensor `{}`: data_offsets [{begin}, {end}] end before they begin", clip(&t.name)));
        }
        if end - begin != nbits / 8 {
            return Err(format!(
                "tensor `{}`: shape {:?} of {} needs {} bytes, but data_offsets [{begin}, {end}] span {}",
                clip(&t.name),
                t.shape_preview,
                t.dtype,
                nbits / 8,
                end - begin
            ));
        }
        if end > data_len {
            return Err(format!(
                "tensor `{}`: data_offsets end at {end}, past the end of the {data_len}-byte data region",
                clip(&t.name)
            ));
        }
        spans.push((begin, end, t.name.as_str()));
    }

    // The data region must be covered exactly, in offset order, without gaps or overlaps.
    spans.sort_unstable();
    let mut covered = 0u64;
    for (begin, end, name) in spans {
        if begin > covered {
            findings.push(Finding {
                kind: "safetensors_gap",
                severity: Severity::Medium,
                location: format!("data bytes {covered}..{begin}"),
                detail: format!("{} bytes before tensor `{}` belong to no tensor", begin - covered, clip(name)),
            });
        } else if begin < covered {
            findings.push(Finding {
                kind: "safetensors_overlap",
                severity: Severity::Medium,
                location: format!("tensor `{}`", clip(name)),
                detail: format!("starts at data byte {begin}, inside bytes already used up to {covered}"),
            });
        }
        covered = covered.max(end);
    }
    if covered < data_len {
        findings.push(Finding {
            kind: "safetensors_trailing_data",
            severity: Severity::Medium,
            location: format!("file bytes {}..{file_len}", 8 + n + covered),
            detail: format!("{} bytes after the last tensor belong to no tensor", data_len - covered),
        });
    }
    Ok(findings.into_vec())
}

/// Findings with a cap per kind, so a hostile header cannot make the report huge.
#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
    dropped: Vec<(&'static str, usize)>,
}

impl Findings {
    fn push(&mut self, f: Finding) {
        let same = self.list.iter().filter(|g| g.kind == f.kind).count();
        if same < MAX_FINDINGS_PER_KIND {
            self.list.push(f);
        } else if let Some(d) = self.dropped.iter_mut().find(|(k, _)| *k == f.kind) {
            d.1 += 1;
        } else {
            self.dropped.push((f.kind, 1));
        }
    }

    fn into_vec(mut self) -> Vec<Finding> {
        for (kind, count) in self.dropped {
            let severity = self.list.iter().find(|f| f.kind == kind).map_or(Severity::Info, |f| f.severity);
            self.list.push(Finding {
                kind,
                severity,
                location: "header".into(),
                detail: format!("{count} more findings of this kind not listed"),
            });
        }
        self.list
    }
}

/// Names and values from the file are clipped before they go into a report.
pub(crate) fn clip(s: &str) -> String {
    clip_to(s, 120)
}

/// `s` cut to at most `max` bytes (on a character boundary), marked with `…` when cut.
pub(crate) fn clip_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ---- The header, read by serde visitors that see every entry (duplicates included) ----

struct Header {
    tensors: Vec<RawTensor>,
    duplicate_keys: Vec<String>,
    /// (tensor, field)
    unknown_fields: Vec<(String, String)>,
}

struct RawTensor {
    name: String,
    dtype: String,
    /// `None` when the product of the shape overflows `u64`.
    elements: Option<u64>,
    /// The first few dimensions, for error messages.
    shape_preview: Vec<u64>,
    offsets: (u64, u64),
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut header = Header { tensors: Vec::new(), duplicate_keys: Vec::new(), unknown_fields: Vec::new() };
        let mut seen = HashSet::new();
        let mut metadata_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                let dups = map.next_value_seed(MetadataSeed)?;
                if metadata_seen {
                    header.duplicate_keys.push(key);
                }
                metadata_seen = true;
                header.duplicate_keys.extend(dups.into_iter().map(|k| format!("__metadata__.{k}")));
                continue;
            }
            let info = map.next_value_seed(TensorSeed { unknown: &mut header.unknown_fields, name: &key })?;
            if !seen.insert(key.clone()) {
                header.duplicate_keys.push(key.clone());
            }
            header.tensors.push(RawTensor {
                name: key,
                dtype: info.dtype,
                elements: info.elements,
                shape_preview: info.shape_preview,
                offsets: info.offsets,
            });
        }
        Ok(header)
    }
}

/// `__metadata__`: null, or a map of strings to strings. Returns its duplicate keys.
struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`__metadata__` as a map of strings to strings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut seen = HashSet::new();
        let mut dups = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(StringOnly(&key))?;
            if !seen.insert(key.clone()) {
                dups.push(key);
            }
        }
        Ok(dups)
    }
}

/// A JSON string, and nothing else; the error names the key.
struct StringOnly<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for StringOnly<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringOnly<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string value for `__metadata__` key `{}`", clip(self.0))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

struct TensorInfo {
    dtype: String,
    elements: Option<u64>,
    shape_preview: Vec<u64>,
    offsets: (u64, u64),
}

struct TensorSeed<'a> {
    unknown: &'a mut Vec<(String, String)>,
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_> {
    type Value = TensorInfo;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TensorInfo, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_> {
    type Value = TensorInfo;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "tensor `{}` as an object with dtype, shape and data_offsets", clip(self.name))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TensorInfo, A::Error> {
        let name = clip(self.name);
        let duplicate = |field: &str| A::Error::custom(format!("tensor `{name}`: duplicate field `{field}`"));
        let mut dtype: Option<String> = None;
        let mut shape: Option<(Option<u64>, Vec<u64>)> = None;
        let mut offsets: Option<(u64, u64)> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "dtype" => {
                    if dtype.replace(map.next_value()?).is_some() {
                        return Err(duplicate("dtype"));
                    }
                }
                "shape" => {
                    if shape.replace(map.next_value_seed(ShapeSeed)?).is_some() {
                        return Err(duplicate("shape"));
                    }
                }
                "data_offsets" => {
                    if offsets.replace(map.next_value_seed(OffsetsSeed)?).is_some() {
                        return Err(duplicate("data_offsets"));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    self.unknown.push((self.name.to_string(), key));
                }
            }
        }
        let missing = |field: &str| A::Error::custom(format!("tensor `{name}`: missing field `{field}`"));
        let dtype = dtype.ok_or_else(|| missing("dtype"))?;
        let (elements, shape_preview) = shape.ok_or_else(|| missing("shape"))?;
        let offsets = offsets.ok_or_else(|| missing("data_offsets"))?;
        Ok(TensorInfo { dtype, elements, shape_preview, offsets })
    }
}

/// A shape: an array of non-negative integers. Returns the element count (`None` on overflow)
/// without keeping the whole array.
struct ShapeSeed;

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = (Option<u64>, Vec<u64>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed {
    type Value = (Option<u64>, Vec<u64>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a shape as an array of non-negative integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut product = Some(1u64);
        let mut preview = Vec::new();
        while let Some(dim) = seq.next_element::<u64>()? {
            product = product.and_then(|p| p.checked_mul(dim));
            if preview.len() < 8 {
                preview.push(dim);
            }
        }
        Ok((product, preview))
    }
}

/// `data_offsets`: exactly two non-negative integers.
struct OffsetsSeed;

impl<'de> DeserializeSeed<'de> for OffsetsSeed {
    type Value = (u64, u64);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(u64, u64), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for OffsetsSeed {
    type Value = (u64, u64);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("data_offsets as an array of two non-negative integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(u64, u64), A::Error> {
        let wrong = || A::Error::custom("data_offsets must hold exactly two integers");
        let begin = seq.next_element::<u64>()?.ok_or_else(wrong)?;
        let end = seq.next_element::<u64>()?.ok_or_else(wrong)?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(wrong());
        }
        Ok((begin, end))
    }
}
