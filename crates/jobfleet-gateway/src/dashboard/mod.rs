//! The web dashboard, served under `/ui`: queues, a queue's configuration and recent jobs,
//! a job's audit timeline, and the dead-letter browser with redrive and delete.
//!
//! Pages are rendered on the server (readable with JavaScript off); `assets/dashboard.js`
//! only adds live updates (it re-fetches the page and swaps the regions marked
//! `data-live`) and a "select all" box. Assets are compiled into the binary.
//!
//! Access: with no tokens configured the gateway is open, and so is the dashboard. With
//! tokens, a request needs a `read` credential to see anything and an `admin` one to act:
//! either `Authorization: Bearer` or a session cookie from the login form (the token is
//! checked once and never stored or shown; the cookie is a random id, `HttpOnly`,
//! `SameSite=Strict`). Every action is a POST form that first shows a confirmation page,
//! and POSTs from other origins are refused (tower-http's `CsrfLayer`).

mod assets;
mod chart;
mod dead_letters;
pub(crate) mod html;
mod jobs;
mod layout;
mod overview;
mod queue;
mod session;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use tower_http::csrf::{CsrfLayer, ProtectionError};

use crate::state::GatewayState;
use session::Sessions;

/// What the dashboard's handlers share.
#[derive(Debug, Clone)]
pub(crate) struct Ui {
    gw: GatewayState,
    sessions: Arc<Sessions>,
}

/// The dashboard's routes, ready to merge into the gateway's router. They are not in the
/// API's route table (nor its OpenAPI document): they serve HTML, not JSON.
pub(crate) fn router(state: &GatewayState) -> Router<GatewayState> {
    let ui = Ui {
        gw: state.clone(),
        sessions: Arc::new(Sessions::default()),
    };
    let protected = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/queues/{queue}", get(queue::page))
        .route("/ui/queues/{queue}/pause", post(queue::pause))
        .route("/ui/queues/{queue}/resume", post(queue::resume))
        .route("/ui/queues/{queue}/dead-letters", get(dead_letters::list))
        .route(
            "/ui/queues/{queue}/dead-letters/redrive",
            post(dead_letters::redrive),
        )
        .route(
            "/ui/queues/{queue}/dead-letters/delete",
            post(dead_letters::delete),
        )
        .route(
            "/ui/queues/{queue}/dead-letters/{id}",
            get(dead_letters::show),
        )
        .route("/ui/jobs", get(jobs::find))
        .route("/ui/jobs/{id}", get(jobs::page))
        .route_layer(middleware::from_fn_with_state(
            ui.clone(),
            session::identify,
        ));
    let open = Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/{*rest}", any(not_found));
    protected
        .merge(open)
        .layer(CsrfLayer::new().with_rejection_response(cross_origin_refused))
        .layer(middleware::from_fn_with_state(
            crate::body::BodyRules {
                timeout: state.config().body_read_timeout,
                limit: None,
            },
            crate::body::guard,
        ))
        .layer(middleware::from_fn(security_headers))
        .fallback(api_fallback)
        .with_state(ui)
}

/// Requests for neither the API nor the dashboard: the API's own 404 (problem+json),
/// counted as `unmatched` like the API does. Needed because this router is merged after
/// the API's layers (so that they leave HTML alone), and a merge keeps the fallback of the
/// router merged in.
async fn api_fallback(State(ui): State<Ui>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let response =
        crate::problem::problem_for_plain_errors(StatusCode::NOT_FOUND.into_response()).await;
    ui.gw.inner.metrics.observe(
        "unmatched",
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn not_found() -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no dashboard page at this address.",
    )
}

fn cross_origin_refused(_: ProtectionError) -> Response {
    layout::error_page(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form was sent from another site (or by a browser that does not say where \
         it came from), so it was not carried out. Open the dashboard and try again.",
    )
}

/// The headers every dashboard response carries: no inline script or style, no framing,
/// no caching of pages (they show live data).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether the request is the script's live refresh (`X-Jobfleet-Live: 1`), which only
/// uses the `data-live` regions: pages may skip reading what lies outside them.
pub(crate) fn is_live_refresh(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("x-jobfleet-live")
}

/// A 303 to `location` (after a form POST, so a reload does not repeat it).
pub(crate) fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}
