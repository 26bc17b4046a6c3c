//! The dead-letter browser: list with filters, one dead letter with payload and headers,
//! and redrive or delete (one, the selected ones, or all that match the filter).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use base64::Engine as _;
use jobfleet_core::JobId;
use jobfleet_worker::{DeadLetter, RedriveSelection};
use serde::Deserialize;
use time::OffsetDateTime;

use super::html::{Html, Markup, bytes, h, time_ago, timestamp, url_encode};
use super::layout::{self, Confirm, Crumb, Live};
use super::queue::short_id;
use super::session::Viewer;
use super::{Ui, see_other};

/// Dead letters on one page of the browser.
const PAGE: usize = 50;
/// Most dead letters counted for a confirmation page.
const COUNT_CAP: usize = 10_000;
/// Most payload characters shown.
const PAYLOAD_SHOWN: usize = 64 * 1024;
/// Most characters of a reason in a table.
const REASON_SHOWN: usize = 160;

/// A filter by reason (contains) and job type (equals); empty fields mean "any".
#[derive(Debug, Clone, Default)]
struct Filter {
    reason: Option<String>,
    job_type: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Filter {
    fn new(reason: Option<String>, job_type: Option<String>) -> Self {
        Self {
            reason: non_empty(reason),
            job_type: non_empty(job_type),
        }
    }

    fn is_set(&self) -> bool {
        self.reason.is_some() || self.job_type.is_some()
    }

    fn accepts(&self, dead: &DeadLetter) -> bool {
        self.reason
            .as_deref()
            .is_none_or(|r| dead.reason.contains(r))
            && self
                .job_type
                .as_deref()
                .is_none_or(|t| job_type(dead) == Some(t))
    }

    /// `reason=..&type=..` for links.
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(reason) = &self.reason {
            parts.push(format!("reason={}", url_encode(reason)));
        }
        if let Some(job_type) = &self.job_type {
            parts.push(format!("type={}", url_encode(job_type)));
        }
        parts.join("&")
    }

    fn describe(&self) -> String {
        match (&self.reason, &self.job_type) {
            (Some(r), Some(t)) => format!(
                "whose reason contains \u{201c}{r}\u{201d} and whose type is \u{201c}{t}\u{201d}"
            ),
            (Some(r), None) => format!("whose reason contains \u{201c}{r}\u{201d}"),
            (None, Some(t)) => format!("whose type is \u{201c}{t}\u{201d}"),
            (None, None) => String::new(),
        }
    }
}

