//! Dead-letter browsing, redrive and deletion.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine as _;
use jobfleet_core::JobId;
use jobfleet_worker::{DeadLetter, RedriveSelection};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::enqueue::{json_rejection, valid_queue};
use crate::problem::Problem;
use crate::state::GatewayState;

/// Most dead letters in one page.
const MAX_PAGE: usize = 500;

/// A dead letter as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct DeadLetterBody {
    id: String,
    sequence: u64,
    reason: String,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    dead_at: Option<OffsetDateTime>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    enqueued_at: Option<OffsetDateTime>,
    content_type: String,
    payload_size: usize,
    /// The payload, when it is JSON (only when showing one dead letter).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<serde_json::Value>,
    /// The payload in base64, when it is not JSON (only when showing one dead letter).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    /// Every header of the dead-letter copy (only when showing one dead letter).
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, Vec<String>>>,
}

fn body(dead: &DeadLetter, full: bool) -> DeadLetterBody {
    let meta = dead.meta.as_ref();
    let content_type = meta
        .and_then(|m| m.content_type.clone())
        .unwrap_or_else(|| "application/json".to_owned());
    let json = full
        .then(|| serde_json::from_slice::<serde_json::Value>(&dead.payload).ok())
        .flatten();
    let payload_base64 = (full && json.is_none())
        .then(|| base64::engine::general_purpose::STANDARD.encode(&dead.payload));
    let headers = full.then(|| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, values) in dead.headers.iter() {
            map.entry(name.to_string())
                .or_default()
                .extend(values.iter().map(|v| v.as_str().to_owned()));
        }
        map
    });
    DeadLetterBody {
        id: dead.id.to_string(),
        sequence: dead.sequence,
        reason: dead.reason.clone(),
        attempts: dead.attempts,
        dead_at: dead.dead_at,
        job_type: meta.and_then(|m| m.job_type.clone()),
        enqueued_at: meta.map(|m| m.enqueued_at),
        content_type,
        payload_size: dead.payload.len(),
        payload: json,
        payload_base64,
        headers,
    }
}

/// Page and filter of the dead-letter list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only dead letters after this sequence (the `next_after` of the previous page).
    after: Option<u64>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<usize>,
    /// Only those whose reason contains this text.
    reason: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    job_type: Option<String>,
}

/// A page of dead letters.
#[derive(Debug, Serialize)]
pub(crate) struct ListBody {
    queue: String,
    dead_letters: Vec<DeadLetterBody>,
    /// Pass as `after` for the next page; `None` when this page is the last.
    next_after: Option<u64>,
}

fn matches(dead: &DeadLetter, reason: Option<&str>, job_type: Option<&str>) -> bool {
    reason.is_none_or(|r| dead.reason.contains(r))
        && job_type
            .is_none_or(|t| dead.meta.as_ref().and_then(|m| m.job_type.as_deref()) == Some(t))
}

pub(crate) async fn list(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListBody>, Problem> {
    valid_queue(&queue)?;
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    // One extra tells whether another page follows.
    let mut page = jobfleet_worker::dead_letters_page(
        state.js(),
        &queue,
        query.after.unwrap_or(0),
        limit + 1,
        |dead| matches(dead, query.reason.as_deref(), query.job_type.as_deref()),
    )
    .await?;
    let more = page.len() > limit;
    page.truncate(limit);
    Ok(Json(ListBody {
        next_after: more.then(|| page.last().map(|d| d.sequence)).flatten(),
        dead_letters: page.iter().map(|d| body(d, false)).collect(),
        queue,
    }))
}

fn parse_id(id: &str) -> Result<JobId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a job id (a UUID)")))
}

pub(crate) async fn show(
    State(state): State<GatewayState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<DeadLetterBody>, Problem> {
    valid_queue(&queue)?;
    let id = parse_id(&id)?;
    let dead = jobfleet_worker::dead_letter(state.js(), &queue, id)
        .await?
        .ok_or_else(|| not_dead(&queue, id))?;
    Ok(Json(body(&dead, true)))
}

fn not_dead(queue: &str, id: JobId) -> Problem {
    Problem::not_found(
        "unknown-dead-letter",
        format!("job {id} is not in the dead letters of queue {queue:?}"),
    )
}

/// Which dead letters a redrive or delete applies to: exactly one of `ids`, `all: true`, or
/// a filter (`reason` and/or `type`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SelectionBody {
    ids: Option<Vec<String>>,
    all: Option<bool>,
    reason: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
}

