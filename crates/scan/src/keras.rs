//! Keras v3 (`.keras`): a zip with `config.json`, `metadata.json` and `model.weights.h5`. The
//! model is rebuilt from `config.json` by `keras.saving.deserialize_keras_object`, which can
//! import modules and run code, so every object in it is checked (layers nested in `Sequential`,
//! `Functional`, wrappers, initializers, activations, optimizers — whatever nests), and every key
//! of every object, duplicates included (Python's `json` keeps the last one; this check sees
//! all). The JSON is checked while it is parsed, so memory stays at the document plus one
//! object's keys per nesting level. The weights are HDF5 arrays, loaded as data; they are not
//! parsed here.
//!
//! `Unparseable`: not a readable zip, no `config.json`, a `config.json` (or `metadata.json`)
//! over [`MAX_JSON_BYTES`] or unreadable from the zip, not UTF-8 JSON, nested deeper than
//! serde_json's 128 levels, or not an object at the top.
//!
//! Findings: `keras_lambda_layer` (High: a `Lambda`, `TFOpLambda` or `SlicingOpLambda` layer runs
//! Python named or marshalled in the config); `keras_function_object` (High: a
//! `"class_name": "function"` object imports a function by name, a `__lambda__` carries
//! marshalled bytecode); `keras_unsafe_deserialization` (High: `safe_mode: false` or
//! `enable_unsafe_deserialization` anywhere); `keras_custom_object` (Medium: a `module`,
//! `class_name` or `registered_name` outside Keras' own namespaces `keras`, `keras.*`,
//! `tf_keras`, `tf_keras.*`, which imports code from another package); `keras_duplicate_key`
//! (Medium: one object with the same key twice, which parsers resolve differently). The zip
//! reader's `zip_*` findings are passed on.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::safetensors::{clip, clip_to};
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
    // Every copy of config.json is checked: zip readers disagree on which one they open.
    let metadata = archive.entries.iter().filter(|e| e.name == "metadata.json");
    for entry in configs.into_iter().chain(metadata) {
        let checked = zip::read_entry(source, entry, MAX_JSON_BYTES)
            .and_then(|bytes| check_document(&bytes, &entry.name, &mut findings))
            .map_err(|e| format!("{}: {e}", entry.name));
        if let Err(e) = checked {
            return Report::unparseable(Format::Keras, findings, e);
        }
    }
    Report::from_findings(Format::Keras, findings)
}

/// The findings for one Keras JSON document (`config.json`), for callers that already hold it.
pub fn scan_config(bytes: &[u8]) -> Result<Vec<Finding>, String> {
    let mut findings = Vec::new();
    check_document(bytes, "config.json", &mut findings)?;
    Ok(findings)
}

fn check_document(bytes: &[u8], file: &str, findings: &mut Vec<Finding>) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 (at byte {})", e.valid_up_to()))?;
    let mut ctx = Ctx { findings, path: file.to_string() };
    let mut de = serde_json::Deserializer::from_str(text);
    let top = ValueSeed { ctx: &mut ctx }
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| format!("not valid JSON: {}", clip_to(&e.to_string(), 300)))?;
    match top {
        Summary::Object { .. } => Ok(()),
        _ => Err("the top level is not a JSON object".into()),
    }
}

/// What a parent needs to know about one value once it has been checked.
enum Summary {
    Null,
    Bool(bool),
    String(String),
    /// An object, with its `name` when it has a string one.
    Object {
        name: Option<String>,
    },
    Other,
}

struct Ctx<'a> {
    findings: &'a mut Vec<Finding>,
    /// Where the value being read sits: `config.json: config.layers[1]`.
    path: String,
}

impl Ctx<'_> {
    /// Adds a finding once. When the report is full, a finding replaces a less severe one, so
    /// the most severe findings are the ones listed.
    fn push(&mut self, kind: &'static str, severity: Severity, detail: String) {
        let finding = Finding { kind, severity, location: self.path.clone(), detail };
        if self.findings.len() < MAX_FINDINGS {
            if !self.findings.contains(&finding) {
                self.findings.push(finding);
            }
        } else if let Some(weaker) = self.findings.iter_mut().find(|f| f.severity < severity) {
            *weaker = finding;
        }
    }
}

