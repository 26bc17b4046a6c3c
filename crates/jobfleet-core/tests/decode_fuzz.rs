//! Property tests of everything jobfleet decodes from the wire or from files: job headers
//! (`JobMeta`), job ids, timestamps, audit events, queue names and queue configuration.
//!
//! Decoders must never panic on any input and must answer with their typed error; what the
//! encoders write must decode to the same value. 1024 cases per property keep this file to
//! about a second; hunt for bugs with `PROPTEST_CASES=20000 cargo test -p jobfleet-core
//! --test decode_fuzz`. Failures that proptest finds are saved under
//! `proptest-regressions/` and replayed first; each one fixed also has a `#[test]` below.

use std::collections::BTreeMap;
use std::time::Duration;

use jobfleet_core::{
    AUDIT_SCHEMA_VERSION, AuditEvent, AuditEventKind, AuditLevel, ConfigErrorKind, HeaderErrorKind,
    JobId, JobMeta, QueueConfig, QueueFile, QueueName, RetrySchedule, WorkerDefaults,
    format_timestamp, headers as h, parse_timestamp,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};

/// Every header `JobMeta::from_headers` reads.
const META_HEADERS: [&str; 13] = [
    h::JOB_ID,
    h::NATS_MSG_ID,
    h::JOB_TYPE,
    h::PRIOR_ATTEMPTS,
    h::LIFE,
    h::MAX_ATTEMPTS,
    h::TIMEOUT_MS,
    h::ENQUEUED_AT,
    h::RUN_AT,
    h::IDEMPOTENCY_KEY,
    h::CONTENT_TYPE,
    h::TRACEPARENT,
    h::TRACESTATE,
];

/// 1024 cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 1024;
    }
    config
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Unix milliseconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the instants
/// `format_timestamp` can write as RFC 3339.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

/// A UTC instant with millisecond precision, biased to the edges of the range and to now.
fn wire_instant() -> impl Strategy<Value = OffsetDateTime> {
    prop_oneof![
        4 => MIN_MS..=MAX_MS,
        1 => Just(MIN_MS),
        1 => Just(MAX_MS),
        2 => 1_700_000_000_000i64..1_900_000_000_000,
    ]
    .prop_map(from_ms)
}

/// An instant with nanosecond precision and any whole-minute offset whose local date is in
/// years 0..=9999 (what RFC 3339 can write; the offset may move the UTC date out of it).
fn any_rfc3339_instant() -> impl Strategy<Value = OffsetDateTime> {
    (MIN_MS..=MAX_MS, 0u32..1_000_000, -1439i32..=1439).prop_filter_map(
        "local date outside 0..=9999",
        |(ms, sub, minutes)| {
            let at = from_ms(ms).replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000 + sub);
            let offset = UtcOffset::from_whole_seconds(minutes * 60).ok()?;
            let local = at.ok()?.checked_to_offset(offset)?;
            (0..=9999).contains(&local.year()).then_some(local)
        },
    )
}

fn edge(range: std::ops::RangeInclusive<u32>, edges: &[u32]) -> BoxedStrategy<u32> {
    let mut options: Vec<(u32, BoxedStrategy<u32>)> = vec![(4, range.boxed())];
    options.extend(edges.iter().map(|&e| (1, Just(e).boxed())));
    proptest::strategy::Union::new_weighted(options).boxed()
}

