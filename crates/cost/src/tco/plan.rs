//! The TCO maths: monthly cost of each option at a volume, the sweep over volumes, the horizon
//! with growth, exact break-even volumes and the sensitivity table.
//!
//! Conventions: a month is 30.4375 days (365.25 ÷ 12) and 730.5 hours. Volumes are requests per
//! day. An API costs `k × volume` per month; a self-hosted option costs `fixed + replicas ×
//! replica_month`, where replicas = the fewest that carry the peak (at least one) + redundancy,
//! so its cost is a step function of volume.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

use super::config::{ApiOption, GpuCost, Scale, SelfHostedOption, TcoConfig, Traffic};
use crate::money::{div, mul};
use crate::Money;

pub const DAYS_PER_MONTH: Decimal = Decimal::from_parts(304_375, 0, 0, false, 4);
pub const HOURS_PER_MONTH: Decimal = Decimal::from_parts(7305, 0, 0, false, 1);
const SECONDS_PER_DAY: Decimal = Decimal::from_parts(86_400, 0, 0, false, 0);
const MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// The break-even scan walks replica steps; past this many it stops and says so.
const MAX_STEPS: u64 = 200_000;

/// API cost per month for each request per day: `days × (input × input price + output ×
/// output price) ÷ 1e6 × (1 + regional premium) × (1 − batch share × batch discount)`, with
/// the input price blended by the cached share.
pub fn api_rate(a: &ApiOption, t: &Traffic) -> Decimal {
    let cf = a.cached_input_fraction;
    let input_price = mul(Decimal::ONE - cf, a.input_usd_per_million) + mul(cf, a.cached_input_usd_per_million);
    let per_request = div(
        mul(t.input_tokens_per_request, input_price) + mul(t.output_tokens_per_request, a.output_usd_per_million),
        MILLION,
    )
    .unwrap_or(Decimal::ZERO);
    let premium = Decimal::ONE + a.regional_premium;
    let batch = Decimal::ONE - mul(a.batch_fraction, a.batch_discount);
    mul(mul(mul(per_request, DAYS_PER_MONTH), premium), batch)
}

/// API cost per month at `volume` requests per day.
pub fn api_monthly(a: &ApiOption, t: &Traffic, volume: Decimal) -> Decimal {
    mul(api_rate(a, t), volume)
}

/// What one GPU costs per month: hourly × 730.5, or purchase ÷ depreciation months + kW × PUE
/// × 730.5 × electricity price + hosting.
pub fn gpu_monthly(s: &SelfHostedOption) -> Decimal {
    match &s.gpu_cost {
        GpuCost::Hourly { usd_per_hour } => mul(*usd_per_hour, HOURS_PER_MONTH),
        GpuCost::Purchase {
            purchase_usd,
            depreciation_months,
            power_kw,
            pue,
            electricity_usd_per_kwh,
            hosting_usd_per_month,
        } => {
            div(*purchase_usd, Decimal::from(*depreciation_months)).unwrap_or(Decimal::MAX)
                + mul(mul(mul(*power_kw, *pue), HOURS_PER_MONTH), *electricity_usd_per_kwh)
                + *hosting_usd_per_month
        }
    }
}

/// A self-hosted option reduced to the numbers the step function needs.
#[derive(Debug, Clone, Copy)]
pub struct StepModel {
    /// Staff and supporting infrastructure per month.
    pub fixed: Decimal,
    /// One replica's GPUs per month.
    pub replica_month: Decimal,
    pub redundancy: u64,
    /// Output tokens per day one replica carries at its planned utilisation.
    per_replica: Decimal,
    /// Peak output tokens per day per request per day (output × peak-to-average).
    demand_per_request: Decimal,
}

