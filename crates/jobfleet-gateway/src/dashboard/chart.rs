//! A small inline-SVG chart of a queue's processed and failed rates over the samples the
//! gateway keeps (one per 5 s per queue, for 5 minutes, taken whenever stats are read).

use std::fmt::Write as _;

use jobfleet_producer::QueueStats;
use time::OffsetDateTime;

use super::html::{Html, Markup, duration, h, rate};

/// The longest span shown (what the gateway keeps), and the shortest (so that a fresh
/// gateway's first samples are not squeezed into a sliver).
const MAX_WINDOW_SECS: f64 = 300.0;
const MIN_WINDOW_SECS: f64 = 60.0;
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 60.0;

/// Average rates over one interval between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    from: OffsetDateTime,
    to: OffsetDateTime,
    processed: f64,
    failed: f64,
}

fn steps(samples: &[QueueStats]) -> Vec<Step> {
    samples
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            let secs = (b.observed_at - a.observed_at).as_seconds_f64();
            (secs > 0.0).then(|| Step {
                from: a.observed_at,
                to: b.observed_at,
                processed: b.removed_total.saturating_sub(a.removed_total) as f64 / secs,
                failed: b.dead_total.saturating_sub(a.dead_total) as f64 / secs,
            })
        })
        .collect()
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * magnitude)
}

fn polyline(
    steps: &[Step],
    now: OffsetDateTime,
    window: f64,
    top: f64,
    value: impl Fn(&Step) -> f64,
) -> String {
    let x = |at: OffsetDateTime| {
        let before_now = (now - at).as_seconds_f64();
        (WIDTH * (1.0 - before_now / window)).clamp(0.0, WIDTH)
    };
    let y = |v: f64| HEIGHT - 2.0 - (v / top) * (HEIGHT - 4.0);
    let mut points = String::new();
    for step in steps {
        let v = y(value(step));
        let _ = write!(
            points,
            "{:.1},{v:.1} {:.1},{v:.1} ",
            x(step.from),
            x(step.to)
        );
    }
    points.trim_end().to_owned()
}

/// The chart for `samples` (oldest first), as of `now`; `id` must be unique on the page.
pub(crate) fn rates(samples: &[QueueStats], now: OffsetDateTime, id: &str) -> Markup {
    let steps = steps(samples);
    let mut out = Html::new();
    let Some(last) = steps.last() else {
        h!(&mut out;
            "<figure class=\"chart\"><p class=\"chart-empty\">Collecting samples: the gateway "
            "keeps one every 5 s while someone is looking.</p></figure>");
        return out.finish();
    };
    let peak_processed = steps.iter().map(|s| s.processed).fold(0.0, f64::max);
    let peak_failed = steps.iter().map(|s| s.failed).fold(0.0, f64::max);
    let top = nice_ceiling(peak_processed.max(peak_failed));
    let window = (now - steps[0].from)
        .as_seconds_f64()
        .clamp(MIN_WINDOW_SECS, MAX_WINDOW_SECS);
    let span = duration(std::time::Duration::from_secs_f64(window.round()));
    let description = format!(
        "Processed {} now (peak {}), failed {} now (peak {}), over {} samples.",
        rate(last.processed),
        rate(peak_processed),
        rate(last.failed),
        rate(peak_failed),
        samples.len()
    );
    h!(&mut out;
        "<figure class=\"chart\">"
        "<svg viewBox=\"0 0 300 60\" preserveAspectRatio=\"none\" role=\"img\" focusable=\"false\" "
        "aria-labelledby=\"" (id) "-t " (id) "-d\">"
        "<title id=\"" (id) "-t\">Jobs per second, last " (&span) "</title>"
        "<desc id=\"" (id) "-d\">" (description) "</desc>"
        "<line class=\"grid\" x1=\"0\" y1=\"30\" x2=\"300\" y2=\"30\" vector-effect=\"non-scaling-stroke\"/>"
        "<line class=\"axis\" x1=\"0\" y1=\"58\" x2=\"300\" y2=\"58\" vector-effect=\"non-scaling-stroke\"/>"
        "<polyline class=\"processed\" vector-effect=\"non-scaling-stroke\" points=\""
        (polyline(&steps, now, window, top, |s| s.processed)) "\"/>"
        "<polyline class=\"failed\" vector-effect=\"non-scaling-stroke\" points=\""
        (polyline(&steps, now, window, top, |s| s.failed)) "\"/>"
        "</svg><figcaption>"
        "<span class=\"key processed\">processed</span> "
        "<span class=\"key failed\">failed</span> "
        "<span class=\"scale\">0 to " (rate(top)) ", last " (&span) "</span>"
        "</figcaption></figure>");
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_scale() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 1.0);
        assert_eq!(nice_ceiling(1.5), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
    }
}
