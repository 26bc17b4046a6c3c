//! A job's metadata and its encoding as NATS headers.

use std::time::Duration;

use time::OffsetDateTime;

use crate::error::HeaderError;
use crate::headers as h;
use crate::job_id::JobId;
use crate::timestamp::{format_timestamp, parse_timestamp};

/// Everything jobfleet knows about a job besides its payload.
///
/// [`JobMeta::to_headers`] and [`JobMeta::from_headers`] are the one place that maps it to
/// and from NATS headers (see [`crate::headers`] for each header's meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobMeta {
    /// The job id.
    pub id: JobId,
    /// Application-defined job type.
    pub job_type: Option<String>,
    /// Attempts consumed by earlier incarnations (see [`h::PRIOR_ATTEMPTS`]).
    pub prior_attempts: u32,
    /// Redrives from the dead-letter stream so far (see [`h::LIFE`]).
    pub life: u32,
    /// Attempt limit overriding the queue default.
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout overriding the queue default.
    pub timeout: Option<Duration>,
    /// When the job was accepted.
    pub enqueued_at: OffsetDateTime,
    /// When a delayed job becomes runnable.
    pub run_at: Option<OffsetDateTime>,
    /// The caller's idempotency key, if the id was derived from one.
    pub idempotency_key: Option<String>,
    /// Payload media type; `None` means `application/json`.
    pub content_type: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
}

impl JobMeta {
    /// Metadata for a job accepted now, with nothing optional set.
    pub fn new(id: JobId, enqueued_at: OffsetDateTime) -> Self {
        Self {
            id,
            job_type: None,
            prior_attempts: 0,
            life: 0,
            max_attempts: None,
            timeout: None,
            enqueued_at,
            run_at: None,
            idempotency_key: None,
            content_type: None,
            traceparent: None,
            tracestate: None,
        }
    }

    /// Every header, in a stable order; optional fields that are unset are omitted. Used for
    /// messages that do not carry the job id as `Nats-Msg-Id` or whose JetStream timestamp is
    /// not the enqueue time: schedules, re-published retries, dead-letter copies.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        out.push((h::JOB_ID, self.id.to_string()));
        out.push((h::ENQUEUED_AT, format_timestamp(self.enqueued_at)));
        self.push_optional(&mut out);
        out
    }

    /// The headers of an immediate enqueue: like [`JobMeta::to_headers`] without
    /// `Jobfleet-Id` and `Jobfleet-Enqueued-At`, because that publish carries the id as
    /// `Nats-Msg-Id` and JetStream stamps it with the time it was stored. Readers fall back
    /// to those (see [`JobMeta::from_headers`]); ~100 bytes less per job.
    pub fn to_enqueue_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        self.push_optional(&mut out);
        out
    }

    fn push_optional(&self, out: &mut Vec<(&'static str, String)>) {
        if let Some(job_type) = &self.job_type {
            out.push((h::JOB_TYPE, job_type.clone()));
        }
        if self.prior_attempts > 0 {
            out.push((h::PRIOR_ATTEMPTS, self.prior_attempts.to_string()));
        }
        if self.life > 0 {
            out.push((h::LIFE, self.life.to_string()));
        }
        if let Some(max) = self.max_attempts {
            out.push((h::MAX_ATTEMPTS, max.to_string()));
        }
        if let Some(timeout) = self.timeout {
            out.push((h::TIMEOUT_MS, timeout.as_millis().to_string()));
        }
        if let Some(run_at) = self.run_at {
            out.push((h::RUN_AT, format_timestamp(run_at)));
        }
        if let Some(key) = &self.idempotency_key {
            out.push((h::IDEMPOTENCY_KEY, key.clone()));
        }
        if let Some(content_type) = &self.content_type {
            out.push((h::CONTENT_TYPE, content_type.clone()));
        }
        if let Some(tp) = &self.traceparent {
            out.push((h::TRACEPARENT, tp.clone()));
        }
        if let Some(ts) = &self.tracestate {
            out.push((h::TRACESTATE, ts.clone()));
        }
    }

    /// Decodes metadata from headers, looked up by name through `get`. `stored_at` is the
    /// message's JetStream timestamp, the enqueue time of a job without
    /// `Jobfleet-Enqueued-At`; the id is `Jobfleet-Id`, else `Nats-Msg-Id`.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] naming the header when neither `Jobfleet-Id` nor `Nats-Msg-Id` is
    /// present, or when any header's value cannot be parsed.
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        stored_at: OffsetDateTime,
    ) -> Result<Self, HeaderError> {
        let id = match (get(h::JOB_ID), get(h::NATS_MSG_ID)) {
            (Some(id), _) => id.trim().parse()?,
            (None, Some(id)) => id
                .trim()
                .parse()
                .map_err(|e: HeaderError| e.renamed(h::NATS_MSG_ID))?,
            (None, None) => return Err(HeaderError::missing(h::JOB_ID)),
        };
        let enqueued_at = timestamp(h::ENQUEUED_AT, get(h::ENQUEUED_AT))?.unwrap_or(stored_at);
        let max_attempts = positive(h::MAX_ATTEMPTS, get(h::MAX_ATTEMPTS))?;
        let timeout_ms = positive(h::TIMEOUT_MS, get(h::TIMEOUT_MS))?;
        Ok(Self {
            id,
            job_type: text(get(h::JOB_TYPE)),
            prior_attempts: number(h::PRIOR_ATTEMPTS, get(h::PRIOR_ATTEMPTS))?.unwrap_or(0),
            life: number(h::LIFE, get(h::LIFE))?.unwrap_or(0),
            max_attempts: max_attempts.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            timeout: timeout_ms.map(Duration::from_millis),
            enqueued_at,
            run_at: timestamp(h::RUN_AT, get(h::RUN_AT))?,
            idempotency_key: text(get(h::IDEMPOTENCY_KEY)),
            content_type: text(get(h::CONTENT_TYPE)),
            traceparent: text(get(h::TRACEPARENT)),
            tracestate: text(get(h::TRACESTATE)),
        })
    }

    /// The W3C trace id (32 hex digits) of `traceparent`, when it is well formed
    /// (`<version>-<trace-id>-<parent-id>-<flags>`, trace id not all zeros).
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.traceparent.as_deref()?.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        (hex(version, 2)
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0'))
        .then_some(trace)
    }

    /// The payload media type, defaulting to `application/json`.
    pub fn content_type(&self) -> &str {
        self.content_type
            .as_deref()
            .unwrap_or(h::DEFAULT_CONTENT_TYPE)
    }
}