/// Text shaped like an RFC 3339 timestamp, valid or nearly so (out-of-range fields, extreme
/// offsets, long fractions), biased to the ends of the calendar.
fn rfc3339_like() -> impl Strategy<Value = String> {
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        (
            "[+-]",
            edge(0..=24, &[0, 23, 24]),
            edge(0..=60, &[0, 59, 60])
        )
            .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
    ];
    (
        (
            edge(0..=9999, &[0, 1, 1970, 9999]),
            edge(0..=13, &[1, 12]),
            edge(0..=32, &[1, 28, 29, 30, 31]),
        ),
        (
            edge(0..=24, &[0, 23]),
            edge(0..=60, &[0, 59]),
            edge(0..=61, &[0, 59, 60]),
        ),
        prop::option::of("[0-9]{1,12}"),
        "[Tt ]",
        offset,
    )
        .prop_map(|((y, mo, d), (hh, mi, s), frac, t, off)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{t}{hh:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

/// A canonical job id.
fn job_id() -> impl Strategy<Value = JobId> {
    any::<u128>().prop_map(|n| JobId::from(uuid::Uuid::from_u128(n)))
}

/// Text a header value may hold after the NATS client has read it: trimmed, non-empty, no
/// control characters.
fn header_text() -> impl Strategy<Value = String> {
    "\\PC{1,40}".prop_filter_map("blank", |s| {
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_owned())
    })
}

/// A header value a hostile or buggy sender might write for any jobfleet header.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t]{0,2}[+-]?[0-9]{0,25}[ \t]{0,2}",
        rfc3339_like(),
        job_id().prop_map(|id| id.to_string()),
        (job_id(), 0usize..36, any::<char>()).prop_map(|(id, at, c)| {
            let mut s: Vec<char> = id.to_string().chars().collect();
            s[at] = c;
            s.into_iter().collect()
        }),
        job_id().prop_map(|id| id.as_uuid().simple().to_string()),
        job_id().prop_map(|id| id.to_string().to_uppercase()),
        job_id().prop_map(|id| format!(" {id}\t")),
        "[0-9a-fA-F-]{30,40}",
    ]
}

/// A header map: known names (and some others) to hostile values.
fn hostile_headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    let name = prop_oneof![
        8 => prop::sample::select(&META_HEADERS[..]).prop_map(str::to_owned),
        1 => "[A-Za-z-]{1,20}",
        1 => prop::sample::select(&META_HEADERS[..]).prop_map(str::to_lowercase),
    ];
    prop::collection::btree_map(name, hostile_value(), 0..14)
}

/// Metadata as the producer and the worker write it (every field valid).
fn valid_meta() -> impl Strategy<Value = JobMeta> {
    (
        (job_id(), wire_instant(), any::<u32>(), any::<u32>()),
        (
            prop::option::of(1u32..),
            prop::option::of(1u64..),
            prop::option::of(wire_instant()),
        ),
        (
            prop::option::of(header_text()),
            prop::option::of(header_text()),
            prop::option::of(header_text()),
            prop::option::of(header_text()),
            prop::option::of(header_text()),
        ),
    )
        .prop_map(
            |(
                (id, enqueued_at, prior, life),
                (max_attempts, timeout_ms, run_at),
                (job_type, key, content_type, traceparent, tracestate),
            )| {
                let mut meta = JobMeta::new(id, enqueued_at);
                meta.prior_attempts = prior;
                meta.life = life;
                meta.max_attempts = max_attempts;
                meta.timeout = timeout_ms.map(Duration::from_millis);
                meta.run_at = run_at;
                meta.job_type = job_type;
                meta.idempotency_key = key;
                meta.content_type = content_type;
                meta.traceparent = traceparent;
                meta.tracestate = tracestate;
                meta
            },
        )
}

/// Any JSON value, as a handler result or progress report.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn audit_kind() -> impl Strategy<Value = AuditEventKind> {
    prop::sample::select(vec![
        AuditEventKind::Enqueued,
        AuditEventKind::Started,
        AuditEventKind::Retried,
        AuditEventKind::Succeeded,
        AuditEventKind::DeadLettered,
        AuditEventKind::Redriven,
        AuditEventKind::Progress,
    ])
}

