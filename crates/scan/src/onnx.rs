//! ONNX: the protobuf wire format read by hand (varints and length-delimited fields, no
//! protobuf crate), walking only the messages that can reach outside the file or outside the
//! standard operator set. Field numbers follow `onnx/onnx.proto`:
//!
//! - ModelProto: ir_version 1, graph 7, opset_import 8, training_info 20, functions 25
//! - GraphProto: node 1, initializer 5, sparse_initializer 15
//! - NodeProto: op_type 4, attribute 5, domain 7
//! - AttributeProto: t 5, g 6, tensors 10, graphs 11, sparse_tensor 22, sparse_tensors 23
//! - TensorProto: name 8, external_data 13 (StringStringEntryProto: key 1, value 2),
//!   data_location 14
//! - SparseTensorProto: values 1, indices 2
//! - FunctionProto: name 1, node 7, opset_import 9, domain 10, attribute_proto 11
//! - TrainingInfoProto: initialization 1, algorithm 2
//! - OperatorSetIdProto: domain 1, version 2
//!
//! Tensor data (`raw_data` and the typed arrays) is skipped by its length, never read.
//!
//! `Unparseable`: malformed protobuf (a truncated or over-long varint, a length past its message,
//! groups or an invalid wire type, field number 0), a known field with the wrong wire type,
//! nesting deeper than [`MAX_DEPTH`] messages, more than [`MAX_FIELDS`] fields, no `ir_version`
//! or no graph, and a tensor marked external that names no `location`.
//!
//! Findings: `onnx_external_data_path` (High) for an external-data location that leaves the
//! model's directory (`..`, an absolute or drive path, a UNC path, `~`, a colon, a NUL byte);
//! `onnx_external_data` (Info) for every other external location, because this pure crate cannot
//! see the file system: the CLI checks that the file is not a symlink
//! ([`external_locations`] lists them for it); `onnx_custom_domain` (Medium) for an operator
//! domain outside the standard ones, which needs a custom operator library to run. A node whose
//! domain and op_type name a function defined in the model itself is not a custom operator (its
//! body is checked like the graph).

use std::collections::{BTreeMap, HashSet};

use crate::gguf::Reader;
use crate::safetensors::clip;
use crate::{Finding, Format, Report, Severity, Source};

/// Messages may nest this deep (protobuf's own default recursion limit).
pub const MAX_DEPTH: u32 = 100;
/// Fields visited in the messages that are walked, in all.
pub const MAX_FIELDS: u64 = 100_000_000;
/// A string this scanner keeps (a name, domain or location) may be this long.
const MAX_STRING_BYTES: u64 = 64 * 1024;

/// The operator domains of the ONNX standard.
pub const STANDARD_DOMAINS: &[&str] = &["", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"];

/// Scans one ONNX model.
pub fn scan(source: &dyn Source) -> Report {
    let mut walk = Walk::new(source);
    if let Err(e) = walk.model() {
        return Report::unparseable(Format::Onnx, walk.findings(), e);
    }
    Report::from_findings(Format::Onnx, walk.findings())
}

/// Every external-data location in the model, in file order, so the CLI can check each one on
/// the file system (that it stays in the model's directory and is not a symlink).
pub fn external_locations(source: &dyn Source) -> Result<Vec<String>, String> {
    let mut walk = Walk::new(source);
    walk.model()?;
    Ok(walk.externals.into_iter().map(|(_, location)| location).collect())
}

/// Why an external-data location may leave the model's directory, if it may.
pub fn location_problem(location: &str) -> Option<&'static str> {
    let b = location.as_bytes();
    if location.is_empty() {
        return Some("an empty path");
    }
    if location.contains('\0') {
        return Some("a NUL byte");
    }
    if location.starts_with("\\\\") || location.starts_with("//") {
        return Some("a UNC or network path");
    }
    if location.starts_with('/') || location.starts_with('\\') {
        return Some("an absolute path");
    }
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some("a Windows drive path");
    }
    if location.contains(':') {
        return Some("a colon (a drive, stream or URL)");
    }
    if location.starts_with('~') {
        return Some("a home-directory path");
    }
    if location.split(['/', '\\']).any(|part| part == "..") {
        return Some("parent-directory traversal (`..`)");
    }
    if location.contains('\u{fffd}') {
        return Some("bytes that are not UTF-8");
    }
    None
}

