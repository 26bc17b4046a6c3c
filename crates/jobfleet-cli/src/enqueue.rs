//! `jobfleet enqueue`.

use std::io::Read;

use jobfleet_producer::{Job, Producer};
use time::OffsetDateTime;

use crate::args::EnqueueArgs;
use crate::error::{CliError, CliErrorKind};
use crate::output::Output;

pub(crate) async fn run(
    args: EnqueueArgs,
    producer: &Producer,
    out: &Output,
) -> Result<(), CliError> {
    let payload = if args.payload == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(|err| {
            CliError::new(
                CliErrorKind::Usage,
                format!("cannot read standard input: {err}"),
            )
        })?;
        buf
    } else {
        args.payload.into_bytes()
    };
    let mut job = Job::bytes(payload.clone());
    match &args.content_type {
        Some(content_type) => job = job.content_type(content_type.clone()),
        None => {
            if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
                return Err(CliError::new(
                    CliErrorKind::Usage,
                    format!(
                        "the payload is not JSON ({err}); pass --content-type for other payloads"
                    ),
                ));
            }
        }
    }
    if let Some(job_type) = args.job_type {
        job = job.job_type(job_type);
    }
    if let Some(delay) = args.delay {
        job = job.delay(delay);
    }
    if let Some(at) = &args.run_at {
        let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .map_err(|err| CliError::new(CliErrorKind::Usage, format!("--run-at {at:?}: {err}")))?;
        job = job.run_at(at);
    }
    if let Some(attempts) = args.max_attempts {
        job = job.max_attempts(attempts);
    }
    if let Some(timeout) = args.timeout {
        job = job.timeout(timeout);
    }
    if let Some(key) = args.key {
        job = job.idempotency_key(key);
    }
    let enqueued = producer.enqueue(&args.queue, job).await?;
    // The `enqueued` audit event is sent without waiting for its ack; make sure it has left
    // this short-lived process before it exits.
    let _ = producer.client().flush().await;
    let run_at = enqueued.run_at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    out.print(
        &serde_json::json!({
            "id": enqueued.id.to_string(),
            "queue": enqueued.queue,
            "sequence": enqueued.sequence,
            "duplicate": enqueued.duplicate,
            "run_at": run_at,
        }),
        || {
            let mut text = enqueued.id.to_string();
            if enqueued.duplicate {
                text.push_str("  (already enqueued with this key: nothing new stored)");
            }
            if let Some(at) = &run_at {
                text.push_str(&format!("  (runs at {at})"));
            }
            text
        },
    );
    Ok(())
}
