//! Monthly budgets: from what a tenant spent this month to the policy's `BudgetState`.

use perimeter_policy::{BudgetState, Budgets};
use serde::{Deserialize, Serialize};

use crate::Money;

/// What happens when a tenant's monthly budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// API backends are refused; self-hosted and embedded ones stay (as the policy allows).
    SelfHostedOnly,
    /// Every request is denied until the month ends.
    Deny,
}

impl OnExhausted {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExhausted::SelfHostedOnly => "self_hosted_only",
            OnExhausted::Deny => "deny",
        }
    }
}

/// `[[budget]]`: a tenant's spending limit per calendar month (UTC), all backends together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub tenant: String,
    pub monthly_usd: Money,
    pub on_exhausted: OnExhausted,
}

/// The tenant's state once it has spent `spent` this month: `Available` below the limit; at or
/// above it, `ApiExhausted` (`self_hosted_only`) or `Exhausted` (`deny`). A zero budget is
/// exhausted from the start.
pub fn budget_state(spent: Money, budget: &Budget) -> BudgetState {
    if spent < budget.monthly_usd {
        return BudgetState::Available;
    }
    match budget.on_exhausted {
        OnExhausted::SelfHostedOnly => BudgetState::ApiExhausted,
        OnExhausted::Deny => BudgetState::Exhausted,
    }
}

/// The policy's budget states for every budgeted tenant, from a function giving what each has
/// spent this month. Tenants without a budget are not listed (the policy treats them as
/// `Available`).
pub fn budget_states(budgets: &[Budget], mut spent: impl FnMut(&str) -> Money) -> Budgets {
    Budgets(budgets.iter().map(|b| (b.tenant.clone(), budget_state(spent(&b.tenant), b))).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn budget(limit: &str, on: OnExhausted) -> Budget {
        Budget { tenant: "t".into(), monthly_usd: Money::parse(limit).unwrap(), on_exhausted: on }
    }

    #[test]
    fn state_changes_exactly_at_the_limit() {
        let b = budget("100.00", OnExhausted::SelfHostedOnly);
        assert_eq!(budget_state(Money::parse("99.999999").unwrap(), &b), BudgetState::Available);
        assert_eq!(budget_state(Money::parse("100").unwrap(), &b), BudgetState::ApiExhausted);
        assert_eq!(budget_state(Money::parse("250").unwrap(), &b), BudgetState::ApiExhausted);
        let b = budget("100.00", OnExhausted::Deny);
        assert_eq!(budget_state(Money::parse("100.000001").unwrap(), &b), BudgetState::Exhausted);
        assert_eq!(budget_state(Money::ZERO, &budget("0", OnExhausted::Deny)), BudgetState::Exhausted);
    }

    #[test]
    fn states_for_every_budgeted_tenant() {
        let budgets = vec![
            Budget { tenant: "a".into(), monthly_usd: Money::parse("10").unwrap(), on_exhausted: OnExhausted::Deny },
            Budget { tenant: "b".into(), monthly_usd: Money::parse("10").unwrap(), on_exhausted: OnExhausted::Deny },
        ];
        let s = budget_states(&budgets, |t| if t == "a" { Money::parse("11").unwrap() } else { Money::ZERO });
        assert_eq!(s.state("a"), BudgetState::Exhausted);
        assert_eq!(s.state("b"), BudgetState::Available);
        assert_eq!(s.state("unbudgeted"), BudgetState::Available);
    }
}
