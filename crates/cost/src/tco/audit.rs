//! `--from-audit`: the traffic block derived from real traffic. The CLI reads the export; this
//! parses its text and derives requests per day, tokens per request and the peak-to-average
//! ratio from the completion records.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use super::config::Traffic;
use crate::money::div;
use crate::CostError;

/// One completion's usage from the audit export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditUsage {
    /// Days since 1970-01-01 of the record's date (as written in its RFC 3339 time).
    pub day: i64,
    /// Hour of that day, 0–23.
    pub hour: u8,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// What was derived, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DerivedTraffic {
    pub completions: u64,
    /// Calendar days from the first record's date to the last one's, both included.
    pub days: u64,
    pub requests_per_day: Decimal,
    pub input_tokens_per_request: Decimal,
    pub output_tokens_per_request: Decimal,
    /// Busiest clock hour's completions ÷ the mean per hour over the days spanned (at least 1).
    pub peak_to_average: Decimal,
}

impl DerivedTraffic {
    /// The traffic block, keeping the configured growth.
    pub fn traffic(&self, monthly_growth: Decimal) -> Traffic {
        Traffic {
            requests_per_day: self.requests_per_day,
            input_tokens_per_request: self.input_tokens_per_request,
            output_tokens_per_request: self.output_tokens_per_request,
            peak_to_average: self.peak_to_average,
            monthly_growth,
        }
    }
}

/// Parses an audit export (`{"records": [...]}`) and keeps the `completion` records, which
/// carry `time` (RFC 3339), `tokens_in` and `tokens_out`. Errors name the record and field.
pub fn parse_audit_export(json: &str) -> Result<Vec<AuditUsage>, CostError> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| CostError::Parse { what: "audit export".into(), reason: e.to_string() })?;
    let records = root.get("records").and_then(Value::as_array).ok_or_else(|| CostError::Invalid {
        field: "records".into(),
        reason: "must be an array of audit records".into(),
    })?;
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.get("kind").and_then(Value::as_str) != Some("completion") {
            continue;
        }
        let bad =
            |f: &str, reason: &str| CostError::Invalid { field: format!("records[{i}].{f}"), reason: reason.into() };
        let time = r.get("time").and_then(Value::as_str).ok_or_else(|| bad("time", "is required (RFC 3339)"))?;
        let (day, hour) = parse_time(time).ok_or_else(|| bad("time", "is not an RFC 3339 time"))?;
        let count = |f: &str| r.get(f).and_then(Value::as_u64).ok_or_else(|| bad(f, "must be a whole number"));
        out.push(AuditUsage { day, hour, tokens_in: count("tokens_in")?, tokens_out: count("tokens_out")? });
    }
    Ok(out)
}

/// Requests per day = completions ÷ days spanned; tokens per request = means; peak-to-average
/// from hourly counts.
pub fn traffic_from_audit(rows: &[AuditUsage]) -> Result<DerivedTraffic, CostError> {
    let (Some(first), Some(last)) = (rows.iter().map(|r| r.day).min(), rows.iter().map(|r| r.day).max()) else {
        return Err(CostError::Invalid {
            field: "records".into(),
            reason: "has no completion records to derive traffic from".into(),
        });
    };
    let n = rows.len() as u64;
    let days = (last - first + 1).unsigned_abs();
    let sum_in: u128 = rows.iter().map(|r| u128::from(r.tokens_in)).sum();
    let sum_out: u128 = rows.iter().map(|r| u128::from(r.tokens_out)).sum();
    let dn = Decimal::from(n);
    let mut hourly: BTreeMap<(i64, u8), u64> = BTreeMap::new();
    for r in rows {
        *hourly.entry((r.day, r.hour)).or_default() += 1;
    }
    let peak = hourly.values().copied().max().unwrap_or(0);
    let mean_per_hour = div(dn, Decimal::from(days * 24)).unwrap_or(Decimal::ONE);
    let peak_to_average = div(Decimal::from(peak), mean_per_hour).unwrap_or(Decimal::ONE).max(Decimal::ONE).round_dp(2);
    let dec =
        |v: u128| Decimal::try_from_i128_with_scale(i128::try_from(v).unwrap_or(i128::MAX), 0).unwrap_or(Decimal::MAX);
    Ok(DerivedTraffic {
        completions: n,
        days,
        requests_per_day: div(dn, Decimal::from(days)).unwrap_or(dn).round_dp(2),
        input_tokens_per_request: div(dec(sum_in), dn).unwrap_or(Decimal::ZERO).round_dp(1),
        output_tokens_per_request: div(dec(sum_out), dn).unwrap_or(Decimal::ZERO).round_dp(1),
        peak_to_average,
    })
}