impl StepModel {
    pub fn new(s: &SelfHostedOption, t: &Traffic) -> StepModel {
        StepModel {
            fixed: s.ops_usd_per_month + s.infra_usd_per_month,
            replica_month: mul(gpu_monthly(s), Decimal::from(s.gpus_per_replica)),
            redundancy: u64::from(s.redundancy),
            per_replica: mul(mul(s.output_tokens_per_second, s.utilisation), SECONDS_PER_DAY),
            demand_per_request: mul(t.output_tokens_per_request, t.peak_to_average),
        }
    }

    /// Requests per day one replica carries at peak.
    pub fn capacity(&self) -> Decimal {
        div(self.per_replica, self.demand_per_request).unwrap_or(Decimal::MAX)
    }

    /// The fewest replicas (at least one) whose capacity covers the peak at `volume`; decided
    /// by multiplication only (`r × per_replica ≥ volume × demand`), so it is exact.
    pub fn active_replicas(&self, volume: Decimal) -> u64 {
        let need = mul(volume, self.demand_per_request);
        let guess = div(need, self.per_replica).map(|q| q.ceil()).and_then(|q| q.to_u64()).unwrap_or(u64::MAX / 2);
        let mut r = guess.max(1);
        while r > 1 && mul(Decimal::from(r - 1), self.per_replica) >= need {
            r -= 1;
        }
        while mul(Decimal::from(r), self.per_replica) < need {
            r += 1;
        }
        r
    }

    /// Replicas deployed (active + redundancy).
    pub fn replicas(&self, volume: Decimal) -> u64 {
        self.active_replicas(volume).saturating_add(self.redundancy)
    }

    fn cost_with_active(&self, active: u64) -> Decimal {
        self.fixed + mul(Decimal::from(active.saturating_add(self.redundancy)), self.replica_month)
    }

    /// Cost per month at `volume`.
    pub fn monthly(&self, volume: Decimal) -> Decimal {
        self.cost_with_active(self.active_replicas(volume))
    }
}

/// Self-hosted cost per month at `volume`, and the replicas deployed.
pub fn self_hosted_monthly(s: &SelfHostedOption, t: &Traffic, volume: Decimal) -> (Decimal, u64) {
    let m = StepModel::new(s, t);
    (m.monthly(volume), m.replicas(volume))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Api,
    SelfHosted,
}

/// A volume where the cheaper of two options changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crossing {
    /// Exact (28 significant digits).
    pub requests_per_day: Decimal,
    /// The API's monthly cost there (equal to the self-hosted cost unless `at_step`).
    pub monthly_usd: Money,
    /// Which option is cheaper just above this volume.
    pub cheaper_above: Kind,
    /// The change happens where the self-hosted option adds a replica (its cost jumps), not
    /// where the curves meet.
    pub at_step: bool,
}

/// API option vs self-hosted option over the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakEven {
    pub api: String,
    pub self_hosted: String,
    /// The first volume from which self-hosted is no dearer; `None`: none in range.
    pub requests_per_day: Option<Decimal>,
    pub cheaper_at_min: Kind,
    pub cheaper_at_max: Kind,
    /// Every change of the cheaper option in the range, in order.
    pub crossings: Vec<Crossing>,
    /// The scan stopped after `MAX_STEPS` replica steps before the range ended.
    pub truncated: bool,
}

