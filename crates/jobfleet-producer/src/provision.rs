//! Declaring queues: creating or updating the streams and the consumer of a queue.
//!
//! Declaring is idempotent. A changed declaration updates what JetStream can change in place
//! (limits, subjects, replicas, consumer lease and caps) and lists what it cannot (storage
//! type) in [`Declared::not_applied`], leaving those as they are.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, consumer::Consumer};
use jobfleet_core::{QueueConfig, QueueName, StorageKind, topology};

use crate::error::{ProvisionError, ProvisionErrorKind};

/// Default age limit of the shared audit stream when jobfleet creates it.
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What declaring a queue did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Declared {
    /// The queue.
    pub queue: String,
    /// True when the queue did not exist before.
    pub created: bool,
    /// Settings that were changed on an existing queue, as `<object>.<field>`.
    pub changed: Vec<String>,
    /// Differences JetStream cannot apply in place; the existing value stays.
    pub not_applied: Vec<NotApplied>,
}

impl Declared {
    /// True when the queue now matches the declaration in every respect.
    pub fn is_fully_applied(&self) -> bool {
        self.not_applied.is_empty()
    }
}

/// A declared setting that could not be applied to an existing queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotApplied {
    /// `<object>.<field>`, e.g. `stream.storage`.
    pub field: String,
    /// The value in force.
    pub current: String,
    /// The declared value.
    pub wanted: String,
    /// Why it cannot change, and what to do instead.
    pub reason: String,
}

/// Creates the queue's work stream, worker consumer and dead-letter stream, and the shared
/// audit stream if missing; or brings existing ones in line with `config`.
///
/// # Errors
///
/// [`ProvisionErrorKind::InvalidConfig`] naming the bad field; `Conflict` when a stream of
/// that name exists but is not a jobfleet queue; `Rejected` when JetStream refuses a change
/// (the message carries its reason); `Unavailable` when JetStream does not answer.
pub async fn declare_queue(
    js: &jetstream::Context,
    config: &QueueConfig,
) -> Result<Declared, ProvisionError> {
    config.validate()?;
    let name = config.queue_name()?;
    let mut declared = Declared {
        queue: name.to_string(),
        created: false,
        changed: Vec::new(),
        not_applied: Vec::new(),
    };

    declared.created = reconcile_stream(
        js,
        "stream",
        work_stream(config, &name),
        true,
        &mut declared,
    )
    .await?;
    reconcile_consumer(js, config, &name, &mut declared).await?;
    reconcile_stream(
        js,
        "dead_letter",
        dead_letter_stream(config, &name),
        true,
        &mut declared,
    )
    .await?;
    ensure_audit_stream(js, config, &mut declared).await?;
    ensure_advisory_capture(js, config, &name, &mut declared).await?;
    if !declared.not_applied.is_empty() {
        tracing::warn!(queue = %name, not_applied = ?declared.not_applied, "queue declaration partly applied");
    }
    Ok(declared)
}

fn storage(kind: StorageKind) -> StorageType {
    match kind {
        StorageKind::Memory => StorageType::Memory,
        _ => StorageType::File,
    }
}

