//! The authentication and authorisation middleware: `Authorization: Bearer <key>` → a
//! [`Principal`] in the request's extensions, or 401 (no, malformed, unknown, wrong, revoked or
//! expired key) or 403 (a role that may not use the route, or a tenant no longer configured).
//!
//! `/healthz`, `/readyz` and `/openapi.json` stay open. `/metrics` needs an admin or auditor key
//! once keys exist: its counters are deployment-wide. While no key has ever been created every
//! request is the anonymous principal (the default tenant, full access), as before keys existed.
//! The key store is read on every request, so a key revoked or expired from the CLI is refused
//! at once. A key store that cannot be read refuses the request (500), never opens the server.
//!
//! Failed authentication is throttled per client address ([`crate::auth_throttle`]): past the
//! burst, a request from that address that does not authenticate gets 429 `auth_throttled`
//! without an audit record of its own, while a valid key from the same address still works.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use perimeter_auth::{authorize, classify, ApiKey, Authentication, Endpoint, Principal};

use crate::auth_throttle::{AuthThrottle, Client, RecordDue, Standing};
use crate::error::ApiError;
use crate::state::AppState;

/// What the key check needs: the server state and the failed-authentication throttle of one
/// router (`None` when `[limits] auth_failures_per_minute = 0`).
#[derive(Clone)]
pub struct KeyCheck {
    state: AppState,
    throttle: Option<Arc<Mutex<AuthThrottle>>>,
}

impl KeyCheck {
    pub fn new(state: AppState) -> Self {
        let limits = &state.config.limits;
        let throttle = (limits.auth_failures_per_minute > 0).then(|| {
            Arc::new(Mutex::new(AuthThrottle::new(
                limits.auth_failures_per_minute,
                limits.auth_failure_burst,
                limits.max_tracked_keys,
                Instant::now(),
            )))
        });
        KeyCheck { state, throttle }
    }

