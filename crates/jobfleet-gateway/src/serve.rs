//! Serving the gateway on a socket, with graceful shutdown.

use std::future::Future;

use tokio::net::TcpListener;

use crate::routes::app;
use crate::state::GatewayState;

/// Serves the gateway on `listener` until `shutdown` completes; then `/readyz` turns 503,
/// no new connections are accepted, requests in flight finish, and the NATS connection is
/// drained (so every PubAck awaited by a request has arrived).
///
/// # Errors
///
/// The listener's I/O error.
pub async fn serve(
    listener: TcpListener,
    state: GatewayState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.clone();
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.begin_shutdown();
            tracing::info!("gateway stopping: finishing requests in flight");
        })
        .await?;
    if let Err(err) = state.producer().client().drain().await {
        tracing::warn!(error = %err, "draining the NATS connection failed");
    }
    Ok(())
}
