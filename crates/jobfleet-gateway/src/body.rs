//! Request bodies that are too large or too slow: a body must arrive within
//! `GatewayConfig::body_read_timeout` of its request's head, or the request gets 408 and its
//! connection is closed, so a client that sends a body slowly or stops halfway cannot hold a
//! connection and a handler forever; and a body whose `Content-Length` is over the API's limit
//! gets 413 without being waited for. An answer given before the request's body was read to
//! its end (a 401, a 404, a 413) closes the connection and says so.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use tower_http::timeout::{DeadlineBody, TimeoutError};

use crate::problem::Problem;

/// What [`guard`] enforces on request bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRules {
    /// The whole body must arrive within this long of the request head.
    pub(crate) timeout: Duration,
    /// A body that says (by its `Content-Length`) that it is larger than this is refused
    /// before it is read; bodies without a length are limited by the extractors.
    pub(crate) limit: Option<usize>,
}

/// Middleware: refuses a body announced larger than the limit without reading it, and puts a
/// deadline on the body's arrival. A handler's body extractor fails when the deadline passes;
/// this replaces its rejection with a 408.
pub(crate) async fn guard(
    State(rules): State<BodyRules>,
    request: Request,
    next: Next,
) -> Response {
    let body = request.body();
    if body.is_end_stream() {
        return next.run(request).await;
    }
    let announced = body.size_hint().lower();
    if let Some(limit) = rules.limit
        && announced > limit as u64
    {
        // Unread: `close_if_body_unread` closes the connection.
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the body is {announced} bytes; the limit is {limit}"),
        )
        .into_response();
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&timed_out);
    let request = request.map(|body| {
        Body::new(DeadlineBody::new(rules.timeout, body).map_err(move |err| {
            if err.is::<TimeoutError>() {
                flag.store(true, Ordering::Relaxed);
            }
            err
        }))
    });
    let response = next.run(request).await;
    if !timed_out.load(Ordering::Relaxed) {
        return response;
    }
    // The rest of the body may still be on its way: `close_if_body_unread` closes the
    // connection.
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        format!(
            "the request body did not arrive within {}",
            humantime::format_duration(rules.timeout)
        ),
    )
    .into_response()
}

/// Middleware (outermost): an answer to a request whose body was not read to its end gets
/// `Connection: close`. hyper closes such a connection after the answer anyway (the rest of
/// the body is still on its way); without the header a client keeps it for its next request,
/// which then fails with no answer.
pub(crate) async fn close_if_body_unread(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(WatchedBody {
            inner: body,
            ended: Arc::clone(&ended),
        })
    });
    let mut response = next.run(request).await;
    if !ended.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to its end.
struct WatchedBody {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl axum::body::HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
