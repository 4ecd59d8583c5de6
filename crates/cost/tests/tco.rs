//! The TCO planner against worked examples checked by hand (`tests/data/tco/*.toml`, arithmetic
//! in their comments), properties of the cost curves and the break-even, and refused inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::str::FromStr;

use perimeter_cost::tco::{
    api_monthly, api_rate, pair_break_even, plan, render_svg, render_text, Kind, StepModel, TcoConfig,
};
use perimeter_cost::{CostError, Decimal};
use proptest::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A case file without its `[expect]` table, and that table.
fn load(path: &std::path::Path) -> (TcoConfig, toml::Table) {
    let mut t: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let expect = t.remove("expect").and_then(|v| v.as_table().cloned()).expect("an [expect] table");
    (TcoConfig::parse(&toml::to_string(&t).unwrap()).unwrap(), expect)
}

fn kind(s: &str) -> Kind {
    match s {
        "api" => Kind::Api,
        "self_hosted" => Kind::SelfHosted,
        other => panic!("{other}"),
    }
}

#[test]
fn worked_examples() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/data/tco"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (c, e) = load(&path);
        let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("{name}: {k}")).to_string();
        let t = &c.traffic;
        let (a, sh) = (&c.api[0], &c.self_hosted[0]);
        assert_eq!(api_monthly(a, t, t.requests_per_day).normalize(), d(&s("api_monthly")), "{name}");
        let m = StepModel::new(sh, t);
        assert_eq!(m.monthly(t.requests_per_day).normalize(), d(&s("self_hosted_monthly")), "{name}");
        assert_eq!(m.replicas(t.requests_per_day), e["replicas"].as_integer().unwrap() as u64, "{name}");

        let b = pair_break_even(&c, a, sh);
        match s("break_even").as_str() {
            "none" => assert_eq!(b.requests_per_day, None, "{name}"),
            v => assert_eq!(b.requests_per_day.map(|x| x.normalize()), Some(d(v)), "{name}"),
        }
        assert_eq!(b.cheaper_at_min, kind(&s("cheaper_at_min")), "{name}");
        assert_eq!(b.cheaper_at_max, kind(&s("cheaper_at_max")), "{name}");
        assert_eq!(b.crossings.len() as i64, e["crossings"].as_integer().unwrap(), "{name}: {:?}", b.crossings);
        if let Some(list) = e.get("crossing_volumes") {
            let want: Vec<Decimal> = list.as_array().unwrap().iter().map(|v| d(v.as_str().unwrap())).collect();
            let got: Vec<Decimal> = b.crossings.iter().map(|x| x.requests_per_day.round_dp(6).normalize()).collect();
            assert_eq!(got, want, "{name}");
        }
        let r = plan(&c);
        assert_eq!(r.options[0].horizon_total_usd.amount(), d(&s("api_horizon_total")), "{name}");
        assert_eq!(r.options[1].horizon_total_usd.amount(), d(&s("self_hosted_horizon_total")), "{name}");
        // Every reported crossing really is one.
        check_crossings(&c);
    }
}