/// Finds where `k × v` (the API) and the step function `m` (self-hosted) swap order in
/// `[min, max]`. On each replica step the self-hosted cost `S` is flat, so the API line meets
/// it at exactly `v = S ÷ k`; at a step's end the self-hosted cost jumps by a replica, which can
/// make the API cheaper again. The scan stops early once the order can no longer change: if
/// one replica's capacity costs more through the API than the replica itself (`k × capacity >
/// replica_month`) self-hosted stays cheaper once it is cheaper across a step; otherwise the API
/// stays cheaper once it is cheaper across a step.
pub fn break_even(k: Decimal, m: &StepModel, min: Decimal, max: Decimal) -> (Vec<Crossing>, Kind, Kind, bool) {
    let cap = m.capacity();
    let api_gains = mul(k, cap) > m.replica_month;
    let mut r = m.active_replicas(min);
    let s0 = m.cost_with_active(r);
    let mut state = if mul(k, min) >= s0 { Kind::SelfHosted } else { Kind::Api };
    let at_min = state;
    let mut crossings = Vec::new();
    let mut steps = 0u64;
    let mut truncated = false;
    loop {
        let s = m.cost_with_active(r);
        let end = mul(Decimal::from(r), cap);
        let hi = end.min(max);
        if state == Kind::Api {
            if mul(k, hi) >= s {
                if let Some(v) = div(s, k) {
                    crossings.push(Crossing {
                        requests_per_day: v,
                        monthly_usd: Money::new(s),
                        cheaper_above: Kind::SelfHosted,
                        at_step: false,
                    });
                    state = Kind::SelfHosted;
                }
            } else if !api_gains {
                break;
            }
        }
        if hi >= max {
            break;
        }
        let next = s + m.replica_month;
        if state == Kind::SelfHosted {
            if mul(k, hi) < next {
                crossings.push(Crossing {
                    requests_per_day: hi,
                    monthly_usd: Money::new(mul(k, hi)),
                    cheaper_above: Kind::Api,
                    at_step: true,
                });
                state = Kind::Api;
            } else if api_gains {
                break;
            }
        }
        r += 1;
        steps += 1;
        if steps >= MAX_STEPS {
            truncated = true;
            break;
        }
    }
    let at_max = if mul(k, max) >= m.monthly(max) { Kind::SelfHosted } else { Kind::Api };
    (crossings, at_min, at_max, truncated)
}

/// One option's cost at one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionCost {
    pub option: String,
    pub monthly_usd: Money,
    /// Cost per million tokens (input + output) served.
    pub usd_per_million_tokens: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumePoint {
    pub requests_per_day: Decimal,
    pub tokens_per_month: Decimal,
    pub costs: Vec<OptionCost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthCost {
    pub option: String,
    pub monthly_usd: Money,
    pub cumulative_usd: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthRow {
    pub month: u32,
    pub requests_per_day: Decimal,
    pub costs: Vec<MonthCost>,
}

/// How the primary comparison moves when one input is moved down and up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SensitivityRow {
    pub input: String,
    pub base_value: Decimal,
    pub low_value: Decimal,
    pub high_value: Decimal,
    /// Break-even requests/day with the input at its low and high value (`None`: none in range).
    pub break_even_low: Option<Decimal>,
    pub break_even_high: Option<Decimal>,
    /// Self-hosted minus API monthly cost at today's volume, low and high (negative: self-hosted
    /// is cheaper).
    pub difference_low_usd: Decimal,
    pub difference_high_usd: Decimal,
}

/// Summary of one option at today's volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionSummary {
    pub name: String,
    pub kind: Kind,
    pub monthly_usd: Money,
    pub usd_per_million_tokens: Money,
    pub horizon_total_usd: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// Requests per day one replica carries at peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_per_replica: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Everything `perimeter tco` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcoReport {
    pub config: TcoConfig,
    pub assumptions: Vec<String>,
    pub options: Vec<OptionSummary>,
    pub volumes: Vec<VolumePoint>,
    pub horizon: Vec<MonthRow>,
    pub break_even: Vec<BreakEven>,
    /// For the first API option against the first self-hosted one, most influential first.
    pub sensitivity: Vec<SensitivityRow>,
}

fn tokens_per_month(t: &Traffic, v: Decimal) -> Decimal {
    mul(mul(v, t.input_tokens_per_request + t.output_tokens_per_request), DAYS_PER_MONTH)
}

fn per_million(cost: Decimal, t: &Traffic, v: Decimal) -> Money {
    let tokens = tokens_per_month(t, v);
    Money::new(div(mul(cost, MILLION), tokens).unwrap_or(Decimal::ZERO)).round_dp(4)
}

