//! A queue's page: numbers, chart, configuration, workers, recent jobs and dead letters;
//! pause and resume.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use futures::future::join_all;
use jobfleet_core::{AuditEvent, topology};
use serde::Deserialize;
use time::OffsetDateTime;

use super::html::{Html, bytes, duration, h, time_ago};
use super::layout::{self, Confirm, Crumb, Live};
use super::overview::{Observed, stats_list};
use super::session::Viewer;
use super::{Ui, chart, dead_letters, is_live_refresh, jobs, see_other};

/// How many of the newest audit events the queue page reads for recent jobs and workers.
const RECENT_EVENTS: u64 = 300;

#[derive(Debug, Deserialize)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
}

/// The newest audit events of every queue (up to `RECENT_EVENTS`), oldest first; `None`
/// when the audit stream cannot be read.
async fn recent_events(js: &async_nats::jetstream::Context) -> Option<Vec<AuditEvent>> {
    let mut stream = js.get_stream(topology::AUDIT_STREAM).await.ok()?;
    let last = stream.info().await.ok()?.state.last_sequence;
    if last == 0 {
        return Some(Vec::new());
    }
    let first = last.saturating_sub(RECENT_EVENTS - 1).max(1);
    let stream = &stream;
    let messages =
        join_all((first..=last).map(|seq| async move { stream.direct_get(seq).await })).await;
    Some(
        messages
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|m| serde_json::from_slice::<AuditEvent>(&m.payload).ok())
            .collect(),
    )
}

