//! `jobfleet-bench`: prints jobfleet's throughput beside the raw async-nats baseline measured
//! on the same server in the same run, as ratios (this machine is noisy; ratios are not).
//!
//! Usage: `jobfleet-bench enqueue|drain|gateway [--jobs N] [--rounds R]`. Starts its own nats-server (file
//! storage, R1) unless `NATS_URL` is set.

mod drain;
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
}

fn parse_args() -> Result<(String, Params), String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "enqueue".to_owned());
    let mut params = Params {
        jobs: 100_000,
        single_jobs: 5_000,
        rounds: 3,
        payload: 128,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--jobs" => params.jobs = number,
            "--single-jobs" => params.single_jobs = number,
            "--rounds" => params.rounds = number.max(1),
            "--payload" => params.payload = number,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok((command, params))
}

#[tokio::main]
async fn main() {
    let (command, params) = match parse_args() {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!(
                "jobfleet-bench: {err}\nusage: jobfleet-bench enqueue|drain|gateway [--jobs N] [--single-jobs N] [--rounds R] [--payload BYTES]"
            );
            std::process::exit(2);
        }
    };
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
                "jobfleet-bench: unknown benchmark {other:?} (available: enqueue, drain, gateway)"
            );
            std::process::exit(2);
        }
    }
}
