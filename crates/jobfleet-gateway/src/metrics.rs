//! The gateway's own Prometheus metrics: requests by route and status, and latency.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Latency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latency histograms, keyed by route template (never by raw path, so
/// cardinality stays bounded).
#[derive(Debug, Default)]
pub(crate) struct GatewayMetrics {
    requests: Mutex<HashMap<(String, String, u16), u64>>,
    latency: Mutex<HashMap<String, Latency>>,
    pub(crate) jobs_enqueued: AtomicU64,
    pub(crate) jobs_duplicate: AtomicU64,
    /// Requests being answered right now.
    pub(crate) in_flight: AtomicU64,
}

impl GatewayMetrics {
    pub(crate) fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let entry = latency.entry(route.to_owned()).or_default();
            let seconds = elapsed.as_secs_f64();
            if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
                entry.buckets[i] += 1;
            }
            entry.count += 1;
            entry.sum += seconds;
        }
    }

    pub(crate) fn render(&self, connected: bool) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP jobfleet_gateway_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE jobfleet_gateway_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            let mut rows: Vec<_> = requests.iter().collect();
            rows.sort();
            for ((route, method, status), count) in rows {
                let _ = writeln!(
                    out,
                    "jobfleet_gateway_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP jobfleet_gateway_request_duration_seconds Time to answer.\n");
        out.push_str("# TYPE jobfleet_gateway_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            let mut rows: Vec<_> = latency.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for (route, h) in rows {
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    cumulative += n;
                    let _ = writeln!(
                        out,
                        "jobfleet_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "jobfleet_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                     jobfleet_gateway_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                     jobfleet_gateway_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# TYPE jobfleet_gateway_jobs_enqueued_total counter\n\
             jobfleet_gateway_jobs_enqueued_total {}\n\
             # TYPE jobfleet_gateway_jobs_duplicate_total counter\n\
             jobfleet_gateway_jobs_duplicate_total {}\n\
             # TYPE jobfleet_gateway_requests_in_flight gauge\n\
             jobfleet_gateway_requests_in_flight {}\n\
             # HELP jobfleet_gateway_nats_connected 1 when the NATS connection is up.\n\
             # TYPE jobfleet_gateway_nats_connected gauge\n\
             jobfleet_gateway_nats_connected {}",
            self.jobs_enqueued.load(Ordering::Relaxed),
            self.jobs_duplicate.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            u8::from(connected),
        );
        out
    }
}