pub(crate) async fn page(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(queue): Path<String>,
    Query(query): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Response {
    let js = ui.gw.js();
    let stats = match jobfleet_producer::queue_stats(js, &queue).await {
        Ok(stats) => stats,
        Err(err) => return layout::problem_page(err),
    };
    let dead_total = stats.dead_total;
    let observed = Observed::new(&ui, stats);
    let title = format!("Queue {queue}");
    let crumbs = [Crumb::link("Queues", "/ui"), Crumb::here(queue.clone())];
    if is_live_refresh(&headers) {
        // The script only swaps the live section: skip reading the audit stream.
        let mut body = Html::new();
        now_section(&mut body, &observed, OffsetDateTime::now_utc());
        return layout::page(&title, &crumbs, &viewer, Live::Yes, body.finish());
    }
    let (latest_dead, events) = futures::join!(
        jobfleet_worker::dead_letters_page(js, &queue, dead_total.saturating_sub(10), 10, |_| {
            true
        }),
        recent_events(js),
    );
    let now = OffsetDateTime::now_utc();
    let stats = &observed.stats;
    let mut body = Html::new();
    h!(&mut body; "<div class=\"title\"><h1>Queue <span class=\"mono\">" (&stats.name)
        "</span></h1>");
    if stats.paused {
        h!(&mut body; "<span class=\"badge warn\" data-paused>paused</span>");
    }
    h!(&mut body; "</div>");
    match query.notice.as_deref() {
        Some("paused") => layout::notice(
            &mut body,
            "Paused: workers get no more jobs from this queue until you resume it.",
            "ok",
        ),
        Some("resumed") => layout::notice(&mut body, "Resumed: workers take jobs again.", "ok"),
        _ => {}
    }
    if let Some(description) = &stats.description {
        h!(&mut body; "<p class=\"desc\">" (description) "</p>");
    }
    if viewer.can_act() {
        pause_form(&mut body, &stats.name, stats.paused);
    }
    now_section(&mut body, &observed, now);
    h!(&mut body; "<div class=\"columns\">");
    configuration(&mut body, stats);
    match &events {
        Some(events) => {
            let mine: Vec<&AuditEvent> = events.iter().filter(|e| e.queue == queue).collect();
            workers(&mut body, &mine, stats.waiting_pulls, now);
            h!(&mut body; "</div>");
            recent_jobs(&mut body, &mine, now);
        }
        None => h!(&mut body; "</div><p class=\"notice warn\">The audit stream cannot be read, so \
            recent jobs and workers are not shown.</p>"),
    }
    match latest_dead {
        Ok(mut latest) => {
            latest.reverse();
            h!(&mut body; "<section aria-labelledby=\"dead-title\"><h2 id=\"dead-title\">Latest dead letters</h2>");
            if latest.is_empty() {
                h!(&mut body; "<p class=\"empty\">None.</p>");
            } else {
                h!(&mut body; {dead_letters::table(&queue, &latest, now, false)});
            }
            h!(&mut body;
                "<p><a href=\"/ui/queues/" (&queue) "/dead-letters\">Browse all "
                (stats.dead) " dead letters</a></p></section>");
        }
        Err(err) => h!(&mut body; "<p class=\"notice warn\">Dead letters cannot be read: "
            (err) "</p>"),
    }
    layout::page(&title, &crumbs, &viewer, Live::Yes, body.finish())
}

/// The numbers and chart: the part of the page that updates live.
fn now_section(out: &mut Html, observed: &Observed, now: OffsetDateTime) {
    h!(out; "<section id=\"queue-now\" data-live aria-label=\"Now\" class=\"card wide\">");
    stats_list(out, observed);
    h!(out; {chart::rates(&observed.samples, now, "chart-queue")} "</section>");
}

fn pause_form(out: &mut Html, queue: &str, paused: bool) {
    if paused {
        h!(out;
            "<form method=\"post\" action=\"/ui/queues/" (queue) "/resume\" class=\"actions\">"
            "<input type=\"hidden\" name=\"confirm\" value=\"yes\">"
            "<button type=\"submit\" class=\"primary\">Resume</button></form>");
    } else {
        h!(out;
            "<form method=\"post\" action=\"/ui/queues/" (queue) "/pause\" class=\"actions\">"
            "<button type=\"submit\">Pause…</button></form>");
    }
}

fn configuration(out: &mut Html, stats: &jobfleet_producer::QueueStats) {
    h!(out;
        "<section aria-labelledby=\"config-title\"><h2 id=\"config-title\">Configuration</h2>"
        "<dl class=\"facts\">"
        "<dt>Storage</dt><dd>" (stats.storage) ", " (stats.replicas) " replica(s)</dd>"
        "<dt>Max jobs</dt><dd>" (stats.max_jobs.map_or_else(|| "unbounded".to_owned(), |n| n.to_string())) "</dd>"
        "<dt>Max in flight</dt><dd>" (stats.max_in_flight) " (fleet-wide)</dd>"
        "<dt>Ack wait</dt><dd>" (duration(stats.ack_wait)) "</dd>");
    if let Some(worker) = &stats.worker {
        let backoff = &worker.backoff;
        h!(out;
            "<dt>Max attempts</dt><dd>" (worker.max_attempts) "</dd>"
            "<dt>Timeout</dt><dd>" (duration(worker.timeout)) "</dd>"
            "<dt>Retry delays</dt><dd>" (duration(backoff.initial)) " × " (backoff.factor)
            " per attempt, at most " (duration(backoff.max)) ", jitter "
            (format!("{:.0}%", backoff.jitter * 100.0)) "</dd>");
    }
    h!(out;
        "<dt>Stored</dt><dd>" (bytes(stats.bytes)) "</dd>"
        "<dt>Totals</dt><dd>" (stats.stored_total) " stored, " (stats.removed_total)
        " removed, " (stats.dead_total) " dead-lettered</dd>"
        "</dl></section>");
}

/// Workers named by recent audit events, with what the queue's consumer can tell.
fn workers(out: &mut Html, events: &[&AuditEvent], waiting_pulls: u64, now: OffsetDateTime) {
    let mut seen: BTreeMap<&str, (OffsetDateTime, usize)> = BTreeMap::new();
    for event in events {
        if let Some(worker) = event.worker.as_deref() {
            let entry = seen.entry(worker).or_insert((event.at, 0));
            entry.0 = entry.0.max(event.at);
            entry.1 += 1;
        }
    }
    h!(out;
        "<section aria-labelledby=\"workers-title\"><h2 id=\"workers-title\">Workers</h2>"
        "<p><b data-stat=\"waiting-pulls\">" (waiting_pulls) "</b> idle pull request(s) waiting: "
        "each worker process with free slots keeps one, so this roughly counts idle workers "
        "(busy ones do not show). jobfleet keeps no register of workers; these are the ones "
        "named in the last " (RECENT_EVENTS) " audit events:</p>");
    if seen.is_empty() {
        h!(out; "<p class=\"empty\">None in recent events.</p></section>");
        return;
    }
    h!(out; "<ul class=\"plain\" data-workers>");
    for (worker, (last, count)) in seen {
        h!(out; "<li><span class=\"mono\">" (worker) "</span>: " (count) " event(s), last "
            {time_ago(last, now)} "</li>");
    }
    h!(out; "</ul></section>");
}

/// The latest event of each job in `events`, newest first.
fn recent_jobs(out: &mut Html, events: &[&AuditEvent], now: OffsetDateTime) {
    // Newest job first (by where its events appear), each with its latest event in its
    // lifecycle (not necessarily the last one written).
    let mut latest: HashMap<_, &AuditEvent> = HashMap::new();
    let mut order = Vec::new();
    for &event in events.iter().rev() {
        match latest.entry(event.job_id) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(event);
                order.push(event.job_id);
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                if jobs::lifecycle_order(event) > jobs::lifecycle_order(slot.get()) {
                    slot.insert(event);
                }
            }
        }
    }
    h!(out; "<section aria-labelledby=\"recent-title\"><h2 id=\"recent-title\">Recent jobs</h2>");
    if order.is_empty() {
        h!(out; "<p class=\"empty\">No audit events of this queue among the last "
            (RECENT_EVENTS) " (the queue may have its audit level at <code>off</code>).</p></section>");
        return;
    }
    h!(out; "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Job</th>"
        "<th scope=\"col\">Latest event</th><th scope=\"col\">Attempt</th>"
        "<th scope=\"col\">Type</th><th scope=\"col\">When</th></tr></thead><tbody>");
    for id in order.iter().take(20) {
        let event = latest[id];
        h!(out; "<tr><td><a class=\"mono\" href=\"/ui/jobs/" (id) "\">" (short_id(&id.to_string()))
            "</a></td><td>" {jobs::badge(event.event)} "</td><td>" (event.attempt) "</td><td>"
            (event.job_type.as_deref().unwrap_or("")) "</td><td>" {time_ago(event.at, now)}
            "</td></tr>");
    }
    h!(out; "</tbody></table></div></section>");
}

