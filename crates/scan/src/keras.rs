//! Keras v3 (`.keras`): a zip with `config.json`, `metadata.json` and `model.weights.h5`. The
//! model is rebuilt from `config.json` by `keras.saving.deserialize_keras_object`, which can
//! import modules and run code, so every object in it is walked (layers nested in `Sequential`,
//! `Functional`, wrappers, initializers, activations, optimizers — whatever nests), every key of
//! every object including duplicates (Python's `json` keeps the last one; this walk sees all).
//! The weights are HDF5 arrays, loaded as data; they are not parsed here.
//!
//! `Unparseable`: not a readable zip, no `config.json`, a `config.json` (or `metadata.json`)
//! over [`MAX_JSON_BYTES`], not UTF-8 JSON, nested deeper than serde_json's 128 levels, or not
//! an object at the top.
//!
//! Findings: `keras_lambda_layer` (High: a `Lambda`, `TFOpLambda` or `SlicingOpLambda` layer runs
//! Python named or marshalled in the config); `keras_function_object` (High: a
//! `"class_name": "function"` object imports a named function, `__lambda__` carries marshalled
//! bytecode); `keras_unsafe_deserialization` (High: `safe_mode: false` or
//! `enable_unsafe_deserialization` anywhere); `keras_custom_object` (Medium: a `module`,
//! `class_name` or `registered_name` outside Keras' own namespaces `keras`, `keras.*`,
//! `tf_keras`, `tf_keras.*`, which imports code from another package); `keras_duplicate_key`
//! (Medium: one object with the same key twice, which parsers resolve differently). The zip
//! reader's `zip_*` findings are passed on.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::safetensors::clip;
use crate::{zip, Finding, Format, Report, Severity, Source};

/// `config.json` and `metadata.json` may be this large (uncompressed).
pub const MAX_JSON_BYTES: u64 = 64 << 20;
/// At most this many findings are listed.
const MAX_FINDINGS: usize = 256;

/// Scans one `.keras` file.
pub fn scan(source: &dyn Source) -> Report {
    let archive = match zip::read_archive(source) {
        Ok(a) => a,
        Err(e) => return Report::unparseable(Format::Keras, Vec::new(), format!("not a readable zip: {e}")),
    };
    let mut findings = archive.findings;
    let configs: Vec<&zip::Entry> = archive.entries.iter().filter(|e| e.name == "config.json").collect();
    if configs.is_empty() {
        return Report::unparseable(Format::Keras, findings, "the archive has no config.json");
    }
    let metadata = archive.entries.iter().filter(|e| e.name == "metadata.json");
    for entry in configs.into_iter().chain(metadata) {
        let json = zip::read_entry(source, entry, MAX_JSON_BYTES)
            .map_err(|e| format!("{}: {e}", entry.name))
            .and_then(|bytes| parse_object(&bytes).map_err(|e| format!("{}: {e}", entry.name)));
        match json {
            Ok(json) => check_json(&json, &entry.name, &mut findings),
            Err(e) => return Report::unparseable(Format::Keras, findings, e),
        }
    }
    Report::from_findings(Format::Keras, findings)
}

/// The findings for one Keras JSON document (`config.json`), for callers that already hold it.
pub fn scan_config(bytes: &[u8]) -> Result<Vec<Finding>, String> {
    let json = parse_object(bytes)?;
    let mut findings = Vec::new();
    check_json(&json, "config.json", &mut findings);
    Ok(findings)
}

fn parse_object(bytes: &[u8]) -> Result<Json, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 (at byte {})", e.valid_up_to()))?;
    let json: Json = serde_json::from_str(text)
        .map_err(|e| format!("not valid JSON: {}", crate::safetensors::clip_to(&e.to_string(), 300)))?;
    match json {
        Json::Object(_) => Ok(json),
        _ => Err("the top level is not a JSON object".into()),
    }
}

