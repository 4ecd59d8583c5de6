//! `[pricing]` and `[[budget]]`: what requests cost and how much each tenant may spend.
//!
//! ```toml
//! [pricing]
//! file = "prices.json"                 # LiteLLM-format table merged over the built-in one
//! [pricing.models."azure/gpt-4o-mini"] # one key's price, LiteLLM field names, USD per token
//! input_cost_per_token = "1.65e-7"
//! output_cost_per_token = "6.6e-7"
//! [[pricing.self_hosted]]              # a self-hosted (or the embedded) backend, from GPU hours
//! backend = "vllm-onprem"
//! gpu_hourly_usd = "2.85"
//! gpus_per_replica = 1
//! replicas = 2
//! tokens_per_second = 6000             # the deployment's measured throughput, all replicas
//! utilisation = "0.6"
//! input_token_weight = "1"
//! [[budget]]
//! tenant = "acme"
//! monthly_usd = "100.00"
//! on_exhausted = "self_hosted_only"    # or "deny"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use perimeter_cost::{Amount, Budget, CostError, Decimal, Money, OnExhausted, Price, PriceTable, SelfHostedPrice};
use serde::Deserialize;

/// The validated `[pricing]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    /// A LiteLLM-format file merged over the built-in table (read by the server at start-up).
    pub file: Option<PathBuf>,
    /// `[pricing.models."KEY"]` entries, applied last.
    pub models: Vec<Price>,
    /// Self-hosted prices by backend name. A self-hosted or embedded backend not listed costs 0.
    pub self_hosted: BTreeMap<String, SelfHostedPrice>,
}

