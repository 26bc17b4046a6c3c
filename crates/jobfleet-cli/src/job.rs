//! `jobfleet job status|history`.

use jobfleet_core::{AuditEvent, JobId};
use jobfleet_producer::Producer;

use crate::args::JobCommand;
use crate::error::{CliError, CliErrorKind};
use crate::output::{Output, table};

fn parse_id(id: &str) -> Result<JobId, CliError> {
    id.parse().map_err(|_| {
        CliError::new(
            CliErrorKind::Usage,
            format!("{id:?} is not a job id (a UUID)"),
        )
    })
}

fn unknown(id: JobId) -> CliError {
    CliError::new(
        CliErrorKind::NotFound,
        format!("no audit event for job {id}: unknown id, audit off for its queue, or aged out"),
    )
}

fn event_name(event: &AuditEvent) -> String {
    serde_json::to_value(event.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn run(
    command: JobCommand,
    producer: &Producer,
    out: &Output,
) -> Result<(), CliError> {
    let js = producer.jetstream();
    match command {
        JobCommand::Status { id } => {
            let id = parse_id(&id)?;
            let status = jobfleet_worker::job_status(js, id)
                .await?
                .ok_or_else(|| unknown(id))?;
            let last = &status.last;
            out.print(last, || {
                let mut text = format!(
                    "job      {id}\nqueue    {}\nstate    {}{}\nattempt  {}\nat       {}\n",
                    last.queue,
                    event_name(last),
                    if status.is_finished() {
                        " (finished)"
                    } else {
                        ""
                    },
                    last.attempt,
                    rfc3339(last.at),
                );
                if let Some(error) = &last.error {
                    text.push_str(&format!("error    {error}\n"));
                }
                text
            });
            Ok(())
        }
        JobCommand::History { id } => {
            let id = parse_id(&id)?;
            let events = jobfleet_worker::job_history(js, id).await?;
            if events.is_empty() {
                return Err(unknown(id));
            }
            out.print(&events, || {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|e| {
                        vec![
                            rfc3339(e.at),
                            event_name(e),
                            e.attempt.to_string(),
                            e.worker.clone().unwrap_or_default(),
                            e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                            e.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    &["AT", "EVENT", "ATTEMPT", "WORKER", "DURATION", "ERROR"],
                    &rows,
                )
            });
            Ok(())
        }
    }
}
