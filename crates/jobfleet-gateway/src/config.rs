//! Gateway settings.

use crate::auth::Tokens;

/// Default largest request body: 1 MiB, NATS' default `max_payload`.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Default most jobs in one batch request.
pub const DEFAULT_MAX_BATCH: usize = 1000;

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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            max_batch: DEFAULT_MAX_BATCH,
            tokens: Tokens::open(),
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
}