/// The sweep's volumes: `steps` points from min to max, evenly spaced or geometric, rounded to
/// whole requests (the ends exact).
pub fn sweep(c: &TcoConfig) -> Vec<Decimal> {
    let (lo, hi, n) = (c.range.min_requests_per_day, c.range.max_requests_per_day, c.range.steps);
    let (flo, fhi) = (lo.to_f64().unwrap_or(1.0), hi.to_f64().unwrap_or(1.0));
    let mut out: Vec<Decimal> = (0..n)
        .map(|i| {
            if i == 0 {
                return lo;
            }
            if i == n - 1 {
                return hi;
            }
            let f = f64::from(i) / f64::from(n - 1);
            let v = match c.range.scale {
                Scale::Linear => flo + (fhi - flo) * f,
                Scale::Log => flo * (fhi / flo).powf(f),
            };
            Decimal::from_f64_retain(v.round()).unwrap_or(lo).clamp(lo, hi)
        })
        .collect();
    out.dedup();
    out
}

fn api_costs(c: &TcoConfig, v: Decimal) -> impl Iterator<Item = OptionCost> + '_ {
    c.api.iter().map(move |a| {
        let m = api_monthly(a, &c.traffic, v);
        OptionCost {
            option: a.name.clone(),
            monthly_usd: Money::new(m).round_dp(2),
            usd_per_million_tokens: per_million(m, &c.traffic, v),
            replicas: None,
            gpus: None,
        }
    })
}

fn self_hosted_costs(c: &TcoConfig, v: Decimal) -> impl Iterator<Item = OptionCost> + '_ {
    c.self_hosted.iter().map(move |s| {
        let (m, r) = self_hosted_monthly(s, &c.traffic, v);
        OptionCost {
            option: s.name.clone(),
            monthly_usd: Money::new(m).round_dp(2),
            usd_per_million_tokens: per_million(m, &c.traffic, v),
            replicas: Some(r),
            gpus: Some(r.saturating_mul(u64::from(s.gpus_per_replica))),
        }
    })
}

/// The break-even of one API option against one self-hosted option over the configured range.
pub fn pair_break_even(c: &TcoConfig, a: &ApiOption, s: &SelfHostedOption) -> BreakEven {
    let k = api_rate(a, &c.traffic);
    let m = StepModel::new(s, &c.traffic);
    let (crossings, cheaper_at_min, cheaper_at_max, truncated) =
        break_even(k, &m, c.range.min_requests_per_day, c.range.max_requests_per_day);
    // Self-hosted already cheaper at the bottom of the range: the break-even lies below it.
    let requests_per_day = if cheaper_at_min == Kind::SelfHosted {
        None
    } else {
        crossings.iter().find(|x| x.cheaper_above == Kind::SelfHosted).map(|x| x.requests_per_day)
    };
    BreakEven {
        api: a.name.clone(),
        self_hosted: s.name.clone(),
        requests_per_day,
        cheaper_at_min,
        cheaper_at_max,
        crossings,
        truncated,
    }
}

