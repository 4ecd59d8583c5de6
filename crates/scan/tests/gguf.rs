//! GGUF: benign files and templates pass; template injection, hostile counts and lengths,
//! unknown types and broken layouts are caught; hostile bytes never panic. Every file is built
//! here as bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_scan::gguf::{self, template_constructs};
use perimeter_scan::{Format, Report, Severity, Verdict};
use proptest::prelude::*;

const STRING: u32 = 8;
const ARRAY: u32 = 9;
const UINT32: u32 = 4;
const BOOL: u32 = 7;
const F32: u32 = 0;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/// A template in the style of recent tool-calling models: namespace(), tojson, macros,
/// raise_exception, comments, whitespace control and a raw block.
const TOOLS: &str = r#"{#- Tool-calling template -#}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- macro render(tool) -%}{{ tool | tojson }}{%- endmacro -%}
{%- if tools %}{{- '<|im_start|>system\n# Tools\n<tools>' }}{%- for tool in tools %}{{- '\n' + render(tool) }}{%- endfor %}{{- '\n</tools><|im_end|>\n' }}{%- endif %}
{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}{%- if ns.multi_step_tool and message.role == "user" %}{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}
{%- for message in messages %}
  {%- if message.role not in ['system', 'user', 'assistant', 'tool'] %}{{ raise_exception('Unknown role: ' ~ message.role) }}{%- endif %}
  {{- '<|im_start|>' + message.role + '\n' + message.content | default('', true) + '<|im_end|>\n' }}
{%- endfor %}
{%- raw %}{{ not code }}{% endraw %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"#;

/// Builds a GGUF file.
struct Gguf {
    version: u32,
    alignment: u64,
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn gstr(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

impl Gguf {
    fn new() -> Gguf {
        Gguf { version: 3, alignment: 32, kv: Vec::new(), n_kv: 0, infos: Vec::new(), n_tensors: 0, data: Vec::new() }
    }

    fn kv_raw(mut self, key: &str, vtype: u32, value: &[u8]) -> Gguf {
        self.kv.extend(gstr(key.as_bytes()));
        self.kv.extend(vtype.to_le_bytes());
        self.kv.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    fn kv_str(self, key: &str, value: &str) -> Gguf {
        self.kv_raw(key, STRING, &gstr(value.as_bytes()))
    }

    fn kv_u32(self, key: &str, value: u32) -> Gguf {
        self.kv_raw(key, UINT32, &value.to_le_bytes())
    }

    fn kv_strings(self, key: &str, values: &[&str]) -> Gguf {
        let mut v = STRING.to_le_bytes().to_vec();
        v.extend((values.len() as u64).to_le_bytes());
        for s in values {
            v.extend(gstr(s.as_bytes()));
        }
        self.kv_raw(key, ARRAY, &v)
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Gguf {
        self.infos.extend(gstr(name.as_bytes()));
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    fn data(mut self, len: usize) -> Gguf {
        self.data = (0..len).map(|i| i as u8).collect();
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        if !self.data.is_empty() {
            while !(out.len() as u64).is_multiple_of(self.alignment) {
                out.push(0);
            }
            out.extend(&self.data);
        }
        out
    }
}

/// A minimal model: metadata with a vocabulary and a template, one F32 tensor of 4 elements
/// (16 bytes, padded to 32) and one Q4_1 tensor of 32 elements (one 20-byte block).
fn model(template: &str) -> Gguf {
    Gguf::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("general.quantization_version", 2)
        .kv_strings("tokenizer.ggml.tokens", &["<|im_start|>", "<|im_end|>", "hello"])
        .kv_str("tokenizer.chat_template", template)
        .tensor("output_norm.weight", &[4], F32, 0)
        .tensor("token_embd.weight", &[32], Q4_1, 32)
        .data(64)
}

enum Expect<'a> {
    Clean,
    Unsafe(&'a [&'a str]),
    Unparseable(&'a str),
}

fn check(bytes: &[u8], expect: Expect) -> Report {
    let report = gguf::scan(&bytes.to_vec());
    assert_eq!(report.format, Format::Gguf);
    match expect {
        Expect::Clean => {
            assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
            assert!(report.findings.iter().all(|f| f.severity == Severity::Info), "{report:#?}");
        }
        Expect::Unsafe(details) => {
            assert_eq!(report.verdict, Verdict::Unsafe, "{report:#?}");
            for d in details {
                assert!(
                    report
                        .findings
                        .iter()
                        .any(|f| f.kind.contains(d) || f.detail.contains(d) || f.location.contains(d)),
                    "no {d} in {report:#?}"
                );
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
fn minimal_model_with_chatml_template_is_clean() {
    check(&model(CHATML).bytes(), Expect::Clean);
}

#[test]
fn last_tensor_without_final_padding_is_clean() {
    let mut bytes = model(CHATML).bytes();
    bytes.truncate(bytes.len() - 12);
    check(&bytes, Expect::Clean);
}

#[test]
fn llama3_and_tool_calling_templates_are_clean() {
    check(&model(LLAMA3).bytes(), Expect::Clean);
    check(&model(TOOLS).bytes(), Expect::Clean);
    assert_eq!(template_constructs(TOOLS), Vec::<String>::new());
}

#[test]
fn version_2_is_clean() {
    let mut g = model(CHATML);
    g.version = 2;
    check(&g.bytes(), Expect::Clean);
}

#[test]
fn dunder_chain_in_the_template_is_injection() {
    let template = format!("{CHATML}{{{{ ''.__class__.__mro__[1].__subclasses__() }}}}");
    let report = check(&model(&template).bytes(), Expect::Unsafe(&["gguf_template_injection", "`__class__`"]));
    let f = &report.findings[0];
    assert_eq!((f.severity, f.location.as_str()), (Severity::High, "metadata `tokenizer.chat_template`"));
    for construct in ["`__mro__`", "`__subclasses__`"] {
        assert!(report.findings.iter().any(|f| f.detail.contains(construct)), "{construct}");
    }
}

#[test]
fn import_os_in_the_template_is_injection() {
    let template = format!("{{% import 'os' as os %}}{CHATML}");
    check(&model(&template).bytes(), Expect::Unsafe(&["`import`", "`os`"]));
    let template = "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}";
    check(&model(template).bytes(), Expect::Unsafe(&["`__import__`", "`popen`", "`__globals__`"]));
}

#[test]
fn named_template_variants_are_checked() {
    let g = model(CHATML).kv_str("tokenizer.chat_template.tool_use", "{{ lipsum.__globals__['os'].popen('id') }}");
    check(&g.bytes(), Expect::Unsafe(&["`lipsum`", "tokenizer.chat_template.tool_use"]));
}

#[test]
fn known_ssti_payloads_are_named() {
    let cases: &[(&str, &str)] = &[
        ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "attribute access on the `cycler` global"),
        ("{{ joiner.__init__.__globals__ }}", "attribute access on the `joiner` global"),
        ("{{ namespace.__init__.__globals__ }}", "attribute access on the `namespace` global"),
        ("{{ self._TemplateReference__context.cycler }}", "`_TemplateReference__context`"),
        ("{{ request.application.__globals__ }}", "`request`"),
        ("{{ config.items() }}", "`config`"),
        ("{{ x|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "`__class__` in a string"),
        ("{{ x|attr('__cla' ~ 'ss__') }}", "the `attr` filter"),
        ("{{ x['__globals__'] }}", "`__globals__` in a string"),
        ("{{ x.__dict__ }}", "`__dict__`"),
        ("{{ x._private }}", "the private attribute `_private`"),
        ("{{ open('/etc/passwd').read() }}", "`open(`"),
        ("{{ eval('1') }}", "`eval`"),
        ("{{ exec('1') }}", "`exec`"),
        ("{{ getattr(x, 'y') }}", "`getattr`"),
        ("{{ x['\\u005f\\u005fclass\\u005f\\u005f'] }}", "`__class__` in a string"),
        ("{{ x[\"\\137\\137class\\137\\137\"] }}", "`__class__` in a string"),
        ("{% include 'other.j2' %}", "`include`"),
        ("{% extends 'base.j2' %}", "`extends`"),
        ("{% from 'os' import system %}", "`import`"),
        ("{{ subprocess.check_output('id') }}", "`subprocess`"),
        ("{{ x|map(attribute='__class__')|list }}", "`__class__` in a string"),
        ("{{ {'a': x.__class__}['a'] }}", "`__class__`"),
        ("{{ '}}' ~ x.__class__ }}", "`__class__`"),
        ("{%- set y = x.__class__ -%}", "`__class__`"),
    ];
    for (template, construct) in cases {
        let found = template_constructs(template);
        assert!(found.iter().any(|f| f == construct), "{template}: {found:?} lacks {construct}");
    }
}

#[test]
fn literal_text_comments_and_raw_blocks_are_not_code() {
    let benign = [
        "You can import os in Python; eval(x) and __class__ are words here.",
        "{# ''.__class__.__mro__ is only a comment #}{{ message['content'] }}",
        "{% raw %}{{ ''.__class__ }}{% endraw %}{{ bos_token }}",
        "{% set ns = namespace(found=false) %}{% set ns.found = true %}{{ ns.found }}",
        "{{ messages[0]['role'] == 'system' }}{{ strftime_now('%d %b %Y') }}",
        "{{ message.content | default('', true) }}{{ loop.cycle('a', 'b') }}",
        "{{ '__' }}",
    ];
    for template in benign.iter().take(6) {
        assert_eq!(template_constructs(template), Vec::<String>::new(), "{template}");
    }
    // A string that is only underscores is still reported: it is the start of a dunder.
    assert!(!template_constructs(benign[6]).is_empty());
}

#[test]
fn template_findings_survive_a_later_parse_error() {
    let mut bytes = model("{{ ''.__class__ }}").bytes();
    bytes.truncate(bytes.len() - 100);
    let report = gguf::scan(&bytes);
    assert_eq!(report.verdict, Verdict::Unsafe);
    assert!(report.error.is_some());
}

#[test]
fn huge_declared_kv_count_is_unparseable() {
    let mut g = model(CHATML);
    g.n_kv = u64::MAX / 2;
    check(&g.bytes(), Expect::Unparseable("metadata entries"));
    let mut g = model(CHATML);
    g.n_tensors = 1 << 40;
    check(&g.bytes(), Expect::Unparseable("tensors"));
}

#[test]
fn string_length_past_the_end_is_unparseable() {
    let g = Gguf::new().kv_raw("general.name", STRING, &(1u64 << 40).to_le_bytes());
    check(&g.bytes(), Expect::Unparseable("past the end"));
    let g = Gguf::new().kv_raw("tokenizer.chat_template", STRING, &1000u64.to_le_bytes());
    check(&g.bytes(), Expect::Unparseable("past the end"));
    let mut v = STRING.to_le_bytes().to_vec();
    v.extend(u64::MAX.to_le_bytes());
    let g = Gguf::new().kv_raw("tokenizer.ggml.tokens", ARRAY, &v);
    check(&g.bytes(), Expect::Unparseable("array"));
}

#[test]
fn unknown_ggml_type_is_unparseable() {
    let g = Gguf::new().tensor("w", &[32], 4, 0).data(32);
    check(&g.bytes(), Expect::Unparseable("unknown ggml type 4"));
    let g = Gguf::new().tensor("w", &[32], 99, 0).data(32);
    check(&g.bytes(), Expect::Unparseable("unknown ggml type 99"));
}

#[test]
fn misaligned_offset_is_unparseable() {
    let g = Gguf::new().tensor("a", &[4], F32, 0).tensor("b", &[4], F32, 16).data(32);
    check(&g.bytes(), Expect::Unparseable("not a multiple of the alignment"));
}

#[test]
fn custom_alignment_is_honoured() {
    let g = Gguf::new().kv_u32("general.alignment", 16).tensor("a", &[4], F32, 0).tensor("b", &[4], F32, 16);
    let mut g = g.data(32);
    g.alignment = 16;
    check(&g.bytes(), Expect::Clean);
    check(&Gguf::new().kv_u32("general.alignment", 24).bytes(), Expect::Unparseable("power of two"));
    check(&Gguf::new().kv_u32("general.alignment", 0).bytes(), Expect::Unparseable("power of two"));
    let g = Gguf::new().kv_raw("general.alignment", 10, &32u64.to_le_bytes());
    check(&g.bytes(), Expect::Unparseable("uint32"));
}

#[test]
fn versions_other_than_2_and_3_are_unparseable() {
    let mut g = model(CHATML);
    g.version = 1;
    check(&g.bytes(), Expect::Unparseable("version 1"));
    g.version = 4;
    check(&g.bytes(), Expect::Unparseable("version 4"));
    check(b"GGML\x03\x00\x00\x00", Expect::Unparseable("magic"));
    check(b"GG", Expect::Unparseable("magic"));
}

#[test]
fn block_size_and_dimension_limits() {
    let g = Gguf::new().tensor("w", &[31], Q4_0, 0).data(32);
    check(&g.bytes(), Expect::Unparseable("block size 32"));
    let g = Gguf::new().tensor("w", &[1, 1, 1, 1, 1], F32, 0).data(32);
    check(&g.bytes(), Expect::Unparseable("5 dimensions"));
    let g = Gguf::new().tensor("w", &[1 << 62, 1 << 62], F32, 0).data(32);
    check(&g.bytes(), Expect::Unparseable("overflows"));
    let g = Gguf::new().tensor(&"n".repeat(64), &[4], F32, 0).data(32);
    check(&g.bytes(), Expect::Unparseable("longer than 63"));
}

#[test]
fn duplicate_keys_and_names_are_unparseable() {
    let g = model(CHATML).kv_str("general.architecture", "gpt2");
    check(&g.bytes(), Expect::Unparseable("duplicate key"));
    let g = Gguf::new().tensor("w", &[4], F32, 0).tensor("w", &[4], F32, 32).data(64);
    check(&g.bytes(), Expect::Unparseable("duplicate tensor name"));
}

#[test]
fn bad_values_are_unparseable() {
    check(&Gguf::new().kv_raw("x", BOOL, &[2]).bytes(), Expect::Unparseable("neither 0 nor 1"));
    check(&Gguf::new().kv_raw("x", 13, &[0; 16]).bytes(), Expect::Unparseable("unknown value type 13"));
    // Arrays nested nine deep.
    let mut v = Vec::new();
    for _ in 0..9 {
        v.extend(ARRAY.to_le_bytes());
        v.extend(1u64.to_le_bytes());
    }
    v.extend(UINT32.to_le_bytes());
    v.extend(0u64.to_le_bytes());
    check(&Gguf::new().kv_raw("x", ARRAY, &v).bytes(), Expect::Unparseable("nested deeper"));
    // Seven deep is fine.
    let mut v = Vec::new();
    for _ in 0..7 {
        v.extend(ARRAY.to_le_bytes());
        v.extend(1u64.to_le_bytes());
    }
    v.extend(UINT32.to_le_bytes());
    v.extend(1u64.to_le_bytes());
    v.extend(7u32.to_le_bytes());
    check(&Gguf::new().kv_raw("x", ARRAY, &v).bytes(), Expect::Clean);
}

#[test]
fn tensor_past_the_end_is_unparseable() {
    let g = Gguf::new().tensor("w", &[64], F32, 0).data(128);
    check(&g.bytes(), Expect::Unparseable("past the end"));
}

#[test]
fn overlaps_gaps_and_trailing_bytes_are_findings() {
    let g = Gguf::new().tensor("a", &[16], F32, 0).tensor("b", &[16], F32, 32).data(96);
    check(&g.bytes(), Expect::Unsafe(&["gguf_overlap"]));
    let g = Gguf::new().tensor("a", &[4], F32, 0).tensor("b", &[4], F32, 64).data(96);
    check(&g.bytes(), Expect::Unsafe(&["gguf_gap"]));
    let g = Gguf::new().tensor("a", &[4], F32, 0).data(64);
    check(&g.bytes(), Expect::Unsafe(&["gguf_trailing_data"]));
    let mut bytes = Gguf::new().kv_str("general.name", "x").bytes();
    bytes.extend([7u8; 64]);
    check(&bytes, Expect::Unsafe(&["gguf_trailing_data"]));
}

#[test]
fn the_dispatcher_sends_gguf_here() {
    let report = perimeter_scan::scan("model.bin", &model(CHATML).bytes());
    assert_eq!((report.format, report.verdict), (Format::Gguf, Verdict::Clean));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = gguf::scan(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_the_header_never_panic(n_tensors in 0u64..4, n_kv in 0u64..4, rest in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
        bytes.extend(n_tensors.to_le_bytes());
        bytes.extend(n_kv.to_le_bytes());
        bytes.extend(rest);
        let _ = gguf::scan(&bytes);
    }

    #[test]
    fn mutated_models_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = model(CHATML).bytes();
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let _ = gguf::scan(&bytes);
    }

    #[test]
    fn arbitrary_templates_never_panic(template in "\\PC{0,300}") {
        let _ = template_constructs(&template);
    }

    #[test]
    fn jinja_shaped_templates_never_panic(template in "([{}%#'\"\\\\a-z_. ()\\[\\]|-]){0,200}") {
        let _ = template_constructs(&template);
    }
}
