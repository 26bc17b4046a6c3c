//! Sending a job's request, and turning what came back into an [`Outcome`].
//!
//! | Result | Outcome | Recorded |
//! |---|---|---|
//! | 2xx | done | `succeeded` event, result `{"status", "latency_ms"}` |
//! | 408, 429, 5xx | retry: after `Retry-After` (capped) if given, else the queue's schedule | `retried` event: `HttpStatus: HTTP 503 Service Unavailable after 12 ms: <body>` |
//! | 3xx (redirects are not followed), other 4xx, anything else | dead-lettered now | reason `HTTP 404 Not Found after 3 ms: <body>` |
//! | timeout, connection refused/reset, DNS failure, TLS failure | retry under the queue's schedule | `Timeout: ...`, `Connect: ...`, `Http: ...` |
//! | invalid payload, or a target refused by `--deny-private-networks` | dead-lettered now | the reason |
//!
//! `latency_ms` is the time until the response headers arrived. At most [`SNIPPET_BYTES`] of
//! a response body are read, whatever the status.

use std::time::{Duration, Instant, SystemTime};

use jobfleet_worker::{HandlerError, HandlerResult, JobContext, Outcome};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};

use crate::guard::{self, PublicOnlyResolver};
use crate::request::{self, WebhookRequest};

/// The `User-Agent` sent unless a job sets its own.
pub(crate) const USER_AGENT: &str = concat!("jobfleet-webhook/", env!("CARGO_PKG_VERSION"));

/// Most bytes of a response body read (for the error message, and so that a small body is
/// consumed and its connection reused).
pub(crate) const SNIPPET_BYTES: usize = 1024;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The operator's limits on deliveries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Whole-request deadline when a job gives no `timeout_ms`.
    pub(crate) default_timeout: Duration,
    /// Cap on any job's `timeout_ms`.
    pub(crate) max_timeout: Duration,
    /// Cap on a receiver's `Retry-After`.
    pub(crate) max_retry_after: Duration,
    /// Refuse non-public target addresses.
    pub(crate) deny_private_networks: bool,
}

/// Sends webhook requests with one shared connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Deliverer {
    client: reqwest::Client,
    limits: Limits,
}