/// At every crossing the cheaper option on each side is the one reported, and where the curves
/// meet (not at a step) their costs are equal.
fn check_crossings(c: &TcoConfig) {
    for a in &c.api {
        for sh in &c.self_hosted {
            let k = api_rate(a, &c.traffic);
            let m = StepModel::new(sh, &c.traffic);
            let b = pair_break_even(c, a, sh);
            let eps = d("0.001");
            let cheaper = |v: Decimal| if k * v >= m.monthly(v) { Kind::SelfHosted } else { Kind::Api };
            for x in &b.crossings {
                let v = x.requests_per_day;
                if !x.at_step {
                    let diff = (k * v - m.monthly(v)).abs();
                    assert!(diff < d("0.000000001"), "curves differ by {diff} at {v}");
                }
                assert_eq!(cheaper(v + eps), x.cheaper_above, "just above {v}");
                assert_ne!(cheaper(v - eps), x.cheaper_above, "just below {v}");
            }
            // Between crossings the cheaper option does not change (checked on a grid).
            let (lo, hi) = (c.range.min_requests_per_day, c.range.max_requests_per_day);
            let mut expected = b.cheaper_at_min;
            let mut next = b.crossings.iter().peekable();
            for i in 0..=400 {
                let v = lo + (hi - lo) * Decimal::from(i) / Decimal::from(400);
                while let Some(x) = next.peek() {
                    if x.requests_per_day < v {
                        expected = x.cheaper_above;
                        next.next();
                    } else {
                        break;
                    }
                }
                if next.peek().is_some_and(|x| x.requests_per_day == v) {
                    continue;
                }
                assert_eq!(cheaper(v), expected, "at {v}");
            }
            assert_eq!(expected, b.cheaper_at_max);
        }
    }
}

#[test]
fn the_shipped_examples_plan_and_render() {
    let dir = root().join("examples/tco");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        let c =
            TcoConfig::parse(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        check_crossings(&c);
        let r = plan(&c);
        let text = render_text(&r);
        assert!(text.contains("Break-even") && text.contains("Sensitivity"), "{text}");
        let svg = render_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("class=\"break-even\"").count(),
            r.break_even.iter().filter(|b| b.requests_per_day.is_some()).count()
        );
        assert!(!r.sensitivity.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["break_even"].is_array() && json["volumes"].as_array().unwrap().len() >= 2);
    }
    assert!(n >= 1, "no example in {}", dir.display());
}