fn audit_event() -> impl Strategy<Value = AuditEvent> {
    (
        (
            audit_kind(),
            job_id(),
            "[A-Za-z0-9_-]{1,64}",
            any_rfc3339_instant(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            prop::option::of(any::<String>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<String>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<String>()),
            prop::option::of(any::<u64>()),
        ),
        (
            prop::option::of(any_rfc3339_instant()),
            prop::option::of(json_value()),
            prop::option::of("[0-9a-f]{32}"),
        ),
    )
        .prop_map(
            |(
                (kind, id, queue, at, attempt, life),
                (job_type, stream_seq, worker, duration_ms, error, retry_in_ms),
                (run_at, result, trace_id),
            )| {
                let mut event = AuditEvent::new(kind, id, queue, at, attempt);
                event.life = life;
                event.job_type = job_type;
                event.stream_seq = stream_seq;
                event.worker = worker;
                event.duration_ms = duration_ms;
                event.error = error;
                event.retry_in_ms = retry_in_ms;
                event.run_at = run_at;
                event.result = result;
                event.trace_id = trace_id;
                event
            },
        )
}

/// A duration with up to nanosecond precision, within `min..=max`.
fn duration(min: Duration, max: Duration) -> impl Strategy<Value = Duration> {
    let (lo, hi) = (min.as_nanos() as u64, max.as_nanos() as u64);
    prop_oneof![
        3 => (lo..=hi).prop_map(Duration::from_nanos),
        // Whole seconds, as people write them.
        1 => (lo / 1_000_000_000..=hi / 1_000_000_000)
            .prop_map(Duration::from_secs)
            .prop_filter("below min", move |d| *d >= min),
    ]
}

const DAY: Duration = Duration::from_secs(24 * 3600);

fn retry_schedule() -> impl Strategy<Value = RetrySchedule> {
    (
        duration(Duration::from_nanos(1), 366 * DAY),
        prop_oneof![1.0f64..=100.0, Just(1.0), Just(2.0)],
        0u64..=1_000_000_000,
        prop_oneof![0.0f64..=1.0, Just(0.0), Just(1.0)],
    )
        .prop_map(|(initial, factor, extra_ns, jitter)| RetrySchedule {
            initial,
            factor,
            max: (initial + Duration::from_nanos(extra_ns)).min(366 * DAY),
            jitter,
        })
}

fn worker_defaults() -> impl Strategy<Value = WorkerDefaults> {
    (
        duration(Duration::from_millis(100), 30 * DAY),
        1u32..=1000,
        duration(Duration::from_nanos(1), 30 * DAY),
        1u32..,
        duration(Duration::ZERO, 30 * DAY),
        retry_schedule(),
    )
        .prop_map(
            |(ack_wait, max_attempts, timeout, max_in_flight, nak_delay_limit, backoff)| {
                let mut w = WorkerDefaults::default();
                w.ack_wait = ack_wait;
                w.max_attempts = max_attempts;
                w.timeout = timeout;
                w.max_in_flight = max_in_flight;
                w.nak_delay_limit = nak_delay_limit;
                w.backoff = backoff;
                w
            },
        )
}

fn queue_config() -> impl Strategy<Value = QueueConfig> {
    (
        (
            "[A-Za-z0-9_-]{1,64}",
            prop::option::of(any::<String>()),
            prop::option::of(duration(Duration::from_secs(1), 3650 * DAY)),
            prop::option::of(1u64..),
            prop::option::of(1u64..),
            prop::option::of(1u32..=i32::MAX as u32),
        ),
        (
            duration(Duration::from_secs(30), 3650 * DAY),
            1u8..=5,
            any::<bool>(),
            worker_defaults(),
            prop::sample::select(vec![
                AuditLevel::Full,
                AuditLevel::Terminal,
                AuditLevel::Off,
            ]),
            duration(Duration::from_secs(1), 3650 * DAY),
            prop::option::of(1u64..),
        ),
    )
        .prop_map(
            |(
                (name, description, max_age, max_messages, max_bytes, max_payload),
                (window, replicas, memory, worker, level, dead_age, dead_max),
            )| {
                let mut q = QueueConfig::new(name);
                q.description = description;
                // The duplicate window may not exceed max_age.
                q.max_age = max_age.map(|age| age.max(window));
                q.max_messages = max_messages;
                q.max_bytes = max_bytes;
                q.max_payload = max_payload;
                q.duplicate_window = window;
                q.replicas = replicas;
                if memory {
                    q.storage = jobfleet_core::StorageKind::Memory;
                }
                q.worker = worker;
                q.audit.level = level;
                q.dead_letter.max_age = dead_age;
                q.dead_letter.max_messages = dead_max;
                q
            },
        )
}

/// TOML text close to a queue file: known keys with hostile values, unknown keys, garbage.
fn queue_toml_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "description",
        "max_age",
        "max_messages",
        "max_bytes",
        "max_payload",
        "duplicate_window",
        "replicas",
        "storage",
        "worker.ack_wait",
        "worker.max_attempts",
        "worker.timeout",
        "worker.max_in_flight",
        "worker.nak_delay_limit",
        "worker.backoff.initial",
        "worker.backoff.factor",
        "worker.backoff.max",
        "worker.backoff.jitter",
        "audit.level",
        "dead_letter.max_age",
        "dead_letter.max_messages",
        "colour",
    ]);
    let value = prop_oneof![
        "[0-9]{1,25}",
        "-[0-9]{1,25}",
        "[0-9]{1,3}\\.[0-9]{0,20}(e[+-]?[0-9]{1,4})?",
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        "[0-9]{1,30}(ns|us|ms|s|m|h|d|w|M|y|years)( [0-9]{1,30}(ns|ms|s|m|h|d))?"
            .prop_map(|d| format!("{d:?}")),
        "[a-z_]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<String>().prop_map(|s| format!("{s:?}")),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
    ];
    let line = (key, value).prop_map(|(k, v)| format!("{k} = {v}\n"));
    prop_oneof![
        8 => (
            "[A-Za-z0-9_-]{0,70}",
            prop::collection::vec(line, 0..8)
        )
            .prop_map(|(name, lines)| format!("[[queue]]\nname = {name:?}\n{}", lines.concat())),
        1 => any::<String>(),
        1 => "[\\[\\]=\"a-z0-9\n ._-]{0,80}",
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn decode(
    map: &BTreeMap<String, String>,
    stored_at: OffsetDateTime,
) -> Result<JobMeta, jobfleet_core::HeaderError> {
    JobMeta::from_headers(|k| map.get(k).map(String::as_str), stored_at)
}

fn pairs_to_map(pairs: Vec<(&'static str, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `at` truncated to what the wire carries: milliseconds.
fn to_ms(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap()
}

fn wire_form(mut meta: JobMeta) -> JobMeta {
    meta.enqueued_at = to_ms(meta.enqueued_at);
    meta.run_at = meta.run_at.map(to_ms);
    meta
}

// ---------------------------------------------------------------------------------------
// Job headers
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Any header map decodes to metadata or to a `HeaderError` naming a header that is at
    /// fault; decoded metadata encodes without panicking and decodes again to itself (at the
    /// millisecond precision of the wire).
    #[test]
    fn hostile_headers_decode_or_name_the_bad_header(
        map in hostile_headers(),
        stored_at in wire_instant(),
    ) {
        match decode(&map, stored_at) {
            Ok(meta) => {
                let again = decode(&pairs_to_map(meta.to_headers()), stored_at);
                prop_assert_eq!(again, Ok(wire_form(meta.clone())));
                let mut enqueue = pairs_to_map(meta.to_enqueue_headers());
                enqueue.insert(h::NATS_MSG_ID.to_owned(), meta.id.to_string());
                let again = decode(&enqueue, to_ms(meta.enqueued_at)).unwrap();
                prop_assert_eq!(again, wire_form(meta));
            }
            Err(err) => match err.kind() {
                HeaderErrorKind::Missing => {
                    prop_assert_eq!(err.header(), h::JOB_ID);
                    prop_assert!(!map.contains_key(h::JOB_ID) && !map.contains_key(h::NATS_MSG_ID));
                }
                HeaderErrorKind::Malformed => {
                    prop_assert!(map.contains_key(err.header()), "{err} names an absent header");
                    prop_assert!(!err.to_string().is_empty());
                }
                other => prop_assert!(false, "unexpected kind {other:?}"),
            },
        }
    }

    /// What the producer and the worker encode decodes to the same metadata, both as a full
    /// header set and as an immediate enqueue (id in `Nats-Msg-Id`, time from JetStream).
    #[test]
    fn valid_metadata_round_trips(meta in valid_meta(), stored_at in wire_instant()) {
        let full = pairs_to_map(meta.to_headers());
        prop_assert_eq!(decode(&full, stored_at), Ok(meta.clone()));

        let mut enqueue = pairs_to_map(meta.to_enqueue_headers());
        prop_assert!(!enqueue.contains_key(h::JOB_ID) && !enqueue.contains_key(h::ENQUEUED_AT));
        enqueue.insert(h::NATS_MSG_ID.to_owned(), meta.id.to_string());
        prop_assert_eq!(decode(&enqueue, meta.enqueued_at), Ok(meta));
    }
}

// ---------------------------------------------------------------------------------------
// Job ids
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ids_round_trip_through_their_text(id in job_id()) {
        let text = id.to_string();
        prop_assert_eq!(text.len(), 36);
        prop_assert_eq!(text.parse::<JobId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), id);
    }

    /// Only the canonical text parses: whatever parses prints back as exactly the input.
    #[test]
    fn only_canonical_ids_parse(text in hostile_value()) {
        match text.parse::<JobId>() {
            Ok(id) => prop_assert_eq!(id.to_string(), text),
            Err(err) => {
                prop_assert_eq!(err.kind(), HeaderErrorKind::Malformed);
                prop_assert_eq!(err.header(), h::JOB_ID);
            }
        }
    }

    #[test]
    fn other_spellings_of_an_id_are_refused(id in job_id()) {
        let uuid = id.as_uuid();
        let canonical = id.to_string();
        let spellings = [
            canonical.to_uppercase(),
            uuid.simple().to_string(),
            uuid.braced().to_string(),
            uuid.urn().to_string(),
            format!(" {canonical}"),
            format!("{canonical}\n"),
        ];
        for spelling in spellings.into_iter().filter(|s| *s != canonical) {
            let err = spelling.parse::<JobId>().unwrap_err();
            prop_assert_eq!(err.kind(), HeaderErrorKind::Malformed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn written_timestamps_round_trip(at in wire_instant()) {
        let text = format_timestamp(at);
        prop_assert_eq!(text.len(), 24, "{}", text);
        prop_assert!(text.ends_with('Z'));
        prop_assert_eq!(parse_timestamp(&text).unwrap(), at);
    }

    /// Any instant written with any offset reads back as the same instant, and what was read
    /// can be written again (in UTC, to the millisecond) and read back.
    #[test]
    fn read_timestamps_can_be_written_again(text in prop_oneof![
        4 => rfc3339_like(),
        1 => any_rfc3339_instant().prop_map(|at| at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()),
        1 => any::<String>(),
        1 => "[0-9:TZ.+-]{0,35}",
    ]) {
        if let Ok(at) = parse_timestamp(&text) {
            let written = format_timestamp(at);
            prop_assert_eq!(parse_timestamp(&written).unwrap(), to_ms(at), "{} -> {}", text, written);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Audit events
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn audit_events_round_trip_through_json(event in audit_event()) {
        let json = serde_json::to_vec(&event).unwrap();
        prop_assert_eq!(AuditEvent::decode(&json).unwrap(), Some(event.clone()));
        prop_assert_eq!(serde_json::from_slice::<AuditEvent>(&json).unwrap(), event);
    }

    /// Readers skip events of kinds they do not know and of newer schema versions, and ignore
    /// fields they do not know.
    #[test]
    fn unknown_kinds_and_versions_are_skipped(
        event in audit_event(),
        kind in "[a-z_]{1,20}",
        version in (AUDIT_SCHEMA_VERSION + 1)..,
        field in "[a-z_]{1,12}",
        extra in json_value(),
    ) {
        let known = serde_json::to_value(&event).unwrap();

        let mut unknown_kind = known.clone();
        unknown_kind["event"] = json!(kind);
        let is_known = serde_json::from_value::<AuditEventKind>(json!(kind)).is_ok();
        let decoded = AuditEvent::decode(&serde_json::to_vec(&unknown_kind).unwrap()).unwrap();
        prop_assert_eq!(decoded.is_some(), is_known);

        let mut newer = known.clone();
        newer["v"] = json!(version);
        prop_assert_eq!(AuditEvent::decode(&serde_json::to_vec(&newer).unwrap()).unwrap(), None);

        let mut more = known;
        if more.get(&field).is_none() {
            more[&field] = extra;
            let decoded = AuditEvent::decode(&serde_json::to_vec(&more).unwrap()).unwrap();
            prop_assert_eq!(decoded, Some(event));
        }
    }

    /// Arbitrary bytes decode to an event, a skip, or an error; never a panic.
    #[test]
    fn arbitrary_audit_payloads_never_panic(payload in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (audit_event(), "[a-z_]{1,10}", json_value()).prop_map(|(e, k, v)| {
            let mut value = serde_json::to_value(e).unwrap();
            value[&k] = v;
            serde_json::to_vec(&value).unwrap()
        }),
    ]) {
        if let Ok(Some(event)) = AuditEvent::decode(&payload) {
            let again = serde_json::to_vec(&event).unwrap();
            prop_assert_eq!(AuditEvent::decode(&again).unwrap(), Some(event));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queue names and configuration
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn queue_names_are_checked_not_panicked_on(name in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.* >-]{0,70}",
    ]) {
        let allowed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match QueueName::new(name.clone()) {
            Ok(q) => {
                prop_assert!(allowed);
                prop_assert_eq!(q.as_str(), name.as_str());
                prop_assert_eq!(name.parse::<QueueName>().unwrap(), q);
            }
            Err(err) => {
                prop_assert!(!allowed);
                prop_assert_eq!(err.kind(), ConfigErrorKind::InvalidName);
            }
        }
    }

    /// A valid declaration written as TOML reads back equal.
    #[test]
    fn valid_queue_declarations_round_trip_through_toml(queue in queue_config()) {
        prop_assert_eq!(queue.validate(), Ok(()));
        let mut file = QueueFile::default();
        file.queue.push(queue);
        let text = toml::to_string(&file).unwrap();
        let back = QueueFile::from_toml(&text);
        prop_assert_eq!(back.as_ref(), Ok(&file), "{}", text);
    }

    /// Worker settings as stored in stream metadata (JSON) read back equal.
    #[test]
    fn worker_settings_round_trip_through_json(worker in worker_defaults()) {
        let json = serde_json::to_string(&worker).unwrap();
        prop_assert_eq!(serde_json::from_str::<WorkerDefaults>(&json).unwrap(), worker, "{}", json);
    }

    /// Hostile queue files parse to a valid file or to a `ConfigError`; never a panic.
    #[test]
    fn hostile_queue_files_are_refused_with_a_config_error(text in queue_toml_like()) {
        match QueueFile::from_toml(&text) {
            Ok(file) => {
                for queue in &file.queue {
                    prop_assert_eq!(queue.validate(), Ok(()));
                }
            }
            Err(err) => {
                prop_assert!(matches!(
                    err.kind(),
                    ConfigErrorKind::Parse
                        | ConfigErrorKind::UnknownField
                        | ConfigErrorKind::InvalidValue
                        | ConfigErrorKind::InvalidName
                ));
                prop_assert!(!err.to_string().is_empty());
            }
        }
    }

    /// Hostile worker settings in stream metadata are refused, never a panic.
    #[test]
    fn hostile_worker_settings_never_panic(json in prop_oneof![
        any::<String>(),
        json_value().prop_map(|v| v.to_string()),
        (worker_defaults(), "[a-z_]{1,16}", json_value()).prop_map(|(w, k, v)| {
            let mut value = serde_json::to_value(w).unwrap();
            value[&k] = v;
            value.to_string()
        }),
    ]) {
        let _ = serde_json::from_str::<WorkerDefaults>(&json).map(|w| w.validate());
    }

    #[test]
    fn audit_levels_parse_only_their_names(text in "[a-z]{0,10}") {
        match AuditLevel::parse(&text) {
            Some(level) => prop_assert_eq!(level.as_str(), text.as_str()),
            None => prop_assert!(!["full", "terminal", "off"].contains(&text.as_str())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Regressions: cases the properties above found, kept as plain tests
// ---------------------------------------------------------------------------------------

/// `read_timestamps_can_be_written_again`: an offset moved the date to UTC year -1, which
/// `format_timestamp` wrote as `-0001-12-31T23:01:00.000Z`, text no reader accepts. At the
/// other end (UTC year 10000) `format_timestamp` panicked, so a job whose `Jobfleet-Run-At`
/// said `9999-12-31T23:59:59-00:01` decoded, then crashed the worker that re-encoded it for a
/// retry or a dead letter. Both are now refused when read.
#[test]
fn timestamps_outside_the_writable_years_are_refused() {
    for text in ["0000-01-01t00:00:00+00:59", "9999-12-31T23:59:59-00:01"] {
        assert!(parse_timestamp(text).is_err(), "{text}");
        let map = BTreeMap::from([
            (h::JOB_ID.to_owned(), JobId::new().to_string()),
            (h::RUN_AT.to_owned(), text.to_owned()),
        ]);
        let err = decode(&map, OffsetDateTime::now_utc()).unwrap_err();
        assert_eq!(
            (err.kind(), err.header()),
            (HeaderErrorKind::Malformed, h::RUN_AT)
        );
    }
}

/// `audit_events_round_trip_through_json` and `worker_settings_round_trip_through_json`:
/// serde_json's default float parser read these one unit in the last place off.
#[test]
fn floats_read_back_exactly() {
    let result = json!([{"": 166_632.187_608_352_45}]);
    let mut event = AuditEvent::new(
        AuditEventKind::Succeeded,
        JobId::new(),
        "q",
        OffsetDateTime::UNIX_EPOCH,
        1,
    );
    event.result = Some(result);
    let json = serde_json::to_vec(&event).unwrap();
    assert_eq!(AuditEvent::decode(&json).unwrap(), Some(event));

    let mut worker = WorkerDefaults::default();
    worker.backoff.factor = 18.782_508_095_325_678;
    let json = serde_json::to_string(&worker).unwrap();
    assert_eq!(
        serde_json::from_str::<WorkerDefaults>(&json).unwrap(),
        worker
    );
}

/// `audit_events_round_trip_through_json`: a `null` result (`report_progress(Value::Null)`)
/// was written as `"result":null` and read back as no result at all.
#[test]
fn a_null_result_reads_back_as_null() {
    let mut event = AuditEvent::new(
        AuditEventKind::Progress,
        JobId::new(),
        "q",
        OffsetDateTime::UNIX_EPOCH,
        1,
    );
    event.result = Some(Value::Null);
    let json = serde_json::to_vec(&event).unwrap();
    assert_eq!(AuditEvent::decode(&json).unwrap(), Some(event));
}
