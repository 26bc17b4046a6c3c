//! Writing HTML safely: everything that is not a string literal is escaped.
//!
//! [`Html::raw`] takes only `&'static str`, so markup can come from the source code alone;
//! every runtime value goes through [`Html::text`], which escapes it for both element
//! content and double-quoted attribute values. The `h!` macro makes that the default:
//! literals are written as they are, `(expr)` is escaped, `{expr}` inserts a [`Markup`]
//! fragment built the same way.

use std::fmt::{self, Write as _};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// HTML built by [`Html`]: safe to insert as it is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Markup(String);

impl Markup {
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

/// An HTML document or fragment being written.
#[derive(Debug, Default)]
pub(crate) struct Html {
    out: String,
}

impl Html {
    pub(crate) fn new() -> Self {
        Self {
            out: String::with_capacity(8 * 1024),
        }
    }

    /// Markup from the source code.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// A value, escaped.
    pub(crate) fn text(&mut self, value: impl fmt::Display) -> &mut Self {
        let _ = write!(Escaper(&mut self.out), "{value}");
        self
    }

    /// A fragment built by another `Html`.
    pub(crate) fn markup(&mut self, fragment: &Markup) -> &mut Self {
        self.out.push_str(&fragment.0);
        self
    }

    pub(crate) fn finish(self) -> Markup {
        Markup(self.out)
    }
}

/// Writes into a `String`, escaping `& < > " '`.
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// `h!(out; "<p>" (value) "</p>" {fragment})`: literals raw, `(expr)` escaped, `{expr}` a
/// [`Markup`].
macro_rules! h {
    ($out:expr; $($part:tt)*) => {{
        let out: &mut $crate::dashboard::html::Html = $out;
        $( h!(@part out, $part); )*
    }};
    (@part $out:ident, $lit:literal) => { $out.raw($lit); };
    (@part $out:ident, ($value:expr)) => { $out.text($value); };
    (@part $out:ident, {$fragment:expr}) => { $out.markup(&$fragment); };
}
pub(crate) use h;

/// Percent-encodes `value` for a URL query or path segment (everything but unreserved
/// characters). The result still goes through [`Html::text`] when written.
pub(crate) fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// A duration for people: `850 ms`, `12 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    match secs {
        0 if ms < 1000 => format!("{ms} ms"),
        0..=59 => {
            let tenths = (d.as_millis() / 100) % 10;
            if secs < 10 && tenths != 0 {
                format!("{secs}.{tenths} s")
            } else {
                format!("{secs} s")
            }
        }
        60..=3599 => with_rest(secs / 60, "min", secs % 60, "s"),
        3600..=86_399 => with_rest(secs / 3600, "h", (secs % 3600) / 60, "min"),
        _ => with_rest(secs / 86_400, "d", (secs % 86_400) / 3600, "h"),
    }
}

fn with_rest(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big} {big_unit}")
    } else {
        format!("{big} {big_unit} {small} {small_unit}")
    }
}

/// An instant as RFC 3339, to the second, in UTC.
pub(crate) fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `<time datetime=..>12 s ago</time>` relative to `now`.
pub(crate) fn time_ago(at: OffsetDateTime, now: OffsetDateTime) -> Markup {
    let mut html = Html::new();
    let stamp = timestamp(at);
    let ago = (now - at).max(time::Duration::ZERO);
    let ago = Duration::try_from(ago).unwrap_or_default();
    let ago = if ago < Duration::from_secs(1) {
        "just now".to_owned()
    } else {
        format!("{} ago", duration(Duration::from_secs(ago.as_secs())))
    };
    h!(&mut html; "<time datetime=\"" (&stamp) "\" title=\"" (&stamp) "\">" (ago) "</time>");
    html.finish()
}

/// A rate per second for people: `0`, `0.25/s`, `12/s`, `1.2k/s`.
pub(crate) fn rate(per_sec: f64) -> String {
    if per_sec <= 0.0 || !per_sec.is_finite() {
        "0/s".to_owned()
    } else if per_sec < 10.0 {
        format!("{per_sec:.2}/s")
    } else if per_sec < 1000.0 {
        format!("{per_sec:.0}/s")
    } else {
        format!("{:.1}k/s", per_sec / 1000.0)
    }
}

/// A byte count for people.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_literals_are_not() {
        let mut html = Html::new();
        let evil = "<script>alert('x')</script>&\"";
        h!(&mut html; "<p title=\"" (evil) "\">" (evil) "</p>");
        assert_eq!(
            html.finish().as_str(),
            "<p title=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\">\
             &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;</p>"
        );
    }

    #[test]
    fn url_encoding_leaves_only_unreserved() {
        assert_eq!(url_encode("a b&c=d/é\""), "a%20b%26c%3Dd%2F%C3%A9%22");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(2300)), "2.3 s");
        assert_eq!(duration(Duration::from_secs(42)), "42 s");
        assert_eq!(duration(Duration::from_secs(184)), "3 min 4 s");
        assert_eq!(duration(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(duration(Duration::from_secs(86_400 * 3)), "3 d");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(0.25), "0.25/s");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
