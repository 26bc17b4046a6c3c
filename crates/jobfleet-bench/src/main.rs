//! `jobfleet-bench`: prints jobfleet's throughput beside the raw async-nats baseline measured
//! on the same server in the same run, as ratios (this machine is noisy; ratios are not).
//!
//! Usage: `jobfleet-bench enqueue|drain|gateway [--jobs N] [--rounds R]`. Starts its own nats-server (file
//! storage, R1) unless `NATS_URL` is set.
//!
//! `jobfleet-bench durability [--jobs N] [--sync-jobs M] [--r3-sync-jobs K] [--rounds R]`
//! starts its own servers (one node and a 3-node cluster, each with default fsync and with
//! `sync_interval: always`) and ignores `NATS_URL`.

mod drain;
mod durability;
mod enqueue;
mod gateway;
mod raw;
mod report;

use std::time::Duration;

use jobfleet_testkit::NatsServer;

/// Benchmark parameters from the command line.
#[derive(Debug, Clone, Copy)]
struct Params {
    jobs: usize,
    single_jobs: usize,
    rounds: usize,
    payload: usize,
    /// Jobs per measurement on one node with `sync_interval: always` (durability mode).
    sync_jobs: usize,
    /// Jobs per measurement on the 3-node cluster with `sync_interval: always` (durability).
    r3_sync_jobs: usize,
}

/// Jobs per measurement in durability mode unless `--jobs` says otherwise: it runs on four
/// deployments, two of them 3-node clusters.
const DURABILITY_JOBS: usize = 50_000;
/// Jobs per measurement on one node with `sync_interval: always` unless `--sync-jobs` says
/// otherwise: an fsync per write, some hundreds to thousands of jobs/s here.
const DURABILITY_SYNC_JOBS: usize = 2_000;
/// Jobs per measurement on the 3-node cluster with `sync_interval: always` unless
/// `--r3-sync-jobs` says otherwise. Since nats-server 2.15 a replicated stream fsyncs its Raft
/// log (one sync per appended batch) rather than each message, so this runs far faster than
/// the single node; on an older server, lower it.
const DURABILITY_R3_SYNC_JOBS: usize = 20_000;

fn parse_args() -> Result<(String, Params), String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "enqueue".to_owned());
    let mut params = Params {
        jobs: 100_000,
        single_jobs: 5_000,
        rounds: 3,
        payload: 128,
        sync_jobs: DURABILITY_SYNC_JOBS,
        r3_sync_jobs: DURABILITY_R3_SYNC_JOBS,
    };
    let mut jobs_given = false;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--jobs" => {
                params.jobs = number;
                jobs_given = true;
            }
            "--sync-jobs" => params.sync_jobs = number,
            "--r3-sync-jobs" => params.r3_sync_jobs = number,
            "--single-jobs" => params.single_jobs = number,
            "--rounds" => params.rounds = number.max(1),
            "--payload" => params.payload = number,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if command == "durability" && !jobs_given {
        params.jobs = DURABILITY_JOBS;
    }
    if params.jobs == 0 || params.sync_jobs == 0 || params.r3_sync_jobs == 0 {
        return Err("--jobs, --sync-jobs and --r3-sync-jobs must be at least 1".to_owned());
    }
    Ok((command, params))
}

#[tokio::main]
async fn main() {
    let (command, params) = match parse_args() {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!(
                "jobfleet-bench: {err}\nusage: jobfleet-bench enqueue|drain|gateway|durability [--jobs N] [--single-jobs N] [--sync-jobs N] [--r3-sync-jobs N] [--rounds R] [--payload BYTES]"
            );
            std::process::exit(2);
        }
    };
    if command == "durability" {
        // Starts (and configures) its own servers: an external one's fsync cannot be set.
        return durability::run(params).await;
    }
    let (_server, url) = match std::env::var("NATS_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            let server = NatsServer::start();
            let url = server.url();
            (Some(server), url)
        }
    };
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str())
        .await
        .expect("connect to NATS");
    match command.as_str() {
        "enqueue" => enqueue::run(client, params).await,
        "drain" => drain::run(client, params).await,
        "gateway" => gateway::run(client, params).await,
        other => {
            eprintln!(
                "jobfleet-bench: unknown benchmark {other:?} (available: enqueue, drain, gateway, durability)"
            );
            std::process::exit(2);
        }
    }
}
