//! `GET /v1/audit` and `GET /v1/costs`, and the reports behind them (also used by
//! `perimeter audit export` and `perimeter costs`). Both read the audit log: the completion
//! records carry each request's usage and cost, so spend is derived from the same evidence an
//! auditor checks. A principal sees its own tenant's records only.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use perimeter_audit::{Filter, Record, RecordKind};
use perimeter_auth::Principal;
use perimeter_cost::{Dimension, LedgerRow, Money};
use perimeter_types::DEFAULT_TENANT;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Records one `GET /v1/audit` returns at most.
pub const MAX_AUDIT_LIMIT: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub kind: Option<String>,
    pub level: Option<String>,
    pub backend: Option<String>,
    pub decision: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostsQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    /// Comma-separated: tenant, backend, level, day, month.
    pub group_by: Option<String>,
}

/// A query string that does not parse: the OpenAI-style JSON error, naming no value.
fn query_error(_: QueryRejection) -> ApiError {
    ApiError::bad_request("the query string has an unknown parameter or a value of the wrong type", None)
}

fn time_param(value: Option<&str>, name: &'static str) -> Result<Option<u64>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) => perimeter_audit::parse_time(v).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{name} must be an RFC 3339 time or a date (YYYY-MM-DD)"), Some(name))
        }),
    }
}

/// Whether a principal may see a record: its own tenant's records; tenant-less records (model
/// verification, checkpoints, segments) only for the default tenant, whose operator runs the server.
pub fn visible(principal: &Principal, r: &Record) -> bool {
    match &r.tenant {
        Some(t) => *t == principal.tenant,
        None => principal.tenant == DEFAULT_TENANT,
    }
}

/// The audit filter of a query, with the principal's tenant applied by [`visible`].
pub fn audit_filter(q: &AuditQuery) -> Result<Filter, ApiError> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(k.parse::<RecordKind>().map_err(|_| {
            ApiError::bad_request(
                "kind must be one of decision, completion, refusal, access_denied, model_verification, policy_change, key_change, checkpoint, segment",
                Some("kind"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_AUDIT_LIMIT}"), Some("limit")));
    }
    Ok(Filter {
        since: time_param(q.since.as_deref(), "since")?,
        until: time_param(q.until.as_deref(), "until")?,
        kind,
        tenant: None,
        level: q.level.clone(),
        backend: q.backend.clone(),
        decision: q.decision.clone(),
        limit: None,
    })
}

/// `GET /v1/audit`: records in log order, oldest first, the caller's tenant only.
pub async fn audit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let filter = audit_filter(&q)?;
    let limit = q.limit.unwrap_or(100);
    let state2 = state.clone();
    let records = tokio::task::spawn_blocking(move || -> Result<Vec<Record>, ApiError> {
        let log = state2.audit.log().ok_or(ApiError::AuditUnavailable)?;
        let export = log.export(&filter).map_err(|e| {
            tracing::error!(error = %e, "could not read the audit log");
            ApiError::AuditUnavailable
        })?;
        Ok(export.records.into_iter().filter(|r| visible(&principal, r)).collect())
    })
    .await
    .map_err(ApiError::internal)??;
    let has_more = records.len() > limit;
    let data: Vec<Record> = records.into_iter().take(limit).collect();
    Ok(Json(json!({"object": "list", "data": data, "has_more": has_more})))
}

/// Groups parsed from `group_by` (default: day and backend).
pub fn dimensions(group_by: Option<&str>) -> Result<Vec<Dimension>, String> {
    let text = group_by.unwrap_or("day,backend");
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = Dimension::parse(part)
            .ok_or_else(|| "group_by takes tenant, backend, level, day and month, comma-separated".to_string())?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The cost report over completion records: totals by the groups, the overall total, and the
/// requests whose price was unknown (counted, never priced as zero).
pub fn costs_report(records: &[Record], by: &[Dimension]) -> Value {
    let done: Vec<&Record> =
        records.iter().filter(|r| r.kind == RecordKind::Completion && r.outcome.as_deref() == Some("ok")).collect();
    let unpriced = done.iter().filter(|r| r.cost.is_none()).count();
    let rows = done.iter().map(|r| LedgerRow {
        day: r.time.get(..10).unwrap_or(""),
        tenant: r.tenant.as_deref().unwrap_or(""),
        backend: r.backend.as_deref().unwrap_or(""),
        level: r.level.as_deref().unwrap_or(""),
        cost: r.cost.as_deref().and_then(Money::parse).unwrap_or(Money::ZERO),
        tokens_in: r.tokens_in.unwrap_or(0),
        tokens_out: r.tokens_out.unwrap_or(0),
    });
    let groups = perimeter_cost::aggregate(rows.clone(), by);
    let total = perimeter_cost::aggregate(rows, &[]);
    json!({
        "object": "list",
        "group_by": by.iter().map(|d| format!("{d:?}").to_lowercase()).collect::<Vec<_>>(),
        "data": groups,
        "total": total.into_iter().next(),
        "unpriced_requests": unpriced,
        "currency": "USD",
    })
}

/// `GET /v1/costs`: spend of the caller's tenant by day and backend (or `group_by`), from
/// `since` (default: the first day of this month), with its monthly budget.
pub async fn costs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    q: Result<Query<CostsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let by = dimensions(q.group_by.as_deref()).map_err(|m| ApiError::bad_request(m, Some("group_by")))?;
    let month = crate::costs::this_month();
    let since = match time_param(q.since.as_deref(), "since")? {
        Some(t) => Some(t),
        None => perimeter_audit::parse_time(&format!("{month}-01")),
    };
    let filter = Filter {
        since,
        until: time_param(q.until.as_deref(), "until")?,
        kind: Some(RecordKind::Completion),
        tenant: Some(principal.tenant.clone()),
        ..Filter::default()
    };
    let state2 = state.clone();
    let records = tokio::task::spawn_blocking(move || -> Result<Vec<Record>, ApiError> {
        let log = state2.audit.log().ok_or(ApiError::AuditUnavailable)?;
        log.export(&filter).map(|e| e.records).map_err(|e| {
            tracing::error!(error = %e, "could not read the audit log");
            ApiError::AuditUnavailable
        })
    })
    .await
    .map_err(ApiError::internal)??;
    let mut report = costs_report(&records, &by);
    report["tenant"] = json!(principal.tenant);
    if let Some(b) = state.meter.budget(&principal.tenant) {
        let spent = state.meter.spent(&principal.tenant, &month);
        report["budget"] = json!({
            "month": month,
            "monthly_usd": b.monthly_usd,
            "spent_usd": spent,
            "on_exhausted": b.on_exhausted.as_str(),
            "state": match perimeter_cost::budget_state(spent, b) {
                perimeter_policy::BudgetState::Available => "available",
                perimeter_policy::BudgetState::ApiExhausted => "self_hosted_only",
                perimeter_policy::BudgetState::Exhausted => "exhausted",
            },
        });
    }
    Ok(Json(report))
}