fn job_type(dead: &DeadLetter) -> Option<&str> {
    dead.meta.as_ref().and_then(|m| m.job_type.as_deref())
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn dlq_href(queue: &str) -> String {
    format!("/ui/queues/{queue}/dead-letters")
}

/// A table of dead letters; with `selectable`, rows get a checkbox (`ids`) and a redrive
/// button (`one`) for the form around the table.
pub(crate) fn table(
    queue: &str,
    letters: &[DeadLetter],
    now: OffsetDateTime,
    selectable: bool,
) -> Markup {
    let mut out = Html::new();
    h!(&mut out; "<div class=\"table-wrap\"><table class=\"dead\"><thead><tr>");
    if selectable {
        h!(&mut out; "<th scope=\"col\"><span class=\"visually-hidden\">Select</span></th>");
    }
    h!(&mut out; "<th scope=\"col\">Job</th><th scope=\"col\">Type</th>"
        "<th scope=\"col\">Reason</th><th scope=\"col\">Attempts</th><th scope=\"col\">Died</th>");
    if selectable {
        h!(&mut out; "<th scope=\"col\"><span class=\"visually-hidden\">Action</span></th>");
    }
    h!(&mut out; "</tr></thead><tbody>");
    for dead in letters {
        let id = dead.id.to_string();
        h!(&mut out; "<tr data-job=\"" (&id) "\">");
        if selectable {
            h!(&mut out;
                "<td><input type=\"checkbox\" name=\"ids\" value=\"" (&id) "\" id=\"sel-" (&id)
                "\" aria-label=\"Select job " (&id) "\"></td>");
        }
        h!(&mut out;
            "<td><a class=\"mono\" href=\"" (dlq_href(queue)) "/" (&id) "\" title=\"" (&id) "\">"
            (short_id(&id)) "</a></td><td>" (job_type(dead).unwrap_or("")) "</td>"
            "<td class=\"reason\" title=\"" (&dead.reason) "\">" (shorten(&dead.reason, REASON_SHOWN))
            "</td><td>" (dead.attempts) "</td><td>");
        match dead.dead_at {
            Some(at) => h!(&mut out; {time_ago(at, now)}),
            None => h!(&mut out; "unknown"),
        }
        h!(&mut out; "</td>");
        if selectable {
            h!(&mut out;
                "<td><button type=\"submit\" name=\"one\" value=\"" (&id) "\" "
                "aria-label=\"Redrive job " (&id) "\">Redrive</button></td>");
        }
        h!(&mut out; "</tr>");
    }
    h!(&mut out; "</tbody></table></div>");
    out.finish()
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    reason: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    after: Option<String>,
    notice: Option<String>,
    n: Option<String>,
    failed: Option<String>,
}

fn list_notice(out: &mut Html, query: &ListQuery) {
    let number = |v: &Option<String>| {
        v.as_deref()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (n, failed) = (number(&query.n), number(&query.failed));
    match query.notice.as_deref() {
        Some("redriven") => {
            let mut text = format!("Redriven {n} job(s): they are back on the queue.");
            if failed > 0 {
                text.push_str(&format!(" {failed} could not be redriven and stay dead."));
            }
            layout::notice(out, &text, if failed > 0 { "warn" } else { "ok" });
        }
        Some("deleted") => layout::notice(out, &format!("Deleted {n} dead letter(s)."), "ok"),
        _ => {}
    }
}

pub(crate) async fn list(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(queue): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let js = ui.gw.js();
    let stats = match jobfleet_producer::queue_stats(js, &queue).await {
        Ok(stats) => stats,
        Err(err) => return layout::problem_page(err),
    };
    let filter = Filter::new(query.reason.clone(), query.job_type.clone());
    let after = query
        .after
        .as_deref()
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    let mut page = match jobfleet_worker::dead_letters_page(js, &queue, after, PAGE + 1, |d| {
        filter.accepts(d)
    })
    .await
    {
        Ok(page) => page,
        Err(err) => return layout::problem_page(err),
    };
    let more = page.len() > PAGE;
    page.truncate(PAGE);
    let now = OffsetDateTime::now_utc();
    let base = dlq_href(&queue);
    let mut body = Html::new();
    h!(&mut body; "<div class=\"title\"><h1>Dead letters of <span class=\"mono\">" (&queue)
        "</span></h1></div>");
    list_notice(&mut body, &query);
    h!(&mut body;
        "<p><b data-stat=\"dead\">" (stats.dead) "</b> dead letter(s) in this queue. A dead "
        "letter is a job that failed for good or ran out of attempts; redriving puts it back "
        "on the queue with its attempts reset (same id, a new life).</p>"
        "<form method=\"get\" action=\"" (&base) "\" class=\"filters\" role=\"search\" "
        "aria-label=\"Filter dead letters\">"
        "<div><label for=\"f-reason\">Reason contains</label>"
        "<input id=\"f-reason\" name=\"reason\" value=\"" (filter.reason.as_deref().unwrap_or(""))
        "\"></div><div><label for=\"f-type\">Type is</label>"
        "<input id=\"f-type\" name=\"type\" value=\"" (filter.job_type.as_deref().unwrap_or(""))
        "\"></div><div class=\"buttons\"><button type=\"submit\">Filter</button> "
        "<a href=\"" (&base) "\">Clear</a></div></form>");
    if page.is_empty() {
        h!(&mut body; "<p class=\"empty\" data-empty>");
        body.text(if filter.is_set() || after > 0 {
            "No dead letters match."
        } else {
            "No dead letters: nothing has failed for good."
        });
        h!(&mut body; "</p>");
    } else if viewer.can_act() {
        h!(&mut body;
            "<form method=\"post\" action=\"" (&base) "/redrive\" id=\"bulk\" data-bulk>");
        if let Some(reason) = &filter.reason {
            layout::hidden(&mut body, "reason", reason);
        }
        if let Some(job_type) = &filter.job_type {
            layout::hidden(&mut body, "type", job_type);
        }
        h!(&mut body; {table(&queue, &page, now, true)}
            "<div class=\"actions\" role=\"group\" aria-label=\"Actions on dead letters\">"
            "<button type=\"submit\" name=\"scope\" value=\"selected\">Redrive selected…</button>"
            "<button type=\"submit\" name=\"scope\" value=\"selected\" formaction=\""
            (&base) "/delete\" class=\"danger\">Delete selected…</button>"
            "<button type=\"submit\" name=\"scope\" value=\"matching\">");
        body.text(if filter.is_set() {
            "Redrive all matching…"
        } else {
            "Redrive all…"
        });
        h!(&mut body; "</button><button type=\"submit\" name=\"scope\" value=\"matching\" "
            "formaction=\"" (&base) "/delete\" class=\"danger\">");
        body.text(if filter.is_set() {
            "Delete all matching…"
        } else {
            "Delete all…"
        });
        h!(&mut body; "</button></div></form>");
    } else {
        h!(&mut body; {table(&queue, &page, now, false)}
            "<p class=\"hint\">Read-only: sign in with an admin token to redrive or delete.</p>");
    }
    let filter_query = filter.query();
    h!(&mut body; "<nav class=\"pages\" aria-label=\"Pages\">");
    if after > 0 {
        h!(&mut body; "<a href=\"" (&base) "?" (&filter_query) "\">First page</a> ");
    }
    if more && let Some(last) = page.last() {
        h!(&mut body; "<a href=\"" (&base) "?after=" (last.sequence) "&" (&filter_query)
            "\" rel=\"next\">Next page</a>");
    }
    h!(&mut body; "</nav>");
    layout::page(
        &format!("Dead letters of {queue}"),
        &[
            Crumb::link("Queues", "/ui"),
            Crumb::link(queue.clone(), format!("/ui/queues/{queue}")),
            Crumb::here("Dead letters"),
        ],
        &viewer,
        Live::No,
        body.finish(),
    )
}

/// Header names whose values are not shown (a producer may have put credentials there).
fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "apikey",
        "credential",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn payload(out: &mut Html, dead: &DeadLetter, content_type: &str) {
    let raw = &dead.payload;
    let (label, text) = match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(json) => (
            "JSON",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ),
        Err(_) => match std::str::from_utf8(raw) {
            Ok(text) => ("text", text.to_owned()),
            Err(_) => (
                "binary, shown as base64",
                base64::engine::general_purpose::STANDARD.encode(raw),
            ),
        },
    };
    h!(out; "<section aria-labelledby=\"payload-title\"><h2 id=\"payload-title\">Payload</h2>"
        "<p class=\"hint\">" (content_type) ", " (bytes(raw.len() as u64)) " (" (label) ")");
    let shown = match text.char_indices().nth(PAYLOAD_SHOWN) {
        Some((cut, _)) => {
            h!(out; "; the first " (PAYLOAD_SHOWN) " characters are shown");
            &text[..cut]
        }
        None => text.as_str(),
    };
    h!(out; "</p><pre class=\"payload\" tabindex=\"0\" data-payload><code>" (shown)
        "</code></pre></section>");
}

fn headers(out: &mut Html, dead: &DeadLetter) {
    let mut rows: Vec<(String, String)> = Vec::new();
    for (name, values) in dead.headers.iter() {
        for value in values {
            rows.push((name.to_string(), value.as_str().to_owned()));
        }
    }
    rows.sort();
    h!(out; "<section aria-labelledby=\"headers-title\"><h2 id=\"headers-title\">Headers</h2>"
        "<div class=\"table-wrap\"><table class=\"headers\"><thead><tr><th scope=\"col\">Name</th>"
        "<th scope=\"col\">Value</th></tr></thead><tbody>");
    for (name, value) in rows {
        if is_sensitive(&name) {
            h!(out; "<tr><th scope=\"row\" class=\"mono\">" (&name) "</th><td><i>hidden: the "
                "name suggests a credential</i></td></tr>");
        } else {
            h!(out; "<tr><th scope=\"row\" class=\"mono\">" (&name) "</th><td class=\"mono wrap\">"
                (&value) "</td></tr>");
        }
    }
    h!(out; "</tbody></table></div></section>");
}

pub(crate) async fn show(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path((queue, id)): Path<(String, String)>,
) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return layout::error_page(
            StatusCode::BAD_REQUEST,
            "Not a job id",
            "Job ids are UUIDs, such as 0199b3c2-7f1e-7c3a-9d4e-2b8f6a1c0d5e.",
        );
    };
    let dead = match jobfleet_worker::dead_letter(ui.gw.js(), &queue, id).await {
        Ok(Some(dead)) => dead,
        Ok(None) => return not_dead(&queue, id),
        Err(err) => return layout::problem_page(err),
    };
    let now = OffsetDateTime::now_utc();
    let meta = dead.meta.as_ref();
    let content_type = meta.map_or("application/json", |m| m.content_type());
    let base = dlq_href(&queue);
    let mut body = Html::new();
    h!(&mut body;
        "<div class=\"title\"><h1>Dead job <span class=\"mono\">" (id) "</span></h1></div>"
        "<dl class=\"facts summary\">"
        "<dt>Reason</dt><dd><pre class=\"wrap\" data-reason>" (&dead.reason) "</pre></dd>"
        "<dt>Attempts</dt><dd>" (dead.attempts) "</dd>"
        "<dt>Died</dt><dd>");
    match dead.dead_at {
        Some(at) => h!(&mut body; (timestamp(at)) " (" {time_ago(at, now)} ")"),
        None => h!(&mut body; "unknown"),
    }
    h!(&mut body; "</dd><dt>Queue</dt><dd><a href=\"/ui/queues/" (&queue) "\">" (&queue)
        "</a></dd>");
    if let Some(meta) = meta {
        if let Some(job_type) = &meta.job_type {
            h!(&mut body; "<dt>Type</dt><dd>" (job_type) "</dd>");
        }
        h!(&mut body; "<dt>Enqueued</dt><dd>" (timestamp(meta.enqueued_at)) "</dd>");
        if meta.life > 0 {
            h!(&mut body; "<dt>Redriven before</dt><dd>" (meta.life) " time(s)</dd>");
        }
        if let Some(trace) = meta.trace_id() {
            h!(&mut body; "<dt>Trace id</dt><dd class=\"mono\">" (trace) "</dd>");
        }
    }
    h!(&mut body; "<dt>History</dt><dd><a href=\"/ui/jobs/" (id) "\">Audit timeline</a></dd></dl>");
    if viewer.can_act() {
        h!(&mut body;
            "<form method=\"post\" action=\"" (&base) "/redrive\" class=\"actions\">"
            "<input type=\"hidden\" name=\"one\" value=\"" (id) "\">"
            "<button type=\"submit\" class=\"primary\">Redrive…</button>"
            "<button type=\"submit\" formaction=\"" (&base) "/delete\" class=\"danger\">Delete…</button>"
            "</form>");
    }
    payload(&mut body, &dead, content_type);
    headers(&mut body, &dead);
    layout::page(
        &format!("Dead job {id}"),
        &[
            Crumb::link("Queues", "/ui"),
            Crumb::link(queue.clone(), format!("/ui/queues/{queue}")),
            Crumb::link("Dead letters", base.clone()),
            Crumb::here(short_id(&id.to_string())),
        ],
        &viewer,
        Live::No,
        body.finish(),
    )
}

