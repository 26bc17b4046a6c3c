//! Queue list, stats, pause/resume and purge.

use axum::Json;
use axum::extract::{Path, Query, State};
use futures::future::join_all;
use jobfleet_producer::{QueueRates, QueueStats};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crate::state::GatewayState;

/// A queue's stats with rates over the last minutes (when the gateway has earlier samples).
#[derive(Debug, Serialize)]
pub(crate) struct QueueBody {
    #[serde(flatten)]
    stats: QueueStats,
    rates: Option<QueueRates>,
    /// Recent samples for charts: `[observed_at, ready, in_flight, dead, removed_total]`.
    history: Vec<(String, u64, u64, u64, u64)>,
}

fn with_rates(state: &GatewayState, stats: QueueStats) -> QueueBody {
    let samples = state.record_sample(&stats);
    let rates = samples
        .first()
        .filter(|first| first.observed_at < stats.observed_at)
        .and_then(|first| stats.rates_since(first));
    let history = samples
        .iter()
        .map(|s| {
            (
                s.observed_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                s.ready,
                s.in_flight,
                s.dead,
                s.removed_total,
            )
        })
        .collect();
    QueueBody {
        stats,
        rates,
        history,
    }
}

/// Every queue with its stats.
#[derive(Debug, Serialize)]
pub(crate) struct QueueList {
    queues: Vec<QueueBody>,
}

pub(crate) async fn list(State(state): State<GatewayState>) -> Result<Json<QueueList>, Problem> {
    let names = jobfleet_producer::list_queues(state.js()).await?;
    let stats = join_all(
        names
            .iter()
            .map(|name| jobfleet_producer::queue_stats(state.js(), name)),
    )
    .await;
    let mut queues = Vec::with_capacity(stats.len());
    for result in stats {
        match result {
            Ok(stats) => queues.push(with_rates(&state, stats)),
            // Deleted between the listing and the read: leave it out.
            Err(err) if err.kind() == jobfleet_producer::QueueAdminErrorKind::UnknownQueue => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Json(QueueList { queues }))
}

pub(crate) async fn show(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
) -> Result<Json<QueueBody>, Problem> {
    let stats = jobfleet_producer::queue_stats(state.js(), &queue).await?;
    Ok(Json(with_rates(&state, stats)))
}

/// The result of pause/resume.
#[derive(Debug, Serialize)]
pub(crate) struct PausedBody {
    queue: String,
    paused: bool,
}

pub(crate) async fn pause(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
) -> Result<Json<PausedBody>, Problem> {
    let paused = jobfleet_producer::pause_queue(state.js(), &queue, None).await?;
    Ok(Json(PausedBody { queue, paused }))
}

pub(crate) async fn resume(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
) -> Result<Json<PausedBody>, Problem> {
    let paused = jobfleet_producer::resume_queue(state.js(), &queue).await?;
    Ok(Json(PausedBody { queue, paused }))
}

/// `?confirm=<queue>`: purging destroys accepted jobs, so the caller names the queue twice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeQuery {
    confirm: Option<String>,
}

/// How many jobs a purge deleted.
#[derive(Debug, Serialize)]
pub(crate) struct PurgedBody {
    queue: String,
    purged: u64,
}

pub(crate) async fn purge(
    State(state): State<GatewayState>,
    Path(queue): Path<String>,
    query: Result<Query<PurgeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PurgedBody>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    if query.confirm.as_deref() != Some(queue.as_str()) {
        return Err(Problem::bad_request(
            "purging deletes every waiting job: repeat the queue name as ?confirm=<queue>",
        ));
    }
    let purged = jobfleet_producer::purge_queue(state.js(), &queue).await?;
    Ok(Json(PurgedBody { queue, purged }))
}
