//! jobfleet's fault-injection suite: real nats-server processes (one node, or a 3-node
//! cluster), real worker processes (Rust and Python) killed with real signals, the real
//! gateway over HTTP. Every scenario ends with the shared [`checker`]: nothing accepted may
//! be lost, every duplicate must be explained by a redelivery, every accepted job has
//! exactly one terminal audit event, and the queue stream ends empty.
//!
//! Scenarios run one at a time (they time faults against their own load), each on its own
//! servers; a failure is reported and the others still run. At the end a summary table is
//! printed and written to `target/fault-summary.md`.
//!
//! `cargo test -p jobfleet-tests --test fault [NAME-FILTER]`

mod checker;
mod cluster;
mod gateway;
mod harness;
mod single;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use harness::Row;

type Scenario = fn() -> Pin<Box<dyn Future<Output = Row>>>;

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("0 checker self-test", || {
            Box::pin(single::checker_self_test())
        }),
        ("1 worker SIGKILL loop", || {
            Box::pin(single::worker_sigkill_loop())
        }),
        ("2 worker SIGTERM loop", || {
            Box::pin(single::worker_sigterm_loop())
        }),
        ("3 poison + crash at failpoints", || {
            Box::pin(single::poison_with_crashes())
        }),
        ("4 handler crash modes", || {
            Box::pin(single::handler_crash_modes())
        }),
        ("5 hung handlers", || Box::pin(single::hung_handlers())),
        ("6 NATS restart", || Box::pin(single::nats_restart())),
        ("7 cluster node-kill loop (gateway)", || {
            Box::pin(cluster::cluster_node_kill_loop())
        }),
        ("8 cluster leader SIGSTOP", || {
            Box::pin(cluster::cluster_paused_node())
        }),
        ("9 full-cluster restart", || {
            Box::pin(cluster::cluster_full_restart())
        }),
        ("10 backpressure (gateway 429)", || {
            Box::pin(single::backpressure())
        }),
    ]
}

fn main() {
    // libtest-style arguments: flags are ignored, the first plain word filters by name.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in scenarios() {
            println!("{name}: test");
        }
        return;
    }
    // reqwest is built without a default TLS provider (the gateway test client and the
    // monitoring reads are plain HTTP, but building a client needs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut results: Vec<(&str, Result<Row, String>, Duration)> = Vec::new();
    for (name, scenario) in scenarios() {
        if !name.contains(filter.as_str()) {
            continue;
        }
        eprintln!("fault scenario {name} ...");
        let began = Instant::now();
        let outcome = std::panic::catch_unwind(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(scenario())
        });
        let took = began.elapsed();
        let outcome = outcome.map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned())
        });
        match &outcome {
            Ok(_) => eprintln!("fault scenario {name} ... ok ({:.1} s)", took.as_secs_f64()),
            Err(why) => eprintln!("fault scenario {name} ... FAILED: {why}"),
        }
        results.push((name, outcome, took));
    }
    let table = summary(&results);
    println!("\n{table}");
    let path = jobfleet_tests::repo_root().join("target/fault-summary.md");
    if let Err(err) = std::fs::write(&path, &table) {
        eprintln!("could not write {}: {err}", path.display());
    }
    let failed = results.iter().filter(|(_, r, _)| r.is_err()).count();
    println!(
        "fault suite: {} passed; {failed} failed",
        results.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn summary(results: &[(&str, Result<Row, String>, Duration)]) -> String {
    let mut out = String::from(
        "| scenario | result | accepted | lost | duplicates (unexplained) | dead-lettered | faults | longest pause after a fault: work / enqueue | took | notes |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, result, took) in results {
        match result {
            Ok(row) => out.push_str(&format!(
                "| {name} | pass | {} | {} | {} ({}) | {} | {} | {} | {:.0} s | {} |\n",
                row.accepted,
                row.lost,
                row.duplicates,
                row.unexplained,
                row.dead_lettered,
                row.faults,
                seconds(row.recover.work) + " / " + &seconds(row.recover.enqueue),
                took.as_secs_f64(),
                row.notes
            )),
            Err(why) => out.push_str(&format!(
                "| {name} | **FAIL** | | | | | | | {:.0} s | {} |\n",
                took.as_secs_f64(),
                why.replace('|', "/").replace('\n', " ")
            )),
        }
    }
    out
}

fn seconds(stall: Option<Duration>) -> String {
    stall.map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}
