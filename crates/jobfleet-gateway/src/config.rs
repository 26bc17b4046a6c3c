//! Gateway settings.

use std::time::Duration;

use crate::auth::Tokens;

/// Default largest request body: 1 MiB, NATS' default `max_payload`.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Default most jobs in one batch request.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// Default time a client has to send a request's head (request line and headers): 30 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a client has to send a request's body once its head has arrived: 60 s,
/// enough for the largest default body (1 MiB) at about 20 KB/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Default most connections served at once: 4096. Keep the process's open-file limit
/// (`ulimit -n`) above it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How the gateway behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Largest request body in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Most jobs in one batch request; more get 422.
    pub max_batch: usize,
    /// Bearer tokens; empty means no authentication.
    pub tokens: Tokens,
    /// Time a client has to send a request's head, from when the gateway starts reading it;
    /// then [`crate::serve`] closes the connection without an answer. It bounds the wait
    /// for the next request on an idle keep-alive connection too. Default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body, from when its head arrived; a slower
    /// request gets 408 and its connection is closed. Default [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog until one
    /// closes (so many slow clients cannot exhaust file descriptors). Default
    /// [`DEFAULT_MAX_CONNECTIONS`]; at least 1.
    pub max_connections: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            max_batch: DEFAULT_MAX_BATCH,
            tokens: Tokens::open(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl GatewayConfig {
    /// Sets the body limit.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the batch size limit.
    pub fn max_batch(mut self, jobs: usize) -> Self {
        self.max_batch = jobs;
        self
    }

    /// Sets the tokens.
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// Sets the time a client has to send a request's head.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets the time a client has to send a request's body.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Sets the most connections served at once (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }
}
