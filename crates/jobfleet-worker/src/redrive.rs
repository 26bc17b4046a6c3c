//! Browsing a queue's dead letters and putting them back on the queue (redrive).
//!
//! A redriven job keeps its id and payload, starts over with no attempts used, and begins a
//! new life (`Jobfleet-Life` + 1), so its new audit events, terminal one included, are kept
//! apart from the old ones. Each dead letter is re-published (message id
//! `<job-id>.redrive.<life>`, so repeating a half-done redrive stores it once), its
//! `redriven` audit event written, and only then deleted from the dead-letter stream.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use bytes::Bytes;
use jobfleet_core::{
    AuditEvent, AuditEventKind, AuditLevel, JobId, JobMeta, QueueName, headers as h,
    parse_timestamp,
};
use time::OffsetDateTime;

use crate::audit::AuditSink;
use crate::copy_headers::carried_headers;
use crate::error::{WorkerError, WorkerErrorKind};
use crate::settings::QueueSettings;

/// One job in a queue's dead-letter stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The job's id.
    pub id: JobId,
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    /// Why it died.
    pub reason: String,
    /// Attempts it made.
    pub attempts: u32,
    /// When it died.
    pub dead_at: Option<OffsetDateTime>,
    /// Its metadata, as it was when it died.
    pub meta: Option<JobMeta>,
    /// All headers of the dead-letter copy.
    pub headers: HeaderMap,
    /// The payload.
    pub payload: Bytes,
}

/// Which dead letters to redrive.
#[non_exhaustive]
pub enum RedriveSelection {
    /// Every dead letter of the queue.
    All,
    /// These job ids.
    Ids(Vec<JobId>),
    /// Those the predicate accepts.
    Matching(Box<dyn Fn(&DeadLetter) -> bool + Send + Sync>),
}

impl RedriveSelection {
    fn selects(&self, dead: &DeadLetter) -> bool {
        match self {
            Self::All => true,
            Self::Ids(ids) => ids.contains(&dead.id),
            Self::Matching(accept) => accept(dead),
        }
    }
}

impl std::fmt::Debug for RedriveSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("All"),
            Self::Ids(ids) => f.debug_tuple("Ids").field(ids).finish(),
            Self::Matching(_) => f.write_str("Matching(..)"),
        }
    }
}

/// What a redrive did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RedriveReport {
    /// Jobs put back on the queue.
    pub redriven: Vec<JobId>,
    /// Jobs that could not be put back (they stay dead), with the reason.
    pub failed: Vec<(JobId, String)>,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> WorkerError {
    WorkerError::with_source(
        WorkerErrorKind::Unavailable,
        "cannot read the dead-letter stream",
        err,
    )
}

/// Walks a queue's dead-letter stream one message at a time, so no operation holds more
/// than one dead letter in memory; or, for a selection by id, visits only those ids.
struct Cursor {
    stream: jetstream::stream::Stream<()>,
    name: QueueName,
    next: u64,
    /// For [`RedriveSelection::Ids`]: the ids still to visit (read by subject, not scanned).
    ids: Option<std::vec::IntoIter<JobId>>,
}

impl Cursor {
    async fn open(
        js: &jetstream::Context,
        name: QueueName,
        after: u64,
        selection: Option<&RedriveSelection>,
    ) -> Result<Self, WorkerError> {
        let stream = js
            .get_stream_no_info(name.dead_letter_stream_name())
            .await
            .map_err(unavailable)?;
        let ids = match selection {
            Some(RedriveSelection::Ids(ids)) => Some(ids.clone().into_iter()),
            _ => None,
        };
        Ok(Self {
            stream,
            name,
            next: after.saturating_add(1),
            ids,
        })
    }

