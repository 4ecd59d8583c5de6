//! Perimeter's HTTP server: an OpenAI-compatible API over the retrieval pipeline, plus document
//! management, health, metrics and the OpenAPI description.

mod adapters;
pub mod audit;
pub mod auth;
pub mod auth_throttle;
pub mod backends;
pub mod canary;
pub mod costs;
mod error;
pub mod ledger;
pub mod limits;
mod metrics;
mod openapi;
pub mod pipeline;
pub mod reverify;
mod routes;
mod state;
pub mod tls;
mod wire;

use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use backends::Backends;
pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::{denied, perimeter_info, ROUTED_MODEL};
pub use state::{
    chat_backend, load_models, open_index, verify_embedded, AppState, Engines, StartError, EMBEDDED_BACKEND,
};
pub use wire::PerimeterInfo;

/// The application router with all routes and limits.
pub fn app(state: AppState) -> Router {
    let limit = state.config.server.max_body_bytes;
    let counted = state.clone();
    let limiter = limits::Limiter::new(&state.config.limits);
    Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/v1/models", get(routes::models))
        .route("/v1/documents", post(routes::create_document).get(routes::list_documents))
        .route("/v1/documents/{id}", get(routes::get_document).delete(routes::delete_document))
        .route("/v1/audit", get(ledger::audit))
        .route("/v1/costs", get(ledger::costs))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(limit))
        // Rate, concurrency and time limits (`[limits]`). Inside the auth layer, so that the
        // principal is known; outside the routes, so a refused request costs no work.
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            limits::middleware(limiter.clone(), req, next)
        }))
        // API keys and roles: every route but health, readiness and the OpenAPI description
        // needs a key once one exists; the principal goes into the request's extensions. Failed
        // authentication is throttled per client address here, before the per-key limits
        // (which cannot see a request without a valid key).
        .layer(axum::middleware::from_fn_with_state(auth::KeyCheck::new(state.clone()), auth::require_key))
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let metrics = counted.metrics.clone();
            async move {
                let route = route_label(req.uri().path());
                let response = next.run(req).await;
                metrics.request(route, response.status().as_u16());
                response
            }
        }))
        .with_state(state)
}

/// A bounded set of route labels for metrics (ids are not labels).
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/models" => "/v1/models",
        "/v1/documents" => "/v1/documents",
        p if p.starts_with("/v1/documents/") => "/v1/documents/{id}",
        "/v1/audit" => "/v1/audit",
        "/v1/costs" => "/v1/costs",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        _ => "other",
    }
}

/// Binds `listen` and serves until Ctrl-C or SIGTERM, then drains in-flight requests. With
/// `[server] tls_cert` and `tls_key` it serves HTTPS; a missing, unreadable or mismatched file
/// fails here, before anything listens, with an error that names it.
pub async fn serve(state: AppState, listen: SocketAddr) -> std::io::Result<()> {
    serve_until(state, listen, shutdown_signal(), |_| ()).await
}

/// [`serve`] with the shutdown signal as an input, and `bound` called with the address once the
/// listener is bound (for tests on port 0).
pub async fn serve_until(
    state: AppState,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let acceptor = match &state.config.server.tls {
        Some(files) => Some(tls::acceptor(files).map_err(std::io::Error::other)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && acceptor.is_none() {
        tracing::warn!(bound = %local, "listening on a non-loopback address without TLS: requests, answers and API keys cross the network in clear text");
    }
    canary::spawn_scheduled(&state);
    reverify::spawn(&state);
    // Signed checkpoints on a timer (the sink also checkpoints on append when one is due), and
    // one at shutdown, so a cleanly stopped server leaves a sealed log.
    let auditor = state.audit.clone();
    let every = std::time::Duration::from_secs(state.config.audit.checkpoint_seconds.max(1));
    let ticker = tokio::spawn({
        let auditor = auditor.clone();
        async move {
            loop {
                tokio::time::sleep(every).await;
                let a = auditor.clone();
                let _ = tokio::task::spawn_blocking(move || a.checkpoint()).await;
            }
        }
    });
    let service = app(state).into_make_service_with_connect_info::<limits::ClientAddr>();
    bound(local);
    let served = match acceptor {
        Some(acceptor) => {
            tracing::info!(bound = %local, "perimeter is listening (https)");
            let listener = tls::TlsListener::new(listener, acceptor)?;
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
        None => {
            tracing::info!(bound = %local, "perimeter is listening");
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
    };
    ticker.abort();
    let _ = tokio::task::spawn_blocking(move || auditor.checkpoint()).await;
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