impl SelectionBody {
    fn selection(self) -> Result<RedriveSelection, Problem> {
        let filter = self.reason.is_some() || self.job_type.is_some();
        match (self.ids, self.all.unwrap_or(false), filter) {
            (Some(ids), false, false) => Ok(RedriveSelection::Ids(
                ids.iter()
                    .map(|id| parse_id(id))
                    .collect::<Result<_, _>>()?,
            )),
            (None, true, false) => Ok(RedriveSelection::All),
            (None, false, true) => {
                let (reason, job_type) = (self.reason, self.job_type);
                if reason.as_deref().is_some_and(str::is_empty)
                    || job_type.as_deref().is_some_and(str::is_empty)
                {
                    return Err(Problem::invalid(
                        "an empty filter would select everything: use \"all\": true",
                    ));
                }
                Ok(RedriveSelection::Matching(Box::new(move |dead| {
                    matches(dead, reason.as_deref(), job_type.as_deref())
                })))
            }
            _ => Err(Problem::invalid(
                "select with exactly one of: \"ids\": [...], \"all\": true, or \"reason\"/\"type\" filters",
            )),
        }
    }
}

/// What a redrive did.
#[derive(Debug, Serialize)]
pub(crate) struct RedriveBody {
    redriven: Vec<String>,
    failed: Vec<RedriveFailure>,
}

#[derive(Debug, Serialize)]
struct RedriveFailure {
    id: String,
    error: String,
}

pub(crate) async fn redrive(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
    selection: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RedriveBody>, Problem> {
    valid_queue(&queue)?;
    let Json(selection) = selection.map_err(json_rejection)?;
    let report = jobfleet_worker::redrive(state.js(), &queue, selection.selection()?).await?;
    Ok(Json(RedriveBody {
        redriven: report.redriven.iter().map(ToString::to_string).collect(),
        failed: report
            .failed
            .into_iter()
            .map(|(id, error)| RedriveFailure {
                id: id.to_string(),
                error,
            })
            .collect(),
    }))
}

pub(crate) async fn redrive_one(
    State(state): State<GatewayState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<RedriveBody>, Problem> {
    valid_queue(&queue)?;
    let id = parse_id(&id)?;
    let report =
        jobfleet_worker::redrive(state.js(), &queue, RedriveSelection::Ids(vec![id])).await?;
    if report.redriven.is_empty() && report.failed.is_empty() {
        return Err(not_dead(&queue, id));
    }
    if let Some((_, error)) = report.failed.first() {
        return Err(Problem::unavailable(error.clone()).for_job(id));
    }
    Ok(Json(RedriveBody {
        redriven: vec![id.to_string()],
        failed: Vec::new(),
    }))
}

/// What a delete did.
#[derive(Debug, Serialize)]
pub(crate) struct DeletedBody {
    deleted: Vec<String>,
}

pub(crate) async fn delete(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
    selection: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DeletedBody>, Problem> {
    valid_queue(&queue)?;
    let Json(selection) = selection.map_err(json_rejection)?;
    let deleted =
        jobfleet_worker::delete_dead_letters(state.js(), &queue, selection.selection()?).await?;
    Ok(Json(DeletedBody {
        deleted: deleted.iter().map(ToString::to_string).collect(),
    }))
}

pub(crate) async fn delete_one(
    State(state): State<GatewayState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<DeletedBody>, Problem> {
    valid_queue(&queue)?;
    let id = parse_id(&id)?;
    let deleted =
        jobfleet_worker::delete_dead_letters(state.js(), &queue, RedriveSelection::Ids(vec![id]))
            .await?;
    if deleted.is_empty() {
        return Err(not_dead(&queue, id));
    }
    Ok(Json(DeletedBody {
        deleted: vec![id.to_string()],
    }))
}
