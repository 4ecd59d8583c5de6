//! Prices: the table in LiteLLM's shape (`model_prices_and_context_window.json`), the lookup of
//! a backend's (provider, model) in it, per-request cost from usage, and self-hosted prices from
//! GPU hours and measured throughput.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::money::{decimal_from_f64, div, mul, parse_decimal, Money};
use crate::CostError;

/// The table shipped with Perimeter (sources and dates in its `_sources` entry).
const BUILTIN: &str = include_str!("../data/pricing.json");

/// Token counts of one request, as the provider reported them.
///
/// `input_tokens` counts every prompt token, cached ones included (OpenAI's `prompt_tokens`).
/// Anthropic and Bedrock report cache reads separately: pass `input_tokens + cache_read_input_tokens`
/// there and the cache reads again in `cached_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

/// The price of one model, per token, in LiteLLM's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Price {
    /// The table key (`gpt-4o-mini`, `azure/gpt-4o`, `bedrock/…`).
    pub key: String,
    pub litellm_provider: Option<String>,
    pub mode: Option<String>,
    pub input_cost_per_token: Decimal,
    pub output_cost_per_token: Decimal,
    /// Price of a prompt token read from the provider's cache; `None`: the input price.
    pub cache_read_input_token_cost: Option<Decimal>,
    /// Price of a prompt token written to the cache (not applied: usage does not carry it).
    pub cache_creation_input_token_cost: Option<Decimal>,
    pub input_cost_per_token_batches: Option<Decimal>,
    pub output_cost_per_token_batches: Option<Decimal>,
    /// Where the figure comes from, and the date it was read (`as_of`, YYYY-MM-DD).
    pub source: Option<String>,
    pub as_of: Option<String>,
}

impl Price {
    /// The cost of one request: uncached input × input price + cached input × cache-read price
    /// + output × output price. Cached tokens beyond the input count are ignored.
    pub fn cost(&self, usage: &Usage) -> Money {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let cache_price = self.cache_read_input_token_cost.unwrap_or(self.input_cost_per_token);
        let total = mul(Decimal::from(uncached), self.input_cost_per_token)
            .saturating_add(mul(Decimal::from(cached), cache_price))
            .saturating_add(mul(Decimal::from(usage.output_tokens), self.output_cost_per_token));
        Money::new(total)
    }

    /// A price with only the per-token fields, for tests and configuration overrides.
    pub fn per_token(key: &str, input: Decimal, output: Decimal) -> Price {
        Price {
            key: key.to_string(),
            litellm_provider: None,
            mode: None,
            input_cost_per_token: input,
            output_cost_per_token: output,
            cache_read_input_token_cost: None,
            cache_creation_input_token_cost: None,
            input_cost_per_token_batches: None,
            output_cost_per_token_batches: None,
            source: None,
            as_of: None,
        }
    }
}

/// Prices by LiteLLM key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriceTable {
    entries: BTreeMap<String, Price>,
    /// The `_sources` notes of every file merged in.
    sources: Vec<String>,
}

/// A price per token above this is refused as a unit mistake (per million written per token).
const MAX_PER_TOKEN: Decimal = Decimal::from_parts(1, 0, 0, false, 0);

impl PriceTable {
    /// The table shipped with Perimeter.
    pub fn builtin() -> PriceTable {
        #[expect(clippy::expect_used, reason = "the shipped table is valid; a unit test parses it")]
        PriceTable::parse_litellm(BUILTIN).expect("the built-in pricing table is valid")
    }

