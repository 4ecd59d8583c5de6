//! Metering at run time: each backend's price (from the pricing table, the operator's file and
//! `[pricing]`), the cost of one request from its actual usage, this month's spend per tenant
//! (seeded from the audit log's completion records at start-up), and the budget states the
//! policy decides with. The arithmetic is `perimeter_cost`'s (decimal, never floats).

use std::collections::BTreeMap;
use std::sync::Mutex;

use perimeter_config::Config;
use perimeter_cost::{Budget, Money, Price, SelfHostedPrice, Usage};
use perimeter_policy::{Budgets, Hosting};

/// How one backend is priced.
#[derive(Debug, Clone)]
enum Rate {
    /// Per token, from the table.
    Api(Price),
    /// GPU time shared over measured throughput (`[[pricing.self_hosted]]`).
    SelfHosted(SelfHostedPrice),
    /// Self-hosted or embedded without a configured price.
    Free,
    /// An API backend whose model is not in the table: its cost is unknown, never zero.
    Unknown,
}

pub struct Meter {
    rates: Vec<Rate>,
    budgets: Vec<Budget>,
    /// Spend by (tenant, "YYYY-MM").
    spent: Mutex<BTreeMap<(String, String), Money>>,
}

impl Meter {
    /// Prices every configured backend. `file_json` is the text of `[pricing] file`, read by the
    /// caller.
    pub fn new(config: &Config, file_json: Option<&str>) -> Result<Meter, String> {
        let table = config.pricing.table(file_json).map_err(|e| format!("pricing: {e}"))?;
        let rates = config
            .backends
            .iter()
            .map(|b| {
                if let Some(p) = config.pricing.self_hosted.get(&b.profile.name) {
                    return Rate::SelfHosted(p.clone());
                }
                match b.profile.hosting {
                    Hosting::Api => match table.lookup(b.profile.provider.as_str(), &b.profile.model) {
                        Some(p) => Rate::Api(p.clone()),
                        None => {
                            tracing::warn!(backend = %b.profile.name, model = %b.profile.model, "no price for this API model in the pricing table; its requests are recorded without a cost (add it under [pricing.models])");
                            Rate::Unknown
                        }
                    },
                    _ => Rate::Free,
                }
            })
            .collect();
        Ok(Meter { rates, budgets: config.budgets.clone(), spent: Mutex::new(BTreeMap::new()) })
    }

    /// A meter that knows no API price (the pricing could not be loaded): API requests are
    /// recorded without a cost rather than as free.
    pub fn unpriced(config: &Config) -> Meter {
        let rates = config
            .backends
            .iter()
            .map(|b| if b.profile.hosting == Hosting::Api { Rate::Unknown } else { Rate::Free })
            .collect();
        Meter { rates, budgets: config.budgets.clone(), spent: Mutex::new(BTreeMap::new()) }
    }

    /// What a request on backend `index` cost, from its usage; `None` when the price is unknown.
    pub fn cost(&self, index: usize, usage: &perimeter_types::Usage) -> Option<Money> {
        let usage = Usage {
            input_tokens: u64::from(usage.prompt_tokens),
            output_tokens: u64::from(usage.completion_tokens),
            cached_input_tokens: 0,
        };
        match self.rates.get(index)? {
            Rate::Api(p) => Some(p.cost(&usage)),
            Rate::SelfHosted(p) => Some(p.cost(&usage)),
            Rate::Free => Some(Money::ZERO),
            Rate::Unknown => None,
        }
    }

    /// Adds a request's cost to its tenant's spend for `month` ("YYYY-MM").
    pub fn record(&self, tenant: &str, month: &str, cost: Money) {
        let mut spent = self.spent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = spent.entry((tenant.to_string(), month.to_string())).or_insert(Money::ZERO);
        *slot += cost;
    }

    /// This month's spend of a tenant.
    pub fn spent(&self, tenant: &str, month: &str) -> Money {
        let spent = self.spent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        spent.get(&(tenant.to_string(), month.to_string())).copied().unwrap_or(Money::ZERO)
    }

    /// The budget state of every tenant with a budget, for `month`.
    pub fn budgets(&self, month: &str) -> Budgets {
        perimeter_cost::budget_states(&self.budgets, |tenant| self.spent(tenant, month))
    }

    /// The monthly budget of a tenant, if one is configured.
    pub fn budget(&self, tenant: &str) -> Option<&Budget> {
        self.budgets.iter().find(|b| b.tenant == tenant)
    }
}

/// "YYYY-MM" of now (UTC).
pub fn this_month() -> String {
    month_of(&perimeter_audit::format_time(now_millis()))
}

/// "YYYY-MM" of an RFC 3339 time.
pub fn month_of(time: &str) -> String {
    time.get(..7).unwrap_or("").to_string()
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
