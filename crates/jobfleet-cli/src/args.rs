//! The command line, as clap definitions.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// jobfleet: a job queue on NATS JetStream.
///
/// Every command that talks to NATS takes `--nats-url` (env `NATS_URL`, a comma-separated
/// list); credentials come from `NATS_CREDS`, `NATS_TOKEN`, `NATS_USER`/`NATS_PASSWORD`,
/// `NATS_CA`, `NATS_CERT`/`NATS_KEY`. Output is for people; `--json` prints one JSON
/// document for scripts. Exit codes: 0 ok, 1 failed, 2 bad usage or input, 3 not found,
/// 4 NATS unavailable.
#[derive(Debug, Parser)]
#[command(name = "jobfleet", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The NATS URL used when none is given.
pub(crate) const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222; `dev` starts a
    /// server when none is given].
    #[arg(long, global = true, env = "NATS_URL")]
    pub(crate) nats_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a local fleet: NATS (started for you unless NATS_URL is set), the gateway and
    /// demo workers, in one process tree. Ctrl-C stops everything.
    Dev(DevArgs),
    /// Serve the HTTP gateway.
    Gateway(GatewayArgs),
    /// Declare, list, inspect, pause, resume or purge queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Enqueue one job.
    Enqueue(EnqueueArgs),
    /// A job's status or history.
    #[command(subcommand)]
    Job(JobCommand),
    /// Browse, redrive or purge dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Queue stats, once or refreshed live with --watch.
    Stats(StatsArgs),
    /// Python workers: provided by the `jobfleet` Python package (`pip install jobfleet`).
    #[command(hide = true)]
    Worker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Gateway address.
    #[arg(long, env = "JOBFLEET_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Folder for the NATS server's data and log when one is started.
    #[arg(long, default_value = ".jobfleet")]
    pub(crate) data_dir: PathBuf,
    /// Port of the NATS server started when NATS_URL is not set.
    #[arg(long, env = "JOBFLEET_NATS_PORT", default_value_t = 4222)]
    pub(crate) nats_port: u16,
    /// Monitoring port of that NATS server.
    #[arg(long, env = "JOBFLEET_NATS_MONITOR_PORT", default_value_t = 8222)]
    pub(crate) nats_monitor_port: u16,
    /// Queue declarations (TOML); default: the `demo` queue.
    #[arg(long, env = "JOBFLEET_QUEUES_FILE")]
    pub(crate) queues_file: Option<PathBuf>,
    /// Demo worker processes' concurrency.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// Stop after this long (for scripts and tests), e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) exit_after: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, env = "JOBFLEET_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Queue declarations (TOML) applied at start.
    #[arg(long, env = "JOBFLEET_QUEUES_FILE")]
    pub(crate) queues_file: Option<PathBuf>,
    /// Bearer tokens (TOML, SHA-256 digests with scopes); without it the API is open.
    #[arg(long, env = "JOBFLEET_TOKENS_FILE")]
    pub(crate) tokens_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, env = "JOBFLEET_BODY_LIMIT", default_value_t = jobfleet_gateway::DEFAULT_BODY_LIMIT)]
    pub(crate) body_limit: usize,
    /// Most jobs in one batch request.
    #[arg(long, env = "JOBFLEET_MAX_BATCH", default_value_t = jobfleet_gateway::DEFAULT_MAX_BATCH)]
    pub(crate) max_batch: usize,
    /// How long a client may take to send a request's headers (and how long a keep-alive
    /// connection may stay idle) before the connection is closed, e.g. `30s`.
    #[arg(long, env = "JOBFLEET_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub(crate) header_read_timeout: std::time::Duration,
    /// How long a client may take to send a request's body before it gets 408, e.g. `60s`.
    #[arg(long, env = "JOBFLEET_BODY_READ_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub(crate) body_read_timeout: std::time::Duration,
    /// Most connections served at once; more wait until one closes. Keep `ulimit -n` above it.
    #[arg(long, env = "JOBFLEET_MAX_CONNECTIONS", default_value_t = jobfleet_gateway::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub(crate) max_connections: usize,
}

/// A count of 1 or more.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

/// A duration such as `30s` or `2m`, above zero.
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be above zero".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Create or update the queues of a TOML file (idempotent).
    Declare {
        /// The declarations file.
        #[arg(long, short)]
        file: PathBuf,
    },
    /// List queues with their backlog.
    Ls,
    /// One queue's stats and settings.
    Info { queue: String },
    /// Stop handing out the queue's jobs (enqueueing goes on).
    Pause { queue: String },
    /// Hand out the queue's jobs again.
    Resume { queue: String },
    /// Delete every waiting job of the queue (no terminal audit event is written for them).
    Purge {
        queue: String,
        /// Required: purging destroys accepted jobs.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// Queue to enqueue into.
    pub(crate) queue: String,
    /// The payload; `-` reads standard input. Must be JSON unless --content-type says otherwise.
    pub(crate) payload: String,
    /// Job type.
    #[arg(long = "type")]
    pub(crate) job_type: Option<String>,
    /// Run no earlier than this from now, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) delay: Option<std::time::Duration>,
    /// Run no earlier than this RFC 3339 time.
    #[arg(long)]
    pub(crate) run_at: Option<String>,
    /// Attempts before dead-lettering.
    #[arg(long)]
    pub(crate) max_attempts: Option<u32>,
    /// Per-attempt time limit, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// Idempotency key: the same key (per queue) enqueues once.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Content type of a non-JSON payload, e.g. `text/plain`.
    #[arg(long)]
    pub(crate) content_type: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// The job's latest state.
    Status { id: String },
    /// Every audit event of the job.
    History { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List a queue's dead letters.
    Ls {
        queue: String,
        /// Only those whose reason contains this text.
        #[arg(long)]
        reason: Option<String>,
        /// Only jobs of this type.
        #[arg(long = "type")]
        job_type: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter with its payload and headers.
    Show { queue: String, id: String },
    /// Put dead letters back on their queue (attempts reset).
    Redrive {
        queue: String,
        /// These job ids.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Every dead letter of the queue.
        #[arg(long)]
        all: bool,
        /// Those whose reason contains this text.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete dead letters for good: by id, or all with --yes.
    Purge {
        queue: String,
        /// These job ids.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Required to delete all of them.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this queue.
    pub(crate) queue: Option<String>,
    /// Refresh every this many seconds until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) watch: Option<f64>,
}

impl Global {
    /// The NATS URL(s) to use.
    pub(crate) fn nats_url(&self) -> &str {
        self.nats_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or(DEFAULT_NATS_URL)
    }
}
