//! A job to enqueue: payload bytes plus per-job options.

use std::time::Duration;

use bytes::Bytes;
use jobfleet_core::{JobId, JobMeta, QueueName, headers};
use time::OffsetDateTime;

use crate::error::{EnqueueError, EnqueueErrorKind};

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 1024;

/// Longest delay, and longest per-attempt timeout, a job may ask for: one year.
pub const MAX_JOB_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

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
    /// Minted when the job is built, so enqueueing the same `Job` (or a clone) again after a
    /// timeout repeats the same id, which JetStream de-duplicates.
    pub(crate) id: JobId,
    pub(crate) explicit_id: bool,
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
            id: JobId::new(),
            explicit_id: false,
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
        self.id = id;
        self.explicit_id = true;
        self
    }

    /// The id this job is enqueued with, unless it has an idempotency key (then the id is
    /// derived from the queue and the key). Minted when the job was built: enqueueing this
    /// `Job` again, or a clone of it, repeats the id.
    pub fn job_id(&self) -> JobId {
        self.id
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
    ///
    /// `queue_max_age` is the queue's age limit: a delayed job must fire before it.
    pub(crate) fn prepare(
        &self,
        queue: &QueueName,
        queue_max_attempts: u32,
        queue_max_age: Option<Duration>,
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
            if !valid_header_value(key) {
                return invalid(
                    "`idempotency_key` must not contain line breaks or control characters".into(),
                );
            }
            if self.explicit_id {
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
        if self
            .timeout
            .is_some_and(|t| t.as_millis() == 0 || t > MAX_JOB_DURATION)
        {
            return invalid("`timeout` must be between 1ms and 366 days".into());
        }
        if self.delay.is_some_and(|d| d > MAX_JOB_DURATION) {
            return invalid("`delay` must be at most 366 days".into());
        }
        if self.run_at.is_some_and(|at| at > now + MAX_JOB_DURATION) {
            return invalid("`run_at` must be at most 366 days ahead".into());
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

        let id = match &self.idempotency_key {
            Some(key) => JobId::from_idempotency_key(queue, key),
            None => self.id,
        };
        // Milliseconds are what the wire carries; reporting more would promise a time that
        // the schedule does not keep.
        let run_at = self
            .run_at
            .or_else(|| self.delay.map(|d| now + d))
            .map(truncate_to_millis)
            .filter(|at| *at > now);
        if let (Some(at), Some(max_age)) = (run_at, queue_max_age)
            && at - now >= max_age
        {
            return invalid(format!(
                "the job would run after queue {queue}'s max_age ({}) deleted it",
                humantime_secs(max_age)
            ));
        }
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

fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let millis = at.nanosecond() / 1_000_000 * 1_000_000;
    at.replace_nanosecond(millis).unwrap_or(at)
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn valid_header_value(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(job: &Job) -> Result<JobMeta, EnqueueError> {
        job.prepare(
            &QueueName::new("q").unwrap(),
            10,
            Some(Duration::from_secs(3600)),
            OffsetDateTime::now_utc(),
        )
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
            Job::bytes("x").idempotency_key("tab\u{7}bell"),
            Job::bytes("x").delay(Duration::MAX),
            Job::bytes("x").delay(Duration::from_secs(7200)),
            Job::bytes("x").timeout(Duration::MAX),
            Job::bytes("x").run_at(now + Duration::from_secs(400 * 24 * 3600)),
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
    fn a_job_keeps_its_id_across_clones_and_retries() {
        let job = Job::bytes("x");
        let again = job.clone();
        assert_eq!(prepare(&job).unwrap().id, prepare(&again).unwrap().id);
        assert_eq!(prepare(&job).unwrap().id, job.job_id());
        assert_ne!(Job::bytes("x").job_id(), job.job_id());
    }

    #[test]
    fn run_at_is_truncated_to_milliseconds() {
        let meta = prepare(&Job::bytes("x").delay(Duration::from_nanos(5_000_123_456))).unwrap();
        assert_eq!(meta.run_at.unwrap().nanosecond() % 1_000_000, 0);
    }

    #[test]
    fn idempotency_key_determines_the_id() {
        let a = prepare(&Job::bytes("x").idempotency_key("k")).unwrap();
        let b = prepare(&Job::bytes("y").idempotency_key("k")).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.idempotency_key.as_deref(), Some("k"));
    }
}