impl Deliverer {
    /// A deliverer that follows no redirects. With `deny_private_networks`, it also ignores
    /// proxy settings from the environment, since through a proxy the guard would vet the
    /// proxy's address instead of the target's.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (for example, no TLS crypto provider installed).
    pub(crate) fn new(limits: Limits) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT);
        if limits.deny_private_networks {
            builder = builder.no_proxy().dns_resolver(PublicOnlyResolver);
        }
        Ok(Self {
            client: builder.build()?,
            limits,
        })
    }

    /// Delivers one attempt of a job.
    pub(crate) async fn deliver(&self, job: &JobContext) -> HandlerResult {
        let request = match request::parse(job.payload()) {
            Ok(request) => request,
            Err(invalid) => return Ok(Outcome::fail(invalid.to_string())),
        };
        if self.limits.deny_private_networks
            && let Err(refused) = guard::check_literal(&request.url)
        {
            return Ok(Outcome::fail(refused.to_string()));
        }
        let timeout = self.timeout_for(&request, job.timeout());
        let WebhookRequest {
            url,
            method,
            headers,
            body,
            ..
        } = request;
        let mut builder = self
            .client
            .request(method, url)
            .headers(headers_for(job, headers))
            .timeout(timeout);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let started = Instant::now();
        let sent = builder.send().await;
        let latency = started.elapsed();
        match sent {
            Ok(response) => self.on_response(job, response, latency).await,
            Err(err) => on_error(&err, latency, timeout),
        }
    }

    /// The job's `timeout_ms` or the default, capped by `--max-request-timeout`, and kept
    /// inside the attempt's own timeout so that a slow receiver is reported as such rather
    /// than as a handler cut off by the runtime.
    fn timeout_for(&self, request: &WebhookRequest, attempt_timeout: Duration) -> Duration {
        let margin = (attempt_timeout / 10).min(Duration::from_secs(1));
        request
            .timeout
            .unwrap_or(self.limits.default_timeout)
            .min(self.limits.max_timeout)
            .min(attempt_timeout - margin)
    }

    async fn on_response(
        &self,
        job: &JobContext,
        mut response: reqwest::Response,
        latency: Duration,
    ) -> HandlerResult {
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER);
        let location = header(LOCATION);
        let class = classify(
            status.as_u16(),
            retry_after.as_deref(),
            SystemTime::now(),
            self.limits.max_retry_after,
        );
        let (body, truncated) = read_prefix(&mut response, SNIPPET_BYTES).await;
        let latency_ms = millis(latency);
        let describe = || {
            let mut message = format!("HTTP {} after {latency_ms} ms", status_text(status));
            if status.is_redirection() {
                message.push_str(" (redirects are not followed");
                if let Some(location) = &location {
                    message.push_str("; Location: ");
                    message.push_str(&snippet(location.as_bytes(), false));
                }
                message.push(')');
            }
            let body = snippet(&body, truncated);
            if !body.is_empty() {
                message.push_str(": ");
                message.push_str(&body);
            }
            message
        };
        match class {
            Class::Success => Ok(Outcome::DoneWith(serde_json::json!({
                "status": status.as_u16(),
                "latency_ms": latency_ms,
            }))),
            Class::Fail => Ok(Outcome::fail(describe())),
            // On the last attempt the message matters more than the delay: it becomes the
            // dead letter's reason.
            Class::Retry { after: Some(delay) } if !job.is_last_attempt() => {
                // `Outcome::Retry` carries no message, so the audit event will not show the
                // status: log it.
                tracing::warn!(
                    status = status.as_u16(),
                    "{}; retrying after Retry-After ({delay:?})",
                    describe()
                );
                Ok(Outcome::retry_after(delay))
            }
            Class::Retry { .. } => Err(HandlerError::new(describe()).with_class("HttpStatus")),
        }
    }
}

/// The worker's headers (`Idempotency-Key`, the job's trace context), then the job's, which
/// replace any of the same name.
fn headers_for(job: &JobContext, given: HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(given.len() + 3);
    if let Ok(id) = HeaderValue::from_str(&job.id().to_string()) {
        headers.insert(IDEMPOTENCY_KEY, id);
    }
    let meta = job.meta();
    for (name, value) in [
        (TRACEPARENT, &meta.traceparent),
        (TRACESTATE, &meta.tracestate),
    ] {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    let mut last = None;
    for (name, value) in given {
        // `HeaderMap::into_iter` yields a name only for the first value of each name.
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            headers.insert(name.clone(), value);
        }
    }
    headers
}

fn on_error(err: &reqwest::Error, latency: Duration, timeout: Duration) -> HandlerResult {
    if let Some(refused) = guard::refused_in(err) {
        return Ok(Outcome::fail(refused.to_string()));
    }
    if err.is_builder() {
        return Ok(Outcome::fail(format!(
            "cannot build the request: {}",
            error_chain(err)
        )));
    }
    if err.is_timeout() {
        return Err(HandlerError::new(format!(
            "no complete response within {} ms",
            millis(timeout)
        ))
        .with_class("Timeout"));
    }
    let class = if err.is_connect() { "Connect" } else { "Http" };
    Err(HandlerError::new(format!(
        "request failed after {} ms: {}",
        millis(latency),
        error_chain(err)
    ))
    .with_class(class))
}

/// An error and its causes, `: `-separated, without the URL (which may hold credentials)
/// and without causes that repeat the previous message.
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = std::error::Error::source(err);
    let head = if err.is_connect() {
        "cannot connect"
    } else if err.is_body() {
        "error reading the response body"
    } else if err.is_request() {
        "error sending the request"
    } else {
        "HTTP error"
    };
    parts.push(head.to_owned());
    while let Some(cause) = current {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}

