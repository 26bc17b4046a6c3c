//! The safety net for jobs that never reach an outcome: when a job's deliveries reach the
//! worker consumer's `max_deliver` (its workers died or hung every time), JetStream stops
//! delivering it but leaves it in the work stream and announces it with a max-deliveries
//! advisory, which the queue's declaration captures durably. The mover copies each such job
//! to the dead-letter stream by sequence, records its terminal audit event, then deletes it
//! from the work stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use jobfleet_core::{AuditEvent, AuditEventKind, JobMeta, topology};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{Death, publish_dead_letter};
use crate::execute::Runtime;
use crate::stats::WorkerStats;

/// The fields of `io.nats.jetstream.advisory.v1.max_deliver` the mover needs.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// Runs the mover of `runtime`'s queue until `stop`; every worker of the queue runs one, and
/// the shared durable consumer hands each advisory to one of them.
pub(crate) async fn run_mover(runtime: Arc<Runtime>, stop: CancellationToken) {
    let name = runtime.settings.name.mover_consumer();
    // Retried until it works: a passing JetStream hiccup at start must not switch the
    // safety net off for the life of the process. Only a missing consumer ends it.
    let mut backoff = Duration::from_secs(1);
    let consumer: PullConsumer = loop {
        match runtime
            .js
            .get_consumer_from_stream(&name, topology::ADVISORY_STREAM)
            .await
        {
            Ok(consumer) => break consumer,
            Err(err) if matches!(err.kind(), jetstream::stream::ConsumerErrorKind::JetStream(e) if e.code() == 404) =>
            {
                tracing::warn!(queue = %runtime.settings.name, "no dead-letter mover consumer (re-declare the queue to create it)");
                return;
            }
            Err(err) => {
                tracing::warn!(queue = %runtime.settings.name, error = %err, "dead-letter mover not started yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    while !stop.is_cancelled() {
        let batch = tokio::select! {
            batch = consumer.fetch().max_messages(10).expires(Duration::from_secs(5)).messages() => batch,
            () = stop.cancelled() => return,
        };
        let Ok(mut batch) = batch else {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                () = stop.cancelled() => return,
            }
        };
        loop {
            let advisory = tokio::select! {
                next = batch.next() => match next {
                    Some(Ok(advisory)) => advisory,
                    _ => break,
                },
                () = stop.cancelled() => return,
            };
            match serde_json::from_slice::<MaxDeliveries>(&advisory.payload) {
                Ok(event) => {
                    if move_job(&runtime, &event).await {
                        let _ = advisory.double_ack().await;
                    } else {
                        let _ = advisory
                            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                            .await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable max-deliveries advisory dropped");
                    let _ = advisory.ack_with(AckKind::Term).await;
                }
            }
        }
    }
}

/// Moves the job at `event.stream_seq`; false when it must be tried again.
async fn move_job(runtime: &Runtime, event: &MaxDeliveries) -> bool {
    let name = &runtime.settings.name;
    let stream = match runtime.js.get_stream(name.stream_name()).await {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(error = %err, "mover cannot read the work stream");
            return false;
        }
    };
    let raw = match stream.get_raw_message(event.stream_seq).await {
        Ok(raw) => raw,
        // Already gone: acked late, or moved by a previous try.
        Err(err) if err.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            return true;
        }
        Err(err) => {
            tracing::warn!(error = %err, "mover cannot read the job");
            return false;
        }
    };
    let meta = JobMeta::from_headers(|n| raw.headers.get(n).map(|v| v.as_str()), raw.time).ok();
    let deliveries = u32::try_from(event.deliveries).unwrap_or(u32::MAX);
    let attempts = meta
        .as_ref()
        .map_or(deliveries, |m| m.prior_attempts.saturating_add(deliveries));
    let reason =
        format!("no outcome after {deliveries} deliveries (its workers died or hung every time)");
    let death = Death {
        reason: &reason,
        attempts,
        stream_sequence: event.stream_seq,
    };
    if let Err(err) = publish_dead_letter(
        &runtime.js,
        name,
        meta.as_ref(),
        &raw.headers,
        raw.payload.clone(),
        &death,
    )
    .await
    {
        tracing::warn!(error = %err, "mover could not store the dead letter");
        return false;
    }
    if let Some(meta) = &meta {
        let mut audit = AuditEvent::new(
            AuditEventKind::DeadLettered,
            meta.id,
            name.as_str(),
            OffsetDateTime::now_utc(),
            attempts,
        );
        audit.life = meta.life;
        audit.stream_seq = Some(event.stream_seq);
        audit.worker = Some(runtime.worker_id.clone());
        audit.error = Some(reason.clone());
        if !runtime.audit.record(&audit).await {
            // The job stays in the work stream and the advisory is offered again.
            return false;
        }
    }
    match stream.delete_message(event.stream_seq).await {
        Ok(_) => {
            WorkerStats::bump(&runtime.stats.dead_lettered);
            tracing::warn!(
                sequence = event.stream_seq,
                reason,
                "job moved to the dead letters"
            );
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, "mover could not delete the job after dead-lettering it");
            false
        }
    }
}
