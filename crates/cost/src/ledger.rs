//! Aggregation of metered requests: totals by any of tenant, backend, level and day. The lead
//! feeds it rows read from the audit log; it does no IO itself.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Money;

/// One metered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerRow<'a> {
    /// Calendar day, `YYYY-MM-DD` (UTC).
    pub day: &'a str,
    pub tenant: &'a str,
    pub backend: &'a str,
    pub level: &'a str,
    pub cost: Money,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// A column to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Tenant,
    Backend,
    Level,
    Day,
    /// The calendar month, `YYYY-MM` (the first seven characters of the day).
    Month,
}

impl Dimension {
    /// Parses `tenant`, `backend`, `level`, `day` or `month`.
    pub fn parse(s: &str) -> Option<Dimension> {
        Some(match s {
            "tenant" => Dimension::Tenant,
            "backend" => Dimension::Backend,
            "level" => Dimension::Level,
            "day" => Dimension::Day,
            "month" => Dimension::Month,
            _ => return None,
        })
    }
}

/// The totals of one group. A dimension not grouped by is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    pub requests: u64,
    pub cost_usd: Money,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// Groups `rows` by the dimensions in `by` (none: one grand total) and sums each group.
/// Groups come out sorted by their key, in the order tenant, backend, level, day, month.
pub fn aggregate<'a>(rows: impl IntoIterator<Item = LedgerRow<'a>>, by: &[Dimension]) -> Vec<Totals> {
    let mut groups: BTreeMap<[Option<&'a str>; 5], Totals> = BTreeMap::new();
    for row in rows {
        let pick = |d: Dimension, v: &'a str| by.contains(&d).then_some(v);
        let key = [
            pick(Dimension::Tenant, row.tenant),
            pick(Dimension::Backend, row.backend),
            pick(Dimension::Level, row.level),
            pick(Dimension::Day, row.day),
            pick(Dimension::Month, row.day.get(..7).unwrap_or(row.day)),
        ];
        let t = groups.entry(key).or_insert_with(|| Totals {
            tenant: key[0].map(str::to_string),
            backend: key[1].map(str::to_string),
            level: key[2].map(str::to_string),
            day: key[3].map(str::to_string),
            month: key[4].map(str::to_string),
            ..Totals::default()
        });
        t.requests += 1;
        t.cost_usd += row.cost;
        t.tokens_in = t.tokens_in.saturating_add(row.tokens_in);
        t.tokens_out = t.tokens_out.saturating_add(row.tokens_out);
    }
    groups.into_values().collect()
}

/// What `tenant` spent in `month` (`YYYY-MM`), for `budget_state`.
pub fn spent_in_month<'a>(rows: impl IntoIterator<Item = LedgerRow<'a>>, tenant: &str, month: &str) -> Money {
    rows.into_iter().filter(|r| r.tenant == tenant && r.day.starts_with(month)).map(|r| r.cost).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row<'a>(day: &'a str, tenant: &'a str, backend: &'a str, level: &'a str, cost: &str) -> LedgerRow<'a> {
        LedgerRow { day, tenant, backend, level, cost: Money::parse(cost).unwrap(), tokens_in: 10, tokens_out: 2 }
    }

    #[test]
    fn groups_and_sums() {
        let rows = [
            row("2026-11-01", "acme", "openai", "internal", "0.10"),
            row("2026-11-01", "acme", "vllm", "confidential", "0.02"),
            row("2026-11-02", "acme", "openai", "internal", "0.30"),
            row("2026-10-31", "beta", "openai", "public", "1.00"),
        ];
        let by_tenant = aggregate(rows, &[Dimension::Tenant]);
        assert_eq!(by_tenant.len(), 2);
        assert_eq!(by_tenant[0].tenant.as_deref(), Some("acme"));
        assert_eq!(by_tenant[0].requests, 3);
        assert_eq!(by_tenant[0].cost_usd, Money::parse("0.42").unwrap());
        assert_eq!(by_tenant[0].tokens_in, 30);
        assert!(by_tenant[0].backend.is_none());

        let by = aggregate(rows, &[Dimension::Backend, Dimension::Day]);
        assert_eq!(by.len(), 4);
        let total = aggregate(rows, &[]);
        assert_eq!(total.len(), 1);
        assert_eq!(total[0].cost_usd, Money::parse("1.42").unwrap());
        let by_month = aggregate(rows, &[Dimension::Month]);
        assert_eq!(by_month.iter().map(|t| t.month.clone().unwrap()).collect::<Vec<_>>(), ["2026-10", "2026-11"]);

        assert_eq!(spent_in_month(rows, "acme", "2026-11"), Money::parse("0.42").unwrap());
        assert_eq!(spent_in_month(rows, "beta", "2026-11"), Money::ZERO);
        let json = serde_json::to_value(&by_tenant[1]).unwrap();
        assert_eq!(json["cost_usd"], "1.00");
        assert!(json.get("backend").is_none());
        assert_eq!(Dimension::parse("level"), Some(Dimension::Level));
        assert_eq!(Dimension::parse("week"), None);
    }
}
