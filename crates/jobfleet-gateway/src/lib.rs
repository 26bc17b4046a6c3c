//! The jobfleet HTTP gateway: enqueue jobs, read their status, inspect and operate queues and
//! dead letters, over JSON/HTTP.
//!
//! [`app`] builds the axum `Router` (testable without a socket); [`serve`] runs it with
//! graceful shutdown. Every error is `application/problem+json` ([`Problem`]); routes and
//! their scopes are listed by [`routes`] and documented in [`OPENAPI_JSON`] (served at
//! `/openapi.json`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobfleet_gateway::{GatewayConfig, GatewayState, serve};
//! use jobfleet_producer::{ConnectOptions, Producer};
//!
//! let producer = Producer::connect(ConnectOptions::new("nats://127.0.0.1:4222")).await?;
//! let state = GatewayState::new(producer, GatewayConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod body;
mod config;
mod dashboard;
mod dead_letters;
mod enqueue;
mod health;
mod jobs;
mod metrics;
mod problem;
mod queues;
mod routes;
mod serve;
mod state;

pub use auth::{Scope, Tokens, TokensFileError, token_digest};
pub use config::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_CONNECTIONS, GatewayConfig,
};
pub use health::OPENAPI_JSON;
pub use problem::{PROBLEM_JSON, Problem};
pub use routes::{RouteInfo, app, routes};
pub use serve::serve;
pub use state::GatewayState;