/// `YYYY-MM-DDTHH:…` → (days since 1970-01-01, hour). The date and hour are taken as written.
fn parse_time(t: &str) -> Option<(i64, u8)> {
    let b = t.as_bytes();
    if b.len() < 13 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |s: &str| s.parse::<u32>().ok();
    let (y, m, d, h) = (num(t.get(0..4)?)?, num(t.get(5..7)?)?, num(t.get(8..10)?)?, num(t.get(11..13)?)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    Some((days_from_civil(i64::from(y), m, d), u8::try_from(h).ok()?))
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01 in the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn days_and_hours() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_time("2026-11-29T13:05:00+01:00"), Some((20_786, 13)));
        assert_eq!(parse_time("2024-03-01T00:00:00Z").unwrap().0 - parse_time("2024-02-28T00:00:00Z").unwrap().0, 2);
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn derives_traffic_from_completions() {
        // Three days (1–3 November), 6 completions: 2/day. Tokens in 1000,2000,…: mean 3500;
        // out 100…600: mean 350. Hour 09 on the 1st has 3 of them; mean per hour = 6/72 = 1/12,
        // so peak-to-average = 3 × 12 = 36.
        let json = r#"{"records": [
            {"kind": "completion", "time": "2026-11-01T09:00:00Z", "tokens_in": 1000, "tokens_out": 100},
            {"kind": "completion", "time": "2026-11-01T09:10:00Z", "tokens_in": 2000, "tokens_out": 200},
            {"kind": "completion", "time": "2026-11-01T09:20:00Z", "tokens_in": 3000, "tokens_out": 300},
            {"kind": "ingest", "time": "2026-11-02T10:00:00Z"},
            {"kind": "completion", "time": "2026-11-02T10:00:00Z", "tokens_in": 4000, "tokens_out": 400},
            {"kind": "completion", "time": "2026-11-03T11:00:00Z", "tokens_in": 5000, "tokens_out": 500},
            {"kind": "completion", "time": "2026-11-03T23:59:59Z", "tokens_in": 6000, "tokens_out": 600}
        ]}"#;
        let rows = parse_audit_export(json).unwrap();
        assert_eq!(rows.len(), 6);
        let t = traffic_from_audit(&rows).unwrap();
        assert_eq!((t.completions, t.days), (6, 3));
        assert_eq!(t.requests_per_day, Decimal::from(2));
        assert_eq!(t.input_tokens_per_request, Decimal::from(3500));
        assert_eq!(t.output_tokens_per_request, Decimal::from(350));
        assert_eq!(t.peak_to_average, Decimal::from(36));
    }

    #[test]
    fn bad_exports_name_the_record_and_field() {
        for (json, field) in [
            (
                r#"{"records": [{"kind": "completion", "time": "x", "tokens_in": 1, "tokens_out": 1}]}"#,
                "records[0].time",
            ),
            (
                r#"{"records": [{"kind": "completion", "time": "2026-11-01T00:00:00Z", "tokens_in": -1, "tokens_out": 1}]}"#,
                "records[0].tokens_in",
            ),
            (
                r#"{"records": [{"kind": "completion", "time": "2026-11-01T00:00:00Z", "tokens_in": 1}]}"#,
                "records[0].tokens_out",
            ),
            (r#"{"entries": []}"#, "records"),
        ] {
            match parse_audit_export(json) {
                Err(CostError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(matches!(traffic_from_audit(&[]), Err(CostError::Invalid { .. })));
    }
}
