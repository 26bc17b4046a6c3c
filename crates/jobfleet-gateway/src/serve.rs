//! Serving the gateway on a socket: HTTP/1.1 connections with time limits, and graceful
//! shutdown.
//!
//! This is `axum::serve` plus a timer: without one, hyper applies no header read timeout,
//! and a client that opens connections and sends their heads slowly (or not at all) holds
//! them forever. Bodies are bounded by the `crate::body` middleware.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::routes::app;
use crate::state::GatewayState;

/// Longest header read timeout applied: hyper adds it to the current instant, which must not
/// overflow.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);

/// Serves the gateway on `listener` until `shutdown` completes; then `/readyz` turns 503,
/// no new connections are accepted, requests in flight finish, and the NATS connection is
/// drained (so every PubAck awaited by a request has arrived).
///
/// A connection whose request head does not arrive within
/// [`GatewayConfig::header_read_timeout`](crate::GatewayConfig::header_read_timeout) is
/// closed; so is a keep-alive connection idle for that long. At most
/// [`GatewayConfig::max_connections`](crate::GatewayConfig::max_connections) connections are
/// served at once; more wait in the listen backlog.
///
/// # Errors
///
/// The listener's I/O error.
pub async fn serve(
    listener: TcpListener,
    state: GatewayState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(
        state
            .config()
            .header_read_timeout
            .min(MAX_HEADER_READ_TIMEOUT),
    );
    let connections = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.config().max_connections.max(1)));
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    wait_after_accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    state.begin_shutdown();
    tracing::info!("gateway stopping: finishing requests in flight");
    connections.shutdown().await;
    if let Err(err) = state.producer().client().drain().await {
        tracing::warn!(error = %err, "draining the NATS connection failed");
    }
    Ok(())
}

/// After a failed `accept`: go on at once when only that connection failed; otherwise (out of
/// file descriptors, say) wait a second rather than spin, as `axum::serve` does.
async fn wait_after_accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
