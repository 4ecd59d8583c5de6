//! Perimeter's HTTP server: an OpenAI-compatible API over the retrieval pipeline, plus document
//! management, health, metrics and the OpenAPI description.

mod adapters;
pub mod backends;
pub mod canary;
mod error;
mod metrics;
mod openapi;
pub mod pipeline;
pub mod reverify;
mod routes;
mod state;
mod wire;

use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use backends::Backends;
pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::{denied, perimeter_info, ROUTED_MODEL};
pub use state::{chat_backend, load_models, open_index, AppState, Engines, StartError, EMBEDDED_BACKEND};
pub use wire::PerimeterInfo;

/// The application router with all routes and limits.
pub fn app(state: AppState) -> Router {
    let limit = state.config.server.max_body_bytes;
    let counted = state.clone();
    Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/v1/models", get(routes::models))
        .route("/v1/documents", post(routes::create_document).get(routes::list_documents))
        .route("/v1/documents/{id}", get(routes::get_document).delete(routes::delete_document))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(limit))
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
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        _ => "other",
    }
}

/// Binds `listen` and serves until Ctrl-C or SIGTERM, then drains in-flight requests.
pub async fn serve(state: AppState, listen: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    canary::spawn_scheduled(&state);
    reverify::spawn(&state);
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "listening on a non-loopback address without API keys or TLS: anyone who can reach it can query your documents");
    }
    tracing::info!(%bound, "perimeter is listening");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown_signal()).await
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