    /// Parses a table in LiteLLM's shape: `{"key": {"input_cost_per_token": 1.5e-07, …}}`.
    /// LiteLLM fields Perimeter does not use are ignored, so their whole file can be dropped in;
    /// `sample_spec` and keys starting with `_` are metadata (`_sources`: a list of notes). An
    /// entry without `input_cost_per_token` (images, audio, per-second pricing) is skipped.
    /// A cost that is not a non-negative number of at most 1 USD per token is refused, naming
    /// the key and field.
    pub fn parse_litellm(json: &str) -> Result<PriceTable, CostError> {
        let root: Value = serde_json::from_str(json)
            .map_err(|e| CostError::Parse { what: "pricing table".into(), reason: e.to_string() })?;
        let Value::Object(map) = root else {
            return Err(CostError::Parse { what: "pricing table".into(), reason: "must be a JSON object".into() });
        };
        let mut table = PriceTable::default();
        for (key, entry) in map {
            if key == "sample_spec" {
                continue;
            }
            if key.starts_with('_') {
                if key == "_sources" {
                    if let Value::Array(notes) = &entry {
                        table.sources.extend(notes.iter().map(|n| match n {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }));
                    }
                }
                continue;
            }
            let Value::Object(fields) = &entry else {
                return Err(invalid(&key, None, "must be an object"));
            };
            let cost = |field: &str| -> Result<Option<Decimal>, CostError> {
                match fields.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => {
                        let d = match v {
                            Value::Number(n) => match (n.as_u64(), n.as_f64()) {
                                (Some(u), _) => Some(Decimal::from(u)),
                                (None, Some(f)) => decimal_from_f64(f),
                                _ => None,
                            },
                            Value::String(s) => parse_decimal(s),
                            _ => None,
                        };
                        match d {
                            Some(d) if d.is_sign_negative() => Err(invalid(&key, Some(field), "must not be negative")),
                            Some(d) if d > MAX_PER_TOKEN => Err(invalid(
                                &key,
                                Some(field),
                                "is more than 1 USD per token (is it a price per million tokens?)",
                            )),
                            Some(d) => Ok(Some(d)),
                            None => Err(invalid(&key, Some(field), "must be a number")),
                        }
                    }
                }
            };
            let text = |field: &str| fields.get(field).and_then(Value::as_str).map(str::to_string);
            let Some(input) = cost("input_cost_per_token")? else { continue };
            let price = Price {
                key: key.clone(),
                litellm_provider: text("litellm_provider"),
                mode: text("mode"),
                input_cost_per_token: input,
                output_cost_per_token: cost("output_cost_per_token")?.unwrap_or(Decimal::ZERO),
                cache_read_input_token_cost: cost("cache_read_input_token_cost")?,
                cache_creation_input_token_cost: cost("cache_creation_input_token_cost")?,
                input_cost_per_token_batches: cost("input_cost_per_token_batches")?,
                output_cost_per_token_batches: cost("output_cost_per_token_batches")?,
                source: text("source"),
                as_of: text("as_of"),
            };
            table.entries.insert(key, price);
        }
        Ok(table)
    }

    /// Adds `other` over this table: its entries replace those with the same key.
    pub fn merge(&mut self, other: PriceTable) {
        self.entries.extend(other.entries);
        self.sources.extend(other.sources);
    }

    /// Adds or replaces one price.
    pub fn insert(&mut self, price: Price) {
        self.entries.insert(price.key.clone(), price);
    }

    /// The price under exactly this key.
    pub fn get(&self, key: &str) -> Option<&Price> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn iter(&self) -> impl Iterator<Item = &Price> {
        self.entries.values()
    }

    /// The price of a backend's model: the first of [`candidate_keys`] present in the table.
    /// `provider` is the configuration's provider name (`openai`, `azure_openai`, `bedrock`,
    /// `anthropic`, `openai_compatible`, `embedded`).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&Price> {
        candidate_keys(provider, model).iter().find_map(|k| self.entries.get(k))
    }
}

/// The table keys tried, in order, for a backend's (provider, model):
///
/// - `openai`: `MODEL`, `openai/MODEL`
/// - `azure_openai`: `azure/MODEL`, then `MODEL` (a global deployment costs the OpenAI list price)
/// - `anthropic`: `MODEL`, `anthropic/MODEL`
/// - `bedrock`: `MODEL`, `bedrock/MODEL`, then without a cross-region inference prefix
///   (`us.`, `eu.`, `apac.`, `global.`: AWS charges the source region's on-demand price)
/// - `openai_compatible`: `MODEL` (an API behind a compatible endpoint; self-hosted ones are
///   priced from GPU hours instead)
/// - `embedded`: none (it costs nothing unless a self-hosted price is configured for it)
pub fn candidate_keys(provider: &str, model: &str) -> Vec<String> {
    match provider {
        "openai" => vec![model.to_string(), format!("openai/{model}")],
        "azure_openai" => vec![format!("azure/{model}"), model.to_string()],
        "anthropic" => vec![model.to_string(), format!("anthropic/{model}")],
        "bedrock" => {
            let mut keys = vec![model.to_string(), format!("bedrock/{model}")];
            for prefix in ["us.", "eu.", "apac.", "global."] {
                if let Some(rest) = model.strip_prefix(prefix) {
                    keys.push(rest.to_string());
                    keys.push(format!("bedrock/{rest}"));
                }
            }
            keys
        }
        "embedded" => Vec::new(),
        "openai_compatible" => vec![model.to_string()],
        other => vec![format!("{other}/{model}"), model.to_string()],
    }
}

