//! `GET /openapi.json`: the API description, maintained by hand next to the routes it describes
//! (a test checks that every route is in it).

use axum::response::{IntoResponse, Response};

pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}