#[test]
fn invalid_inputs_name_the_field() {
    let base = std::fs::read_to_string(root().join("tests/data/tco/01_api_vs_rented_gpu.toml")).unwrap();
    let base = base.split("[expect]").next().unwrap().to_string();
    let cases: &[(&str, &str, &str)] = &[
        ("utilisation = \"0.5\"", "utilisation = \"1.5\"", "self_hosted[0].utilisation"),
        ("output_tokens_per_second = 1000", "output_tokens_per_second = 0", "self_hosted[0].output_tokens_per_second"),
        ("output_tokens_per_second = 1000", "", "self_hosted[0].output_tokens_per_second"),
        ("gpu_hourly_usd = \"2\"", "", "self_hosted[0].gpu_hourly_usd"),
        ("gpu_hourly_usd = \"2\"", "gpu_hourly_usd = \"2\"\npurchase_usd = 1", "self_hosted[0].purchase_usd"),
        ("gpu_hourly_usd = \"2\"", "gpu_hourly_usd = \"2\"\npue = 1.2", "self_hosted[0].pue"),
        ("input_usd_per_million = \"1\"", "input_usd_per_million = \"-1\"", "api[0].input_usd_per_million"),
        ("input_usd_per_million = \"1\"", "input_usd_per_million = \"cheap\"", ""),
        ("peak_to_average = 2", "peak_to_average = 0.5", "traffic.peak_to_average"),
        ("requests_per_day = 10000", "requests_per_day = 0", "traffic.requests_per_day"),
        ("max_requests_per_day = 1000000", "max_requests_per_day = 10", "range.max_requests_per_day"),
        ("horizon_months = 12", "horizon_months = 0", "horizon_months"),
        ("name = \"gpu\"", "name = \"api\"", "self_hosted[0].name"),
        ("name = \"api\"", "model = \"no-such-model\"", "api[0].model"),
    ];
    for (from, to, field) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        match TcoConfig::parse(&text) {
            Err(CostError::Invalid { field: f, .. }) => assert_eq!(&f, field, "{from} -> {to}"),
            // A value of the wrong type is a TOML error that names the key.
            Err(CostError::Parse { reason, .. }) if field.is_empty() => {
                assert!(reason.contains("input_usd_per_million"), "{reason}")
            }
            other => panic!("{from} -> {to}: {other:?}"),
        }
    }
    match TcoConfig::parse(
        "[traffic]\nrequests_per_day = 1\ninput_tokens_per_request = 1\noutput_tokens_per_request = 1\nfoo = 2\n",
    ) {
        Err(CostError::Parse { reason, .. }) => assert!(reason.contains("foo"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_model_from_the_builtin_table_fills_the_prices() {
    let text = "[traffic]\nrequests_per_day = 100\ninput_tokens_per_request = 1000\noutput_tokens_per_request = 100\n\n[[api]]\nmodel = \"gpt-4o-mini\"\n";
    let c = TcoConfig::parse(text).unwrap();
    assert_eq!(c.api[0].name, "gpt-4o-mini");
    assert_eq!(c.api[0].input_usd_per_million.normalize(), d("0.15"));
    assert_eq!(c.api[0].output_usd_per_million.normalize(), d("0.6"));
    assert_eq!(c.api[0].cached_input_usd_per_million.normalize(), d("0.075"));
    assert!(c.api[0].source.as_deref().unwrap().contains("2026-11-29"));
}

#[expect(clippy::too_many_arguments, reason = "one generated plan per proptest case")]
fn config(
    input: u32,
    output: u32,
    peak: u32,
    tps: u32,
    hourly: u32,
    price_in: u32,
    price_out: u32,
    redundancy: u32,
) -> TcoConfig {
    TcoConfig::parse(&format!(
        "[traffic]\nrequests_per_day = 1000\ninput_tokens_per_request = {input}\noutput_tokens_per_request = {output}\npeak_to_average = {peak}\n\
         [range]\nmin_requests_per_day = 10\nmax_requests_per_day = 5000000\n\
         [[api]]\nname = \"a\"\ninput_usd_per_million = \"0.{price_in:02}\"\noutput_usd_per_million = \"{price_out}\"\n\
         [[self_hosted]]\nname = \"s\"\ngpu = \"g\"\ngpu_hourly_usd = {hourly}\noutput_tokens_per_second = {tps}\nredundancy = {redundancy}\nops_usd_per_month = 1000\n"
    ))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cost never falls as volume rises, for either kind of option; more throughput per GPU never
    /// costs more; the reported crossings are real crossings.
    #[test]
    fn costs_are_monotone_and_crossings_real(
        input in 100u32..5000, output in 50u32..1000, peak in 1u32..5, tps in 200u32..6000,
        hourly in 1u32..8, price_in in 1u32..99, price_out in 1u32..20, redundancy in 0u32..3,
        v1 in 1u64..3_000_000, v2 in 1u64..3_000_000,
    ) {
        let c = config(input, output, peak, tps, hourly, price_in, price_out, redundancy);
        let (lo, hi) = (Decimal::from(v1.min(v2)), Decimal::from(v1.max(v2)));
        let t = &c.traffic;
        prop_assert!(api_monthly(&c.api[0], t, lo) <= api_monthly(&c.api[0], t, hi));
        let m = StepModel::new(&c.self_hosted[0], t);
        prop_assert!(m.monthly(lo) <= m.monthly(hi));
        prop_assert!(m.replicas(lo) <= m.replicas(hi));
        let faster = config(input, output, peak, tps * 2, hourly, price_in, price_out, redundancy);
        prop_assert!(StepModel::new(&faster.self_hosted[0], &faster.traffic).monthly(hi) <= m.monthly(hi));
        // Capacity covers the peak, and one replica fewer would not.
        let need = hi * t.output_tokens_per_request * t.peak_to_average;
        let per = Decimal::from(tps) * c.self_hosted[0].utilisation * Decimal::from(86_400);
        let active = m.active_replicas(hi);
        prop_assert!(Decimal::from(active) * per >= need);
        prop_assert!(active == 1 || Decimal::from(active - 1) * per < need);
        check_crossings(&c);
    }
}