/// A self-hosted backend's price, from what the deployment costs and what it was measured to do.
///
/// cost per token = `gpu_hourly_usd × gpus_per_replica × replicas ÷ (tokens_per_second × 3600 ×
/// utilisation)`, where `tokens_per_second` is the whole deployment's measured throughput
/// (all replicas) and `utilisation` the share of the hours it does useful work. A request's
/// counted tokens are `output + input × input_token_weight` (1 when the throughput was
/// measured as total tokens; lower when it was measured as output tokens and prefill is
/// cheaper). Cached input counts as input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelfHostedPrice {
    gpu_hourly_usd: Decimal,
    gpus_per_replica: u32,
    replicas: u32,
    tokens_per_second: Decimal,
    utilisation: Decimal,
    input_token_weight: Decimal,
    per_token: Decimal,
}

impl SelfHostedPrice {
    /// Validates the inputs; errors name the field.
    pub fn new(
        gpu_hourly_usd: Decimal,
        gpus_per_replica: u32,
        replicas: u32,
        tokens_per_second: Decimal,
        utilisation: Decimal,
        input_token_weight: Decimal,
    ) -> Result<SelfHostedPrice, CostError> {
        let bad = |field: &str, reason: &str| CostError::Invalid { field: field.into(), reason: reason.into() };
        if gpu_hourly_usd.is_sign_negative() {
            return Err(bad("gpu_hourly_usd", "must not be negative"));
        }
        if gpus_per_replica == 0 {
            return Err(bad("gpus_per_replica", "must be at least 1"));
        }
        if replicas == 0 {
            return Err(bad("replicas", "must be at least 1"));
        }
        if tokens_per_second <= Decimal::ZERO {
            return Err(bad("tokens_per_second", "must be more than 0"));
        }
        if utilisation <= Decimal::ZERO || utilisation > Decimal::ONE {
            return Err(bad("utilisation", "must be more than 0 and at most 1"));
        }
        if input_token_weight.is_sign_negative() || input_token_weight > Decimal::ONE {
            return Err(bad("input_token_weight", "must be between 0 and 1"));
        }
        let hourly = mul(mul(gpu_hourly_usd, Decimal::from(gpus_per_replica)), Decimal::from(replicas));
        let tokens_per_hour = mul(mul(tokens_per_second, Decimal::from(3600)), utilisation);
        let per_token = div(hourly, tokens_per_hour).ok_or_else(|| bad("tokens_per_second", "is too large"))?;
        Ok(SelfHostedPrice {
            gpu_hourly_usd,
            gpus_per_replica,
            replicas,
            tokens_per_second,
            utilisation,
            input_token_weight,
            per_token,
        })
    }

    /// USD per counted token.
    pub fn cost_per_token(&self) -> Decimal {
        self.per_token
    }

    pub fn cost(&self, usage: &Usage) -> Money {
        let counted = Decimal::from(usage.output_tokens)
            .saturating_add(mul(Decimal::from(usage.input_tokens), self.input_token_weight));
        Money::new(mul(counted, self.per_token))
    }
}