/// Runs the whole plan.
pub fn plan(c: &TcoConfig) -> TcoReport {
    let t = &c.traffic;
    let volumes = sweep(c)
        .into_iter()
        .map(|v| VolumePoint {
            requests_per_day: v,
            tokens_per_month: tokens_per_month(t, v).round_dp(0),
            costs: api_costs(c, v).chain(self_hosted_costs(c, v)).collect(),
        })
        .collect();

    // Month m carries requests_per_day × (1 + growth)^(m − 1).
    let mut horizon = Vec::new();
    let mut v = t.requests_per_day;
    let names: Vec<&str> =
        c.api.iter().map(|a| a.name.as_str()).chain(c.self_hosted.iter().map(|s| s.name.as_str())).collect();
    let mut cumulative = vec![Decimal::ZERO; names.len()];
    for month in 1..=c.horizon_months {
        let mut costs = Vec::new();
        let exact: Vec<(Decimal, Option<u64>)> = c
            .api
            .iter()
            .map(|a| (api_monthly(a, t, v), None))
            .chain(c.self_hosted.iter().map(|s| {
                let (m, r) = self_hosted_monthly(s, t, v);
                (m, Some(r))
            }))
            .collect();
        for (i, (m, r)) in exact.into_iter().enumerate() {
            cumulative[i] += m;
            costs.push(MonthCost {
                option: names[i].to_string(),
                monthly_usd: Money::new(m).round_dp(2),
                cumulative_usd: Money::new(cumulative[i]).round_dp(2),
                replicas: r,
            });
        }
        horizon.push(MonthRow { month, requests_per_day: v.round_dp(2), costs });
        v = mul(v, Decimal::ONE + t.monthly_growth).round_dp(6);
    }

    let mut options = Vec::new();
    for (i, a) in c.api.iter().enumerate() {
        let m = api_monthly(a, t, t.requests_per_day);
        options.push(OptionSummary {
            name: a.name.clone(),
            kind: Kind::Api,
            monthly_usd: Money::new(m).round_dp(2),
            usd_per_million_tokens: per_million(m, t, t.requests_per_day),
            horizon_total_usd: Money::new(cumulative[i]).round_dp(2),
            replicas: None,
            capacity_per_replica: None,
            source: a.source.clone(),
        });
    }
    for (j, s) in c.self_hosted.iter().enumerate() {
        let (m, r) = self_hosted_monthly(s, t, t.requests_per_day);
        options.push(OptionSummary {
            name: s.name.clone(),
            kind: Kind::SelfHosted,
            monthly_usd: Money::new(m).round_dp(2),
            usd_per_million_tokens: per_million(m, t, t.requests_per_day),
            horizon_total_usd: Money::new(cumulative[c.api.len() + j]).round_dp(2),
            replicas: Some(r),
            capacity_per_replica: Some(StepModel::new(s, t).capacity().round_dp(1)),
            source: s.source.clone(),
        });
    }

    let break_even = c.api.iter().flat_map(|a| c.self_hosted.iter().map(move |s| pair_break_even(c, a, s))).collect();
    TcoReport {
        config: c.clone(),
        assumptions: assumptions(c),
        options,
        volumes,
        horizon,
        break_even,
        sensitivity: sensitivity(c),
    }
}

fn assumptions(c: &TcoConfig) -> Vec<String> {
    let mut out = vec![
        "A month is 30.4375 days (365.25 / 12) and 730.5 hours.".to_string(),
        "API cost per month = requests/day x 30.4375 x (input tokens x blended input price + output tokens x output price) / 1e6 x (1 + regional premium) x (1 - batch share x batch discount).".to_string(),
        "Self-hosted cost per month = ops + infrastructure + (replicas needed at peak, at least 1, + redundancy) x GPUs per replica x GPU cost per month.".to_string(),
        "Replicas needed at peak = ceil(requests/day x output tokens x peak-to-average / (output tokens/s per replica x utilisation x 86400)).".to_string(),
        "A rented GPU costs its hourly rate x 730.5 a month; a bought one its price / depreciation months + kW x PUE x 730.5 x electricity price + hosting.".to_string(),
    ];
    if c.traffic.monthly_growth != Decimal::ZERO {
        out.push(format!(
            "Traffic grows by {} % a month, compounded, over {} months.",
            mul(c.traffic.monthly_growth, Decimal::from(100)).normalize(),
            c.horizon_months
        ));
    }
    out
}

/// Which input of the primary comparison to move.
#[derive(Clone, Copy)]
enum Input {
    PromptTokens,
    OutputTokens,
    PeakToAverage,
    ApiInputPrice,
    ApiOutputPrice,
    GpuCost,
    Throughput,
    Utilisation,
    Ops,
}

