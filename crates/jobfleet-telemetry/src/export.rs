//! The OTLP/HTTP span exporter: a batching processor whose task runs on a thread of its own
//! (a current-thread tokio runtime), so neither the application's runtime flavour nor its
//! load decides whether spans leave, and shutting down cannot deadlock a runtime thread.

use std::sync::mpsc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

/// How long dropping the guard waits for the last spans to be exported.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A running exporter.
#[derive(Debug)]
pub(crate) struct Exporter {
    provider: SdkTracerProvider,
    service_name: String,
}

impl Exporter {
    /// Builds the exporter from the standard environment variables (endpoint, headers,
    /// timeout) and starts its batching thread.
    pub(crate) fn start(
        service_name: &str,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        // The HTTP client is rustls without a built-in crypto provider (the workspace's
        // reqwest): it needs one installed, and jobfleet uses ring. An error means one is
        // installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let processor = BatchSpanProcessor::builder(exporter, runtime::TokioCurrentThread).build();
        let (resource, service_name) = resource(service_name);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        Ok(Self {
            provider,
            service_name,
        })
    }

    /// Makes this the global tracer provider (for code using the OpenTelemetry API directly)
    /// and W3C trace context the global propagator.
    pub(crate) fn install_globals(&self) {
        opentelemetry::global::set_tracer_provider(self.provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }

    /// The tracer the `tracing` layer records into.
    pub(crate) fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("jobfleet")
    }

    /// The exported `service.name`.
    pub(crate) fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Exports what is buffered and stops, waiting at most [`SHUTDOWN_WAIT`]: an unreachable
    /// collector must not hold the process up for the export timeout and its retries.
    pub(crate) fn shutdown(self) {
        let (done, finished) = mpsc::channel();
        let provider = self.provider;
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                let _ = done.send(provider.shutdown());
            });
        if spawned.is_err() {
            tracing::warn!("cannot start the trace exporter's shutdown; buffered spans are lost");
            return;
        }
        match finished.recv_timeout(SHUTDOWN_WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing traces at exit failed"),
            Err(_) => tracing::warn!(
                wait = ?SHUTDOWN_WAIT,
                "flushing traces at exit took too long; the rest are dropped"
            ),
        }
    }
}

/// The resource: the environment's detectors, with `service.name` from `OTEL_SERVICE_NAME`,
/// else from `OTEL_RESOURCE_ATTRIBUTES`, else `default_name`.
fn resource(default_name: &str) -> (Resource, String) {
    let named_by_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attrs| {
            attrs
                .split(',')
                .any(|pair| pair.trim_start().starts_with("service.name="))
        });
    let resource = if named_by_env {
        Resource::builder().build()
    } else {
        Resource::builder()
            .with_service_name(default_name.to_owned())
            .build()
    };
    let name = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map_or_else(|| default_name.to_owned(), |v| v.to_string());
    (resource, name)
}
