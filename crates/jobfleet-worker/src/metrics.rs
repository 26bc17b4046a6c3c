//! Prometheus metrics of a worker process, served as text on an optional port.
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `jobfleet_jobs_total` | counter | `queue`, `outcome` = `succeeded` / `retried` / `dead_lettered` / `released` |
//! | `jobfleet_attempts_started_total` | counter | `queue` |
//! | `jobfleet_jobs_in_flight` | gauge | `queue` |
//! | `jobfleet_handler_duration_seconds` | histogram | `queue` |
//! | `jobfleet_queue_wait_seconds` | histogram (enqueue or schedule time to attempt start) | `queue` |

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::stats::WorkerStats;

/// Upper bounds (seconds) of the histogram buckets: 1 ms to 5 min.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// A fixed-bucket histogram updated with atomics (no locks on the job path).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(value.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, queue: &str) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{queue=\"{queue}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{queue=\"{queue}\",le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{queue=\"{queue}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{queue=\"{queue}\"}} {count}");
    }
}

/// The Prometheus text exposition of `stats` for `queue`.
pub(crate) fn render(stats: &WorkerStats, queue: &str) -> String {
    let snapshot = stats.snapshot();
    let mut out = String::with_capacity(4096);
    out.push_str("# TYPE jobfleet_jobs_total counter\n");
    for (outcome, value) in [
        ("succeeded", snapshot.succeeded),
        ("retried", snapshot.retried),
        ("dead_lettered", snapshot.dead_lettered),
        ("released", snapshot.released),
    ] {
        let _ = writeln!(
            out,
            "jobfleet_jobs_total{{queue=\"{queue}\",outcome=\"{outcome}\"}} {value}"
        );
    }
    out.push_str("# TYPE jobfleet_attempts_started_total counter\n");
    let _ = writeln!(
        out,
        "jobfleet_attempts_started_total{{queue=\"{queue}\"}} {}",
        snapshot.started
    );
    out.push_str("# TYPE jobfleet_jobs_in_flight gauge\n");
    let _ = writeln!(
        out,
        "jobfleet_jobs_in_flight{{queue=\"{queue}\"}} {}",
        stats.in_flight.load(Ordering::Relaxed)
    );
    stats
        .handler_duration
        .render(&mut out, "jobfleet_handler_duration_seconds", queue);
    stats
        .queue_wait
        .render(&mut out, "jobfleet_queue_wait_seconds", queue);
    out
}

/// Answers every HTTP request on `listener` with the metrics, until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    stats: Arc<WorkerStats>,
    queue: Arc<str>,
    stop: CancellationToken,
) {
    loop {
        let (mut socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener failed");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let body = render(&stats, &queue);
        tokio::spawn(async move {
            // Read (and ignore) the request head; every path serves the metrics.
            let mut request = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut request)).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
