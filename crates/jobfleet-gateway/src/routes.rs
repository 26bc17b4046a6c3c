//! The route table: every route with its method and required scope, in one place. The
//! router is built from it, and the OpenAPI test compares it with the document.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};

use crate::auth::{Scope, WWW_AUTHENTICATE};
use crate::body::BodyRules;
use crate::state::GatewayState;
use crate::{dead_letters, enqueue, health, jobs, queues};

/// A route of the gateway, for tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInfo {
    /// The HTTP method.
    pub method: Method,
    /// The path template, e.g. `/v1/jobs/{id}`.
    pub path: &'static str,
    /// The scope a token needs; `None` for open routes (health, metrics, OpenAPI).
    pub scope: Option<Scope>,
}

struct Route {
    info: RouteInfo,
    handler: MethodRouter<GatewayState>,
}

fn route(
    method: Method,
    path: &'static str,
    scope: Option<Scope>,
    handler: MethodRouter<GatewayState>,
) -> Route {
    Route {
        info: RouteInfo {
            method,
            path,
            scope,
        },
        handler,
    }
}

fn table() -> Vec<Route> {
    use Scope::{Admin, Enqueue, Read};
    const DLQ: &str = "/v1/queues/{queue}/dead-letters";
    vec![
        route(Method::GET, "/livez", None, get(health::livez)),
        route(Method::GET, "/readyz", None, get(health::readyz)),
        route(Method::GET, "/metrics", None, get(health::metrics)),
        route(Method::GET, "/openapi.json", None, get(health::openapi)),
        route(
            Method::POST,
            "/v1/queues/{queue}/jobs",
            Some(Enqueue),
            post(enqueue::enqueue_one),
        ),
        route(
            Method::POST,
            "/v1/queues/{queue}/batch",
            Some(Enqueue),
            post(enqueue::enqueue_batch),
        ),
        route(Method::GET, "/v1/jobs/{id}", Some(Read), get(jobs::status)),
        route(
            Method::GET,
            "/v1/jobs/{id}/history",
            Some(Read),
            get(jobs::history),
        ),
        route(Method::GET, "/v1/queues", Some(Read), get(queues::list)),
        route(
            Method::GET,
            "/v1/queues/{queue}",
            Some(Read),
            get(queues::show),
        ),
        route(
            Method::POST,
            "/v1/queues/{queue}/pause",
            Some(Admin),
            post(queues::pause),
        ),
        route(
            Method::POST,
            "/v1/queues/{queue}/resume",
            Some(Admin),
            post(queues::resume),
        ),
        route(
            Method::POST,
            "/v1/queues/{queue}/purge",
            Some(Admin),
            post(queues::purge),
        ),
        route(Method::GET, DLQ, Some(Read), get(dead_letters::list)),
        route(
            Method::POST,
            "/v1/queues/{queue}/dead-letters/redrive",
            Some(Admin),
            post(dead_letters::redrive),
        ),
        route(
            Method::POST,
            "/v1/queues/{queue}/dead-letters/delete",
            Some(Admin),
            post(dead_letters::delete),
        ),
        route(
            Method::GET,
            "/v1/queues/{queue}/dead-letters/{id}",
            Some(Read),
            get(dead_letters::show),
        ),
        route(
            Method::DELETE,
            "/v1/queues/{queue}/dead-letters/{id}",
            Some(Admin),
            delete(dead_letters::delete_one),
        ),
        route(
            Method::POST,
            "/v1/queues/{queue}/dead-letters/{id}/redrive",
            Some(Admin),
            post(dead_letters::redrive_one),
        ),
    ]
}

/// Every route of the gateway.
pub fn routes() -> Vec<RouteInfo> {
    table().into_iter().map(|r| r.info).collect()
}

/// The gateway as an axum `Router`, ready to serve (or to call in tests without a socket).
pub fn app(state: GatewayState) -> Router {
    let mut router: Router<GatewayState> = Router::new();
    let body_limit = state.config().body_limit;
    let body_rules = BodyRules {
        timeout: state.config().body_read_timeout,
        limit: Some(body_limit),
    };
    for Route { info, handler } in table() {
        // Under the scope check: a request without a valid token gets its 401 whatever its
        // body.
        let handler = handler.route_layer(middleware::from_fn_with_state(
            body_rules,
            crate::body::guard,
        ));
        let handler = match info.scope {
            Some(scope) => handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), scope),
                require_scope,
            )),
            None => handler,
        };
        router = router.route(info.path, handler);
    }
    router
        .layer(middleware::map_response(
            crate::problem::problem_for_plain_errors,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(crate::dashboard::router(&state))
        .layer(middleware::from_fn(crate::body::close_if_body_unread))
        .with_state(state)
}

async fn require_scope(
    State((state, scope)): State<(GatewayState, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    match state.config().tokens.authorize(request.headers(), scope) {
        Ok(_) => next.run(request).await,
        Err(problem) => {
            let unauthorized = problem.status == 401;
            let mut response = problem.into_response();
            if unauthorized {
                response
                    .headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, WWW_AUTHENTICATE);
            }
            response
        }
    }
}

/// Counts requests by route template and status, and times them.
async fn observe(State(state): State<GatewayState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A fixed set, so odd methods cannot grow the metrics without bound.
    let method = match *request.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS => request.method().as_str(),
        _ => "OTHER",
    }
    .to_owned();
    let metrics = &state.inner.metrics;
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    // Decremented on drop too: a client that hangs up cancels this future.
    let _in_flight = scopeguard(|| {
        metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    });
    let response = next.run(request).await;
    state.inner.metrics.observe(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