fn not_dead(queue: &str, id: JobId) -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        "Not a dead letter",
        &format!(
            "Job {id} is not in the dead letters of queue {queue} (any more: it may have been \
             redriven or deleted). Its audit timeline is at /ui/jobs/{id}."
        ),
    )
}

/// Which dead letters an action applies to.
#[derive(Debug)]
enum Chosen {
    One(JobId),
    Ids(Vec<JobId>),
    Matching(Filter),
}

impl Chosen {
    fn selection(&self) -> RedriveSelection {
        match self {
            Self::One(id) => RedriveSelection::Ids(vec![*id]),
            Self::Ids(ids) => RedriveSelection::Ids(ids.clone()),
            Self::Matching(filter) if !filter.is_set() => RedriveSelection::All,
            Self::Matching(filter) => {
                let filter = filter.clone();
                RedriveSelection::Matching(Box::new(move |d| filter.accepts(d)))
            }
        }
    }

    /// The form fields that choose this again (for the confirmation page).
    fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::One(id) => vec![("one", id.to_string())],
            Self::Ids(ids) => std::iter::once(("scope", "selected".to_owned()))
                .chain(ids.iter().map(|id| ("ids", id.to_string())))
                .collect(),
            Self::Matching(filter) => {
                let mut fields = vec![("scope", "matching".to_owned())];
                if let Some(reason) = &filter.reason {
                    fields.push(("reason", reason.clone()));
                }
                if let Some(job_type) = &filter.job_type {
                    fields.push(("type", job_type.clone()));
                }
                fields
            }
        }
    }
}