fn text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn number<T: std::str::FromStr>(
    header: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, HeaderError> {
    value
        .map(|v| {
            v.trim().parse::<T>().map_err(|_| {
                HeaderError::malformed(header, format!("{v:?} is not a non-negative integer"))
            })
        })
        .transpose()
}

fn positive(header: &'static str, value: Option<&str>) -> Result<Option<u64>, HeaderError> {
    match number::<u64>(header, value)? {
        Some(0) => Err(HeaderError::malformed(header, "must be at least 1")),
        other => Ok(other),
    }
}

fn timestamp(
    header: &'static str,
    value: Option<&str>,
) -> Result<Option<OffsetDateTime>, HeaderError> {
    value
        .map(|v| {
            parse_timestamp(v.trim())
                .map_err(|err| HeaderError::malformed(header, format!("{v:?}: {err}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeaderErrorKind;
    use std::collections::HashMap;
    use time::macros::datetime;

    fn lookup(pairs: &[(&'static str, String)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn round_trips_every_field() {
        let mut meta = JobMeta::new(JobId::new(), datetime!(2026-11-23 13:00:00.5 UTC));
        meta.job_type = Some("send_email".into());
        meta.prior_attempts = 2;
        meta.life = 1;
        meta.max_attempts = Some(7);
        meta.timeout = Some(Duration::from_millis(1500));
        meta.run_at = Some(datetime!(2026-11-23 14:00:00 UTC));
        meta.idempotency_key = Some("order-42".into());
        meta.content_type = Some("application/octet-stream".into());
        meta.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        meta.tracestate = Some("vendor=1".into());
        let map = lookup(&meta.to_headers());
        let back = JobMeta::from_headers(
            |k| map.get(k).map(String::as_str),
            datetime!(2000-01-01 0:00 UTC),
        )
        .unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn enqueue_headers_fall_back_to_msg_id_and_stored_time() {
        let mut meta = JobMeta::new(JobId::new(), datetime!(2026-11-23 13:00:00 UTC));
        meta.max_attempts = Some(2);
        let mut map = lookup(&meta.to_enqueue_headers());
        assert_eq!(map.len(), 1, "only the optional header that is set");
        map.insert(h::NATS_MSG_ID.to_owned(), meta.id.to_string());
        let back =
            JobMeta::from_headers(|k| map.get(k).map(String::as_str), meta.enqueued_at).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn trace_id_only_from_a_well_formed_traceparent() {
        let mut meta = JobMeta::new(JobId::new(), OffsetDateTime::now_utc());
        assert_eq!(meta.trace_id(), None);
        meta.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(meta.trace_id(), Some("0af7651916cd43dd8448eb211c80319c"));
        for bad in [
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ] {
            meta.traceparent = Some(bad.into());
            assert_eq!(meta.trace_id(), None, "{bad}");
        }
    }

    #[test]
    fn minimal_headers_decode_with_defaults() {
        let meta = JobMeta::new(JobId::new(), datetime!(2026-11-23 13:00:00 UTC));
        let pairs = meta.to_headers();
        assert_eq!(pairs.len(), 2, "only id and enqueued-at are required");
        let map = lookup(&pairs);
        let back =
            JobMeta::from_headers(|k| map.get(k).map(String::as_str), meta.enqueued_at).unwrap();
        assert_eq!(back.prior_attempts, 0);
        assert_eq!(back.content_type(), "application/json");
    }

    #[test]
    fn reports_missing_and_malformed_headers_by_name() {
        let now = OffsetDateTime::now_utc();
        let err = JobMeta::from_headers(|_| None, now).unwrap_err();
        assert_eq!(
            (err.kind(), err.header()),
            (HeaderErrorKind::Missing, h::JOB_ID)
        );

        let id = JobId::new().to_string();
        let cases: [(&str, &str, &str); 5] = [
            (h::JOB_ID, "nope", h::JOB_ID),
            (h::ENQUEUED_AT, "yesterday", h::ENQUEUED_AT),
            (h::MAX_ATTEMPTS, "0", h::MAX_ATTEMPTS),
            (h::TIMEOUT_MS, "-5", h::TIMEOUT_MS),
            (h::PRIOR_ATTEMPTS, "many", h::PRIOR_ATTEMPTS),
        ];
        for (header, bad, expected) in cases {
            let mut map = HashMap::from([
                (h::JOB_ID.to_owned(), id.clone()),
                (h::ENQUEUED_AT.to_owned(), "2026-11-23T13:00:00Z".to_owned()),
            ]);
            map.insert(header.to_owned(), bad.to_owned());
            let err = JobMeta::from_headers(|k| map.get(k).map(String::as_str), now).unwrap_err();
            assert_eq!(
                (err.kind(), err.header()),
                (HeaderErrorKind::Malformed, expected)
            );
        }
    }
}
