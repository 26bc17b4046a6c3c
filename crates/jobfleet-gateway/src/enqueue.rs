//! `POST /v1/queues/{queue}/jobs` and `POST /v1/queues/{queue}/batch`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use jobfleet_core::{JobId, QueueName};
use jobfleet_producer::{Enqueued, Job};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::problem::Problem;
use crate::state::{GatewayState, PublishingGuard};

/// Per-job options, as query parameters of the single-job endpoint and fields of a batch
/// item.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobOptions {
    /// Run no earlier than this long from now: `30s`, `5m`, `1h30m`, or plain seconds.
    delay: Option<String>,
    /// Run no earlier than this RFC 3339 time.
    run_at: Option<String>,
    /// Attempts before the job is dead-lettered.
    max_attempts: Option<u32>,
    /// Per-attempt time limit, as `delay`.
    timeout: Option<String>,
    /// The job's type, for handlers that dispatch on it and for filtering.
    #[serde(rename = "type")]
    job_type: Option<String>,
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{field}: {text:?} is not a duration like 30s or 5m ({e})"))
}

impl JobOptions {
    /// Applies the options to `job`; the error names the field.
    fn apply(&self, mut job: Job) -> Result<Job, String> {
        if let Some(delay) = &self.delay {
            job = job.delay(parse_duration("delay", delay)?);
        }
        if let Some(at) = &self.run_at {
            let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("run_at: {at:?} is not an RFC 3339 time ({e})"))?;
            job = job.run_at(at);
        }
        if let Some(attempts) = self.max_attempts {
            job = job.max_attempts(attempts);
        }
        if let Some(timeout) = &self.timeout {
            job = job.timeout(parse_duration("timeout", timeout)?);
        }
        if let Some(job_type) = &self.job_type {
            job = job.job_type(job_type.clone());
        }
        Ok(job)
    }
}

/// What the gateway answers for a stored job.
#[derive(Debug, Serialize)]
pub(crate) struct Accepted {
    id: String,
    queue: String,
    sequence: u64,
    /// True when the job was stored before (same idempotency key): nothing new was stored.
    duplicate: bool,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    run_at: Option<OffsetDateTime>,
    status_url: String,
}

impl From<Enqueued> for Accepted {
    fn from(e: Enqueued) -> Self {
        Self {
            status_url: format!("/v1/jobs/{}", e.id),
            id: e.id.to_string(),
            queue: e.queue,
            sequence: e.sequence,
            duplicate: e.duplicate,
            run_at: e.run_at,
        }
    }
}

/// The payload's content type, or 415.
fn payload_content_type(headers: &HeaderMap) -> Result<(String, bool), Problem> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("a Content-Type header is required"));
    };
    let value = value
        .to_str()
        .map_err(|_| unsupported("the Content-Type header is not ASCII"))?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json" || essence.ends_with("+json");
    let is_raw = essence == "application/octet-stream" || essence.starts_with("text/");
    if is_json || is_raw {
        Ok((value.to_owned(), is_json))
    } else {
        Err(unsupported(&format!(
            "content type {essence:?} is not accepted: send application/json (a JSON payload), \
             application/octet-stream or text/* (raw bytes)"
        )))
    }
}

fn unsupported(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        detail,
    )
}

/// The request's `traceparent`/`tracestate`, when well-formed.
fn incoming_trace(headers: &HeaderMap) -> Option<(&str, Option<&str>)> {
    let valid = |v: &str| {
        let parts: Vec<&str> = v.split('-').collect();
        parts.len() == 4
            && [2, 32, 16, 2]
                .iter()
                .zip(&parts)
                .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid(v))?;
    let tracestate = headers
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty() && v.len() <= 512);
    Some((traceparent, tracestate))
}

/// The span an enqueue runs in: a child of the caller's trace context when it sent one.
fn enqueue_span(headers: &HeaderMap, queue: &str) -> tracing::Span {
    let span = tracing::info_span!("enqueue", otel.kind = "producer", queue = %queue);
    if let Some((traceparent, tracestate)) = incoming_trace(headers) {
        jobfleet_telemetry::set_remote_parent(&span, traceparent, tracestate);
    }
    span
}

/// Gives the job a trace context: the gateway's own span when traces are exported (so the
/// worker's span nests under it), else the caller's, as received.
fn trace_context(headers: &HeaderMap, mut job: Job) -> Job {
    if let Some(context) = jobfleet_telemetry::current_trace_context() {
        job = job.traceparent(context.traceparent);
        if let Some(state) = context.tracestate {
            job = job.tracestate(state);
        }
    } else if let Some((traceparent, tracestate)) = incoming_trace(headers) {
        job = job.traceparent(traceparent);
        if let Some(state) = tracestate {
            job = job.tracestate(state);
        }
    }
    job
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| Some(k.to_owned()))
            .ok_or_else(|| Problem::bad_request("Idempotency-Key must be non-empty ASCII")),
    }
}