/// The posted form, read from repeated fields (`ids` may come many times).
struct Posted {
    chosen: Chosen,
    confirmed: bool,
}

/// Reads the form; the error is what to tell the person (nothing was done).
fn read_form(fields: Vec<(String, String)>) -> Result<Posted, &'static str> {
    let mut one = None;
    let mut ids = Vec::new();
    let mut scope = None;
    let (mut reason, mut job_type) = (None, None);
    let mut confirmed = false;
    for (name, value) in fields {
        match name.as_str() {
            "one" => one = Some(value),
            "ids" => ids.push(value),
            "scope" => scope = Some(value),
            "reason" => reason = Some(value),
            "type" => job_type = Some(value),
            "confirm" => confirmed = value == "yes",
            _ => {}
        }
    }
    let parse = |id: &str| {
        id.trim()
            .parse::<JobId>()
            .map_err(|_| "A selected id is not a job id.")
    };
    let chosen = match (one, scope.as_deref()) {
        (Some(id), _) => Chosen::One(parse(&id)?),
        (None, Some("selected")) if ids.is_empty() => {
            return Err(
                "No dead letter was selected: tick the ones to act on, then press the button.",
            );
        }
        (None, Some("selected")) => {
            Chosen::Ids(ids.iter().map(|id| parse(id)).collect::<Result<_, _>>()?)
        }
        (None, Some("matching")) => Chosen::Matching(Filter::new(reason, job_type)),
        _ => return Err("The form did not say which dead letters to act on."),
    };
    Ok(Posted { chosen, confirmed })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Redrive,
    Delete,
}

