//! The fleet overview: one card per queue.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use futures::future::join_all;
use jobfleet_producer::{QueueAdminErrorKind, QueueStats};
use time::OffsetDateTime;

use super::html::{Html, duration, h, rate};
use super::layout::{self, Crumb, Live};
use super::session::Viewer;
use super::{Ui, chart};

/// A queue's stats with the samples kept for its chart and rates.
pub(crate) struct Observed {
    pub(crate) stats: QueueStats,
    pub(crate) samples: Vec<QueueStats>,
}

impl Observed {
    pub(crate) fn new(ui: &Ui, stats: QueueStats) -> Self {
        let samples = ui.gw.record_sample(&stats);
        Self { stats, samples }
    }

    /// Rates since the oldest kept sample, when there is an earlier one.
    fn rates(&self) -> Option<jobfleet_producer::QueueRates> {
        self.samples
            .first()
            .filter(|first| first.observed_at < self.stats.observed_at)
            .and_then(|first| self.stats.rates_since(first))
    }
}

/// The numbers of a queue as a description list (the same on a card and the queue page).
pub(crate) fn stats_list(out: &mut Html, queue: &Observed) {
    let stats = &queue.stats;
    let dead_href = format!("/ui/queues/{}/dead-letters", stats.name);
    let oldest = stats
        .oldest_ready_age
        .map_or_else(|| "none".to_owned(), duration);
    h!(out;
        "<dl class=\"stats\">"
        "<div><dt>Ready</dt><dd><span data-stat=\"ready\">" (stats.ready) "</span></dd></div>"
        "<div><dt>In flight</dt><dd><span data-stat=\"in-flight\">" (stats.in_flight)
        "</span> <small>of " (stats.max_in_flight) "</small></dd></div>"
        "<div><dt>Scheduled</dt><dd><span data-stat=\"scheduled\">" (stats.scheduled)
        "</span></dd></div>"
        "<div><dt>Dead</dt><dd><a data-stat=\"dead\" href=\"" (&dead_href) "\" "
        "aria-label=\"" (stats.dead) " dead letters of " (&stats.name) "\">" (stats.dead)
        "</a></dd></div>"
        "<div><dt>Oldest waiting</dt><dd><span data-stat=\"oldest\">" (oldest)
        "</span></dd></div>");
    match queue.rates() {
        Some(rates) => {
            let window = duration(std::time::Duration::from_secs_f64(rates.interval_secs));
            h!(out;
                "<div><dt>Processed</dt><dd><span data-stat=\"processed-rate\">"
                (rate(rates.removed_per_sec)) "</span> <small>over " (&window) "</small></dd></div>"
                "<div><dt>Failed</dt><dd><span data-stat=\"failed-rate\">"
                (rate(rates.dead_per_sec)) "</span> <small>over " (&window) "</small></dd></div>");
        }
        None => h!(out;
            "<div><dt>Processed</dt><dd><span data-stat=\"processed-rate\">n/a</span> "
            "<small>needs 2 samples</small></dd></div>"
            "<div><dt>Failed</dt><dd><span data-stat=\"failed-rate\">n/a</span></dd></div>"),
    }
    h!(out;
        "<div><dt>Idle pulls</dt><dd><span data-stat=\"waiting-pulls\">" (stats.waiting_pulls)
        "</span></dd></div></dl>");
}

fn card(out: &mut Html, queue: &Observed, now: OffsetDateTime) {
    let stats = &queue.stats;
    let href = format!("/ui/queues/{}", stats.name);
    h!(out;
        "<article class=\"card\" data-queue=\"" (&stats.name) "\" aria-labelledby=\"q-"
        (&stats.name) "\"><header><h2 id=\"q-" (&stats.name) "\"><a href=\"" (&href) "\">"
        (&stats.name) "</a></h2>");
    if stats.paused {
        h!(out; "<span class=\"badge warn\" data-paused>paused</span>");
    }
    h!(out; "</header>");
    if let Some(description) = &stats.description {
        h!(out; "<p class=\"desc\">" (description) "</p>");
    }
    stats_list(out, queue);
    h!(out; {chart::rates(&queue.samples, now, &format!("chart-{}", stats.name))} "</article>");
}

pub(crate) async fn page(State(ui): State<Ui>, Extension(viewer): Extension<Viewer>) -> Response {
    let js = ui.gw.js();
    let names = match jobfleet_producer::list_queues(js).await {
        Ok(names) => names,
        Err(err) => return layout::problem_page(err),
    };
    let mut queues = Vec::with_capacity(names.len());
    for result in join_all(
        names
            .iter()
            .map(|name| jobfleet_producer::queue_stats(js, name)),
    )
    .await
    {
        match result {
            Ok(stats) => queues.push(Observed::new(&ui, stats)),
            // Deleted between the listing and the read.
            Err(err) if err.kind() == QueueAdminErrorKind::UnknownQueue => {}
            Err(err) => return layout::problem_page(err),
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let mut body = Html::new();
    h!(&mut body; "<h1>Queues</h1><section id=\"queues\" data-live aria-label=\"Queues\">");
    if queues.is_empty() {
        h!(&mut body;
            "<p class=\"empty\">No queues yet. Declare one with "
            "<code>jobfleet queue declare --file queues.toml</code> (or "
            "<code>Producer::declare_queue</code>) and it shows up here.</p>");
    } else {
        let total = |f: fn(&QueueStats) -> u64| queues.iter().map(|q| f(&q.stats)).sum::<u64>();
        h!(&mut body;
            "<p class=\"totals\">" (queues.len()) " queues · <b>" (total(|s| s.ready))
            "</b> ready · <b>" (total(|s| s.in_flight)) "</b> in flight · <b>"
            (total(|s| s.scheduled)) "</b> scheduled · <b>" (total(|s| s.dead)) "</b> dead</p>"
            "<div class=\"cards\">");
        for queue in &queues {
            card(&mut body, queue, now);
        }
        h!(&mut body; "</div>");
    }
    h!(&mut body; "</section>");
    explain(&mut body);
    layout::page(
        "Queues",
        &[Crumb::here("Queues")],
        &viewer,
        Live::Yes,
        body.finish(),
    )
}

/// What the numbers mean, honestly.
fn explain(out: &mut Html) {
    h!(out;
        "<details class=\"help\"><summary>What these numbers mean</summary><dl>"
        "<dt>Ready</dt><dd>Jobs waiting for a worker (the backlog).</dd>"
        "<dt>In flight</dt><dd>Jobs held by workers right now, of the queue's fleet-wide cap.</dd>"
        "<dt>Scheduled</dt><dd>Delayed jobs and retries waiting for their time.</dd>"
        "<dt>Dead</dt><dd>Jobs in the dead-letter stream: failed for good or out of attempts.</dd>"
        "<dt>Oldest waiting</dt><dd>How long the oldest ready job has waited (the queue's latency).</dd>"
        "<dt>Processed, failed</dt><dd>Jobs that left the queue per second (finished, "
        "dead-lettered or re-scheduled for a later retry) and jobs dead-lettered per second, "
        "averaged over the samples this gateway kept: one every 5 s per queue, for 5 minutes, "
        "taken only while someone reads the stats.</dd>"
        "<dt>Idle pulls</dt><dd>Pull requests waiting on the queue. A worker process with free "
        "slots keeps one waiting, so this roughly counts idle worker processes; busy workers "
        "and workers of other languages that poll differently do not show. jobfleet keeps no "
        "register of workers, so the dashboard cannot list them; the queue page shows the "
        "workers named in recent audit events.</dd>"
        "</dl></details>");
}
