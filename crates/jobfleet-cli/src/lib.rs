//! The `jobfleet` command line, as a library so other front ends (the Python package's
//! `jobfleet` script) run the very same commands: [`run`] takes the arguments and returns
//! the exit code.

mod args;
mod dev;
mod dlq;
mod enqueue;
mod error;
mod gateway;
mod job;
mod nats_server;
mod output;
mod queue;
mod stats;

use std::ffi::OsString;

use clap::Parser;
use jobfleet_producer::{ConnectOptions, Producer};

pub use error::{CliError, CliErrorKind};

use crate::args::{Cli, Command, Global};
use crate::output::Output;

/// Runs `jobfleet` with `args` (the first is the program name) and returns the exit code:
/// 0 ok, 1 failed, 2 bad usage or input, 3 not found, 4 NATS unavailable. Blocks; builds
/// its own Tokio runtime.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return err.exit_code();
        }
    };
    let service = match &cli.command {
        Command::Gateway(_) => "jobfleet-gateway",
        Command::Dev(_) => "jobfleet-dev",
        _ => "jobfleet",
    };
    let _telemetry = jobfleet_telemetry::init(service);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("jobfleet: cannot start the async runtime: {err}");
            return 1;
        }
    };
    let out = Output::new(cli.global.json);
    match runtime.block_on(dispatch(cli.command, &cli.global, &out)) {
        Ok(()) => 0,
        Err(err) => {
            out.error(&err);
            err.kind().exit_code()
        }
    }
}

async fn dispatch(command: Command, global: &Global, out: &Output) -> Result<(), CliError> {
    match command {
        Command::Dev(args) => dev::run(args, global, out).await,
        Command::Gateway(args) => gateway::run(args, global).await,
        Command::Queue(command) => queue::run(command, &connect(global).await?, out).await,
        Command::Enqueue(args) => enqueue::run(args, &connect(global).await?, out).await,
        Command::Job(command) => job::run(command, &connect(global).await?, out).await,
        Command::Dlq(command) => dlq::run(command, &connect(global).await?, out).await,
        Command::Stats(args) => stats::run(args, &connect(global).await?, out).await,
        Command::Worker { .. } => Err(CliError::new(
            CliErrorKind::Usage,
            "`jobfleet worker` runs Python handlers: install the Python package \
             (`pip install jobfleet`) and run its `jobfleet worker module:app`; Rust workers \
             are their own binaries (e.g. jobfleet-worker-webhook)",
        )),
    }
}

/// Connects with the global URL and the `NATS_*` credential variables.
pub(crate) async fn connect(global: &Global) -> Result<Producer, CliError> {
    let options = ConnectOptions::from_env()
        .urls(global.nats_url())
        .name("jobfleet-cli");
    Ok(Producer::connect(options).await?)
}
