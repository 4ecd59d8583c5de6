//! The TCO planner's input: TOML parsed into raw structs (`deny_unknown_fields`), then validated
//! into a `TcoConfig` whose errors name the field (`self_hosted[0].utilisation`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Amount;
use crate::pricing::PriceTable;
use crate::CostError;

/// A validated plan input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcoConfig {
    pub horizon_months: u32,
    pub traffic: Traffic,
    pub range: VolumeRange,
    /// Each sensitivity input is moved down and up by this share (0.25: ±25 %).
    pub sensitivity_delta: Decimal,
    pub api: Vec<ApiOption>,
    pub self_hosted: Vec<SelfHostedOption>,
}

/// `[traffic]`: today's traffic and how it grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub requests_per_day: Decimal,
    /// Prompt tokens per request, retrieved context included.
    pub input_tokens_per_request: Decimal,
    pub output_tokens_per_request: Decimal,
    /// Busiest hour's request rate ÷ the average rate (capacity is sized for the peak).
    pub peak_to_average: Decimal,
    /// Growth per month as a share (0.05: +5 % a month, compounded).
    pub monthly_growth: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Log,
    Linear,
}

/// `[range]`: the volumes (requests per day) the table and chart cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeRange {
    pub min_requests_per_day: Decimal,
    pub max_requests_per_day: Decimal,
    pub steps: u32,
    pub scale: Scale,
}

/// `[[api]]`: a per-token API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiOption {
    pub name: String,
    pub input_usd_per_million: Decimal,
    pub output_usd_per_million: Decimal,
    /// Cache-read price; the input price when not given.
    pub cached_input_usd_per_million: Decimal,
    /// Share of prompt tokens served from the provider's prompt cache.
    pub cached_input_fraction: Decimal,
    /// Surcharge for a regional or data-residency endpoint (0.10: +10 %).
    pub regional_premium: Decimal,
    /// Discount of the provider's batch API (0.5: half price).
    pub batch_discount: Decimal,
    /// Share of traffic that can wait for the batch API.
    pub batch_fraction: Decimal,
    pub source: Option<String>,
}

/// What one GPU costs per month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GpuCost {
    /// Rented by the hour (on-demand or reserved rate).
    Hourly { usd_per_hour: Decimal },
    /// Bought: straight-line depreciation, plus power (kW × PUE × hours × price) and hosting.
    Purchase {
        purchase_usd: Decimal,
        depreciation_months: u32,
        power_kw: Decimal,
        pue: Decimal,
        electricity_usd_per_kwh: Decimal,
        hosting_usd_per_month: Decimal,
    },
}