async fn act(
    ui: Ui,
    viewer: Viewer,
    queue: String,
    fields: Vec<(String, String)>,
    verb: Verb,
) -> Response {
    if !viewer.can_act() {
        return layout::read_only();
    }
    let posted = match read_form(fields) {
        Ok(posted) => posted,
        Err(detail) => {
            return layout::error_page(StatusCode::BAD_REQUEST, "Nothing done", detail);
        }
    };
    if !posted.confirmed {
        return confirm(&ui, &viewer, &queue, &posted.chosen, verb).await;
    }
    let js = ui.gw.js();
    let base = dlq_href(&queue);
    match verb {
        Verb::Redrive => {
            let report = match jobfleet_worker::redrive(js, &queue, posted.chosen.selection()).await
            {
                Ok(report) => report,
                Err(err) => return layout::problem_page(err),
            };
            if let Chosen::One(id) = posted.chosen {
                if report.redriven.contains(&id) {
                    return see_other(&format!("/ui/jobs/{id}?notice=redriven"));
                }
                return match report.failed.first() {
                    Some((_, error)) => layout::error_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Not redriven",
                        &format!("Job {id} could not be redriven and stays dead: {error}"),
                    ),
                    None => not_dead(&queue, id),
                };
            }
            see_other(&format!(
                "{base}?notice=redriven&n={}&failed={}",
                report.redriven.len(),
                report.failed.len()
            ))
        }
        Verb::Delete => {
            match jobfleet_worker::delete_dead_letters(js, &queue, posted.chosen.selection()).await
            {
                Ok(deleted) => {
                    if let Chosen::One(id) = posted.chosen
                        && deleted.is_empty()
                    {
                        return not_dead(&queue, id);
                    }
                    see_other(&format!("{base}?notice=deleted&n={}", deleted.len()))
                }
                Err(err) => layout::problem_page(err),
            }
        }
    }
}

/// How many dead letters `chosen` covers now (counting stops at `COUNT_CAP`).
async fn count(
    ui: &Ui,
    queue: &str,
    chosen: &Chosen,
) -> Result<String, jobfleet_worker::WorkerError> {
    match chosen {
        Chosen::One(_) => Ok("1".to_owned()),
        Chosen::Ids(ids) => Ok(ids.len().to_string()),
        Chosen::Matching(filter) => {
            let found =
                jobfleet_worker::dead_letters_page(ui.gw.js(), queue, 0, COUNT_CAP + 1, |d| {
                    filter.accepts(d)
                })
                .await?;
            Ok(if found.len() > COUNT_CAP {
                format!("more than {COUNT_CAP}")
            } else {
                found.len().to_string()
            })
        }
    }
}

