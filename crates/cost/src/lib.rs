//! Pure cost maths: money as exact decimals, the price table (LiteLLM's shape) and per-request
//! cost, self-hosted prices from GPU hours, monthly budgets → the policy's `BudgetState`,
//! aggregation of metered requests, and the TCO planner. No IO: callers read files and clocks.

mod budget;
mod ledger;
mod money;
mod pricing;
pub mod tco;

pub use budget::{budget_state, budget_states, Budget, OnExhausted};
pub use ledger::{aggregate, spent_in_month, Dimension, LedgerRow, Totals};
pub use money::{decimal_from_f64, parse_decimal, Amount, Money};
pub use pricing::{candidate_keys, Price, PriceTable, SelfHostedPrice, Usage};
pub use rust_decimal::Decimal;

/// Why a price table, configuration or export was refused. `field` names the key
/// (`gpt-4o.input_cost_per_token`, `self_hosted[0].utilisation`, `records[3].time`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error("{what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("`{field}` {reason}")]
    Invalid { field: String, reason: String },
}
