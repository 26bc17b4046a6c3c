//! Errors as `application/problem+json` (RFC 9457): the one place a failure becomes an HTTP
//! status and body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobfleet_producer::{EnqueueError, EnqueueErrorKind, QueueAdminError, QueueAdminErrorKind};
use jobfleet_worker::{WorkerError, WorkerErrorKind};
use serde::Serialize;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of the `type` URIs; each problem type is documented under it.
const TYPE_BASE: &str = "https://jobfleet.dev/problems/";

/// An HTTP error response body.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// A URI naming the kind of problem (stable; match on it, or on `status`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// The job concerned, when one was (e.g. a publish that timed out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Seconds to wait before retrying, for 429 and 503 (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of kind `slug` (the last segment of its type URI) with `status`.
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("{TYPE_BASE}{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            job_id: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 404: no such thing.
    pub fn not_found(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, slug, detail)
    }

    /// 422: well-formed but invalid.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", detail)
    }

    /// 503: NATS or JetStream cannot serve the request now.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "nats-unavailable", detail).retry_after(1)
    }

    /// Sets the retry hint.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Names the job concerned.
    pub fn for_job(mut self, id: impl ToString) -> Self {
        self.job_id = Some(id.to_string());
        self
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<EnqueueError> for Problem {
    fn from(err: EnqueueError) -> Self {
        let detail = err.to_string();
        let problem = match err.kind() {
            EnqueueErrorKind::UnknownQueue => Self::not_found("unknown-queue", detail),
            EnqueueErrorKind::PayloadTooLarge => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", detail)
            }
            EnqueueErrorKind::StreamFull => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "queue-full", detail).retry_after(1)
            }
            EnqueueErrorKind::InvalidOption | EnqueueErrorKind::InvalidPayload => {
                Self::invalid(detail)
            }
            EnqueueErrorKind::NotConnected | EnqueueErrorKind::Timeout => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "nats-unavailable",
                format!(
                    "{detail}; the job may or may not be stored: retry with the same \
                     Idempotency-Key to be sure it is stored once"
                ),
            )
            .retry_after(1),
            // The gateway's own NATS user may not do this (or the server refused the job for
            // another reason): a retry would fare no better, so no Retry-After.
            EnqueueErrorKind::Rejected => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "nats-refused", detail)
            }
            _ => Self::unavailable(detail),
        };
        match err.job_id() {
            Some(id) => problem.for_job(id),
            None => problem,
        }
    }
}

impl From<QueueAdminError> for Problem {
    fn from(err: QueueAdminError) -> Self {
        match err.kind() {
            QueueAdminErrorKind::UnknownQueue => Self::not_found("unknown-queue", err.to_string()),
            QueueAdminErrorKind::Rejected => {
                Self::new(StatusCode::CONFLICT, "rejected", err.to_string())
            }
            _ => Self::unavailable(err.to_string()),
        }
    }
}

impl From<WorkerError> for Problem {
    fn from(err: WorkerError) -> Self {
        match err.kind() {
            WorkerErrorKind::UnknownQueue => Self::not_found("unknown-queue", err.to_string()),
            _ => Self::unavailable(err.to_string()),
        }
    }
}

/// Turns error responses that did not come from our handlers (axum's own rejections: bad
/// JSON, body too large, unknown route, wrong method) into problem+json of the same status.
pub(crate) async fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let www_authenticate = response.headers().get(header::WWW_AUTHENTICATE).cloned();
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let slug = match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid-request",
        StatusCode::BAD_REQUEST => "bad-request",
        _ => "error",
    };
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = Problem::new(status, slug, detail).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    if let Some(value) = www_authenticate {
        out.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    out
}