fn sensitivity(c: &TcoConfig) -> Vec<SensitivityRow> {
    let (Some(a), Some(s)) = (c.api.first(), c.self_hosted.first()) else { return Vec::new() };
    let inputs = [
        (Input::PromptTokens, "traffic.input_tokens_per_request".to_string()),
        (Input::OutputTokens, "traffic.output_tokens_per_request".to_string()),
        (Input::PeakToAverage, "traffic.peak_to_average".to_string()),
        (Input::ApiInputPrice, format!("{}: input_usd_per_million", a.name)),
        (Input::ApiOutputPrice, format!("{}: output_usd_per_million", a.name)),
        (Input::GpuCost, format!("{}: GPU cost", s.name)),
        (Input::Throughput, format!("{}: output_tokens_per_second", s.name)),
        (Input::Utilisation, format!("{}: utilisation", s.name)),
        (Input::Ops, format!("{}: ops_usd_per_month", s.name)),
    ];
    let delta = c.sensitivity_delta;
    let base_diff = |c: &TcoConfig| {
        let (sh, _) = self_hosted_monthly(&c.self_hosted[0], &c.traffic, c.traffic.requests_per_day);
        (sh - api_monthly(&c.api[0], &c.traffic, c.traffic.requests_per_day)).round_dp(2)
    };
    let mut rows: Vec<SensitivityRow> = inputs
        .into_iter()
        .map(|(input, name)| {
            let (lo_c, lo_v, base) = perturb(c, input, Decimal::ONE - delta);
            let (hi_c, hi_v, _) = perturb(c, input, Decimal::ONE + delta);
            SensitivityRow {
                input: name,
                base_value: base,
                low_value: lo_v,
                high_value: hi_v,
                break_even_low: pair_break_even(&lo_c, &lo_c.api[0], &lo_c.self_hosted[0])
                    .requests_per_day
                    .map(|v| v.round_dp(1)),
                break_even_high: pair_break_even(&hi_c, &hi_c.api[0], &hi_c.self_hosted[0])
                    .requests_per_day
                    .map(|v| v.round_dp(1)),
                difference_low_usd: base_diff(&lo_c),
                difference_high_usd: base_diff(&hi_c),
            }
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse((r.difference_high_usd - r.difference_low_usd).abs()));
    rows
}

/// A copy of `c` with one input scaled by `factor` (utilisation capped at 1, peak-to-average
/// floored at 1); returns the copy, the new value and the old one.
fn perturb(c: &TcoConfig, input: Input, factor: Decimal) -> (TcoConfig, Decimal, Decimal) {
    let mut c = c.clone();
    let scale = |v: &mut Decimal, lo: Decimal, hi: Decimal| {
        let old = *v;
        *v = mul(*v, factor).clamp(lo, hi);
        (*v, old)
    };
    let (zero, big) = (Decimal::ZERO, Decimal::MAX);
    let (new, old) = match input {
        Input::PromptTokens => scale(&mut c.traffic.input_tokens_per_request, zero, big),
        Input::OutputTokens => scale(&mut c.traffic.output_tokens_per_request, zero, big),
        Input::PeakToAverage => scale(&mut c.traffic.peak_to_average, Decimal::ONE, big),
        Input::ApiInputPrice => {
            // The cached price moves with the list price.
            let a = &mut c.api[0];
            a.cached_input_usd_per_million = mul(a.cached_input_usd_per_million, factor);
            scale(&mut a.input_usd_per_million, zero, big)
        }
        Input::ApiOutputPrice => scale(&mut c.api[0].output_usd_per_million, zero, big),
        Input::GpuCost => match &mut c.self_hosted[0].gpu_cost {
            GpuCost::Hourly { usd_per_hour } => scale(usd_per_hour, zero, big),
            GpuCost::Purchase { purchase_usd, .. } => scale(purchase_usd, zero, big),
        },
        Input::Throughput => scale(&mut c.self_hosted[0].output_tokens_per_second, Decimal::new(1, 6), big),
        Input::Utilisation => scale(&mut c.self_hosted[0].utilisation, Decimal::new(1, 6), Decimal::ONE),
        Input::Ops => scale(&mut c.self_hosted[0].ops_usd_per_month, zero, big),
    };
    (c, new, old)
}
