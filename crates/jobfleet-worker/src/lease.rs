//! Keeping a delivery's lease alive with progress acknowledgements (`+WPI`).

use std::time::Duration;

use async_nats::Subject;

/// The lease of one delivery: progress acks go to its reply subject.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    client: async_nats::Client,
    reply: Option<Subject>,
}

impl Lease {
    pub(crate) fn new(client: async_nats::Client, reply: Option<Subject>) -> Self {
        Self { client, reply }
    }

    /// Resets the server's ack timer for this delivery.
    pub(crate) async fn extend(&self) {
        if let Some(reply) = &self.reply
            && let Err(err) = self.client.publish(reply.clone(), "+WPI".into()).await
        {
            tracing::debug!(error = %err, "progress ack not sent");
        }
    }

    /// Extends the lease every `every`, forever: race it against the work it covers.
    pub(crate) async fn renew_every(&self, every: Duration) -> std::convert::Infallible {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticker.tick().await;
            self.extend().await;
        }
    }
}
