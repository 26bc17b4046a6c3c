//! Publishing one message with retries under the same message id.
//!
//! A publish whose acknowledgement times out may still have been stored (async-nats buffers
//! it across a reconnect), so it is sent again with the same `Nats-Msg-Id`; JetStream drops
//! the repeat within the duplicate window. Retries continue until the enqueue deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::connection::State;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode, publish::PublishAck};
use bytes::Bytes;
use tokio::time::Instant;

use crate::error::{EnqueueError, EnqueueErrorKind};
use crate::refusals::Refusals;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One message ready to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The stream that should store it, to tell a deleted queue from a restarting server.
    pub(crate) stream: std::sync::Arc<str>,
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// How a failed publish attempt is handled.
pub(crate) enum Failure {
    /// Send it again (timeouts, lost connection, no responders while a leader is elected).
    Retry(PublishError),
    /// Give up with this error.
    Fatal(EnqueueError),
}

#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) deadline: Duration,
    pub(crate) retries: AtomicU64,
    /// The permission refusals the server reported on `client`.
    pub(crate) refusals: Arc<Refusals>,
}

impl Publisher {
    /// Starts one publish attempt: hands the message to the connection and returns the future
    /// of its acknowledgement.
    pub(crate) async fn send(&self, msg: Outgoing) -> Result<PublishAckFuture, Failure> {
        let publish = PublishMessage::build()
            .payload(msg.payload)
            .headers(msg.headers);
        self.js
            .send_publish(msg.subject, publish)
            .await
            .map_err(classify)
    }

    /// Publishes `msg`, retrying transient failures until the deadline. Returns the
    /// acknowledgement and whether the message was sent more than once (then a `duplicate`
    /// acknowledgement may be of this call's own earlier copy).
    pub(crate) async fn publish(&self, msg: &Outgoing) -> Result<(PublishAck, bool), EnqueueError> {
        let deadline = Instant::now() + self.deadline;
        let mut backoff = FIRST_BACKOFF;
        let mut resent = false;
        loop {
            let sent = std::time::Instant::now();
            let attempt = match self.send(msg.clone()).await {
                Ok(ack) => ack.await.map_err(classify),
                Err(failure) => Err(failure),
            };
            match attempt {
                Ok(ack) => return Ok((ack, resent)),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::Retry(err)) => {
                    if err.kind() == PublishErrorKind::TimedOut
                        && let Some(refused) = self.refused(sent, &msg.subject)
                    {
                        return Err(refused);
                    }
                    resent = true;
                    if err.kind() == PublishErrorKind::StreamNotFound
                        && !self.stream_exists(&msg.stream).await
                    {
                        return Err(EnqueueError::with_source(
                            EnqueueErrorKind::UnknownQueue,
                            format!(
                                "stream {} does not exist (was the queue deleted?)",
                                msg.stream
                            ),
                            err,
                        ));
                    }
                    if Instant::now() + backoff >= deadline {
                        return Err(self.gave_up(err));
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(subject = %msg.subject, error = %err, "publish not acknowledged, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// `Rejected`, when the server refused this connection's user a publish to `subject`
    /// since `since` (a refused publish is dropped unanswered, so it looks like a timeout).
    pub(crate) fn refused(&self, since: std::time::Instant, subject: &str) -> Option<EnqueueError> {
        let why = self.refusals.publish_refused(since, subject)?;
        Some(EnqueueError::new(EnqueueErrorKind::Rejected, why))
    }

    /// False only when JetStream answers that the stream does not exist.
    pub(crate) async fn stream_exists(&self, stream: &str) -> bool {
        match self.js.get_stream(stream).await {
            Err(err) => !matches!(
                err.kind(),
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(e) if e.code() == 404
            ),
            Ok(_) => true,
        }
    }

    /// The error reported after the deadline passed with only transient failures.
    pub(crate) fn gave_up(&self, last: PublishError) -> EnqueueError {
        let deadline = self.deadline;
        if self.client.connection_state() == State::Connected {
            EnqueueError::with_source(
                EnqueueErrorKind::Timeout,
                format!(
                    "no acknowledgement within {deadline:?}; the job may be stored, retry with the same id"
                ),
                last,
            )
        } else {
            EnqueueError::with_source(
                EnqueueErrorKind::NotConnected,
                format!("not connected to NATS for {deadline:?}"),
                last,
            )
        }
    }
}

/// Sorts a publish error into retry or give up, with the typed kind for the latter.
pub(crate) fn classify(err: PublishError) -> Failure {
    match err.kind() {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => Failure::Retry(err),
        // No responders: no stream listens on the subject. Either the queue is gone or a
        // server is restarting; the caller checks which.
        PublishErrorKind::StreamNotFound => Failure::Retry(err),
        PublishErrorKind::MaxPayloadExceeded => Failure::Fatal(EnqueueError::with_source(
            EnqueueErrorKind::PayloadTooLarge,
            "the job exceeds the server's max_payload",
            err,
        )),
        _ => Failure::Fatal(classify_api_error(err)),
    }
}

fn classify_api_error(err: PublishError) -> EnqueueError {
    let api = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .cloned();
    let Some(api) = api else {
        return EnqueueError::with_source(
            EnqueueErrorKind::Rejected,
            "the server refused the job",
            err,
        );
    };
    let description = api.to_string();
    let kind = match api.error_code() {
        ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => EnqueueErrorKind::PayloadTooLarge,
        ErrorCode::STREAM_STORE_FAILED if description.contains("maximum") => {
            EnqueueErrorKind::StreamFull
        }
        ErrorCode::STREAM_NOT_FOUND => EnqueueErrorKind::UnknownQueue,
        _ => EnqueueErrorKind::Rejected,
    };
    let message = match kind {
        EnqueueErrorKind::PayloadTooLarge => "the job exceeds the queue's max_payload",
        EnqueueErrorKind::StreamFull => {
            "the queue is full (max_messages or max_bytes reached); retry later"
        }
        EnqueueErrorKind::UnknownQueue => "the queue does not exist",
        _ => "the server refused the job",
    };
    EnqueueError::with_source(kind, message, err)
}
