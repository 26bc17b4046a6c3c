//! Writing audit events: terminal ones awaited, the rest in the background.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use std::time::Duration;

use async_nats::jetstream;
use jobfleet_core::{AuditEvent, AuditEventKind, AuditLevel, topology};

/// Writes a queue's audit events at its level.
#[derive(Debug, Clone)]
pub(crate) struct AuditSink {
    js: jetstream::Context,
    level: AuditLevel,
}

impl AuditSink {
    pub(crate) fn new(js: jetstream::Context, level: AuditLevel) -> Self {
        Self { js, level }
    }

    /// Whether events of `kind` are recorded (check before building one).
    pub(crate) fn wants(&self, kind: AuditEventKind) -> bool {
        self.level.records(kind)
    }

    /// Records `event` if the level asks for it. Terminal events are awaited until stored,
    /// because the job is acknowledged only after its terminal event exists; the others are
    /// handed to the connection and not awaited (they are informational).
    ///
    /// Returns false when a terminal event could not be stored.
    pub(crate) async fn record(&self, event: &AuditEvent) -> bool {
        if !self.level.records(event.event) {
            return true;
        }
        let payload = match serde_json::to_vec(event) {
            Ok(json) => json,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode audit event");
                return false;
            }
        };
        let subject = topology::audit_subject(&event.job_id);
        if !must_await(event.event) {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, event.message_id());
            // Dropping the ack future leaves it to async-nats' background acker.
            if let Err(err) = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
            {
                tracing::warn!(job_id = %event.job_id, error = %err, "audit event not sent");
            }
            return true;
        }
        // Awaited, and re-sent with the same message id while the outcome is unknown: a
        // timed-out publish may have been stored, and the id makes the repeat harmless.
        let payload = bytes::Bytes::from(payload);
        let mut backoff = Duration::from_millis(100);
        for _ in 0..AWAITED_TRIES {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, event.message_id());
            let sent = self
                .js
                .publish_with_headers(subject.clone(), headers, payload.clone())
                .await;
            match sent {
                Ok(ack) => match ack.await {
                    Ok(_) => return true,
                    Err(err) => {
                        tracing::warn!(job_id = %event.job_id, error = %err, "audit event not confirmed; retrying")
                    }
                },
                Err(err) => {
                    tracing::warn!(job_id = %event.job_id, error = %err, "audit event not sent; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        false
    }
}

/// How often an awaited event is tried before its caller gives up for now.
const AWAITED_TRIES: usize = 4;

/// Terminal events (the job is acked only after its terminal event exists) and redrives (the
/// job is re-queued only after, so its history stays in order).
fn must_await(kind: AuditEventKind) -> bool {
    kind.is_terminal() || kind == AuditEventKind::Redriven
}