/// Checks one JSON value (and everything inside it) as serde_json reads it.
struct ValueSeed<'c, 'f> {
    ctx: &'c mut Ctx<'f>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Summary;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Summary, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Summary;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Summary, E> {
        Ok(Summary::Null)
    }
    fn visit_none<E>(self) -> Result<Summary, E> {
        Ok(Summary::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Summary, E> {
        Ok(Summary::Bool(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Summary, E> {
        Ok(Summary::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Summary, E> {
        Ok(Summary::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Summary, E> {
        Ok(Summary::Other)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Summary, E> {
        self.visit_string(v.to_string())
    }
    fn visit_string<E>(self, v: String) -> Result<Summary, E> {
        if v.contains("enable_unsafe_deserialization") {
            self.ctx.push(
                "keras_unsafe_deserialization",
                Severity::High,
                "names `enable_unsafe_deserialization`".into(),
            );
        }
        Ok(Summary::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Summary, A::Error> {
        let mut i = 0usize;
        loop {
            let len = self.ctx.path.len();
            self.ctx.path.push_str(&format!("[{i}]"));
            let item = seq.next_element_seed(ValueSeed { ctx: &mut *self.ctx });
            self.ctx.path.truncate(len);
            if item?.is_none() {
                return Ok(Summary::Other);
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
        let mut keys: HashSet<String> = HashSet::new();
        let mut object = Object::default();
        while let Some(key) = map.next_key::<String>()? {
            let len = self.ctx.path.len();
            // `config.json: config.layers[1]`
            self.ctx.path.push_str(if self.ctx.path.contains(": ") { "." } else { ": " });
            self.ctx.path.push_str(&clip(&key));
            let value = map.next_value_seed(ValueSeed { ctx: &mut *self.ctx });
            self.ctx.path.truncate(len);
            let value = value?;
            if key == "enable_unsafe_deserialization" {
                self.ctx.push(
                    "keras_unsafe_deserialization",
                    Severity::High,
                    "sets `enable_unsafe_deserialization`".into(),
                );
            }
            if keys.contains(&key) {
                self.ctx.push(
                    "keras_duplicate_key",
                    Severity::Medium,
                    format!("the key `{}` appears more than once; JSON parsers disagree on which wins", clip(&key)),
                );
            }
            object.add(&key, value);
            keys.insert(key);
        }
        let name = object.name.take();
        object.check(self.ctx);
        Ok(Summary::Object { name })
    }
}

/// The keys of one object that decide what Keras will import or run; every value of a
/// duplicated key is kept.
#[derive(Default)]
struct Object {
    class_names: Vec<String>,
    modules: Vec<String>,
    registered_names: Vec<String>,
    /// String `config` values (a `function` object's function name).
    config_strings: Vec<String>,
    /// The `name` of a nested `config` object (a layer's name).
    layer_name: Option<String>,
    name: Option<String>,
    safe_mode_off: bool,
}

impl Object {
    fn add(&mut self, key: &str, value: Summary) {
        match (key, value) {
            ("class_name", Summary::String(s)) => self.class_names.push(s),
            ("module", Summary::String(s)) => self.modules.push(s),
            ("registered_name", Summary::String(s)) => self.registered_names.push(s),
            ("config", Summary::String(s)) => self.config_strings.push(s),
            ("config", Summary::Object { name }) => self.layer_name = name.or(self.layer_name.take()),
            ("name", Summary::String(s)) => self.name = Some(s),
            ("safe_mode", Summary::Bool(b)) => self.safe_mode_off |= !b,
            ("safe_mode", Summary::String(s)) => self.safe_mode_off |= s.eq_ignore_ascii_case("false"),
            ("safe_mode", Summary::Null) => {}
            ("safe_mode", _) => self.safe_mode_off = true,
            _ => {}
        }
    }

    fn check(self, ctx: &mut Ctx) {
        if self.safe_mode_off {
            ctx.push("keras_unsafe_deserialization", Severity::High, "sets `safe_mode` to false".into());
        }
        let layer = self.layer_name.map(|n| format!(" `{}`", clip(&n))).unwrap_or_default();
        let is_function = self.class_names.iter().any(|c| c == "function");
        for class in &self.class_names {
            match class.as_str() {
                "Lambda" | "TFOpLambda" | "SlicingOpLambda" => ctx.push(
                    "keras_lambda_layer",
                    Severity::High,
                    format!("a `{class}` layer{layer} runs Python code from the file"),
                ),
                "function" => {
                    let module = self.modules.first().map(|m| clip(m)).unwrap_or_default();
                    let target = self.config_strings.first().map(|c| clip(c)).unwrap_or_default();
                    ctx.push(
                        "keras_function_object",
                        Severity::High,
                        format!("imports the function `{module}.{target}` by name"),
                    );
                }
                "__lambda__" => ctx.push(
                    "keras_function_object",
                    Severity::High,
                    "a `__lambda__` object carries marshalled Python bytecode".into(),
                ),
                _ => {}
            }
            // A registered `Package>Name`, or a dotted path, names where the class comes from.
            let origin = class.split_once('>').map(|(package, _)| package).or(class.rsplit_once('.').map(|(m, _)| m));
            if origin.is_some_and(|o| !keras_module(o)) {
                ctx.push(
                    "keras_custom_object",
                    Severity::Medium,
                    format!("class `{}` comes from outside Keras", clip(class)),
                );
            }
        }
        for module in &self.modules {
            if !keras_module(module) {
                ctx.push(
                    "keras_custom_object",
                    Severity::Medium,
                    format!("imports from the module `{}`, outside Keras", clip(module)),
                );
            }
        }
        for registered in &self.registered_names {
            let outside = match registered.split_once('>') {
                Some((package, _)) => !keras_module(package),
                // A plain name is Keras' own only when it is the class itself; a `function`
                // object's registered name is the function's, and it is reported above.
                None => !self.class_names.contains(registered) && !is_function,
            };
            if outside {
                ctx.push(
                    "keras_custom_object",
                    Severity::Medium,
                    format!("the registered name `{}` is outside Keras", clip(registered)),
                );
            }
        }
    }
}

/// Whether a Python module belongs to Keras itself.
fn keras_module(module: &str) -> bool {
    ["keras", "tf_keras"]
        .iter()
        .any(|root| module == *root || module.strip_prefix(root).is_some_and(|rest| rest.starts_with('.')))
}
