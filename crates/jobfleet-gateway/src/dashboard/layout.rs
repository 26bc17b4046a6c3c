//! The page shell (head, header, breadcrumbs, footer) and the error and confirmation pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::assets;
use super::html::{Html, Markup, h};
use super::session::{How, Viewer};
use crate::problem::Problem;

/// One step of the breadcrumb trail.
#[derive(Debug, Clone)]
pub(crate) struct Crumb {
    label: String,
    href: Option<String>,
}

impl Crumb {
    pub(crate) fn link(label: impl Into<String>, href: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            href: Some(href.into()),
        }
    }

    pub(crate) fn here(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            href: None,
        }
    }
}

/// Whether a page has regions that the script refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    No,
    Yes,
}

fn head(out: &mut Html, title: &str) {
    h!(out;
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"color-scheme\" content=\"light dark\">"
        "<title>" (title) " · jobfleet</title>"
        "<link rel=\"icon\" type=\"image/svg+xml\" href=\"" (assets::url("logo.svg")) "\">"
        "<link rel=\"stylesheet\" href=\"" (assets::url("dashboard.css")) "\">"
        "<script src=\"" (assets::url("dashboard.js")) "\" defer></script>"
        "</head><body>"
        "<a class=\"skip\" href=\"#main\">Skip to content</a>"
        "<header class=\"top\"><a class=\"brand\" href=\"/ui\">"
        "<img src=\"" (assets::url("logo.svg")) "\" alt=\"\" width=\"28\" height=\"28\">"
        "<span>jobfleet</span></a>");
}

fn find_form(out: &mut Html) {
    h!(out;
        "<form class=\"find\" role=\"search\" method=\"get\" action=\"/ui/jobs\">"
        "<label for=\"find-job\" class=\"visually-hidden\">Job id</label>"
        "<input id=\"find-job\" name=\"id\" type=\"search\" placeholder=\"Find a job by id\" "
        "autocomplete=\"off\" spellcheck=\"false\" required>"
        "<button type=\"submit\">Find</button></form>");
}

fn who(out: &mut Html, viewer: &Viewer) {
    h!(out; "<div class=\"who\">");
    match viewer.how {
        How::Open => h!(out;
            "<span class=\"badge warn\" title=\"No tokens are configured: anyone who can reach \
             this gateway can read and operate its queues.\">open gateway</span>"),
        How::Session | How::Bearer => {
            let role = if viewer.can_act() {
                "admin"
            } else {
                "read-only"
            };
            h!(out; "<span class=\"badge\">" (role) "</span> <span class=\"name\">"
                (viewer.name.as_deref().unwrap_or("token")) "</span>");
            if viewer.how == How::Session {
                h!(out;
                    "<form method=\"post\" action=\"/ui/logout\">"
                    "<button type=\"submit\" class=\"link\">Sign out</button></form>");
            }
        }
    }
    h!(out; "</div>");
}