    async fn next(&mut self) -> Result<Option<DeadLetter>, WorkerError> {
        if let Some(ids) = &mut self.ids {
            for id in ids.by_ref() {
                match self
                    .stream
                    .direct_get_last_for_subject(self.name.dead_letter_subject(&id))
                    .await
                {
                    Ok(message) => return Ok(Some(decode(message))),
                    Err(err) if err.kind() == DirectGetErrorKind::NotFound => {}
                    Err(err) => return Err(unavailable(err)),
                }
            }
            return Ok(None);
        }
        match self
            .stream
            .direct_get_next_for_subject(self.name.dead_letter_subjects(), Some(self.next))
            .await
        {
            Ok(message) => {
                self.next = message.sequence + 1;
                Ok(Some(decode(message)))
            }
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(err) => Err(unavailable(err)),
        }
    }
}

/// Every dead letter of `queue`, oldest first.
///
/// # Errors
///
/// [`WorkerErrorKind::UnknownQueue`] when the queue does not exist; `Unavailable` when its
/// dead-letter stream cannot be read.
pub async fn dead_letters(
    js: &jetstream::Context,
    queue: &str,
) -> Result<Vec<DeadLetter>, WorkerError> {
    dead_letters_page(js, queue, 0, usize::MAX, |_| true).await
}

/// Up to `limit` dead letters of `queue` with a dead-letter sequence above `after` that
/// `accept` keeps, oldest first: a page of a browsable list. The next page starts after the
/// last returned [`DeadLetter::sequence`].
///
/// # Errors
///
/// As [`dead_letters`].
pub async fn dead_letters_page(
    js: &jetstream::Context,
    queue: &str,
    after: u64,
    limit: usize,
    accept: impl Fn(&DeadLetter) -> bool,
) -> Result<Vec<DeadLetter>, WorkerError> {
    let name = QueueSettings::load(js, queue).await?.name;
    let mut cursor = Cursor::open(js, name, after, None).await?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(dead) = cursor.next().await? else {
            break;
        };
        if accept(&dead) {
            out.push(dead);
        }
    }
    Ok(out)
}

/// The dead letter of job `id` in `queue`, if it is there.
///
/// # Errors
///
/// As [`dead_letters`].
pub async fn dead_letter(
    js: &jetstream::Context,
    queue: &str,
    id: JobId,
) -> Result<Option<DeadLetter>, WorkerError> {
    let name = QueueSettings::load(js, queue).await?.name;
    let stream = js
        .get_stream_no_info(name.dead_letter_stream_name())
        .await
        .map_err(unavailable)?;
    match stream
        .direct_get_last_for_subject(name.dead_letter_subject(&id))
        .await
    {
        Ok(message) => Ok(Some(decode(message))),
        Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(err) => Err(unavailable(err)),
    }
}

/// Deletes the selected dead letters of `queue` for good and returns the ids deleted.
/// Their history stays in the audit stream (each already has its terminal event).
///
/// # Errors
///
/// As [`dead_letters`]; a delete JetStream refuses fails the call with `Unavailable`
/// (dead letters deleted before it stay deleted).
pub async fn delete_dead_letters(
    js: &jetstream::Context,
    queue: &str,
    selection: RedriveSelection,
) -> Result<Vec<JobId>, WorkerError> {
    let name = QueueSettings::load(js, queue).await?.name;
    let mut cursor = Cursor::open(js, name.clone(), 0, Some(&selection)).await?;
    let mut deleted = Vec::new();
    if let RedriveSelection::All = selection {
        // One purge, not one delete per message, bounded by the last letter listed: one
        // that arrives meanwhile stays (and is not reported as deleted).
        let mut last = None;
        while let Some(dead) = cursor.next().await? {
            deleted.push(dead.id);
            last = Some(dead.sequence);
        }
        if let Some(last) = last {
            cursor
                .stream
                .purge()
                .filter(name.dead_letter_subjects())
                .sequence(last + 1)
                .await
                .map_err(unavailable)?;
        }
        return Ok(deleted);
    }
    while let Some(dead) = cursor.next().await? {
        if !selection.selects(&dead) {
            continue;
        }
        match cursor.stream.delete_message(dead.sequence).await {
            Ok(_) => deleted.push(dead.id),
            // Gone already (deleted or redriven meanwhile): nothing to do.
            Err(err)
                if matches!(
                    err.kind(),
                    jetstream::stream::DeleteMessageErrorKind::JetStream(e)
                        if e.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
                ) => {}
            Err(err) => return Err(unavailable(err)),
        }
    }
    Ok(deleted)
}