async fn confirm(ui: &Ui, viewer: &Viewer, queue: &str, chosen: &Chosen, verb: Verb) -> Response {
    let count = match count(ui, queue, chosen).await {
        Ok(count) => count,
        Err(err) => return layout::problem_page(err),
    };
    let base = dlq_href(queue);
    let (verb_text, button) = match verb {
        Verb::Redrive if matches!(chosen, Chosen::One(_)) => {
            ("Redrive", "Redrive the job".to_owned())
        }
        Verb::Delete if matches!(chosen, Chosen::One(_)) => {
            ("Delete", "Delete the dead letter".to_owned())
        }
        Verb::Redrive => ("Redrive", format!("Redrive {count} job(s)")),
        Verb::Delete => ("Delete", format!("Delete {count} dead letter(s)")),
    };
    let title = match chosen {
        Chosen::One(id) => format!("{verb_text} job {id}?"),
        _ => format!("{verb_text} {count} dead letter(s) of {queue}?"),
    };
    let mut explanation = Html::new();
    match verb {
        Verb::Redrive => h!(&mut explanation;
            "<p>Back on queue <b class=\"mono\">" (queue) "</b> with attempts reset, under "
            "the same id (a new life), to run again as workers take it.</p>"),
        Verb::Delete => h!(&mut explanation;
            "<p class=\"notice bad\">Deleting cannot be undone: the payloads are gone for good. "
            "The audit history of the job(s) stays.</p>"),
    }
    match chosen {
        Chosen::One(id) => h!(&mut explanation; "<p>Job <code>" (id) "</code>.</p>"),
        Chosen::Ids(ids) => {
            h!(&mut explanation; "<ul class=\"plain\">");
            for id in ids.iter().take(20) {
                h!(&mut explanation; "<li><code>" (id) "</code></li>");
            }
            if ids.len() > 20 {
                h!(&mut explanation; "<li>and " (ids.len() - 20) " more</li>");
            }
            h!(&mut explanation; "</ul>");
        }
        Chosen::Matching(filter) if filter.is_set() => h!(&mut explanation;
            "<p>Every dead letter of <b class=\"mono\">" (queue) "</b> " (filter.describe())
            " when you confirm: " (&count) " now.</p>"),
        Chosen::Matching(_) => h!(&mut explanation;
            "<p>Every dead letter of <b class=\"mono\">" (queue) "</b> when you confirm: "
            (&count) " now.</p>"),
    }
    let action = match verb {
        Verb::Redrive => format!("{base}/redrive"),
        Verb::Delete => format!("{base}/delete"),
    };
    let cancel = match chosen {
        Chosen::One(id) => format!("{base}/{id}"),
        _ => base.clone(),
    };
    layout::confirm_page(
        viewer,
        Confirm {
            title: &title,
            trail: &[
                Crumb::link("Queues", "/ui"),
                Crumb::link(queue, format!("/ui/queues/{queue}")),
                Crumb::link("Dead letters", base.clone()),
                Crumb::here(verb_text),
            ],
            explanation: explanation.finish(),
            action: &action,
            fields: &chosen.fields(),
            button: &button,
            danger: verb == Verb::Delete,
            cancel: &cancel,
        },
    )
}

pub(crate) async fn redrive(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(queue): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    act(ui, viewer, queue, fields, Verb::Redrive).await
}

pub(crate) async fn delete(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(queue): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    act(ui, viewer, queue, fields, Verb::Delete).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_headers_are_hidden() {
        assert!(is_sensitive("Authorization"));
        assert!(is_sensitive("X-Api-Key"));
        assert!(is_sensitive("x-session-token"));
        assert!(!is_sensitive("Jobfleet-Type"));
        assert!(!is_sensitive("traceparent"));
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("ab", 5), "ab");
    }

    #[test]
    fn a_form_must_say_what_to_act_on() {
        let form = |pairs: &[(&str, &str)]| {
            read_form(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert!(form(&[]).is_err());
        assert!(form(&[("scope", "selected")]).is_err());
        assert!(form(&[("one", "not-an-id")]).is_err());
        let id = JobId::new().to_string();
        let posted = form(&[("scope", "selected"), ("ids", &id), ("confirm", "yes")]).unwrap();
        assert!(posted.confirmed);
        assert!(matches!(posted.chosen, Chosen::Ids(ref ids) if ids.len() == 1));
        let posted = form(&[("scope", "matching"), ("reason", " "), ("type", "")]).unwrap();
        assert!(matches!(posted.chosen, Chosen::Matching(ref f) if !f.is_set()));
        assert!(!posted.confirmed);
    }
}
