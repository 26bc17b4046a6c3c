//! The job payload: which HTTP request to deliver, and its validation.
//!
//! ```json
//! {
//!   "url": "https://example.com/hooks/orders",
//!   "method": "POST",
//!   "headers": {"X-Signature": "sha256=..."},
//!   "body": {"order": 42, "event": "paid"},
//!   "timeout_ms": 10000
//! }
//! ```
//!
//! | Field | Type | Default | Meaning |
//! |---|---|---|---|
//! | `url` | string | required | `http` or `https` URL with a host |
//! | `method` | string | `POST` | `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` or `OPTIONS` (any case) |
//! | `headers` | object of strings | `{}` | request headers; they replace the worker's defaults of the same name |
//! | `body` | any JSON | none | sent as JSON (`Content-Type: application/json` unless set) |
//! | `body_text` | string | none | sent as is (`Content-Type: text/plain; charset=utf-8` unless set) |
//! | `body_base64` | string | none | standard base64, sent decoded (`application/octet-stream` unless set) |
//! | `timeout_ms` | integer >= 1 | the worker's `--request-timeout` | whole-request deadline, capped by `--max-request-timeout` |
//!
//! At most one of the three body fields may be given (`"body": null` means no body). Unknown
//! fields are refused, so a typo is a dead letter rather than a silently different request.
//! Headers that belong to the transport (`Host`, `Content-Length`, `Transfer-Encoding`,
//! `Connection`, ...) and `Idempotency-Key` (always the job id) cannot be set.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;

/// The job payload as it arrives (see the module docs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default)]
    body_text: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// A validated request, ready to send.
#[derive(Debug)]
pub(crate) struct WebhookRequest {
    pub(crate) url: Url,
    pub(crate) method: Method,
    /// The payload's headers, plus `Content-Type` when a body is given and no header set it.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// The payload's `timeout_ms`; the worker applies its default and caps.
    pub(crate) timeout: Option<Duration>,
}

/// Why a payload is not a deliverable request. Never worth a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidRequest {
    field: String,
    message: String,
}

impl InvalidRequest {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The offending field (`headers.<name>` for a header), or `payload` when the payload
    /// is not valid JSON for the schema.
    #[cfg(test)]
    pub(crate) fn field(&self) -> &str {
        &self.field
    }
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid webhook request: {}: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for InvalidRequest {}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Headers the payload may not set: the transport owns them, or the worker does.
const RESERVED_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "idempotency-key",
];

