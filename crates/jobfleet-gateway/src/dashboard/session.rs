//! Who is looking: the login form, session cookies, and the `identify` middleware.
//!
//! The login form takes a bearer token, checks it once against the gateway's tokens, and
//! answers with a cookie holding a random session id (32 bytes from the OS). The server
//! keeps only the SHA-256 of that id, with the token's name, its access level and an
//! expiry: never the token. Sessions live in memory, so a restart signs everyone out.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::html::{Html, h, url_encode};
use super::layout::{self, Crumb};
use super::{Ui, see_other};
use crate::auth::Scope;
use crate::problem::Problem;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "jobfleet_session";
/// How long a session lasts after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most live sessions kept; the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// What the viewer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Look only.
    Read,
    /// Look and act (pause, resume, redrive, delete).
    Admin,
}

/// How the viewer was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// No tokens are configured: everyone is admin.
    Open,
    /// A session cookie from the login form.
    Session,
    /// An `Authorization: Bearer` header.
    Bearer,
}

/// The person (or script) behind a request.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) access: Access,
    /// The token's configured name (not the token).
    pub(crate) name: Option<String>,
    pub(crate) how: How,
}

impl Viewer {
    pub(crate) fn can_act(&self) -> bool {
        self.access == Access::Admin
    }
}

#[derive(Debug)]
struct Session {
    name: String,
    access: Access,
    expires: Instant,
}

/// Live sessions, by the SHA-256 of their id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes as hex, from the operating system.
fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    fn create(&self, name: &str, access: Access) -> std::io::Result<String> {
        let id = random_id()?;
        let now = Instant::now();
        let mut map = self
            .by_digest
            .lock()
            .map_err(|_| std::io::Error::other("session store poisoned"))?;
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Session {
                name: name.to_owned(),
                access,
                expires: now + SESSION_TTL,
            },
        );
        Ok(id)
    }

    fn lookup(&self, id: &str) -> Option<(String, Access)> {
        let map = self.by_digest.lock().ok()?;
        map.get(&digest(id))
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.name.clone(), s.access))
    }

    fn remove(&self, id: &str) {
        if let Ok(mut map) = self.by_digest.lock() {
            map.remove(&digest(id));
        }
    }
}

/// The session id from the `Cookie` headers, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// What a request's credentials allow, or the response to send instead.
fn recognise(ui: &Ui, headers: &HeaderMap) -> Result<Option<Viewer>, Problem> {
    let tokens = &ui.gw.config().tokens;
    if !tokens.is_enabled() {
        return Ok(Some(Viewer {
            access: Access::Admin,
            name: None,
            how: How::Open,
        }));
    }
    if headers.contains_key(header::AUTHORIZATION) {
        let name = tokens.authorize(headers, Scope::Read)?.map(str::to_owned);
        let access = match tokens.authorize(headers, Scope::Admin) {
            Ok(_) => Access::Admin,
            Err(_) => Access::Read,
        };
        return Ok(Some(Viewer {
            access,
            name,
            how: How::Bearer,
        }));
    }
    Ok(session_cookie(headers)
        .and_then(|id| ui.sessions.lookup(id))
        .map(|(name, access)| Viewer {
            access,
            name: Some(name),
            how: How::Session,
        }))
}

/// Finds the viewer and stores it in the request's extensions; sends people without a
/// credential to the login form.
pub(crate) async fn identify(State(ui): State<Ui>, mut request: Request, next: Next) -> Response {
    match recognise(&ui, request.headers()) {
        Ok(Some(viewer)) => {
            request.extensions_mut().insert(viewer);
            next.run(request).await
        }
        Ok(None) if matches!(*request.method(), Method::GET | Method::HEAD) => {
            let here = request
                .uri()
                .path_and_query()
                .map_or("/ui", |pq| pq.as_str());
            see_other(&format!("/ui/login?next={}", url_encode(here)))
        }
        Ok(None) => layout::error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Your session has ended or you have not signed in: nothing was changed.",
        ),
        Err(problem) => layout::problem_page(problem),
    }
}