enum Wire {
    Varint(u64),
    /// A length-delimited field: its start and length (already skipped).
    Bytes(u64, u64),
    /// A fixed32 or fixed64 field (already skipped).
    Fixed,
}

struct NodeRef {
    domains: Vec<String>,
    op_type: String,
}

struct Walk<'a> {
    r: Reader<'a>,
    fields: u64,
    nodes: Vec<NodeRef>,
    opset_domains: Vec<String>,
    /// (domain, name) of the functions the model defines.
    functions: HashSet<(String, String)>,
    /// (tensor, location)
    externals: Vec<(String, String)>,
}

impl<'a> Walk<'a> {
    fn new(source: &'a dyn Source) -> Walk<'a> {
        Walk {
            r: Reader::new(source),
            fields: 0,
            nodes: Vec::new(),
            opset_domains: Vec::new(),
            functions: HashSet::new(),
            externals: Vec::new(),
        }
    }

    /// The findings, from everything walked so far.
    fn findings(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        // Every unsafe location is reported before any harmless one, so no number of harmless
        // external tensors can push a dangerous one out of the (bounded) report.
        let (unsafe_locations, safe_locations): (Vec<_>, Vec<_>) =
            self.externals.iter().partition(|(_, location)| location_problem(location).is_some());
        for (tensor, location) in unsafe_locations.into_iter().take(256) {
            let problem = location_problem(location).unwrap_or_default();
            findings.push(Finding {
                kind: "onnx_external_data_path",
                severity: Severity::High,
                location: format!("tensor `{}`", clip(tensor)),
                detail: format!("external data location `{}` has {problem}", clip(location)),
            });
        }
        for (tensor, location) in safe_locations.into_iter().take(32) {
            findings.push(Finding {
                kind: "onnx_external_data",
                severity: Severity::Info,
                location: format!("tensor `{}`", clip(tensor)),
                detail: format!(
                    "external data location `{}` is read from the model's directory; the CLI checks that it is not a symlink",
                    clip(location)
                ),
            });
        }
        // One finding per custom domain, with how many nodes use it.
        let local_domains: HashSet<&str> = self.functions.iter().map(|(d, _)| d.as_str()).collect();
        let mut custom: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for node in &self.nodes {
            for domain in &node.domains {
                let local = self.functions.contains(&(domain.clone(), node.op_type.clone()));
                if !STANDARD_DOMAINS.contains(&domain.as_str()) && !local {
                    custom.entry(domain).or_insert((0, &node.op_type)).0 += 1;
                }
            }
        }
        for domain in &self.opset_domains {
            if !STANDARD_DOMAINS.contains(&domain.as_str()) && !local_domains.contains(domain.as_str()) {
                custom.entry(domain).or_insert((0, ""));
            }
        }
        for (domain, (nodes, op_type)) in custom.into_iter().take(256) {
            let (location, detail) = if nodes == 0 {
                ("opset_import".to_string(), format!("imports the custom operator domain `{}`", clip(domain)))
            } else {
                (
                    format!("node `{}`", clip(op_type)),
                    format!("{nodes} node(s) use the custom operator domain `{}`", clip(domain)),
                )
            };
            findings.push(Finding { kind: "onnx_custom_domain", severity: Severity::Medium, location, detail });
        }
        findings
    }

    fn varint(&mut self, end: u64) -> Result<u64, String> {
        let at = self.r.pos();
        let mut value = 0u64;
        for i in 0..10 {
            if self.r.pos() >= end {
                return Err(format!("truncated varint at byte {at}"));
            }
            let byte = self.r.u8()?;
            if i == 9 && byte > 1 {
                return Err(format!("varint at byte {at} is longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint at byte {at} is longer than 10 bytes"))
    }

    /// The next field of the message ending at `end`, or `None` at its end.
    fn field(&mut self, end: u64) -> Result<Option<(u64, Wire)>, String> {
        if self.r.pos() >= end {
            return Ok(None);
        }
        self.fields += 1;
        if self.fields > MAX_FIELDS {
            return Err(format!("more than {MAX_FIELDS} protobuf fields"));
        }
        let at = self.r.pos();
        let key = self.varint(end)?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("invalid field number {number} at byte {at}"));
        }
        let skip_fixed = |w: &mut Self, n: u64| -> Result<Wire, String> {
            if end - w.r.pos() < n {
                return Err(format!("field {number} at byte {at} runs past the end of its message"));
            }
            w.r.skip(n)?;
            Ok(Wire::Fixed)
        };
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint(end)?),
            1 => skip_fixed(self, 8)?,
            2 => {
                let len = self.varint(end)?;
                let start = self.r.pos();
                if len > end - start {
                    return Err(format!(
                        "field {number} at byte {at} is {len} bytes long, past the end of its message"
                    ));
                }
                self.r.skip(len)?;
                Wire::Bytes(start, len)
            }
            5 => skip_fixed(self, 4)?,
            3 | 4 => return Err(format!("protobuf groups (field {number} at byte {at}) are not used by ONNX")),
            w => return Err(format!("invalid wire type {w} at byte {at}")),
        };
        Ok(Some((number, wire)))
    }

    /// Runs `f` over the message at `start..start+len`, then continues after it.
    fn nested(
        &mut self,
        (start, len): (u64, u64),
        depth: u32,
        f: fn(&mut Self, u64, u32) -> Result<(), String>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nested deeper than {MAX_DEPTH}"));
        }
        let after = self.r.pos();
        self.r.seek(start)?;
        f(self, start + len, depth)?;
        self.r.seek(after)
    }

    fn string(&mut self, (start, len): (u64, u64)) -> Result<String, String> {
        if len > MAX_STRING_BYTES {
            return Err(format!("a {len}-byte string at byte {start} is longer than this scanner reads"));
        }
        let after = self.r.pos();
        self.r.seek(start)?;
        let s = String::from_utf8_lossy(self.r.take(len as usize)?).into_owned();
        self.r.seek(after)?;
        Ok(s)
    }

    fn model(&mut self) -> Result<(), String> {
        let end = self.r.len();
        let (mut ir_version, mut graph) = (false, false);
        while let Some((number, wire)) = self.field(end)? {
            match number {
                1 => {
                    varint("ModelProto.ir_version", &wire)?;
                    ir_version = true;
                }
                7 => {
                    self.nested(bytes("ModelProto.graph", &wire)?, 1, Self::graph)?;
                    graph = true;
                }
                8 => self.nested(bytes("ModelProto.opset_import", &wire)?, 1, Self::opset)?,
                20 => self.nested(bytes("ModelProto.training_info", &wire)?, 1, Self::training_info)?,
                25 => self.nested(bytes("ModelProto.functions", &wire)?, 1, Self::function)?,
                _ => {}
            }
        }
        if !ir_version {
            return Err("no ir_version: not an ONNX model".into());
        }
        if !graph {
            return Err("the model has no graph".into());
        }
        Ok(())
    }

    fn graph(&mut self, end: u64, depth: u32) -> Result<(), String> {
        while let Some((number, wire)) = self.field(end)? {
            match number {
                1 => self.nested(bytes("GraphProto.node", &wire)?, depth + 1, Self::node)?,
                5 => self.nested(bytes("GraphProto.initializer", &wire)?, depth + 1, Self::tensor)?,
                15 => self.nested(bytes("GraphProto.sparse_initializer", &wire)?, depth + 1, Self::sparse)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn node(&mut self, end: u64, depth: u32) -> Result<(), String> {
        let mut node = NodeRef { domains: Vec::new(), op_type: String::new() };
        while let Some((number, wire)) = self.field(end)? {
            match number {
                4 => node.op_type = self.string(bytes("NodeProto.op_type", &wire)?)?,
                5 => self.nested(bytes("NodeProto.attribute", &wire)?, depth + 1, Self::attribute)?,
                // Protobuf keeps the last value of a repeated scalar field; every value is checked.
                7 => node.domains.push(self.string(bytes("NodeProto.domain", &wire)?)?),
                _ => {}
            }
        }
        self.nodes.push(node);
        Ok(())
    }

    fn attribute(&mut self, end: u64, depth: u32) -> Result<(), String> {
        while let Some((number, wire)) = self.field(end)? {
            match number {
                5 | 10 => self.nested(bytes("AttributeProto.t", &wire)?, depth + 1, Self::tensor)?,
                6 | 11 => self.nested(bytes("AttributeProto.g", &wire)?, depth + 1, Self::graph)?,
                22 | 23 => self.nested(bytes("AttributeProto.sparse_tensor", &wire)?, depth + 1, Self::sparse)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn tensor(&mut self, end: u64, depth: u32) -> Result<(), String> {
        let mut name = String::new();
        let mut external = false;
        let mut locations = Vec::new();
        while let Some((number, wire)) = self.field(end)? {
            match number {
                8 => name = self.string(bytes("TensorProto.name", &wire)?)?,
                13 => {
                    let entry = bytes("TensorProto.external_data", &wire)?;
                    if let (Some(key), value) = self.entry(entry, depth + 1)? {
                        if key == "location" {
                            locations.push(value.unwrap_or_default());
                        }
                    }
                }
                14 => external = varint("TensorProto.data_location", &wire)? == 1,
                _ => {}
            }
        }
        if external && locations.is_empty() {
            return Err(format!("tensor `{}` stores its data externally but names no location", clip(&name)));
        }
        for location in locations {
            self.externals.push((name.clone(), location));
        }
        Ok(())
    }

    /// A StringStringEntryProto: (key, value).
    fn entry(&mut self, (start, len): (u64, u64), depth: u32) -> Result<(Option<String>, Option<String>), String> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nested deeper than {MAX_DEPTH}"));
        }
        let after = self.r.pos();
        self.r.seek(start)?;
        let (mut key, mut value) = (None, None);
        while let Some((number, wire)) = self.field(start + len)? {
            match number {
                1 => key = Some(self.string(bytes("StringStringEntryProto.key", &wire)?)?),
                2 => value = Some(self.string(bytes("StringStringEntryProto.value", &wire)?)?),
                _ => {}
            }
        }
        self.r.seek(after)?;
        Ok((key, value))
    }

    fn sparse(&mut self, end: u64, depth: u32) -> Result<(), String> {
        while let Some((number, wire)) = self.field(end)? {
            if number == 1 || number == 2 {
                self.nested(bytes("SparseTensorProto.values", &wire)?, depth + 1, Self::tensor)?;
            }
        }
        Ok(())
    }

    fn function(&mut self, end: u64, depth: u32) -> Result<(), String> {
        let (mut name, mut domain) = (String::new(), String::new());
        while let Some((number, wire)) = self.field(end)? {
            match number {
                1 => name = self.string(bytes("FunctionProto.name", &wire)?)?,
                7 => self.nested(bytes("FunctionProto.node", &wire)?, depth + 1, Self::node)?,
                9 => self.nested(bytes("FunctionProto.opset_import", &wire)?, depth + 1, Self::opset)?,
                10 => domain = self.string(bytes("FunctionProto.domain", &wire)?)?,
                11 => self.nested(bytes("FunctionProto.attribute_proto", &wire)?, depth + 1, Self::attribute)?,
                _ => {}
            }
        }
        self.functions.insert((domain, name));
        Ok(())
    }

    fn training_info(&mut self, end: u64, depth: u32) -> Result<(), String> {
        while let Some((number, wire)) = self.field(end)? {
            if number == 1 || number == 2 {
                self.nested(bytes("TrainingInfoProto.algorithm", &wire)?, depth + 1, Self::graph)?;
            }
        }
        Ok(())
    }

    fn opset(&mut self, end: u64, _depth: u32) -> Result<(), String> {
        while let Some((number, wire)) = self.field(end)? {
            match number {
                1 => {
                    let domain = self.string(bytes("OperatorSetIdProto.domain", &wire)?)?;
                    self.opset_domains.push(domain);
                }
                2 => {
                    varint("OperatorSetIdProto.version", &wire)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn bytes(field: &str, wire: &Wire) -> Result<(u64, u64), String> {
    match wire {
        Wire::Bytes(start, len) => Ok((*start, *len)),
        _ => Err(format!("{field} is not length-delimited")),
    }
}

fn varint(field: &str, wire: &Wire) -> Result<u64, String> {
    match wire {
        Wire::Varint(v) => Ok(*v),
        _ => Err(format!("{field} is not a varint")),
    }
}
