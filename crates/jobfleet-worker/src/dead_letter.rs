//! Moving a job to its queue's dead-letter stream.
//!
//! The copy is published and its PubAck awaited *before* the job is terminated in the work
//! stream (terminating deletes it). A crash in between leaves a job that is redelivered and
//! dead-lettered again; the copy's message id `dlq.<queue>.<sequence>` makes that a no-op.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;

use crate::copy_headers::carried_headers;
use bytes::Bytes;
use jobfleet_core::{JobId, JobMeta, QueueName, format_timestamp, headers as h};
use time::OffsetDateTime;

/// Why and when a job died, recorded on its dead-letter copy.
#[derive(Debug)]
pub(crate) struct Death<'a> {
    pub(crate) reason: &'a str,
    pub(crate) attempts: u32,
    pub(crate) stream_sequence: u64,
}

/// Publishes the dead-letter copy of a job and waits until it is stored.
pub(crate) async fn publish_dead_letter(
    js: &jetstream::Context,
    queue: &QueueName,
    meta: Option<&JobMeta>,
    original: &HeaderMap,
    payload: Bytes,
    death: &Death<'_>,
) -> Result<(), async_nats::Error> {
    // Application headers travel along; NATS control headers (message id, schedule) must not.
    let mut headers = carried_headers(Some(original), true);
    let id = meta.map_or_else(JobId::new, |m| m.id);
    if let Some(meta) = meta {
        for (name, value) in meta.to_headers() {
            headers.insert(name, value);
        }
    }
    headers.insert(h::DEAD_REASON, one_line(death.reason));
    headers.insert(h::DEAD_ATTEMPTS, death.attempts.to_string());
    headers.insert(h::DEAD_AT, format_timestamp(OffsetDateTime::now_utc()));
    headers.insert(h::DEAD_ORIGINAL_SEQUENCE, death.stream_sequence.to_string());
    headers.insert(
        NATS_MESSAGE_ID,
        format!("dlq.{queue}.{}", death.stream_sequence),
    );
    js.publish_with_headers(queue.dead_letter_subject(&id), headers, payload)
        .await?
        .await?;
    Ok(())
}

/// Header values cannot hold line breaks; error messages can.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(2048).collect()
}