fn limit(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn work_stream(config: &QueueConfig, name: &QueueName) -> stream::Config {
    let worker = serde_json::to_string(&config.worker).expect("worker defaults serialize");
    // JetStream refuses message schedules on `discard: new` streams (error 10052), and a
    // bounded queue needs `discard: new`: with `old`, a full queue would delete accepted jobs.
    // So a bounded queue rejects new jobs when full and has no delayed jobs; an unbounded one
    // (the default) has delayed jobs, and its discard policy never applies.
    let bounded = config.max_messages.is_some() || config.max_bytes.is_some();
    stream::Config {
        name: name.stream_name(),
        description: Some(
            config
                .description
                .clone()
                .unwrap_or_else(|| format!("jobfleet queue {name}")),
        ),
        subjects: vec![name.ready_subject(), name.schedule_subjects()],
        retention: RetentionPolicy::WorkQueue,
        discard: if bounded {
            DiscardPolicy::New
        } else {
            DiscardPolicy::Old
        },
        max_age: config.max_age.unwrap_or(Duration::ZERO),
        max_messages: limit(config.max_messages),
        max_bytes: limit(config.max_bytes),
        max_message_size: config.max_payload.map_or(-1, |p| p as i32),
        duplicate_window: config.duplicate_window,
        num_replicas: usize::from(config.replicas),
        storage: storage(config.storage),
        allow_message_schedules: !bounded,
        allow_direct: true,
        metadata: HashMap::from([
            (
                topology::METADATA_PROTOCOL.to_owned(),
                topology::PROTOCOL_VERSION.to_owned(),
            ),
            (topology::METADATA_WORKER.to_owned(), worker),
            (
                topology::METADATA_AUDIT.to_owned(),
                config.audit.level.as_str().to_owned(),
            ),
        ]),
        ..Default::default()
    }
}

fn dead_letter_stream(config: &QueueConfig, name: &QueueName) -> stream::Config {
    stream::Config {
        name: name.dead_letter_stream_name(),
        description: Some(format!("jobfleet dead letters of queue {name}")),
        subjects: vec![name.dead_letter_subjects()],
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_age: config.dead_letter.max_age,
        max_messages: limit(config.dead_letter.max_messages),
        max_bytes: -1,
        max_message_size: -1,
        duplicate_window: Duration::from_secs(120),
        num_replicas: usize::from(config.replicas),
        storage: storage(config.storage),
        allow_direct: true,
        metadata: HashMap::from([(
            topology::METADATA_PROTOCOL.to_owned(),
            topology::PROTOCOL_VERSION.to_owned(),
        )]),
        ..Default::default()
    }
}

/// The fields jobfleet manages on a stream, rendered for comparison and reports.
fn managed(config: &stream::Config) -> Vec<(&'static str, String)> {
    let ours: std::collections::BTreeMap<_, _> = config
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("jobfleet."))
        .collect();
    vec![
        ("subjects", format!("{:?}", config.subjects)),
        ("description", format!("{:?}", config.description)),
        ("max_age", format!("{:?}", config.max_age)),
        ("max_messages", config.max_messages.to_string()),
        ("max_bytes", config.max_bytes.to_string()),
        ("max_payload", config.max_message_size.to_string()),
        ("duplicate_window", format!("{:?}", config.duplicate_window)),
        ("replicas", config.num_replicas.to_string()),
        ("discard", format!("{:?}", config.discard)),
        (
            "allow_message_schedules",
            config.allow_message_schedules.to_string(),
        ),
        ("allow_direct", config.allow_direct.to_string()),
        ("metadata", format!("{ours:?}")),
    ]
}

/// Creates the stream, or updates its managed fields. Returns whether it was created.
async fn reconcile_stream(
    js: &jetstream::Context,
    object: &str,
    mut desired: stream::Config,
    must_be_ours: bool,
    declared: &mut Declared,
) -> Result<bool, ProvisionError> {
    let current = match js.get_stream(&desired.name).await {
        Ok(mut stream) => stream.info().await.map_err(unavailable)?.config.clone(),
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.code() == 404) => {
            js.create_stream(desired).await.map_err(rejected)?;
            return Ok(true);
        }
        Err(err) => return Err(unavailable(err)),
    };
    if must_be_ours && !current.metadata.contains_key(topology::METADATA_PROTOCOL) {
        return Err(ProvisionError::new(
            ProvisionErrorKind::Conflict,
            format!(
                "stream {} exists but was not created by jobfleet; refusing to change it",
                current.name
            ),
        ));
    }
    for (field, now, wanted, reason) in [
        (
            "storage",
            format!("{:?}", current.storage),
            format!("{:?}", desired.storage),
            "JetStream cannot change a stream's storage type; delete and re-declare the queue, or keep it",
        ),
        (
            "retention",
            format!("{:?}", current.retention),
            format!("{:?}", desired.retention),
            "JetStream cannot change a stream's retention policy",
        ),
    ] {
        if now != wanted {
            declared.not_applied.push(NotApplied {
                field: format!("{object}.{field}"),
                current: now,
                wanted,
                reason: reason.to_owned(),
            });
        }
    }

    let mut updated = current.clone();
    if current.allow_message_schedules && !desired.allow_message_schedules {
        // Schedules cannot be switched off once on (JetStream error 10052), and JetStream
        // refuses limits with `discard: new` on a stream with schedules. So an unbounded queue
        // stays unbounded; everything else in the declaration still applies.
        for (field, now, wanted) in [
            ("max_messages", current.max_messages, desired.max_messages),
            ("max_bytes", current.max_bytes, desired.max_bytes),
        ] {
            if now != wanted {
                declared.not_applied.push(NotApplied {
                    field: format!("{object}.{field}"),
                    current: now.to_string(),
                    wanted: wanted.to_string(),
                    reason: "a queue created unbounded keeps delayed jobs (message schedules), which JetStream \
                             cannot switch off, and schedules rule out the `discard: new` a bounded queue needs; \
                             declare a new queue to bound it"
                        .to_owned(),
                });
            }
        }
        desired.max_messages = current.max_messages;
        desired.max_bytes = current.max_bytes;
        desired.discard = current.discard;
        desired.allow_message_schedules = true;
    }
    updated.subjects = desired.subjects;
    updated.description = desired.description;
    updated.max_age = desired.max_age;
    updated.max_messages = desired.max_messages;
    updated.max_bytes = desired.max_bytes;
    updated.max_message_size = desired.max_message_size;
    updated.duplicate_window = desired.duplicate_window;
    updated.num_replicas = desired.num_replicas;
    updated.discard = desired.discard;
    updated.allow_message_schedules = desired.allow_message_schedules;
    updated.allow_direct = desired.allow_direct;
    updated.metadata.extend(desired.metadata);
    let changed = changed_fields(object, &managed(&current), &managed(&updated));
    if !changed.is_empty() {
        js.update_stream(updated).await.map_err(rejected)?;
        declared.changed.extend(changed);
    }
    Ok(false)
}

