//! W3C trace context (`traceparent`, `tracestate`) between `tracing` spans and job headers.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` the child of the remote span a W3C `traceparent` (and optional `tracestate`)
/// names, so that, when spans are exported, the span and everything under it join the
/// producer's trace. Returns whether it did.
///
/// Call it right after creating the span, before it is first entered: an OpenTelemetry span's
/// parent is fixed once the span starts. Nothing happens (and `false` is returned) when the
/// `traceparent` is not well formed, when the span is disabled, or when no
/// `tracing-opentelemetry` layer is installed; in that last case the call is a string check
/// and a type-id lookup, with nothing parsed or allocated, so it is free to make for every job.
///
/// The producer's sampled flag is kept: with the default parent-based sampler, a job enqueued
/// from an unsampled trace is not exported either.
///
/// ```
/// let span = tracing::info_span!("job", job_id = "01890a5d-ac96-774b-bcce-b302099a8057");
/// let joined = jobfleet_telemetry::set_remote_parent(
///     &span,
///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
///     None,
/// );
/// assert!(!joined); // no OpenTelemetry layer in this example
/// ```
pub fn set_remote_parent(
    span: &tracing::Span,
    traceparent: &str,
    tracestate: Option<&str>,
) -> bool {
    if span.is_disabled() || !well_formed(traceparent.trim()) {
        return false;
    }
    // Probe for the layer with an empty context, which costs no allocation; the real parent
    // replaces it below (the span has not started, so its parent can still change).
    if span.set_parent(Context::new()).is_err() {
        return false;
    }
    let carrier = Carrier {
        traceparent,
        tracestate,
    };
    let parent = TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier);
    parent.span().span_context().is_valid() && span.set_parent(parent).is_ok()
}

/// The W3C headers of a span, to carry to a job so that its spans join the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`: `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// `tracestate`, when the trace has vendor state.
    pub tracestate: Option<String>,
}

/// The W3C headers of the current span (the current `tracing` span's OpenTelemetry context,
/// or else the current OpenTelemetry context), or `None` when there is no valid one, such
/// as when no `tracing-opentelemetry` layer is installed.
///
/// Put them on the job being enqueued (`Job::traceparent`, `Job::tracestate` in
/// `jobfleet-producer`), so that [`set_remote_parent`] on the worker's side links the job's
/// spans to this one.
pub fn current_trace_context() -> Option<TraceContext> {
    let mut cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        cx = Context::current();
    }
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    Some(TraceContext {
        traceparent: headers.traceparent?,
        tracestate: headers.tracestate.filter(|s| !s.is_empty()),
    })
}

/// The `traceparent` of the current span; see [`current_trace_context`].
///
/// ```
/// // No OpenTelemetry layer is installed here, so there is no trace to continue.
/// assert_eq!(jobfleet_telemetry::current_traceparent(), None);
/// ```
pub fn current_traceparent() -> Option<String> {
    current_trace_context().map(|cx| cx.traceparent)
}

/// `<version>-<32 hex trace id, not all zeros>-<16 hex span id, not all zeros>-<2 hex flags>`
/// in lower case, version not `ff`; version `00` has exactly these four parts (later versions
/// may append more). The rules the propagator applies, checked without allocating.
fn well_formed(traceparent: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = traceparent.split('-');
    let (Some(version), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = if version == "00" {
        parts.next().is_none()
    } else {
        true
    };
    hex(version, 2)
        && version != "ff"
        && rest_ok
        && hex(trace, 32)
        && nonzero(trace)
        && hex(span, 16)
        && nonzero(span)
        && hex(flags, 2)
}

/// Reads the two headers from borrowed strings.
struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Collects the two headers.
#[derive(Default)]
struct Headers {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" => self.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    /// Runs `f` with a subscriber that has an OpenTelemetry layer (spans are recorded and
    /// sampled but go nowhere).
    fn with_otel<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn ids(span: &tracing::Span) -> (TraceId, SpanId) {
        let cx = span.context();
        let span_ref = cx.span();
        let sc = span_ref.span_context();
        (sc.trace_id(), sc.span_id())
    }

    #[test]
    fn a_span_joins_the_remote_trace_and_passes_it_on() {
        with_otel(|| {
            let span = tracing::info_span!("job");
            assert!(set_remote_parent(
                &span,
                &format!("00-{TRACE}-{PARENT}-01"),
                Some("vendor=1")
            ));
            let (trace, own) = ids(&span);
            assert_eq!(trace, TraceId::from_hex(TRACE).unwrap());
            assert_ne!(own, SpanId::from_hex(PARENT).unwrap(), "a span of its own");

            let _entered = span.enter();
            let child = tracing::info_span!("enqueue");
            let _in_child = child.enter();
            let cx = current_trace_context().expect("a trace to continue");
            let (_, child_id) = ids(&child);
            assert_eq!(cx.traceparent, format!("00-{TRACE}-{child_id}-01"));
            assert_eq!(cx.tracestate.as_deref(), Some("vendor=1"));
            assert_eq!(current_traceparent(), Some(cx.traceparent));
        });
    }

    #[test]
    fn malformed_traceparents_leave_the_span_its_own_trace() {
        with_otel(|| {
            for bad in [
                "",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            ] {
                let span = tracing::info_span!("job");
                assert!(!set_remote_parent(&span, bad, None), "{bad:?}");
                let (trace, _) = ids(&span);
                assert_ne!(trace, TraceId::from_hex(TRACE).unwrap(), "{bad:?}");
                assert_ne!(trace, TraceId::INVALID, "{bad:?}: still traced");
            }
            // A later version may carry more parts.
            let span = tracing::info_span!("job");
            assert!(set_remote_parent(
                &span,
                &format!("01-{TRACE}-{PARENT}-01-more"),
                None
            ));
        });
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_joined_or_passed_on() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job");
            assert!(!set_remote_parent(
                &span,
                &format!("00-{TRACE}-{PARENT}-01"),
                None
            ));
            let _entered = span.enter();
            assert_eq!(current_trace_context(), None);
        });
    }
}
