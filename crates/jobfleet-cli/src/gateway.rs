//! `jobfleet gateway`: the HTTP gateway until SIGINT/SIGTERM.

use std::path::Path;

use jobfleet_gateway::{GatewayConfig, GatewayState, Tokens};
use jobfleet_producer::{Producer, QueueFile};
use tokio_util::sync::CancellationToken;

use crate::args::{GatewayArgs, Global};
use crate::error::{CliError, CliErrorKind};

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|err| {
        CliError::new(
            CliErrorKind::Usage,
            format!("cannot read {}: {err}", path.display()),
        )
    })
}

/// Applies the queue declarations of `path`, printing what changed.
pub(crate) async fn declare_from_file(producer: &Producer, path: &Path) -> Result<(), CliError> {
    let file = QueueFile::from_toml(&read(path)?)
        .map_err(|err| CliError::new(CliErrorKind::Usage, format!("{}: {err}", path.display())))?;
    for declared in producer.declare_queues(&file).await? {
        tracing::info!(queue = %declared.queue, created = declared.created, changed = ?declared.changed, "queue declared");
        for n in &declared.not_applied {
            tracing::warn!(queue = %declared.queue, field = %n.field, current = %n.current, wanted = %n.wanted, reason = %n.reason, "declaration not applied");
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM, or when `token` is cancelled.
pub(crate) async fn shutdown_signal(token: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = token.cancelled() => {}
    }
}

/// Binds and serves the gateway on `producer` until `stop` completes.
pub(crate) async fn serve(
    args: &GatewayArgs,
    producer: Producer,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let tokens = match &args.tokens_file {
        Some(path) => Tokens::from_toml(&read(path)?).map_err(|err| {
            CliError::new(CliErrorKind::Usage, format!("{}: {err}", path.display()))
        })?,
        None => Tokens::open(),
    };
    if !tokens.is_enabled() {
        tracing::warn!("no tokens file: the gateway API is open to anyone who can reach it");
    }
    let config = GatewayConfig::default()
        .tokens(tokens)
        .body_limit(args.body_limit)
        .max_batch(args.max_batch)
        .header_read_timeout(args.header_read_timeout)
        .body_read_timeout(args.body_read_timeout)
        .max_connections(args.max_connections);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| {
            CliError::new(
                CliErrorKind::Failed,
                format!("cannot listen on {}: {err}", args.listen),
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|err| CliError::new(CliErrorKind::Failed, err.to_string()))?;
    tracing::info!(%address, "gateway listening");
    jobfleet_gateway::serve(listener, GatewayState::new(producer, config), stop)
        .await
        .map_err(|err| CliError::new(CliErrorKind::Failed, format!("gateway: {err}")))
}

pub(crate) async fn run(args: GatewayArgs, global: &Global) -> Result<(), CliError> {
    let producer = crate::connect(global).await?;
    if let Some(path) = &args.queues_file {
        declare_from_file(&producer, path).await?;
    }
    serve(&args, producer, shutdown_signal(CancellationToken::new())).await
}