fn decode(message: jetstream::message::StreamMessage) -> DeadLetter {
    let headers = message.headers;
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    let meta = JobMeta::from_headers(|n| headers.get(n).map(|v| v.as_str()), message.time).ok();
    let id = meta.as_ref().map(|m| m.id).or_else(|| {
        // Malformed jobs are filed under a fresh id in the subject's last token.
        message
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse().ok())
    });
    DeadLetter {
        id: id.unwrap_or_default(),
        sequence: message.sequence,
        reason: get(h::DEAD_REASON).unwrap_or_default(),
        attempts: get(h::DEAD_ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        dead_at: get(h::DEAD_AT).and_then(|t| parse_timestamp(&t).ok()),
        meta,
        headers,
        payload: message.payload,
    }
}

/// Puts the selected dead letters of `queue` back on it (see the module docs).
///
/// # Errors
///
/// [`WorkerErrorKind::UnknownQueue`] when the queue does not exist; `Unavailable` when its
/// dead-letter stream cannot be read. Jobs that fail one by one are listed in
/// [`RedriveReport::failed`] and stay dead.
pub async fn redrive(
    js: &jetstream::Context,
    queue: &str,
    selection: RedriveSelection,
) -> Result<RedriveReport, WorkerError> {
    let settings = QueueSettings::load(js, queue).await?;
    let audit = AuditSink::new(js.clone(), settings.audit);
    let mut cursor = Cursor::open(js, settings.name.clone(), 0, Some(&selection)).await?;
    let mut report = RedriveReport::default();
    while let Some(dead) = cursor.next().await? {
        if !selection.selects(&dead) {
            continue;
        }
        match redrive_one(js, &settings.name, &audit, settings.audit, &dead).await {
            Ok(()) => match cursor.stream.delete_message(dead.sequence).await {
                Ok(_) => report.redriven.push(dead.id),
                Err(err) => report.failed.push((
                    dead.id,
                    format!("re-queued, but not removed from the dead letters: {err}"),
                )),
            },
            Err(err) => report.failed.push((dead.id, err.to_string())),
        }
    }
    Ok(report)
}

async fn redrive_one(
    js: &jetstream::Context,
    queue: &QueueName,
    audit: &AuditSink,
    level: AuditLevel,
    dead: &DeadLetter,
) -> Result<(), async_nats::Error> {
    let now = OffsetDateTime::now_utc();
    let mut meta = dead
        .meta
        .clone()
        .unwrap_or_else(|| JobMeta::new(dead.id, now));
    meta.prior_attempts = 0;
    meta.run_at = None;
    meta.life = meta.life.saturating_add(1);
    let mut headers = carried_headers(Some(&dead.headers), false);
    for (name, value) in meta.to_headers() {
        headers.insert(name, value);
    }
    headers.insert(
        NATS_MESSAGE_ID,
        format!("{}.redrive.{}", meta.id, meta.life),
    );
    // The event first (awaited), so the new life's history starts with it.
    if level.records(AuditEventKind::Redriven) {
        let mut event = AuditEvent::new(AuditEventKind::Redriven, meta.id, queue.as_str(), now, 0);
        event.life = meta.life;
        event.job_type.clone_from(&meta.job_type);
        if !audit.record(&event).await {
            return Err("the redriven audit event could not be stored; the job stays dead".into());
        }
    }
    js.publish_with_headers(queue.ready_subject(), headers, dead.payload.clone())
        .await?
        .await?;
    Ok(())
}