fn crumbs(out: &mut Html, trail: &[Crumb]) {
    if trail.len() < 2 {
        return;
    }
    h!(out; "<nav class=\"crumbs\" aria-label=\"Breadcrumb\"><ol>");
    for crumb in trail {
        match &crumb.href {
            Some(href) => h!(out; "<li><a href=\"" (href) "\">" (&crumb.label) "</a></li>"),
            None => h!(out; "<li><span aria-current=\"page\">" (&crumb.label) "</span></li>"),
        }
    }
    h!(out; "</ol></nav>");
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A full page for a recognised viewer.
pub(crate) fn page(
    title: &str,
    trail: &[Crumb],
    viewer: &Viewer,
    live: Live,
    body: Markup,
) -> Response {
    let mut out = Html::new();
    head(&mut out, title);
    find_form(&mut out);
    who(&mut out, viewer);
    h!(&mut out; "</header>");
    main(&mut out, trail, live, &body);
    html_response(StatusCode::OK, out.finish())
}

/// A page for someone not (yet) recognised: no search, no account.
pub(crate) fn bare_page(title: &str, trail: &[Crumb], body: Markup) -> Response {
    let mut out = Html::new();
    head(&mut out, title);
    h!(&mut out; "</header>");
    main(&mut out, trail, Live::No, &body);
    html_response(StatusCode::OK, out.finish())
}

fn main(out: &mut Html, trail: &[Crumb], live: Live, body: &Markup) {
    h!(out; "<main id=\"main\" tabindex=\"-1\">");
    crumbs(out, trail);
    h!(out; {body} "</main><footer class=\"foot\">");
    if live == Live::Yes {
        h!(out;
            "<p class=\"live\" data-live-controls hidden>"
            "<button type=\"button\" class=\"link\" data-live-toggle aria-pressed=\"true\">"
            "Live updates on</button> "
            "<span data-live-status role=\"status\" aria-live=\"polite\"></span></p>"
            "<noscript><p class=\"live\">Reload the page for fresh numbers "
            "(live updates need JavaScript).</p></noscript>");
    }
    h!(out; "<p>jobfleet dashboard · <a href=\"/openapi.json\">HTTP API</a></p></footer></body></html>");
}

/// An error as a page of its own (with a way back to the start).
pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let mut body = Html::new();
    h!(&mut body;
        "<section class=\"error\"><h1>" (title) "</h1><p>" (detail) "</p>"
        "<p><a href=\"/ui\">Back to the queues</a></p></section>");
    let mut response = bare_page(title, &[], body.finish());
    *response.status_mut() = status;
    response
}

/// A failure from the API layer, shown as a page with the same status.
pub(crate) fn problem_page(problem: impl Into<Problem>) -> Response {
    let problem = problem.into();
    error_page(problem.status_code(), &problem.title, &problem.detail)
}

/// A flash message after an action, from fixed wording (nothing from the query string is
/// shown but numbers).
pub(crate) fn notice(out: &mut Html, text: &str, tone: &'static str) {
    h!(out; "<p class=\"notice ");
    out.raw(tone);
    h!(out; "\" role=\"status\">" (text) "</p>");
}

/// The step before an action: says what will happen and repeats the form with
/// `confirm=yes`. Works without JavaScript; nothing changes until the button is pressed.
pub(crate) struct Confirm<'a> {
    pub(crate) title: &'a str,
    pub(crate) trail: &'a [Crumb],
    pub(crate) explanation: Markup,
    pub(crate) action: &'a str,
    pub(crate) fields: &'a [(&'a str, String)],
    pub(crate) button: &'a str,
    pub(crate) danger: bool,
    pub(crate) cancel: &'a str,
}

pub(crate) fn confirm_page(viewer: &Viewer, confirm: Confirm<'_>) -> Response {
    let mut body = Html::new();
    h!(&mut body;
        "<section class=\"confirm\" aria-labelledby=\"confirm-title\">"
        "<h1 id=\"confirm-title\">" (confirm.title) "</h1>" {confirm.explanation}
        "<form method=\"post\" action=\"" (confirm.action) "\" class=\"actions\">");
    for (name, value) in confirm.fields {
        hidden(&mut body, name, value);
    }
    hidden(&mut body, "confirm", "yes");
    h!(&mut body; "<button type=\"submit\" autofocus data-confirm class=\"");
    body.raw(if confirm.danger { "danger" } else { "primary" });
    h!(&mut body; "\">" (confirm.button) "</button> <a class=\"button\" href=\""
        (confirm.cancel) "\">Cancel</a></form></section>");
    page(
        confirm.title,
        confirm.trail,
        viewer,
        Live::No,
        body.finish(),
    )
}

/// The page for a read-only viewer who tried to act.
pub(crate) fn read_only() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Read-only",
        "Your token may read but not act: sign in with an admin token to pause, resume, \
         redrive or delete. Nothing was changed.",
    )
}

/// A hidden form field.
pub(crate) fn hidden(out: &mut Html, name: &str, value: &str) {
    h!(out; "<input type=\"hidden\" name=\"" (name) "\" value=\"" (value) "\">");
}
