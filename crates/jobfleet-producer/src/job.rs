//! A job to enqueue: payload bytes plus per-job options.

use std::time::Duration;

use bytes::Bytes;
use jobfleet_core::{JobId, JobMeta, QueueName, headers};
use time::OffsetDateTime;

use crate::error::{EnqueueError, EnqueueErrorKind};

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 1024;

/// A job: its payload and per-job options. Every option defaults to the queue's setting.
///
/// ```
/// use jobfleet_producer::Job;
/// use std::time::Duration;
///
/// let job = Job::json(&serde_json::json!({"to": "a@example.com"}))?
///     .idempotency_key("order-42:mail")
///     .delay(Duration::from_secs(60))
///     .max_attempts(3)
///     .header("tenant", "acme");
/// # Ok::<(), jobfleet_producer::EnqueueError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Job {
    pub(crate) payload: Bytes,
    pub(crate) content_type: Option<String>,
    pub(crate) id: Option<JobId>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) job_type: Option<String>,
    pub(crate) delay: Option<Duration>,
    pub(crate) run_at: Option<OffsetDateTime>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Job {
    /// A job whose payload is `payload`, as is. The content type stays unset, which the
    /// protocol reads as `application/json`; call [`Job::content_type`] for anything else.
    pub fn bytes(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            content_type: None,
            id: None,
            idempotency_key: None,
            job_type: None,
            delay: None,
            run_at: None,
            max_attempts: None,
            timeout: None,
            traceparent: None,
            tracestate: None,
            headers: Vec::new(),
        }
    }

    /// A job whose payload is `value` serialized as JSON.
    ///
    /// # Errors
    ///
    /// [`EnqueueErrorKind::InvalidPayload`] when serialization fails.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, EnqueueError> {
        serde_json::to_vec(value).map(Self::bytes).map_err(|err| {
            EnqueueError::with_source(
                EnqueueErrorKind::InvalidPayload,
                "cannot serialize the payload as JSON",
                err,
            )
        })
    }

    /// The payload's media type (`Content-Type` header).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Uses this id instead of a fresh UUIDv7 (for callers that mint ids themselves).
    pub fn id(mut self, id: JobId) -> Self {
        self.id = Some(id);
        self
    }

    /// Derives the job id from `key`: enqueueing the same key on the same queue again within
    /// the queue's duplicate window stores nothing and returns the first job's id.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// An application-defined job type (`Jobfleet-Type`).
    pub fn job_type(mut self, job_type: impl Into<String>) -> Self {
        self.job_type = Some(job_type.into());
        self
    }

    /// Runs the job no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Runs the job no earlier than `at`.
    pub fn run_at(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Attempts before dead-lettering; at most the queue's `max_attempts`.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Per-attempt handler timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// W3C trace context of the enqueuing span.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// W3C trace state of the enqueuing span.
    pub fn tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
        self
    }

    /// An application header delivered with the job. Names starting with `Nats-` or
    /// `Jobfleet-` are reserved.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Checks the options and computes the job's metadata.
    pub(crate) fn prepare(
        &self,
        queue: &QueueName,
        queue_max_attempts: u32,
        now: OffsetDateTime,
    ) -> Result<JobMeta, EnqueueError> {
        let invalid = |msg: String| Err(EnqueueError::new(EnqueueErrorKind::InvalidOption, msg));
        if self.delay.is_some() && self.run_at.is_some() {
            return invalid("set either `delay` or `run_at`, not both".into());
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return invalid(format!(
                    "`idempotency_key` must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes"
                ));
            }
            if key.contains(['\r', '\n']) {
                return invalid("`idempotency_key` must not contain line breaks".into());
            }
            if self.id.is_some() {
                return invalid("set either `id` or `idempotency_key`, not both".into());
            }
        }
        match self.max_attempts {
            Some(0) => return invalid("`max_attempts` must be at least 1".into()),
            Some(n) if n > queue_max_attempts => {
                return invalid(format!(
                    "`max_attempts` {n} exceeds queue {queue}'s limit of {queue_max_attempts}"
                ));
            }
            _ => {}
        }
        if self.timeout.is_some_and(|t| t.as_millis() == 0) {
            return invalid("`timeout` must be at least 1ms".into());
        }
        for (field, value) in [
            ("job_type", &self.job_type),
            ("content_type", &self.content_type),
            ("traceparent", &self.traceparent),
            ("tracestate", &self.tracestate),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| !valid_header_value(v) || v.is_empty())
            {
                return invalid(format!(
                    "`{field}` must be non-empty printable text without line breaks"
                ));
            }
        }
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("nats-") || lower.starts_with("jobfleet-") {
                return invalid(format!(
                    "header {name:?} is reserved (prefixes `Nats-` and `Jobfleet-`)"
                ));
            }
            let standard = [
                headers::CONTENT_TYPE,
                headers::TRACEPARENT,
                headers::TRACESTATE,
            ];
            if standard.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return invalid(format!("header {name:?} has its own option on `Job`"));
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return invalid(format!(
                    "header name {name:?} must be printable ASCII without `:`"
                ));
            }
            if !valid_header_value(value) {
                return invalid(format!(
                    "header {name:?} has a value with line breaks or control characters"
                ));
            }
        }

        let id = match (&self.idempotency_key, self.id) {
            (Some(key), _) => JobId::from_idempotency_key(queue, key),
            (None, Some(id)) => id,
            (None, None) => JobId::new(),
        };
        let run_at = self
            .run_at
            .or_else(|| self.delay.map(|d| now + d))
            .filter(|at| *at > now);
        let mut meta = JobMeta::new(id, now);
        meta.job_type.clone_from(&self.job_type);
        meta.max_attempts = self.max_attempts;
        meta.timeout = self.timeout;
        meta.run_at = run_at;
        meta.idempotency_key.clone_from(&self.idempotency_key);
        meta.content_type.clone_from(&self.content_type);
        meta.traceparent.clone_from(&self.traceparent);
        meta.tracestate.clone_from(&self.tracestate);
        Ok(meta)
    }
}