/// Where to go after login: a dashboard path, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if (next == "/ui" || next.starts_with("/ui/") || next.starts_with("/ui?"))
                && !next.contains(['\\', '\r', '\n']) =>
        {
            next
        }
        _ => "/ui",
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) async fn login_form(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    match recognise(&ui, &headers) {
        Ok(Some(viewer)) if viewer.how != How::Bearer => see_other(next),
        _ => login_page(StatusCode::OK, next, None),
    }
}

fn login_page(status: StatusCode, next: &str, error: Option<&'static str>) -> Response {
    let mut body = Html::new();
    h!(&mut body;
        "<section class=\"login\"><h1>Sign in</h1>");
    if let Some(error) = error {
        h!(&mut body; "<p class=\"notice bad\" role=\"alert\">" (error) "</p>");
    }
    h!(&mut body;
        "<form method=\"post\" action=\"/ui/login\">"
        "<input type=\"hidden\" name=\"next\" value=\"" (next) "\">"
        "<label for=\"token\">Token</label>"
        "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" "
        "required autofocus aria-describedby=\"token-hint\">"
        "<p id=\"token-hint\" class=\"hint\">A bearer token of this gateway with the "
        "<code>read</code> scope (to look) or <code>admin</code> (to pause, redrive and "
        "delete too). It is checked once and not kept: your browser gets a session cookie "
        "for 12 hours instead.</p>"
        "<button type=\"submit\" class=\"primary\">Sign in</button>"
        "</form></section>");
    let mut response = layout::bare_page("Sign in", &[Crumb::here("Sign in")], body.finish());
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn login(
    State(ui): State<Ui>,
    request_headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    let tokens = &ui.gw.config().tokens;
    if !tokens.is_enabled() {
        return see_other(&next);
    }
    let mut bearer = HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", form.token.trim())) else {
        return login_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That token is not valid."),
        );
    };
    bearer.insert(header::AUTHORIZATION, value);
    let name = match tokens.authorize(&bearer, Scope::Read) {
        Ok(name) => name.unwrap_or_default().to_owned(),
        Err(problem) if problem.status == 403 => {
            return login_page(
                StatusCode::FORBIDDEN,
                &next,
                Some("That token may not read: the dashboard needs the read or admin scope."),
            );
        }
        Err(_) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                &next,
                Some("That token is not valid."),
            );
        }
    };
    let access = match tokens.authorize(&bearer, Scope::Admin) {
        Ok(_) => Access::Admin,
        Err(_) => Access::Read,
    };
    let id = match ui.sessions.create(&name, access) {
        Ok(id) => id,
        Err(err) => {
            tracing::error!(error = %err, "cannot create a dashboard session");
            return layout::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cannot sign in",
                "The gateway could not create a session (no randomness from the OS).",
            );
        }
    };
    // Secure only when the browser reached us over HTTPS (directly or through a proxy):
    // a Secure cookie would never come back over plain HTTP.
    let https = request_headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        || request_headers
            .get(header::ORIGIN)
            .is_some_and(|v| v.as_bytes().starts_with(b"https://"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if https { "; Secure" } else { "" }
    );
    tracing::info!(token = %name, "dashboard sign-in");
    let mut response = see_other(&next);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn logout(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        ui.sessions.remove(id);
    }
    let mut response = see_other("/ui/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "jobfleet_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(safe_next(Some("/ui/jobs/1?x=2")), "/ui/jobs/1?x=2");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui");
        assert_eq!(safe_next(Some("https://evil.example")), "/ui");
        assert_eq!(safe_next(Some("/uievil")), "/ui");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui");
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn sessions_end_on_removal() {
        let sessions = Sessions::default();
        let id = sessions.create("ops", Access::Admin).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(
            sessions.lookup(&id),
            Some(("ops".to_owned(), Access::Admin))
        );
        assert!(sessions.lookup("0000").is_none());
        sessions.remove(&id);
        assert!(sessions.lookup(&id).is_none());
    }
}