/// A JSON value that keeps every key of an object, duplicates included, in file order.
enum Json {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry()? {
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// Whether a Python module belongs to Keras itself.
fn keras_module(module: &str) -> bool {
    ["keras", "tf_keras"]
        .iter()
        .any(|root| module == *root || module.strip_prefix(root).is_some_and(|rest| rest.starts_with('.')))
}

fn push(findings: &mut Vec<Finding>, kind: &'static str, severity: Severity, path: &str, detail: String) {
    if findings.len() < MAX_FINDINGS
        && !findings.iter().any(|f| f.kind == kind && f.location == path && f.detail == detail)
    {
        findings.push(Finding { kind, severity, location: path.to_string(), detail });
    }
}

fn check_json(json: &Json, file: &str, findings: &mut Vec<Finding>) {
    let mut path = file.to_string();
    walk(json, &mut path, findings);
}

/// Visits every value; `path` is where it sits (`config.json: config.layers[2]`).
fn walk(json: &Json, path: &mut String, findings: &mut Vec<Finding>) {
    match json {
        Json::Object(entries) => {
            check_object(entries, path, findings);
            for (key, value) in entries {
                let len = path.len();
                // `config.json: config.layers[1]`
                path.push_str(if path.contains(": ") { "." } else { ": " });
                path.push_str(&clip(key));
                walk(value, path, findings);
                path.truncate(len);
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, findings);
                path.truncate(len);
            }
        }
        Json::String(s) if s.contains("enable_unsafe_deserialization") => push(
            findings,
            "keras_unsafe_deserialization",
            Severity::High,
            path,
            "names `enable_unsafe_deserialization`".into(),
        ),
        _ => {}
    }
}

fn check_object(entries: &[(String, Json)], path: &str, findings: &mut Vec<Finding>) {
    let get_all = |name: &'static str| entries.iter().filter(move |(k, _)| k == name).map(|(_, v)| v);
    let strings = |name: &'static str| {
        get_all(name)
            .filter_map(|v| match v {
                Json::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let class_names = strings("class_name");
    let modules = strings("module");
    let layer_name = entries
        .iter()
        .find_map(|(k, v)| match (k.as_str(), v) {
            ("config", Json::Object(c)) => c.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("name", Json::String(n)) => Some(clip(n)),
                _ => None,
            }),
            _ => None,
        })
        .map(|n| format!(" `{n}`"))
        .unwrap_or_default();

    for (i, (key, _)) in entries.iter().enumerate() {
        // Reported once, at the key's second appearance.
        if entries[..i].iter().filter(|(k, _)| k == key).count() == 1 {
            push(
                findings,
                "keras_duplicate_key",
                Severity::Medium,
                path,
                format!("the key `{}` appears more than once; JSON parsers disagree on which wins", clip(key)),
            );
        }
        if key == "enable_unsafe_deserialization" {
            push(
                findings,
                "keras_unsafe_deserialization",
                Severity::High,
                path,
                "sets `enable_unsafe_deserialization`".into(),
            );
        }
    }
    for value in get_all("safe_mode") {
        let off = match value {
            Json::Bool(b) => !b,
            Json::String(s) => s.eq_ignore_ascii_case("false"),
            Json::Null => false,
            _ => true,
        };
        if off {
            push(findings, "keras_unsafe_deserialization", Severity::High, path, "sets `safe_mode` to false".into());
        }
    }

    for class in &class_names {
        match *class {
            "Lambda" | "TFOpLambda" | "SlicingOpLambda" => push(
                findings,
                "keras_lambda_layer",
                Severity::High,
                path,
                format!("a `{class}` layer{layer_name} runs Python code from the file"),
            ),
            "function" => {
                let target = strings("config").first().map(|c| clip(c)).unwrap_or_default();
                let module = modules.first().map(|m| clip(m)).unwrap_or_default();
                push(
                    findings,
                    "keras_function_object",
                    Severity::High,
                    path,
                    format!("imports the function `{module}.{target}` by name"),
                );
            }
            "__lambda__" => push(
                findings,
                "keras_function_object",
                Severity::High,
                path,
                "a `__lambda__` object carries marshalled Python bytecode".into(),
            ),
            _ => {}
        }
        if let Some((package, _)) = class.split_once('>') {
            if !keras_module(package) {
                push(
                    findings,
                    "keras_custom_object",
                    Severity::Medium,
                    path,
                    format!("class `{}` is registered outside Keras", clip(class)),
                );
            }
        } else if let Some((module, _)) = class.rsplit_once('.') {
            if !keras_module(module) {
                push(
                    findings,
                    "keras_custom_object",
                    Severity::Medium,
                    path,
                    format!("class `{}` comes from outside Keras", clip(class)),
                );
            }
        }
    }
    for module in &modules {
        if !keras_module(module) {
            push(
                findings,
                "keras_custom_object",
                Severity::Medium,
                path,
                format!("imports from the module `{}`, outside Keras", clip(module)),
            );
        }
    }
    for registered in strings("registered_name") {
        let outside = match registered.split_once('>') {
            Some((package, _)) => !keras_module(package),
            // A plain name is Keras' own only when it is the class itself; a `function`
            // object's registered name is the function's, and it is reported above.
            None => !class_names.contains(&registered) && !class_names.contains(&"function"),
        };
        if outside {
            push(
                findings,
                "keras_custom_object",
                Severity::Medium,
                path,
                format!("the registered name `{}` is outside Keras", clip(registered)),
            );
        }
    }
}