fn changed_fields(
    object: &str,
    before: &[(&'static str, String)],
    after: &[(&'static str, String)],
) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(b, _)| format!("{object}.{}", b.0))
        .collect()
}

fn worker_consumer(config: &QueueConfig, name: &QueueName) -> pull::Config {
    pull::Config {
        durable_name: Some(topology::WORKER_CONSUMER.to_owned()),
        description: Some(format!("jobfleet workers of queue {name}")),
        filter_subject: name.ready_subject(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: config.worker.ack_wait,
        // One delivery beyond the attempt limit lets a worker dead-letter a job that crashed
        // its previous worker every time; the max-deliveries advisory covers the rest.
        max_deliver: i64::from(config.worker.max_attempts) + 1,
        max_ack_pending: i64::from(config.worker.max_in_flight),
        ..Default::default()
    }
}

fn consumer_fields(config: &pull::Config) -> Vec<(&'static str, String)> {
    vec![
        ("filter_subject", config.filter_subject.clone()),
        ("description", format!("{:?}", config.description)),
        ("ack_wait", format!("{:?}", config.ack_wait)),
        ("max_deliver", config.max_deliver.to_string()),
        ("max_ack_pending", config.max_ack_pending.to_string()),
    ]
}

async fn reconcile_consumer(
    js: &jetstream::Context,
    config: &QueueConfig,
    name: &QueueName,
    declared: &mut Declared,
) -> Result<(), ProvisionError> {
    let desired = worker_consumer(config, name);
    let stream = name.stream_name();
    let existing: Result<Consumer<pull::Config>, _> = js
        .get_consumer_from_stream(topology::WORKER_CONSUMER, &stream)
        .await;
    let current = match existing {
        Ok(consumer) => consumer.cached_info().config.clone(),
        Err(err) if matches!(err.kind(), ConsumerErrorKind::JetStream(e) if e.code() == 404) => {
            js.create_consumer_on_stream(desired, &stream)
                .await
                .map_err(rejected)?;
            return Ok(());
        }
        // Anything else (timeout, permissions): never overwrite a consumer we could not read.
        Err(err) => return Err(unavailable(err)),
    };
    let mut updated: pull::Config = pull::Config {
        durable_name: current.durable_name.clone(),
        description: desired.description.clone(),
        filter_subject: desired.filter_subject.clone(),
        ack_wait: desired.ack_wait,
        max_deliver: desired.max_deliver,
        max_ack_pending: desired.max_ack_pending,
        ..desired
    };
    // Keep what we do not manage.
    updated.max_waiting = current.max_waiting;
    updated.backoff.clone_from(&current.backoff);
    updated.metadata.clone_from(&current.metadata);
    let current = pull::Config {
        durable_name: current.durable_name.clone(),
        description: current.description.clone(),
        filter_subject: current.filter_subject.clone(),
        ack_wait: current.ack_wait,
        max_deliver: current.max_deliver,
        max_ack_pending: current.max_ack_pending,
        ..Default::default()
    };
    let changed = changed_fields(
        "consumer",
        &consumer_fields(&current),
        &consumer_fields(&updated),
    );
    if !changed.is_empty() {
        js.update_consumer_on_stream(updated, &stream)
            .await
            .map_err(rejected)?;
        declared.changed.extend(changed);
    }
    Ok(())
}

async fn ensure_audit_stream(
    js: &jetstream::Context,
    config: &QueueConfig,
    declared: &mut Declared,
) -> Result<(), ProvisionError> {
    match js.get_stream(topology::AUDIT_STREAM).await {
        // Shared by every queue: it must be as replicated as the most replicated of them,
        // since workers wait for terminal events to be stored.
        Ok(stream) if stream.cached_info().config.num_replicas < usize::from(config.replicas) => {
            let mut raised = stream.cached_info().config.clone();
            raised.num_replicas = usize::from(config.replicas);
            js.update_stream(raised).await.map_err(rejected)?;
            declared.changed.push("audit.replicas".to_owned());
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.code() == 404) => {
            let audit = stream::Config {
                name: topology::AUDIT_STREAM.to_owned(),
                description: Some("jobfleet job lifecycle events, one subject per job".to_owned()),
                subjects: vec![topology::AUDIT_SUBJECTS.to_owned()],
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::Old,
                max_age: AUDIT_MAX_AGE,
                max_messages: -1,
                max_bytes: -1,
                max_message_size: -1,
                duplicate_window: Duration::from_secs(120),
                num_replicas: usize::from(config.replicas),
                storage: StorageType::File,
                allow_direct: true,
                metadata: HashMap::from([(
                    topology::METADATA_PROTOCOL.to_owned(),
                    topology::PROTOCOL_VERSION.to_owned(),
                )]),
                ..Default::default()
            };
            match js.create_stream(audit).await {
                Ok(_) => Ok(()),
                // Another process created it meanwhile.
                Err(_) if js.get_stream(topology::AUDIT_STREAM).await.is_ok() => Ok(()),
                Err(err) => Err(rejected(err)),
            }
        }
        Err(err) => Err(unavailable(err)),
    }
}

/// Captures the queue's max-deliveries advisories in the shared advisory stream and creates
/// the queue's mover consumer on it.
async fn ensure_advisory_capture(
    js: &jetstream::Context,
    config: &QueueConfig,
    name: &QueueName,
    declared: &mut Declared,
) -> Result<(), ProvisionError> {
    let subject = name.max_deliveries_advisory_subject();
    match js.get_stream(topology::ADVISORY_STREAM).await {
        Ok(stream) => {
            let current = stream.cached_info().config.clone();
            if !current.subjects.contains(&subject) {
                let mut wider = current.clone();
                wider.subjects.push(subject.clone());
                js.update_stream(wider).await.map_err(rejected)?;
            }
            if current.num_replicas < usize::from(config.replicas) {
                // Scaling it while movers are bound to it proved unreliable (JetStream answers
                // "insufficient resources" to the movers that follow), so it keeps the replica
                // count of the first queue declared; say so.
                declared.not_applied.push(NotApplied {
                    field: "advisories.replicas".to_owned(),
                    current: current.num_replicas.to_string(),
                    wanted: config.replicas.to_string(),
                    reason: "the shared advisory stream keeps the replica count it was created with; \
                             declare the most replicated queue first, or scale JOBFLEET_ADVISORIES by hand"
                        .to_owned(),
                });
            }
        }
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.code() == 404) => {
            let capture = stream::Config {
                name: topology::ADVISORY_STREAM.to_owned(),
                description: Some("jobfleet: max-deliveries advisories of queue workers, for the dead-letter mover".to_owned()),
                subjects: vec![subject.clone()],
                // Limits, not WorkQueue: a WorkQueue stream ties its consumers' replica count
                // to its own, which would stop it from growing with the queues.
                retention: RetentionPolicy::Limits,
                max_age: AUDIT_MAX_AGE,
                num_replicas: usize::from(config.replicas),
                storage: StorageType::File,
                metadata: HashMap::from([(
                    topology::METADATA_PROTOCOL.to_owned(),
                    topology::PROTOCOL_VERSION.to_owned(),
                )]),
                ..Default::default()
            };
            if let Err(err) = js.create_stream(capture).await {
                // Another process may have created it meanwhile; then try again to add ours.
                if js.get_stream(topology::ADVISORY_STREAM).await.is_err() {
                    return Err(rejected(err));
                }
                return Box::pin(ensure_advisory_capture(js, config, name, declared)).await;
            }
        }
        Err(err) => return Err(unavailable(err)),
    }
    let mover = pull::Config {
        durable_name: Some(name.mover_consumer()),
        description: Some(format!("jobfleet dead-letter mover of queue {name}")),
        filter_subject: subject,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let existing: Result<Consumer<pull::Config>, _> = js
        .get_consumer_from_stream(name.mover_consumer(), topology::ADVISORY_STREAM)
        .await;
    match existing {
        Ok(_) => Ok(()),
        Err(err) if matches!(err.kind(), ConsumerErrorKind::JetStream(e) if e.code() == 404) => {
            js.create_consumer_on_stream(mover, topology::ADVISORY_STREAM)
                .await
                .map_err(rejected)?;
            Ok(())
        }
        Err(err) => Err(unavailable(err)),
    }
}

fn rejected<E: std::error::Error + Send + Sync + 'static>(err: E) -> ProvisionError {
    let message = format!("JetStream refused the change: {err}");
    ProvisionError::with_source(ProvisionErrorKind::Rejected, message, err)
}

fn unavailable<E: std::error::Error + Send + Sync + 'static + Debug>(err: E) -> ProvisionError {
    let message = format!("JetStream did not answer: {err}");
    ProvisionError::with_source(ProvisionErrorKind::Unavailable, message, err)
}