/// What a response status means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Delivered.
    Success,
    /// Worth another attempt, after this delay if the receiver said so.
    Retry { after: Option<Duration> },
    /// A retry cannot help.
    Fail,
}

/// Classifies a response status: 2xx succeed; 408, 429 and 5xx are retried (after
/// `Retry-After`, capped at `max_retry_after`, when the receiver sent one); everything else
/// fails for good (3xx included: redirects are not followed).
pub(crate) fn classify(
    status: u16,
    retry_after: Option<&str>,
    now: SystemTime,
    max_retry_after: Duration,
) -> Class {
    match status {
        200..=299 => Class::Success,
        408 | 429 | 500..=599 => Class::Retry {
            after: retry_after
                .and_then(|value| parse_retry_after(value, now))
                .map(|delay| delay.min(max_retry_after)),
        },
        _ => Class::Fail,
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (a date in the past is no delay).
/// `None` when it is neither.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time"; the caller caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads at most `limit` bytes of the body; `true` when it stopped at the limit. A body that
/// fails midway is cut where it failed.
async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while out.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return (out, false),
        }
    }
    out.truncate(limit);
    (out, true)
}

/// A body prefix as one line of text: control characters and runs of white space become one
/// space; `…` marks a cut.
pub(crate) fn snippet(bytes: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if !word.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    if truncated {
        out.push('…');
    }
    out
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(3600);

    fn class(status: u16) -> Class {
        classify(status, None, SystemTime::now(), CAP)
    }

    #[test]
    fn statuses_map_to_outcomes() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(class(status), Class::Success, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(class(status), Class::Retry { after: None }, "{status}");
        }
        for status in [
            100, 300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 409, 410, 413, 422, 451,
            499, 600,
        ] {
            assert_eq!(class(status), Class::Fail, "{status}");
        }
    }

    #[test]
    fn retry_after_is_honoured_on_retryable_statuses_only() {
        let now = SystemTime::now();
        assert_eq!(
            classify(429, Some("7"), now, CAP),
            Class::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(503, Some("99999"), now, CAP),
            Class::Retry { after: Some(CAP) },
            "capped"
        );
        assert_eq!(
            classify(503, Some("soon"), now, CAP),
            Class::Retry { after: None },
            "unparseable: the queue's schedule"
        );
        assert_eq!(classify(404, Some("7"), now, CAP), Class::Fail);
        assert_eq!(classify(200, Some("7"), now, CAP), Class::Success);
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        for bad in ["", "-1", "1.5", "tomorrow", "120s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn snippets_are_one_line_and_marked_when_cut() {
        assert_eq!(snippet(b"", false), "");
        assert_eq!(
            snippet(b"  {\"error\":\n\t\"busy\"}\r\n", false),
            "{\"error\": \"busy\"}"
        );
        assert_eq!(snippet(b"abc\x00\x1bdef", true), "abc def…");
        assert_eq!(snippet(&[0xff, b'o', b'k'], false), "\u{fffd}ok");
    }

    #[test]
    fn timeouts_are_defaulted_capped_and_kept_inside_the_attempt() {
        // Building a client needs a crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let deliverer = Deliverer::new(Limits {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(60),
            max_retry_after: CAP,
            deny_private_networks: false,
        })
        .unwrap();
        let with = |ms: Option<u64>| {
            let mut request = request::parse(br#"{"url": "http://h"}"#).unwrap();
            request.timeout = ms.map(Duration::from_millis);
            request
        };
        let long_attempt = Duration::from_secs(300);
        assert_eq!(
            deliverer.timeout_for(&with(None), long_attempt),
            Duration::from_secs(30)
        );
        assert_eq!(
            deliverer.timeout_for(&with(Some(1500)), long_attempt),
            Duration::from_millis(1500)
        );
        assert_eq!(
            deliverer.timeout_for(&with(Some(600_000)), long_attempt),
            Duration::from_secs(60)
        );
        assert_eq!(
            deliverer.timeout_for(&with(None), Duration::from_secs(5)),
            Duration::from_millis(4500)
        );
    }
}