/// Whether `body` is JSON that a worker's `serde_json` reads, as a batch item's payload is
/// checked. (`IgnoredAny` is not enough: it does not decode escapes or numbers and has no
/// depth limit, so it let through payloads that every attempt then failed to read.)
fn readable_json(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok() && serde_json::from_slice::<AnyJson>(body).is_ok()
}

/// Any JSON value, decoded as `serde_json::Value` would be (strings unescaped, numbers
/// parsed, nesting limited) but kept nowhere.
struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyJson)
    }
}

impl<'de> serde::de::Visitor<'de> for AnyJson {
    type Value = AnyJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }

    fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }

    fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }

    fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }

    fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }

    fn visit_unit<E>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
        while seq.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
        while map.next_entry::<AnyJson, AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
}

pub(crate) fn valid_queue(queue: &str) -> Result<QueueName, Problem> {
    QueueName::new(queue)
        .map_err(|_| Problem::not_found("unknown-queue", format!("queue {queue:?} does not exist")))
}

/// Enqueues one job; its payload is the request body.
pub(crate) async fn enqueue_one(
    state: State<GatewayState>,
    Path(queue): Path<String>,
    options: Result<Query<JobOptions>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let span = enqueue_span(&headers, &queue);
    enqueue_one_traced(state, queue, options, headers, body)
        .instrument(span)
        .await
}

async fn enqueue_one_traced(
    State(state): State<GatewayState>,
    queue: String,
    options: Result<Query<JobOptions>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let name = valid_queue(&queue)?;
    let Query(options) = options.map_err(|e| Problem::bad_request(e.body_text()))?;
    let (content_type, is_json) = payload_content_type(&headers)?;
    if is_json && !readable_json(&body) {
        return Err(Problem::bad_request(
            "the body is not JSON that workers can read: malformed, nested deeper than 128, \
             a lone UTF-16 surrogate escape, or a number out of range (send another \
             Content-Type for raw bytes)",
        ));
    }
    let mut job = Job::bytes(body.clone());
    if !is_json || !content_type.eq_ignore_ascii_case("application/json") {
        job = job.content_type(content_type);
    }
    let key = idempotency_key(&headers)?;
    if let Some(key) = &key {
        job = job.idempotency_key(key.clone());
    }
    job = options.apply(job).map_err(Problem::invalid)?;
    job = trace_context(&headers, job);

    // Only a caller-chosen key can collide with a request in flight; minted ids cannot.
    let (id, _guard) = match &key {
        Some(key) => {
            let id = JobId::from_idempotency_key(&name, key);
            let Some(guard) = PublishingGuard::claim(&state, id) else {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-use",
                    "a request with this Idempotency-Key is still being stored; retry shortly",
                )
                .retry_after(1)
                .for_job(id));
            };
            (id, Some(guard))
        }
        None => (job.job_id(), None),
    };
    let enqueued = state.producer().enqueue(&queue, job).await?;
    if enqueued.duplicate {
        check_same_payload(&state, &name, enqueued.sequence, &body, id).await?;
        state
            .inner
            .metrics
            .jobs_duplicate
            .fetch_add(1, Ordering::Relaxed);
    } else {
        state
            .inner
            .metrics
            .jobs_enqueued
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(accepted_response(enqueued))
}

/// 422 when an idempotency key is reused for a different payload and the first job is still
/// stored (once it has run and left the queue, there is nothing to compare with).
async fn check_same_payload(
    state: &GatewayState,
    queue: &QueueName,
    sequence: u64,
    body: &Bytes,
    id: JobId,
) -> Result<(), Problem> {
    let Ok(stream) = state.js().get_stream_no_info(queue.stream_name()).await else {
        return Ok(());
    };
    match stream.direct_get(sequence).await {
        Ok(stored) if stored.payload != *body => Err(Problem::invalid(
            "this Idempotency-Key was already used for a job with a different payload",
        )
        .for_job(id)),
        _ => Ok(()),
    }
}

fn accepted_response(enqueued: Enqueued) -> Response {
    let duplicate = enqueued.duplicate;
    let accepted = Accepted::from(enqueued);
    let location = HeaderValue::from_str(&accepted.status_url).ok();
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if duplicate {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// One job of a batch request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchItem {
    /// A JSON payload.
    payload: Option<serde_json::Value>,
    /// A raw payload, base64-encoded (standard alphabet).
    payload_base64: Option<String>,
    /// Content type of a raw payload (default `application/octet-stream`).
    content_type: Option<String>,
    idempotency_key: Option<String>,
    #[serde(flatten)]
    options: BatchOptions,
}

/// [`JobOptions`] again, because `flatten` and `deny_unknown_fields` do not mix.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BatchOptions {
    delay: Option<String>,
    run_at: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
}

