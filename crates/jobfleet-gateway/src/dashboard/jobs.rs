//! Job lookup by id, and a job's audit timeline.

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::join_all;
use jobfleet_core::{AuditEvent, AuditEventKind, JobId};
use serde::Deserialize;
use time::OffsetDateTime;

use super::html::{Html, Markup, duration, h, time_ago, timestamp};
use super::layout::{self, Crumb, Live};
use super::session::Viewer;
use super::{Ui, see_other};

/// A coloured label for an event kind.
pub(crate) fn badge(kind: AuditEventKind) -> Markup {
    let (label, tone) = match kind {
        AuditEventKind::Enqueued => ("enqueued", ""),
        AuditEventKind::Started => ("started", "info"),
        AuditEventKind::Retried => ("retried", "warn"),
        AuditEventKind::Succeeded => ("succeeded", "ok"),
        AuditEventKind::DeadLettered => ("dead-lettered", "bad"),
        AuditEventKind::Redriven => ("redriven", "info"),
        AuditEventKind::Progress => ("progress", "info"),
        _ => (kind.as_str(), ""),
    };
    let mut out = Html::new();
    h!(&mut out; "<span class=\"badge " (tone) "\">" (label) "</span>");
    out.finish()
}

/// Where an event belongs in a job's life, for ordering: by life, then the event that
/// begins it (enqueued or redriven), then each attempt's events, then the terminal one.
///
/// The audit stream's order is not enough: the producer writes `enqueued` after the job is
/// stored, so a quick worker's `started` and `succeeded` can land before it.
pub(crate) fn lifecycle_order(event: &AuditEvent) -> (u32, u8, u32, u8) {
    match event.event {
        AuditEventKind::Enqueued | AuditEventKind::Redriven => (event.life, 0, 0, 0),
        AuditEventKind::Succeeded | AuditEventKind::DeadLettered => {
            (event.life, 2, event.attempt, 0)
        }
        AuditEventKind::Started => (event.life, 1, event.attempt, 0),
        AuditEventKind::Retried => (event.life, 1, event.attempt, 2),
        _ => (event.life, 1, event.attempt, 1),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct FindQuery {
    id: Option<String>,
}

/// `/ui/jobs?id=...` (the search box): to the job's page, or the form again.
pub(crate) async fn find(
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<FindQuery>,
) -> Response {
    let text = query.id.as_deref().unwrap_or("").trim();
    if let Ok(id) = text.parse::<JobId>() {
        return see_other(&format!("/ui/jobs/{id}"));
    }
    let mut body = Html::new();
    h!(&mut body; "<h1>Find a job</h1>");
    if !text.is_empty() {
        h!(&mut body; "<p class=\"notice bad\" role=\"alert\">That is not a job id: ids are "
            "UUIDs such as <code>0199b3c2-7f1e-7c3a-9d4e-2b8f6a1c0d5e</code>.</p>");
    }
    h!(&mut body;
        "<form method=\"get\" action=\"/ui/jobs\" class=\"stack\">"
        "<label for=\"job-id\">Job id</label>"
        "<input id=\"job-id\" name=\"id\" value=\"" (text) "\" required spellcheck=\"false\">"
        "<button type=\"submit\" class=\"primary\">Find</button></form>");
    let mut response = layout::page(
        "Find a job",
        &[Crumb::link("Queues", "/ui"), Crumb::here("Find a job")],
        &viewer,
        Live::No,
        body.finish(),
    );
    if !text.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobQuery {
    notice: Option<String>,
}

pub(crate) async fn page(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return layout::error_page(
            StatusCode::BAD_REQUEST,
            "Not a job id",
            "Job ids are UUIDs, such as 0199b3c2-7f1e-7c3a-9d4e-2b8f6a1c0d5e.",
        );
    };
    let js = ui.gw.js();
    let mut events = match jobfleet_worker::job_history(js, id).await {
        Ok(events) => events,
        Err(err) => return layout::problem_page(err),
    };
    events.sort_by_key(lifecycle_order);
    let Some(last) = events.last() else {
        return unknown(&ui, &viewer, id).await;
    };
    let now = OffsetDateTime::now_utc();
    let finished = last.event.is_terminal();
    let mut body = Html::new();
    h!(&mut body; "<div class=\"title\"><h1>Job <span class=\"mono\">" (id) "</span></h1></div>");
    if query.notice.as_deref() == Some("redriven") {
        let text = if finished {
            "Redriven: the job went back on its queue with its attempts reset."
        } else {
            "Redriven: the job is back on its queue with its attempts reset. This page \
             follows it."
        };
        layout::notice(&mut body, text, "ok");
    }
    if finished {
        h!(&mut body; "<section id=\"job\" aria-label=\"Job\">");
    } else {
        h!(&mut body; "<section id=\"job\" data-live aria-label=\"Job\">");
    }
    summary(&mut body, &events, last, now);
    timeline(&mut body, &events);
    h!(&mut body; "</section>");
    layout::page(
        &format!("Job {id}"),
        &[
            Crumb::link("Queues", "/ui"),
            Crumb::link(last.queue.clone(), format!("/ui/queues/{}", last.queue)),
            Crumb::here(format!("Job {}", super::queue::short_id(&id.to_string()))),
        ],
        &viewer,
        if finished { Live::No } else { Live::Yes },
        body.finish(),
    )
}

fn summary(out: &mut Html, events: &[AuditEvent], last: &AuditEvent, now: OffsetDateTime) {
    let first = &events[0];
    let job_type = events.iter().rev().find_map(|e| e.job_type.as_deref());
    let trace = events.iter().rev().find_map(|e| e.trace_id.as_deref());
    h!(out;
        "<dl class=\"facts summary\">"
        "<dt>State</dt><dd data-job-state=\"" (last.event.as_str()) "\">" {badge(last.event)}
        " " {time_ago(last.at, now)} "</dd>"
        "<dt>Queue</dt><dd><a href=\"/ui/queues/" (&last.queue) "\">" (&last.queue) "</a></dd>");
    if let Some(job_type) = job_type {
        h!(out; "<dt>Type</dt><dd>" (job_type) "</dd>");
    }
    h!(out; "<dt>Attempts</dt><dd>" (last.attempt) " in this life</dd>");
    if last.life > 0 {
        h!(out; "<dt>Redriven</dt><dd>" (last.life) " time(s)</dd>");
    }
    h!(out; "<dt>First event</dt><dd>" (timestamp(first.at)) "</dd>");
    if last.event.is_terminal() {
        let took = Duration::try_from(last.at - first.at).unwrap_or_default();
        h!(out; "<dt>Took</dt><dd>" (duration(took)) " from first event to last</dd>");
    }
    if let Some(trace) = trace {
        h!(out; "<dt>Trace id</dt><dd class=\"mono\">" (trace) "</dd>");
    }
    h!(out; "</dl>");
    if last.event == AuditEventKind::DeadLettered {
        h!(out;
            "<p><a class=\"button primary\" href=\"/ui/queues/" (&last.queue) "/dead-letters/"
            (last.job_id) "\">Inspect the dead letter</a></p>");
    }
}

fn timeline(out: &mut Html, events: &[AuditEvent]) {
    let start = events[0].at;
    h!(out; "<h2>Timeline</h2><ol class=\"timeline\">");
    for event in events {
        let offset = Duration::try_from(event.at - start).unwrap_or_default();
        h!(out;
            "<li data-event=\"" (event.event.as_str()) "\"><div class=\"ev-head\">"
            {badge(event.event)} " <time datetime=\"" (timestamp(event.at)) "\">"
            (timestamp(event.at)) "</time> <span class=\"offset\">+" (duration(offset))
            "</span></div><dl class=\"facts\">");
        if event.attempt > 0 {
            h!(out; "<dt>Attempt</dt><dd>" (event.attempt) "</dd>");
        }
        if event.life > 0 {
            h!(out; "<dt>Life</dt><dd>" (event.life + 1) "</dd>");
        }
        if let Some(worker) = &event.worker {
            h!(out; "<dt>Worker</dt><dd class=\"mono\">" (worker) "</dd>");
        }
        if let Some(ms) = event.duration_ms {
            h!(out; "<dt>Ran for</dt><dd>" (duration(Duration::from_millis(ms))) "</dd>");
        }
        if let Some(error) = &event.error {
            h!(out; "<dt>Error</dt><dd><pre class=\"wrap\">" (error) "</pre></dd>");
        }
        if let Some(ms) = event.retry_in_ms {
            h!(out; "<dt>Retry in</dt><dd>" (duration(Duration::from_millis(ms))) "</dd>");
        }
        if let Some(at) = event.run_at {
            h!(out; "<dt>Runs at</dt><dd>" (timestamp(at)) "</dd>");
        }
        if let Some(result) = &event.result {
            let label = if event.event == AuditEventKind::Progress {
                "<dt>Reported</dt>"
            } else {
                "<dt>Result</dt>"
            };
            out.raw(label);
            h!(out; "<dd><code class=\"wrap\">" (result) "</code></dd>");
        }
        if let Some(trace) = &event.trace_id {
            h!(out; "<dt>Trace id</dt><dd class=\"mono\">" (trace) "</dd>");
        }
        h!(out; "</dl></li>");
    }
    h!(out; "</ol>");
}

/// No audit event: say why that may be, and look for the job among the dead letters
/// (queues with audit off still keep those).
async fn unknown(ui: &Ui, viewer: &Viewer, id: JobId) -> Response {
    let js = ui.gw.js();
    let queues = jobfleet_producer::list_queues(js).await.unwrap_or_default();
    let found = join_all(queues.iter().map(|q| async move {
        jobfleet_worker::dead_letter(js, q, id)
            .await
            .ok()
            .flatten()
            .map(|_| q.clone())
    }))
    .await;
    let mut body = Html::new();
    h!(&mut body;
        "<h1>Job <span class=\"mono\">" (id) "</span></h1>"
        "<p>No audit event was found for this job: the id is unknown, its queue has audit "
        "off, or its events aged out of the audit stream.</p>");
    for queue in found.into_iter().flatten() {
        h!(&mut body;
            "<p>It is in the dead letters of queue <b class=\"mono\">" (&queue) "</b>: <a href=\"/ui/queues/"
            (&queue) "/dead-letters/" (id) "\">inspect it</a>.</p>");
    }
    let mut response = layout::page(
        "Unknown job",
        &[Crumb::link("Queues", "/ui"), Crumb::here("Unknown job")],
        viewer,
        Live::No,
        body.finish(),
    );
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_lifecycle_whatever_order_they_were_written_in() {
        let id = JobId::new();
        let at = OffsetDateTime::UNIX_EPOCH;
        let event = |kind, attempt, life| {
            let mut e = AuditEvent::new(kind, id, "q", at, attempt);
            e.life = life;
            e
        };
        let mut events = vec![
            event(AuditEventKind::Started, 1, 0),
            event(AuditEventKind::Succeeded, 2, 1),
            event(AuditEventKind::Retried, 1, 0),
            event(AuditEventKind::DeadLettered, 2, 0),
            event(AuditEventKind::Started, 2, 0),
            event(AuditEventKind::Enqueued, 0, 0),
            event(AuditEventKind::Started, 1, 1),
            event(AuditEventKind::Redriven, 0, 1),
            event(AuditEventKind::Progress, 1, 1),
        ];
        events.sort_by_key(lifecycle_order);
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.event.as_str(), e.attempt, e.life))
            .collect();
        assert_eq!(
            kinds,
            [
                ("enqueued", 0, 0),
                ("started", 1, 0),
                ("retried", 1, 0),
                ("started", 2, 0),
                ("dead_lettered", 2, 0),
                ("redriven", 0, 1),
                ("started", 1, 1),
                ("progress", 1, 1),
                ("succeeded", 2, 1),
            ]
        );
    }
}
