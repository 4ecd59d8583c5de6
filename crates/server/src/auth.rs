//! The authentication and authorisation middleware: `Authorization: Bearer <key>` → a
//! [`Principal`] in the request's extensions, or 401 (no, malformed, unknown, wrong, revoked or
//! expired key) or 403 (a role that may not use the route, or a tenant no longer configured).
//!
//! `/healthz`, `/readyz` and `/openapi.json` stay open. `/metrics` needs an admin or auditor key
//! once keys exist: its counters are deployment-wide. While no key has ever been created every
//! request is the anonymous principal (the default tenant, full access), as before keys existed.
//! The key store is read on every request, so a key revoked or expired from the CLI is refused
//! at once. A key store that cannot be read refuses the request (500), never opens the server.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use perimeter_auth::{authorize, classify, Authentication, Endpoint, Principal};

use crate::error::ApiError;
use crate::state::AppState;

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

/// The middleware. Every request leaves it with a `Principal` extension or an error response.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let endpoint = classify(req.method().as_str(), req.uri().path());
    let route = crate::route_label(req.uri().path());
    if endpoint == Endpoint::Open {
        req.extensions_mut().insert(Principal::anonymous());
        return next.run(req).await;
    }
    let token = bearer(&req);
    let keys = state.keys.clone();
    let authenticated = tokio::task::spawn_blocking(move || keys.authenticate(token.as_deref(), unix_now())).await;
    let principal = match authenticated {
        Ok(Ok(Authentication::Open)) => Principal::anonymous(),
        Ok(Ok(Authentication::Granted(p))) => p,
        Ok(Ok(Authentication::Refused { refusal, key_id })) => {
            // Key id only when it parsed; never the key.
            tracing::info!(target: "perimeter::audit", event = "auth.refused", status = 401, route, reason = refusal.as_str(), key_id = key_id.as_deref().unwrap_or("-"), "request refused: no valid API key");
            access_denied(&state, 401, route, key_id.as_deref(), None, refusal.as_str()).await;
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
        access_denied(&state, 403, route, principal.key_id.as_deref(), Some(&principal), "unknown_tenant").await;
        return ApiError::Forbidden("This key's tenant is not configured on this server.".into()).into_response();
    }
    if principal.key_id.is_some() && !authorize(principal.role, endpoint) {
        // A valid key whose role may not use this route.
        tracing::info!(target: "perimeter::audit", event = "auth.forbidden", status = 403, route, key_id = principal.key_id.as_deref().unwrap_or("-"), role = %principal.role, reason = "role", "request refused: role not allowed");
        access_denied(&state, 403, route, principal.key_id.as_deref(), Some(&principal), "role").await;
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