/// The last 12 characters of an id, for tables (the link holds the whole id).
pub(crate) fn short_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmForm {
    confirm: Option<String>,
}

pub(crate) async fn pause(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(queue): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !viewer.can_act() {
        return layout::read_only();
    }
    if form.confirm.as_deref() != Some("yes") {
        let mut explanation = Html::new();
        h!(&mut explanation;
            "<p>Workers get no more jobs from <b class=\"mono\">" (&queue) "</b> until you "
            "resume it. Jobs already running finish; enqueueing goes on, so the backlog "
            "grows.</p>");
        let action = format!("/ui/queues/{queue}/pause");
        let cancel = format!("/ui/queues/{queue}");
        return layout::confirm_page(
            &viewer,
            Confirm {
                title: &format!("Pause queue {queue}?"),
                trail: &trail(&queue, "Pause"),
                explanation: explanation.finish(),
                action: &action,
                fields: &[],
                button: "Pause the queue",
                danger: true,
                cancel: &cancel,
            },
        );
    }
    match jobfleet_producer::pause_queue(ui.gw.js(), &queue, None).await {
        Ok(_) => see_other(&format!("/ui/queues/{queue}?notice=paused")),
        Err(err) => layout::problem_page(err),
    }
}

pub(crate) async fn resume(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(queue): Path<String>,
) -> Response {
    if !viewer.can_act() {
        return layout::read_only();
    }
    match jobfleet_producer::resume_queue(ui.gw.js(), &queue).await {
        Ok(_) => see_other(&format!("/ui/queues/{queue}?notice=resumed")),
        Err(err) => layout::problem_page(err),
    }
}

fn trail(queue: &str, here: &str) -> [Crumb; 3] {
    [
        Crumb::link("Queues", "/ui"),
        Crumb::link(queue, format!("/ui/queues/{queue}")),
        Crumb::here(here),
    ]
}