fn valid_header_value(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(job: &Job) -> Result<JobMeta, EnqueueError> {
        job.prepare(&QueueName::new("q").unwrap(), 10, OffsetDateTime::now_utc())
    }

    #[test]
    fn rejects_each_invalid_option_with_invalid_option() {
        let now = OffsetDateTime::now_utc();
        let cases = [
            Job::bytes("x").delay(Duration::from_secs(1)).run_at(now),
            Job::bytes("x").idempotency_key(""),
            Job::bytes("x").idempotency_key("a\nb"),
            Job::bytes("x").idempotency_key("k").id(JobId::new()),
            Job::bytes("x").max_attempts(0),
            Job::bytes("x").max_attempts(11),
            Job::bytes("x").timeout(Duration::from_micros(10)),
            Job::bytes("x").header("Nats-Msg-Id", "x"),
            Job::bytes("x").header("jobfleet-id", "x"),
            Job::bytes("x").header("content-type", "x"),
            Job::bytes("x").header("bad name", "x"),
            Job::bytes("x").header("ok", "line\r\nbreak"),
            Job::bytes("x").job_type("a\nb"),
        ];
        for job in cases {
            let err = prepare(&job).unwrap_err();
            assert_eq!(err.kind(), EnqueueErrorKind::InvalidOption, "{job:?}");
        }
    }

    #[test]
    fn delay_in_the_past_or_zero_means_now() {
        let meta = prepare(&Job::bytes("x").delay(Duration::ZERO)).unwrap();
        assert_eq!(meta.run_at, None);
        let meta = prepare(&Job::bytes("x").run_at(OffsetDateTime::UNIX_EPOCH)).unwrap();
        assert_eq!(meta.run_at, None);
        let meta = prepare(&Job::bytes("x").delay(Duration::from_secs(5))).unwrap();
        assert!(meta.run_at.is_some());
    }

    #[test]
    fn idempotency_key_determines_the_id() {
        let a = prepare(&Job::bytes("x").idempotency_key("k")).unwrap();
        let b = prepare(&Job::bytes("y").idempotency_key("k")).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.idempotency_key.as_deref(), Some("k"));
    }
}