/// `[[self_hosted]]`: a model served on GPUs the organisation runs or rents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelfHostedOption {
    pub name: String,
    pub gpu: String,
    pub gpus_per_replica: u32,
    pub gpu_cost: GpuCost,
    /// Output tokens per second one replica sustains at the latency target, measured with
    /// prompts shaped like the traffic (e.g. vLLM's serving benchmark at these input/output
    /// lengths), so prefill is already inside the figure.
    pub output_tokens_per_second: Decimal,
    /// The share of that throughput planned for at peak (headroom for bursts).
    pub utilisation: Decimal,
    /// Spare replicas beyond those the peak needs (1: N+1).
    pub redundancy: u32,
    /// Operations staff cost attributed to this deployment.
    pub ops_usd_per_month: Decimal,
    /// Supporting infrastructure: load balancer, monitoring, storage, network.
    pub infra_usd_per_month: Decimal,
    pub source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTco {
    horizon_months: Option<u32>,
    traffic: Option<RawTraffic>,
    range: Option<RawRange>,
    sensitivity: Option<RawSensitivity>,
    api: Option<Vec<RawApi>>,
    self_hosted: Option<Vec<RawSelfHosted>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    requests_per_day: Option<Amount>,
    input_tokens_per_request: Option<Amount>,
    output_tokens_per_request: Option<Amount>,
    peak_to_average: Option<Amount>,
    monthly_growth: Option<Amount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    min_requests_per_day: Option<Amount>,
    max_requests_per_day: Option<Amount>,
    steps: Option<u32>,
    scale: Option<Scale>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensitivity {
    delta: Option<Amount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    name: Option<String>,
    /// Fill the prices from the built-in table: `provider` (default `openai`) and `model`.
    provider: Option<String>,
    model: Option<String>,
    input_usd_per_million: Option<Amount>,
    output_usd_per_million: Option<Amount>,
    cached_input_usd_per_million: Option<Amount>,
    cached_input_fraction: Option<Amount>,
    regional_premium: Option<Amount>,
    batch_discount: Option<Amount>,
    batch_fraction: Option<Amount>,
    source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelfHosted {
    name: Option<String>,
    gpu: Option<String>,
    gpus_per_replica: Option<u32>,
    gpu_hourly_usd: Option<Amount>,
    purchase_usd: Option<Amount>,
    depreciation_months: Option<u32>,
    power_kw: Option<Amount>,
    pue: Option<Amount>,
    electricity_usd_per_kwh: Option<Amount>,
    hosting_usd_per_month: Option<Amount>,
    output_tokens_per_second: Option<Amount>,
    utilisation: Option<Amount>,
    redundancy: Option<u32>,
    ops_usd_per_month: Option<Amount>,
    infra_usd_per_month: Option<Amount>,
    source: Option<String>,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> CostError {
    CostError::Invalid { field: field.into(), reason: reason.into() }
}

fn d(v: Option<Amount>) -> Option<Decimal> {
    v.map(|a| a.0)
}

/// `v` within `[lo, hi]`, or an error naming `field`.
fn within(field: &str, v: Decimal, lo: Decimal, hi: Decimal) -> Result<Decimal, CostError> {
    if v < lo || v > hi {
        return Err(bad(field, format!("must be between {lo} and {hi}")));
    }
    Ok(v)
}

fn positive(field: &str, v: Option<Decimal>) -> Result<Decimal, CostError> {
    match v {
        None => Err(bad(field, "is required")),
        Some(v) if v <= Decimal::ZERO => Err(bad(field, "must be more than 0")),
        Some(v) => Ok(v),
    }
}

fn non_negative(field: &str, v: Option<Decimal>, default: Decimal) -> Result<Decimal, CostError> {
    let v = v.unwrap_or(default);
    if v.is_sign_negative() {
        return Err(bad(field, "must not be negative"));
    }
    Ok(v)
}

fn share(field: &str, v: Option<Decimal>, default: Decimal) -> Result<Decimal, CostError> {
    within(field, v.unwrap_or(default), Decimal::ZERO, Decimal::ONE)
}

const MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

impl TcoConfig {
    /// Parses and validates a TOML plan.
    pub fn parse(text: &str) -> Result<TcoConfig, CostError> {
        let raw: RawTco = toml::from_str(text)
            .map_err(|e| CostError::Parse { what: "TCO configuration".into(), reason: e.to_string() })?;
        raw.validate()
    }
}

impl RawTco {
    fn validate(self) -> Result<TcoConfig, CostError> {
        let horizon_months = self.horizon_months.unwrap_or(36);
        if !(1..=120).contains(&horizon_months) {
            return Err(bad("horizon_months", "must be between 1 and 120"));
        }
        let t = self.traffic.ok_or_else(|| bad("traffic", "is required (or derive it with --from-audit)"))?;
        let traffic = Traffic {
            requests_per_day: positive("traffic.requests_per_day", d(t.requests_per_day))?,
            input_tokens_per_request: non_negative(
                "traffic.input_tokens_per_request",
                d(t.input_tokens_per_request),
                Decimal::ZERO,
            )
            .and_then(|v| {
                if t.input_tokens_per_request.is_none() {
                    Err(bad("traffic.input_tokens_per_request", "is required"))
                } else {
                    Ok(v)
                }
            })?,
            output_tokens_per_request: positive("traffic.output_tokens_per_request", d(t.output_tokens_per_request))?,
            peak_to_average: within(
                "traffic.peak_to_average",
                d(t.peak_to_average).unwrap_or(Decimal::ONE),
                Decimal::ONE,
                Decimal::from(1000),
            )?,
            monthly_growth: within(
                "traffic.monthly_growth",
                d(t.monthly_growth).unwrap_or(Decimal::ZERO),
                Decimal::new(-5, 1),
                Decimal::from(10),
            )?,
        };
        let r = self.range.unwrap_or_default();
        let min = positive("range.min_requests_per_day", d(r.min_requests_per_day).or(Some(Decimal::from(100))))?;
        let max = d(r.max_requests_per_day).unwrap_or(Decimal::from(10_000_000));
        if max <= min {
            return Err(bad("range.max_requests_per_day", "must be more than range.min_requests_per_day"));
        }
        if max > Decimal::from(1_000_000_000_000u64) {
            return Err(bad("range.max_requests_per_day", "must be at most 1e12"));
        }
        let steps = r.steps.unwrap_or(25);
        if !(2..=1000).contains(&steps) {
            return Err(bad("range.steps", "must be between 2 and 1000"));
        }
        let range = VolumeRange {
            min_requests_per_day: min,
            max_requests_per_day: max,
            steps,
            scale: r.scale.unwrap_or(Scale::Log),
        };
        let sensitivity_delta = within(
            "sensitivity.delta",
            d(self.sensitivity.and_then(|s| s.delta)).unwrap_or(Decimal::new(25, 2)),
            Decimal::new(1, 2),
            Decimal::new(9, 1),
        )?;

        let mut api = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        let table = PriceTable::builtin();
        for (i, a) in self.api.unwrap_or_default().into_iter().enumerate() {
            let key = |k: &str| format!("api[{i}].{k}");
            let listed = match &a.model {
                Some(m) => {
                    let provider = a.provider.as_deref().unwrap_or("openai");
                    Some(table.lookup(provider, m).ok_or_else(|| {
                        bad(key("model"), format!("{m:?} is not in the built-in price table for provider {provider:?}; give input_usd_per_million and output_usd_per_million"))
                    })?)
                }
                None => None,
            };
            let per_million = |v: Decimal| v.checked_mul(MILLION).unwrap_or(Decimal::MAX);
            let input = d(a.input_usd_per_million).or(listed.map(|p| per_million(p.input_cost_per_token)));
            let output = d(a.output_usd_per_million).or(listed.map(|p| per_million(p.output_cost_per_token)));
            let input = non_negative(&key("input_usd_per_million"), input, Decimal::ZERO).and_then(|v| {
                if input.is_none() {
                    Err(bad(key("input_usd_per_million"), "is required (or name a `model` from the built-in table)"))
                } else {
                    Ok(v)
                }
            })?;
            let output = non_negative(&key("output_usd_per_million"), output, Decimal::ZERO).and_then(|v| {
                if output.is_none() {
                    Err(bad(key("output_usd_per_million"), "is required (or name a `model` from the built-in table)"))
                } else {
                    Ok(v)
                }
            })?;
            let cached = d(a.cached_input_usd_per_million)
                .or(listed.and_then(|p| p.cache_read_input_token_cost).map(per_million))
                .unwrap_or(input);
            let cached = non_negative(&key("cached_input_usd_per_million"), Some(cached), input)?;
            if input.is_zero() && output.is_zero() {
                return Err(bad(key("output_usd_per_million"), "an API that costs nothing needs no plan"));
            }
            let name = a.name.or(a.model).ok_or_else(|| bad(key("name"), "is required"))?;
            if !names.insert(name.clone()) {
                return Err(bad(key("name"), format!("{name:?} is used by another option")));
            }
            let source = a.source.or_else(|| {
                listed.and_then(|p| {
                    p.source
                        .as_ref()
                        .map(|s| format!("{s} (built-in table, {})", p.as_of.as_deref().unwrap_or("undated")))
                })
            });
            api.push(ApiOption {
                name,
                input_usd_per_million: input,
                output_usd_per_million: output,
                cached_input_usd_per_million: cached,
                cached_input_fraction: share(&key("cached_input_fraction"), d(a.cached_input_fraction), Decimal::ZERO)?,
                regional_premium: within(
                    &key("regional_premium"),
                    d(a.regional_premium).unwrap_or(Decimal::ZERO),
                    Decimal::ZERO,
                    Decimal::from(10),
                )?,
                batch_discount: share(&key("batch_discount"), d(a.batch_discount), Decimal::ZERO)?,
                batch_fraction: share(&key("batch_fraction"), d(a.batch_fraction), Decimal::ZERO)?,
                source,
            });
        }

        let mut self_hosted = Vec::new();
        for (i, s) in self.self_hosted.unwrap_or_default().into_iter().enumerate() {
            let key = |k: &str| format!("self_hosted[{i}].{k}");
            let name = s.name.ok_or_else(|| bad(key("name"), "is required"))?;
            if !names.insert(name.clone()) {
                return Err(bad(key("name"), format!("{name:?} is used by another option")));
            }
            let gpus_per_replica = s.gpus_per_replica.unwrap_or(1);
            if !(1..=64).contains(&gpus_per_replica) {
                return Err(bad(key("gpus_per_replica"), "must be between 1 and 64"));
            }
            let gpu_cost = match (d(s.gpu_hourly_usd), d(s.purchase_usd)) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        key("purchase_usd"),
                        "give either gpu_hourly_usd (rented) or purchase_usd (bought), not both",
                    ))
                }
                (None, None) => {
                    return Err(bad(key("gpu_hourly_usd"), "is required (or purchase_usd for bought GPUs)"))
                }
                (Some(h), None) => {
                    for (set, f) in [
                        (s.depreciation_months.is_some(), "depreciation_months"),
                        (s.power_kw.is_some(), "power_kw"),
                        (s.pue.is_some(), "pue"),
                        (s.electricity_usd_per_kwh.is_some(), "electricity_usd_per_kwh"),
                        (s.hosting_usd_per_month.is_some(), "hosting_usd_per_month"),
                    ] {
                        if set {
                            return Err(bad(
                                key(f),
                                "only applies with purchase_usd (a rented GPU's hourly rate includes it)",
                            ));
                        }
                    }
                    GpuCost::Hourly { usd_per_hour: positive(&key("gpu_hourly_usd"), Some(h))? }
                }
                (None, Some(p)) => {
                    let depreciation_months = s.depreciation_months.unwrap_or(36);
                    if !(1..=120).contains(&depreciation_months) {
                        return Err(bad(key("depreciation_months"), "must be between 1 and 120"));
                    }
                    GpuCost::Purchase {
                        purchase_usd: positive(&key("purchase_usd"), Some(p))?,
                        depreciation_months,
                        power_kw: within(
                            &key("power_kw"),
                            d(s.power_kw).unwrap_or(Decimal::ZERO),
                            Decimal::ZERO,
                            Decimal::from(100),
                        )?,
                        pue: within(&key("pue"), d(s.pue).unwrap_or(Decimal::ONE), Decimal::ONE, Decimal::from(5))?,
                        electricity_usd_per_kwh: within(
                            &key("electricity_usd_per_kwh"),
                            d(s.electricity_usd_per_kwh).unwrap_or(Decimal::ZERO),
                            Decimal::ZERO,
                            Decimal::from(10),
                        )?,
                        hosting_usd_per_month: non_negative(
                            &key("hosting_usd_per_month"),
                            d(s.hosting_usd_per_month),
                            Decimal::ZERO,
                        )?,
                    }
                }
            };
            let utilisation = d(s.utilisation).unwrap_or(Decimal::new(6, 1));
            if utilisation <= Decimal::ZERO || utilisation > Decimal::ONE {
                return Err(bad(key("utilisation"), "must be more than 0 and at most 1"));
            }
            let redundancy = s.redundancy.unwrap_or(1);
            if redundancy > 100 {
                return Err(bad(key("redundancy"), "must be at most 100"));
            }
            self_hosted.push(SelfHostedOption {
                name,
                gpu: s.gpu.ok_or_else(|| bad(key("gpu"), "is required (e.g. \"H100 80GB\")"))?,
                gpus_per_replica,
                gpu_cost,
                output_tokens_per_second: positive(&key("output_tokens_per_second"), d(s.output_tokens_per_second))?,
                utilisation,
                redundancy,
                ops_usd_per_month: non_negative(&key("ops_usd_per_month"), d(s.ops_usd_per_month), Decimal::ZERO)?,
                infra_usd_per_month: non_negative(
                    &key("infra_usd_per_month"),
                    d(s.infra_usd_per_month),
                    Decimal::ZERO,
                )?,
                source: s.source,
            });
        }
        if api.is_empty() && self_hosted.is_empty() {
            return Err(bad("api", "at least one [[api]] or [[self_hosted]] option is required"));
        }
        Ok(TcoConfig { horizon_months, traffic, range, sensitivity_delta, api, self_hosted })
    }
}