/// Parses and validates a job payload.
pub(crate) fn parse(payload: &[u8]) -> Result<WebhookRequest, InvalidRequest> {
    let payload: Payload = serde_json::from_slice(payload)
        .map_err(|err| InvalidRequest::new("payload", err.to_string()))?;
    let url = parse_url(&payload.url)?;
    let method = parse_method(payload.method.as_deref())?;
    let mut headers = parse_headers(&payload.headers)?;
    let body = parse_body(&payload)?;
    if let Some((_, content_type)) = &body
        && !headers.contains_key(CONTENT_TYPE)
    {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let timeout = match payload.timeout_ms {
        Some(0) => return Err(InvalidRequest::new("timeout_ms", "must be at least 1")),
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    Ok(WebhookRequest {
        url,
        method,
        headers,
        body: body.map(|(bytes, _)| bytes),
        timeout,
    })
}

fn parse_url(text: &str) -> Result<Url, InvalidRequest> {
    let url = Url::parse(text).map_err(|err| InvalidRequest::new("url", err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidRequest::new(
            "url",
            format!("scheme `{}` is not http or https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidRequest::new("url", "has no host"));
    }
    Ok(url)
}

fn parse_method(text: Option<&str>) -> Result<Method, InvalidRequest> {
    let Some(text) = text else {
        return Ok(Method::POST);
    };
    let upper = text.to_ascii_uppercase();
    METHODS
        .into_iter()
        .find(|m| m.as_str() == upper)
        .ok_or_else(|| {
            InvalidRequest::new(
                "method",
                format!("`{text}` is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            )
        })
}

fn parse_headers(given: &BTreeMap<String, String>) -> Result<HeaderMap, InvalidRequest> {
    let mut headers = HeaderMap::with_capacity(given.len());
    for (name, value) in given {
        let field = || format!("headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidRequest::new(field(), "not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(InvalidRequest::new(
                field(),
                "cannot be set by a job (the transport or the worker sets it)",
            ));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| InvalidRequest::new(field(), "not a valid header value"))?;
        // Names differing only in case are one header: the last one given wins, as in HTTP.
        headers.insert(header, value);
    }
    Ok(headers)
}

fn parse_body(payload: &Payload) -> Result<Option<(Bytes, &'static str)>, InvalidRequest> {
    let given = [
        payload.body.is_some(),
        payload.body_text.is_some(),
        payload.body_base64.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(InvalidRequest::new(
            "body",
            "give at most one of body, body_text and body_base64",
        ));
    }
    if let Some(json) = &payload.body {
        let bytes =
            serde_json::to_vec(json).map_err(|e| InvalidRequest::new("body", e.to_string()))?;
        return Ok(Some((Bytes::from(bytes), "application/json")));
    }
    if let Some(text) = &payload.body_text {
        return Ok(Some((
            Bytes::from(text.clone()),
            "text/plain; charset=utf-8",
        )));
    }
    if let Some(encoded) = &payload.body_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|err| InvalidRequest::new("body_base64", err.to_string()))?;
        return Ok(Some((Bytes::from(bytes), "application/octet-stream")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> WebhookRequest {
        parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn invalid_field(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(request) => panic!("{json} was accepted: {request:?}"),
            Err(err) => err.field().to_owned(),
        }
    }

    #[test]
    fn the_smallest_request_is_a_post_without_body() {
        let request = ok(r#"{"url": "https://example.com/hook"}"#);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.url.as_str(), "https://example.com/hook");
        assert!(request.headers.is_empty());
        assert_eq!(request.body, None);
        assert_eq!(request.timeout, None);
    }

    #[test]
    fn a_json_body_is_serialised_and_typed() {
        let request = ok(
            r#"{"url": "http://h/x?q=1", "method": "put", "body": {"a": [1, "b"]}, "timeout_ms": 1500}"#,
        );
        assert_eq!(request.method, Method::PUT);
        assert_eq!(request.body.as_deref(), Some(&br#"{"a":[1,"b"]}"#[..]));
        assert_eq!(request.headers[CONTENT_TYPE], "application/json");
        assert_eq!(request.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn text_and_base64_bodies_have_their_own_content_type_unless_set() {
        let text = ok(r#"{"url": "http://h", "body_text": "hi"}"#);
        assert_eq!(text.body.as_deref(), Some(&b"hi"[..]));
        assert_eq!(text.headers[CONTENT_TYPE], "text/plain; charset=utf-8");

        let binary = ok(
            r#"{"url": "http://h", "body_base64": "AAEC/w==", "headers": {"content-type": "image/x"}}"#,
        );
        assert_eq!(binary.body.as_deref(), Some(&[0u8, 1, 2, 255][..]));
        assert_eq!(binary.headers[CONTENT_TYPE], "image/x");
        assert_eq!(binary.headers.len(), 1);
    }

    #[test]
    fn a_null_body_is_no_body() {
        let request = ok(r#"{"url": "http://h", "body": null, "body_text": "x"}"#);
        assert_eq!(request.body.as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn headers_are_kept() {
        let request = ok(r#"{"url": "http://h", "headers": {"X-Sig": "abc", "User-Agent": "me"}}"#);
        assert_eq!(request.headers["x-sig"], "abc");
        assert_eq!(request.headers["user-agent"], "me");
    }

    #[test]
    fn invalid_payloads_name_the_field() {
        let cases = [
            ("not json", "payload"),
            (r#"{"method": "POST"}"#, "payload"),
            (r#"{"url": "http://h", "bdy": {}}"#, "payload"),
            (r#"{"url": "http://h", "timeout_ms": -1}"#, "payload"),
            (r#"{"url": "http://h", "headers": {"X": 1}}"#, "payload"),
            (r#"{"url": "ftp://h/file"}"#, "url"),
            (r#"{"url": "file:///etc/passwd"}"#, "url"),
            (r#"{"url": "/relative"}"#, "url"),
            (r#"{"url": "http://h", "method": "CONNECT"}"#, "method"),
            (r#"{"url": "http://h", "method": "G ET"}"#, "method"),
            (
                r#"{"url": "http://h", "headers": {"Bad Name": "x"}}"#,
                "headers.Bad Name",
            ),
            (
                r#"{"url": "http://h", "headers": {"X-A": "line\nbreak"}}"#,
                "headers.X-A",
            ),
            (
                r#"{"url": "http://h", "headers": {"Host": "evil"}}"#,
                "headers.Host",
            ),
            (
                r#"{"url": "http://h", "headers": {"idempotency-key": "k"}}"#,
                "headers.idempotency-key",
            ),
            (
                r#"{"url": "http://h", "headers": {"Content-Length": "1"}}"#,
                "headers.Content-Length",
            ),
            (
                r#"{"url": "http://h", "body": 1, "body_text": "x"}"#,
                "body",
            ),
            (
                r#"{"url": "http://h", "body_text": "x", "body_base64": ""}"#,
                "body",
            ),
            (
                r#"{"url": "http://h", "body_base64": "not base64!"}"#,
                "body_base64",
            ),
            (r#"{"url": "http://h", "timeout_ms": 0}"#, "timeout_ms"),
        ];
        for (json, field) in cases {
            assert_eq!(invalid_field(json), field, "{json}");
        }
    }

    #[test]
    fn the_message_says_what_is_wrong() {
        let err = parse(br#"{"url": "http://h", "bdy": {}}"#).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("invalid webhook request: payload: "),
            "{message}"
        );
        assert!(message.contains("bdy"), "{message}");
    }
}