fn invalid(key: &str, field: Option<&str>, reason: &str) -> CostError {
    let field = match field {
        Some(f) => format!("{key}.{f}"),
        None => key.to_string(),
    };
    CostError::Invalid { field, reason: reason.into() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_builtin_table_parses_and_covers_the_four_api_providers() {
        let t = PriceTable::builtin();
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("openai", "gpt-4.1"),
            ("openai", "gpt-4.1-mini"),
            ("openai", "gpt-4.1-nano"),
            ("openai", "text-embedding-3-small"),
            ("openai", "text-embedding-3-large"),
            ("anthropic", "claude-sonnet-4-5"),
            ("anthropic", "claude-haiku-4-5"),
            ("anthropic", "claude-sonnet-5"),
            ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
            ("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            ("bedrock", "amazon.titan-embed-text-v2:0"),
            ("bedrock", "cohere.embed-english-v3"),
            ("azure_openai", "gpt-4o"),
            ("azure_openai", "gpt-4o-mini"),
            ("azure_openai", "gpt-4.1-mini"),
        ] {
            let p = t.lookup(provider, model).unwrap_or_else(|| panic!("{provider} {model} not priced"));
            assert!(p.source.is_some() && p.as_of.is_some(), "{} has no source or date", p.key);
        }
        assert!(!t.sources().is_empty());
        let mini = t.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(mini.input_cost_per_token, d("0.00000015"));
        assert_eq!(mini.output_cost_per_token, d("0.0000006"));
        assert_eq!(mini.cache_read_input_token_cost, Some(d("0.000000075")));
        assert!(t.lookup("embedded", "smollm2-135m-instruct").is_none());
        assert!(t.lookup("anthropic", "gpt-4o-mini-nonexistent").is_none());
    }

    #[test]
    fn cost_of_a_request_is_exact() {
        let t = PriceTable::builtin();
        let mini = t.lookup("openai", "gpt-4o-mini").unwrap();
        // 1,000,000 input (200,000 of them cached) and 500,000 output tokens:
        // 800,000 × 0.00000015 = 0.12; 200,000 × 0.000000075 = 0.015; 500,000 × 0.0000006 = 0.30.
        let u = Usage { input_tokens: 1_000_000, output_tokens: 500_000, cached_input_tokens: 200_000 };
        assert_eq!(mini.cost(&u), Money::new(d("0.435")));
        // Cached beyond input is clamped; no cache price means the input price.
        let p = Price::per_token("x", d("0.000001"), d("0.000002"));
        let u = Usage { input_tokens: 10, output_tokens: 5, cached_input_tokens: 99 };
        assert_eq!(p.cost(&u), Money::new(d("0.00002")));
        assert!(
            p.cost(&Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, cached_input_tokens: 0 }).amount()
                > Decimal::ZERO
        );
    }

    #[test]
    fn litellm_files_drop_in_and_bad_entries_name_the_field() {
        let json = r#"{
            "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0},
            "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                      "output_cost_per_token": 2e-06, "supports_vision": true, "max_tokens": 4096,
                      "input_cost_per_token_above_200k_tokens": 2e-06, "tiered_pricing": [{"range": [0, 1]}]},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_pixel": 1e-08}
        }"#;
        let t = PriceTable::parse_litellm(json).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("gpt-x").unwrap().output_cost_per_token, d("0.000002"));

        for (json, field) in [
            (r#"{"m": {"input_cost_per_token": -1e-06}}"#, "m.input_cost_per_token"),
            (r#"{"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": "cheap"}}"#, "m.output_cost_per_token"),
            (r#"{"m": {"input_cost_per_token": 0.15}}"#, ""),
            (r#"{"m": {"input_cost_per_token": 2.5}}"#, "m.input_cost_per_token"),
            (r#"{"m": 3}"#, "m"),
        ] {
            match PriceTable::parse_litellm(json) {
                Err(CostError::Invalid { field: f, .. }) => assert_eq!(f, field, "{json}"),
                Ok(_) if field.is_empty() => {}
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(matches!(PriceTable::parse_litellm("[1]"), Err(CostError::Parse { .. })));
        assert!(matches!(PriceTable::parse_litellm("{"), Err(CostError::Parse { .. })));
    }

    #[test]
    fn merge_overrides_and_lookup_order() {
        let mut t = PriceTable::builtin();
        let over = PriceTable::parse_litellm(
            r#"{"azure/gpt-4o-mini": {"input_cost_per_token": 1.65e-07, "output_cost_per_token": 6.6e-07}}"#,
        )
        .unwrap();
        t.merge(over);
        assert_eq!(t.lookup("azure_openai", "gpt-4o-mini").unwrap().input_cost_per_token, d("0.000000165"));
        assert_eq!(t.lookup("openai", "gpt-4o-mini").unwrap().input_cost_per_token, d("0.00000015"));
        assert_eq!(candidate_keys("bedrock", "eu.x")[2], "x");
    }

    #[test]
    fn self_hosted_price_follows_the_formula() {
        // 2.50 USD/h × 1 GPU × 2 replicas ÷ (5000 tokens/s × 3600 × 0.5) = 5 / 9,000,000 USD per token.
        let p = SelfHostedPrice::new(d("2.50"), 1, 2, d("5000"), d("0.5"), Decimal::ONE).unwrap();
        let u = Usage { input_tokens: 6_000_000, output_tokens: 3_000_000, cached_input_tokens: 0 };
        // 9,000,000 tokens × 5/9,000,000 = 5.00 USD.
        assert_eq!(p.cost(&u).round_dp(10), Money::new(d("5")));
        let p = SelfHostedPrice::new(d("2.50"), 1, 2, d("5000"), d("0.5"), Decimal::ZERO).unwrap();
        assert_eq!(p.cost(&u).round_dp(10), Money::new(d("1.6666666667")));
        for (args, field) in [
            ((d("1"), 0, 1, d("1"), d("1"), d("1")), "gpus_per_replica"),
            ((d("1"), 1, 0, d("1"), d("1"), d("1")), "replicas"),
            ((d("1"), 1, 1, d("0"), d("1"), d("1")), "tokens_per_second"),
            ((d("1"), 1, 1, d("1"), d("1.2"), d("1")), "utilisation"),
            ((d("-1"), 1, 1, d("1"), d("1"), d("1")), "gpu_hourly_usd"),
            ((d("1"), 1, 1, d("1"), d("1"), d("2")), "input_token_weight"),
        ] {
            match SelfHostedPrice::new(args.0, args.1, args.2, args.3, args.4, args.5) {
                Err(CostError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
