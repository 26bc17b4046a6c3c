//! `/livez`, `/readyz`, `/metrics` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::problem::Problem;
use crate::state::GatewayState;

/// The OpenAPI document, checked against the routes by the tests.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The process is up. Checks nothing else, by design.
pub(crate) async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready to serve: connected to NATS and not shutting down.
pub(crate) async fn readyz(State(state): State<GatewayState>) -> Response {
    if state.is_shutting_down() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "the gateway is stopping",
        )
        .into_response();
    }
    if !state.nats_connected() {
        return Problem::unavailable("not connected to NATS").into_response();
    }
    Json(json!({"status": "ready", "nats": "connected"})).into_response()
}

/// Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<GatewayState>) -> Response {
    let body = state.inner.metrics.render(state.nats_connected());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