    /// Runs `f` on the throttle, if there is one.
    fn throttle<R>(&self, f: impl FnOnce(&mut AuthThrottle) -> R) -> Option<R> {
        self.throttle.as_ref().map(|t| f(&mut t.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive, as RFC 7235 says).
fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// An `access_denied` audit record (401 or 403): route, reason, key id; never the key.
async fn access_denied(
    state: &AppState,
    status: u16,
    route: &str,
    key_id: Option<&str>,
    principal: Option<&Principal>,
    reason: &str,
) {
    let mut r = perimeter_audit::Record::new(perimeter_audit::RecordKind::AccessDenied);
    r.principal = key_id.map(str::to_string);
    r.tenant = principal.map(|p| p.tenant.clone());
    r.outcome = Some(status.to_string());
    r.reasons.push(reason.to_string());
    r.detail.insert("route".into(), route.to_string());
    if let Some(p) = principal {
        r.detail.insert("role".into(), p.role.to_string());
    }
    state.audit.append_best_effort_async(r).await;
}

/// The `access_denied` record of a throttled address (429): route, the address (an IPv6 /64),
/// how many attempts were refused since its last such record; no key id (there were many).
async fn throttled_on_record(state: &AppState, route: &str, client: Client, due: RecordDue) {
    tracing::warn!(target: "perimeter::audit", event = "auth.throttled", status = 429, route, client = %client, refused = due.refused, shared = due.shared, "failed authentications from this address are throttled");
    let mut r = perimeter_audit::Record::new(perimeter_audit::RecordKind::AccessDenied);
    r.outcome = Some("429".to_string());
    r.reasons.push("auth_throttled".to_string());
    r.detail.insert("route".into(), route.to_string());
    r.detail.insert("client".into(), client.to_string());
    r.detail.insert("refused".into(), due.refused.to_string());
    if due.shared {
        // Counted in the bucket that addresses beyond `max_tracked_keys` share.
        r.detail.insert("shared_bucket".into(), "true".into());
    }
    state.audit.append_best_effort_async(r).await;
}

/// 429 for a throttled client; the audit record only when one is due (see `auth_throttle`).
async fn refuse_throttled(check: &KeyCheck, route: &str, client: Client, retry_after_secs: u64) -> Response {
    if let Some(due) = check.throttle(|t| t.refused(client, Instant::now())).flatten() {
        throttled_on_record(&check.state, route, client, due).await;
    }
    ApiError::AuthThrottled { retry_after_secs }.into_response()
}

/// The middleware. Every request leaves it with a `Principal` extension or an error response.
pub async fn require_key(State(check): State<KeyCheck>, mut req: Request, next: Next) -> Response {
    let state = &check.state;
    let endpoint = classify(req.method().as_str(), req.uri().path());
    let route = crate::route_label(req.uri().path());
    if endpoint == Endpoint::Open {
        req.extensions_mut().insert(Principal::anonymous());
        return next.run(req).await;
    }
    let token = bearer(&req);
    // No address (a router driven without a socket): no throttle.
    let client = crate::limits::client_addr(&req).map(|addr| Client::of(addr.ip()));
    let throttled =
        client.and_then(|c| check.throttle(|t| t.standing(c, Instant::now()))).and_then(|standing| match standing {
            Standing::Clear => None,
            Standing::Throttled { retry_after_secs } => Some(retry_after_secs),
        });
    if let (Some(c), Some(retry)) = (client, throttled) {
        // Nothing shaped like a key cannot authenticate: refused without reading the store.
        if token.as_deref().and_then(ApiKey::parse).is_none() {
            return refuse_throttled(&check, route, c, retry).await;
        }
    }
    let keys = state.keys.clone();
    let authenticated = tokio::task::spawn_blocking(move || keys.authenticate(token.as_deref(), unix_now())).await;
    let principal = match authenticated {
        Ok(Ok(Authentication::Open)) => Principal::anonymous(),
        Ok(Ok(Authentication::Granted(p))) => p,
        Ok(Ok(Authentication::Refused { refusal, key_id })) => {
            if let Some(c) = client {
                if let Some(retry) = throttled {
                    // No log line or audit record per attempt while throttled.
                    return refuse_throttled(&check, route, c, retry).await;
                }
                check.throttle(|t| t.failed(c, Instant::now()));
            }
            // Key id only when it parsed; never the key.
            tracing::info!(target: "perimeter::audit", event = "auth.refused", status = 401, route, reason = refusal.as_str(), key_id = key_id.as_deref().unwrap_or("-"), "request refused: no valid API key");
            access_denied(state, 401, route, key_id.as_deref(), None, refusal.as_str()).await;
            let error = if refusal == perimeter_auth::Refusal::Missing {
                ApiError::Unauthorized(
                    "You didn't provide an API key. Send it in the Authorization header as `Bearer <key>`.",
                )
            } else {
                ApiError::Unauthorized("Incorrect API key provided.")
            };
            return unauthorized(error);
        }
        Ok(Err(e)) => return ApiError::internal(format!("key store: {e}")).into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if principal.key_id.is_some() && !state.config.policy.has_tenant(&principal.tenant) {
        // A key whose tenant is no longer declared in the configuration.
        tracing::info!(target: "perimeter::audit", event = "auth.forbidden", status = 403, route, key_id = principal.key_id.as_deref().unwrap_or("-"), role = %principal.role, reason = "unknown_tenant", "request refused: the key's tenant is not configured");
        access_denied(state, 403, route, principal.key_id.as_deref(), Some(&principal), "unknown_tenant").await;
        return ApiError::Forbidden("This key's tenant is not configured on this server.".into()).into_response();
    }
    if principal.key_id.is_some() && !authorize(principal.role, endpoint) {
        // A valid key whose role may not use this route.
        tracing::info!(target: "perimeter::audit", event = "auth.forbidden", status = 403, route, key_id = principal.key_id.as_deref().unwrap_or("-"), role = %principal.role, reason = "role", "request refused: role not allowed");
        access_denied(state, 403, route, principal.key_id.as_deref(), Some(&principal), "role").await;
        return ApiError::Forbidden(format!("The role `{}` may not use this route.", principal.role)).into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn unauthorized(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"perimeter\""));
    response
}
