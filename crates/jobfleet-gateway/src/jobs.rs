//! `GET /v1/jobs/{id}` and `GET /v1/jobs/{id}/history`: from the audit stream.

use axum::Json;
use axum::extract::{Path, State};
use jobfleet_core::{AuditEvent, JobId};
use serde::Serialize;

use crate::problem::Problem;
use crate::state::GatewayState;

fn parse_id(id: &str) -> Result<JobId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a job id (a UUID)")))
}

fn unknown(id: JobId) -> Problem {
    Problem::not_found(
        "unknown-job",
        format!("no audit event for job {id}: unknown id, audit off for its queue, or aged out"),
    )
}

/// A job's current state.
#[derive(Debug, Serialize)]
pub(crate) struct JobStatusBody {
    id: String,
    queue: String,
    /// The latest event's kind: `enqueued`, `started`, `retried`, `succeeded`, ...
    state: String,
    /// Whether the job has ended (succeeded or dead-lettered).
    finished: bool,
    attempt: u32,
    last_event: AuditEvent,
    history_url: String,
}

pub(crate) async fn status(
    State(state): State<GatewayState>,
    Path(id): Path<String>,
) -> Result<Json<JobStatusBody>, Problem> {
    let id = parse_id(&id)?;
    let status = jobfleet_worker::job_status(state.js(), id)
        .await?
        .ok_or_else(|| unknown(id))?;
    let last = status.last.clone();
    Ok(Json(JobStatusBody {
        id: id.to_string(),
        queue: last.queue.clone(),
        state: serde_json::to_value(last.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        finished: status.is_finished(),
        attempt: last.attempt,
        last_event: last,
        history_url: format!("/v1/jobs/{id}/history"),
    }))
}

/// A job's audit events, oldest first.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryBody {
    id: String,
    events: Vec<AuditEvent>,
}

pub(crate) async fn history(
    State(state): State<GatewayState>,
    Path(id): Path<String>,
) -> Result<Json<HistoryBody>, Problem> {
    let id = parse_id(&id)?;
    let events = jobfleet_worker::job_history(state.js(), id).await?;
    if events.is_empty() {
        return Err(unknown(id));
    }
    Ok(Json(HistoryBody {
        id: id.to_string(),
        events,
    }))
}