impl Pricing {
    /// The price table in force: built-in, then the file's text (`file_json`, which the caller
    /// read from `file`), then the `[pricing.models]` entries.
    pub fn table(&self, file_json: Option<&str>) -> Result<PriceTable, CostError> {
        let mut t = PriceTable::builtin();
        if let Some(json) = file_json {
            t.merge(PriceTable::parse_litellm(json)?);
        }
        for p in &self.models {
            t.insert(p.clone());
        }
        Ok(t)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPricing {
    file: Option<PathBuf>,
    models: Option<BTreeMap<String, RawModelPrice>>,
    self_hosted: Option<Vec<RawSelfHosted>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelPrice {
    input_cost_per_token: Option<Amount>,
    output_cost_per_token: Option<Amount>,
    cache_read_input_token_cost: Option<Amount>,
    source: Option<String>,
    as_of: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelfHosted {
    backend: Option<String>,
    gpu_hourly_usd: Option<Amount>,
    gpus_per_replica: Option<u32>,
    replicas: Option<u32>,
    tokens_per_second: Option<Amount>,
    utilisation: Option<Amount>,
    input_token_weight: Option<Amount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    tenant: Option<String>,
    monthly_usd: Option<Amount>,
    on_exhausted: Option<OnExhausted>,
}

/// (key, reason) like the rest of validation.
type Invalid = (String, String);

const MAX_PER_TOKEN: Decimal = Decimal::ONE;

pub(crate) fn validate_pricing(raw: Option<RawPricing>, backends: &BTreeSet<String>) -> Result<Pricing, Invalid> {
    let Some(raw) = raw else { return Ok(Pricing::default()) };
    let mut models = Vec::new();
    for (key, m) in raw.models.unwrap_or_default() {
        let k = |f: &str| format!("pricing.models.{key:?}.{f}");
        let per_token = |f: &str, v: Option<Amount>| -> Result<Option<Decimal>, Invalid> {
            match v.map(|a| a.0) {
                Some(d) if d.is_sign_negative() => Err((k(f), "must not be negative".into())),
                Some(d) if d > MAX_PER_TOKEN => {
                    Err((k(f), "is more than 1 USD per token (prices here are per token, not per million)".into()))
                }
                other => Ok(other),
            }
        };
        let input = per_token("input_cost_per_token", m.input_cost_per_token)?
            .ok_or_else(|| (k("input_cost_per_token"), "is required".to_string()))?;
        let output = per_token("output_cost_per_token", m.output_cost_per_token)?.unwrap_or(Decimal::ZERO);
        let mut p = Price::per_token(&key, input, output);
        p.cache_read_input_token_cost = per_token("cache_read_input_token_cost", m.cache_read_input_token_cost)?;
        p.source = Some(m.source.unwrap_or_else(|| "configuration".into()));
        p.as_of = m.as_of;
        models.push(p);
    }
    let mut self_hosted = BTreeMap::new();
    for (i, s) in raw.self_hosted.unwrap_or_default().into_iter().enumerate() {
        let k = |f: &str| format!("pricing.self_hosted[{i}].{f}");
        let backend = s.backend.ok_or_else(|| (k("backend"), "is required".to_string()))?;
        if !backends.contains(&backend) {
            return Err((k("backend"), format!("names {backend:?}, which is not a configured backend")));
        }
        let req = |f: &str, v: Option<Amount>| v.map(|a| a.0).ok_or_else(|| (k(f), "is required".to_string()));
        let price = SelfHostedPrice::new(
            req("gpu_hourly_usd", s.gpu_hourly_usd)?,
            s.gpus_per_replica.unwrap_or(1),
            s.replicas.unwrap_or(1),
            req("tokens_per_second", s.tokens_per_second)?,
            s.utilisation.map_or(Decimal::ONE, |a| a.0),
            s.input_token_weight.map_or(Decimal::ONE, |a| a.0),
        )
        .map_err(|e| match e {
            CostError::Invalid { field, reason } => (k(&field), reason),
            CostError::Parse { reason, .. } => (k("backend"), reason),
        })?;
        if self_hosted.insert(backend.clone(), price).is_some() {
            return Err((k("backend"), format!("{backend:?} is priced twice")));
        }
    }
    Ok(Pricing { file: raw.file, models, self_hosted })
}

pub(crate) fn validate_budgets(raw: Option<Vec<RawBudget>>) -> Result<Vec<Budget>, Invalid> {
    let mut out: Vec<Budget> = Vec::new();
    for (i, b) in raw.unwrap_or_default().into_iter().enumerate() {
        let k = |f: &str| format!("budget[{i}].{f}");
        let tenant = b.tenant.ok_or_else(|| (k("tenant"), "is required".to_string()))?;
        if out.iter().any(|o| o.tenant == tenant) {
            return Err((k("tenant"), format!("{tenant:?} already has a budget")));
        }
        let amount =
            b.monthly_usd.ok_or_else(|| (k("monthly_usd"), "is required (USD, e.g. \"100.00\")".to_string()))?.0;
        if amount.is_sign_negative() {
            return Err((k("monthly_usd"), "must not be negative".into()));
        }
        let on_exhausted = b.on_exhausted.ok_or_else(|| {
            (k("on_exhausted"), "is required: \"self_hosted_only\" (refuse API backends) or \"deny\"".to_string())
        })?;
        out.push(Budget { tenant, monthly_usd: Money::new(amount), on_exhausted });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pricing(text: &str) -> Result<Pricing, Invalid> {
        #[derive(Deserialize)]
        struct W {
            pricing: Option<RawPricing>,
        }
        let w: W = toml::from_str(text).unwrap();
        validate_pricing(w.pricing, &BTreeSet::from(["vllm".to_string()]))
    }

    fn budgets(text: &str) -> Result<Vec<Budget>, Invalid> {
        #[derive(Deserialize)]
        struct W {
            budget: Option<Vec<RawBudget>>,
        }
        validate_budgets(toml::from_str::<W>(text).unwrap().budget)
    }

    #[test]
    fn pricing_overrides_and_self_hosted() {
        let p = pricing(
            "[pricing]\nfile = \"p.json\"\n[pricing.models.\"azure/gpt-4o-mini\"]\ninput_cost_per_token = \"1.65e-7\"\noutput_cost_per_token = 6.6e-7\n\
             [[pricing.self_hosted]]\nbackend = \"vllm\"\ngpu_hourly_usd = \"2.5\"\nreplicas = 2\ntokens_per_second = 5000\nutilisation = \"0.5\"\n",
        )
        .unwrap();
        let t = p.table(Some(r#"{"my-model": {"input_cost_per_token": 1e-06}}"#)).unwrap();
        assert_eq!(t.lookup("azure_openai", "gpt-4o-mini").unwrap().input_cost_per_token.to_string(), "0.000000165");
        assert!(t.get("my-model").is_some() && t.get("gpt-4o").is_some());
        assert!(p.self_hosted["vllm"].cost_per_token() > Decimal::ZERO);
        assert!(p.table(Some("[")).is_err());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("[pricing.models.m]\noutput_cost_per_token = 1e-6\n", "pricing.models.\"m\".input_cost_per_token"),
            ("[pricing.models.m]\ninput_cost_per_token = 0.15e1\n", "pricing.models.\"m\".input_cost_per_token"),
            ("[[pricing.self_hosted]]\nbackend = \"nope\"\ngpu_hourly_usd = 1\ntokens_per_second = 1\n", "pricing.self_hosted[0].backend"),
            ("[[pricing.self_hosted]]\nbackend = \"vllm\"\ngpu_hourly_usd = 1\ntokens_per_second = 1\nutilisation = 2\n", "pricing.self_hosted[0].utilisation"),
            ("[[pricing.self_hosted]]\nbackend = \"vllm\"\ngpu_hourly_usd = 1\n", "pricing.self_hosted[0].tokens_per_second"),
        ] {
            assert_eq!(pricing(text).unwrap_err().0, key, "{text}");
        }
        for (text, key) in [
            ("[[budget]]\ntenant = \"a\"\nmonthly_usd = \"-1\"\non_exhausted = \"deny\"\n", "budget[0].monthly_usd"),
            ("[[budget]]\ntenant = \"a\"\nmonthly_usd = \"1\"\n", "budget[0].on_exhausted"),
            ("[[budget]]\ntenant = \"a\"\nmonthly_usd = 1\non_exhausted = \"deny\"\n[[budget]]\ntenant = \"a\"\nmonthly_usd = 1\non_exhausted = \"deny\"\n", "budget[1].tenant"),
        ] {
            assert_eq!(budgets(text).unwrap_err().0, key, "{text}");
        }
        let b = budgets("[[budget]]\ntenant = \"a\"\nmonthly_usd = \"100.00\"\non_exhausted = \"self_hosted_only\"\n")
            .unwrap();
        assert_eq!(b[0].monthly_usd, Money::parse("100").unwrap());
        assert_eq!(b[0].on_exhausted, OnExhausted::SelfHostedOnly);
    }
}