/// A batch request: `{"jobs": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    jobs: Vec<BatchItem>,
}

#[derive(Debug, Serialize)]
struct BatchResult {
    status: u16,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    accepted: Option<Accepted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

#[derive(Debug, Serialize)]
struct BatchResponse {
    accepted: usize,
    failed: usize,
    jobs: Vec<BatchResult>,
}

fn batch_job(item: BatchItem, index: usize) -> Result<Job, String> {
    let at = |field: &str| format!("jobs[{index}].{field}");
    let mut job = match (item.payload, item.payload_base64) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{}: give payload or payload_base64, not both",
                at("payload")
            ));
        }
        (Some(value), None) => {
            if item.content_type.is_some() {
                return Err(format!("{}: only for payload_base64", at("content_type")));
            }
            Job::json(&value).map_err(|e| format!("{}: {e}", at("payload")))?
        }
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("{}: not base64 ({e})", at("payload_base64")))?;
            Job::bytes(bytes).content_type(
                item.content_type
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
            )
        }
        (None, None) => return Err(format!("{}: missing", at("payload"))),
    };
    if let Some(key) = item.idempotency_key {
        job = job.idempotency_key(key);
    }
    let o = item.options;
    let options = JobOptions {
        delay: o.delay,
        run_at: o.run_at,
        max_attempts: o.max_attempts,
        timeout: o.timeout,
        job_type: o.job_type,
    };
    options.apply(job).map_err(|e| format!("jobs[{index}].{e}"))
}

/// Enqueues many jobs; 202 when all were stored, 207 with per-job results otherwise.
pub(crate) async fn enqueue_batch(
    state: State<GatewayState>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    request: Result<Json<BatchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    let span = enqueue_span(&headers, &queue);
    enqueue_batch_traced(state, queue, headers, request)
        .instrument(span)
        .await
}

async fn enqueue_batch_traced(
    State(state): State<GatewayState>,
    queue: String,
    headers: HeaderMap,
    request: Result<Json<BatchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    valid_queue(&queue)?;
    let Json(request) = request.map_err(json_rejection)?;
    let max = state.config().max_batch;
    if request.jobs.is_empty() || request.jobs.len() > max {
        return Err(Problem::invalid(format!(
            "a batch holds 1 to {max} jobs, this one {}",
            request.jobs.len()
        )));
    }
    // All or nothing for invalid input: nothing is stored if any job is invalid.
    let mut jobs = Vec::with_capacity(request.jobs.len());
    for (index, item) in request.jobs.into_iter().enumerate() {
        let job = batch_job(item, index).map_err(Problem::invalid)?;
        jobs.push(trace_context(&headers, job));
    }
    // Checked as the producer will, so a job it would refuse refuses the whole batch.
    if let Err((index, err)) = state.producer().check(&queue, &jobs).await? {
        let problem = Problem::from(err);
        return Err(Problem {
            detail: format!("jobs[{index}]: {}", problem.detail),
            ..problem
        });
    }
    let results = state.producer().enqueue_batch(&queue, jobs).await?;
    let mut response = BatchResponse {
        accepted: 0,
        failed: 0,
        jobs: Vec::with_capacity(results.len()),
    };
    for result in results {
        response.jobs.push(match result {
            Ok(enqueued) => {
                response.accepted += 1;
                let counter = if enqueued.duplicate {
                    &state.inner.metrics.jobs_duplicate
                } else {
                    &state.inner.metrics.jobs_enqueued
                };
                counter.fetch_add(1, Ordering::Relaxed);
                BatchResult {
                    status: 202,
                    accepted: Some(enqueued.into()),
                    problem: None,
                }
            }
            Err(err) => {
                response.failed += 1;
                let problem = Problem::from(err);
                BatchResult {
                    status: problem.status,
                    accepted: None,
                    problem: Some(problem),
                }
            }
        });
    }
    let status = if response.failed == 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((status, Json(response)).into_response())
}

/// axum's JSON rejections as problems: syntax 400, wrong shape 422, wrong type 415.
pub(crate) fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> Problem {
    use axum::extract::rejection::JsonRejection as R;
    match &rejection {
        R::JsonDataError(_) => Problem::invalid(rejection.body_text()),
        R::MissingJsonContentType(_) => unsupported("send Content-Type: application/json"),
        R::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(rejection.status(), "body-too-large", rejection.body_text())
        }
        _ => Problem::bad_request(rejection.body_text()),
    }
}
