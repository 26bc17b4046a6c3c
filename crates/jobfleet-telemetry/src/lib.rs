//! Logging set-up shared by jobfleet's binaries, optional OpenTelemetry trace export, and the
//! W3C trace-context helpers that join a job's spans to the trace of whoever enqueued it.
//!
//! [`init`] installs the global `tracing` subscriber: human-readable logs on stderr and, when
//! the standard OpenTelemetry environment variables ask for it, span export over OTLP/HTTP
//! (protobuf) through a batching processor on a thread of its own. Nothing is exported unless
//! an endpoint is configured. A bad configuration never stops the binary: it logs a warning
//! saying what is wrong and runs without export.
//!
//! [`set_remote_parent`] makes a span the child of a producer's `traceparent` (workers call it
//! for every job); [`current_traceparent`] and [`current_trace_context`] give the headers to
//! put on a job being enqueued (producers, the gateway). Both work with any
//! `tracing-opentelemetry` layer, not only the one [`init`] installs, and cost next to nothing
//! when there is none.
//!
//! # Environment
//!
//! | Variable | Effect | Default |
//! |---|---|---|
//! | `RUST_LOG` | filter of the stderr logs (`tracing` `EnvFilter` syntax) | `info,async_nats=warn` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of an OTLP/HTTP collector; `/v1/traces` is appended. Setting it (or the next) turns export on | unset: no export |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full URL for traces, used as is; wins over the one above | unset |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` | only `http/protobuf` is supported; anything else disables export with a warning | `http/protobuf` |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS` | extra request headers, `key=value,key2=value2` (e.g. an API key) | none |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` | milliseconds per export request | `10000` |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute | the name the binary passes to [`init`] |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes, `key=value,...` | none |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampling (`always_on`, `parentbased_traceidratio`, ...). Parent-based samplers follow the producer's sampled flag | `parentbased_always_on` |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT` | batching: ms between exports, spans buffered (more are dropped), spans per request, ms per export | `5000`, `2048`, `512`, `30000` |
//! | `OTEL_TRACES_EXPORTER` | `otlp`, or `none` to turn export off | `otlp` |
//! | `OTEL_SDK_DISABLED` | `true` turns export off whatever else is set | `false` |
//! | `JOBFLEET_TRACE_FILTER` | which spans are exported (`EnvFilter` syntax), independent of `RUST_LOG` | `info` |
//!
//! Every job a worker runs is one `job` span (attributes `job_id`, `queue`, `attempt`,
//! `trace_id`), parented on the producer's `traceparent` header when the job has one.
//! The spans buffered at exit are flushed when the [`TelemetryGuard`] is dropped (waiting at
//! most 5 s); a process killed by a signal it does not handle loses them.
//!
//! [`ENV_HELP`] has the same list as plain text, for a binary's `--help`.
//!
//! # Examples
//!
//! ```no_run
//! // First thing in main; keep the guard until main returns: dropping it flushes buffered
//! // spans. It works inside a tokio runtime (`#[tokio::main]`) or outside one.
//! let _telemetry = jobfleet_telemetry::init("my-worker");
//! tracing::info!("started");
//! ```
//!
//! Enqueuing inside a span, so the job's spans join this trace:
//!
//! ```
//! # fn enqueue(_traceparent: Option<String>) {}
//! let span = tracing::info_span!("checkout");
//! let _entered = span.enter();
//! // `None` when no OpenTelemetry layer is installed.
//! enqueue(jobfleet_telemetry::current_traceparent());
//! ```
//!
//! # Errors
//!
//! None are returned: a configuration that cannot be used is reported as a warning in the
//! logs, and the process runs without export.
//!
//! # Feature flags
//!
//! - `otlp` (default): the OTLP/HTTP exporter (async `reqwest` client with rustls and ring;
//!   no gRPC). Without it [`init`] only sets up logs and warns when an endpoint is set;
//!   the propagation helpers need only `opentelemetry` and `tracing-opentelemetry`.

#[cfg(feature = "otlp")]
mod export;
mod propagation;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use propagation::{
    TraceContext, current_trace_context, current_traceparent, set_remote_parent,
};

/// Default filter of the stderr logs when `RUST_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info,async_nats=warn";
/// Default filter of the exported spans when `JOBFLEET_TRACE_FILTER` is unset.
#[cfg(feature = "otlp")]
const DEFAULT_TRACE_FILTER: &str = "info";

/// The environment variables [`init`] reads, as plain text for a binary's `--help`.
pub const ENV_HELP: &str = "\
Logs and traces (environment):
  RUST_LOG                             log filter for stderr [default: info,async_nats=warn]
  OTEL_EXPORTER_OTLP_ENDPOINT          OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318;
                                       setting it turns span export on (/v1/traces is appended)
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   full traces URL, used as is (wins over the above)
  OTEL_EXPORTER_OTLP_HEADERS           extra request headers, key=value,key2=value2
  OTEL_EXPORTER_OTLP_TIMEOUT           milliseconds per export request [default: 10000]
  OTEL_EXPORTER_OTLP_PROTOCOL          only http/protobuf is supported
  OTEL_SERVICE_NAME                    service.name of the exported spans [default: the binary's name]
  OTEL_RESOURCE_ATTRIBUTES             more resource attributes, key=value,...
  OTEL_TRACES_SAMPLER(_ARG)            sampler [default: parentbased_always_on]
  OTEL_BSP_SCHEDULE_DELAY              milliseconds between batch exports [default: 5000]
  OTEL_TRACES_EXPORTER=none            turns export off; so does OTEL_SDK_DISABLED=true
  JOBFLEET_TRACE_FILTER                which spans are exported, EnvFilter syntax [default: info]
Each job runs in a `job` span (job_id, queue, attempt) that is a child of the producer's
W3C traceparent header. Buffered spans are flushed at a graceful exit.";

/// Keeps telemetry running; dropping it flushes the spans not exported yet (waiting at most
/// 5 s) and stops the exporter.
#[derive(Debug)]
#[must_use = "telemetry stops when the guard is dropped"]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    exporter: Option<export::Exporter>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exports_traces(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.exporter.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(exporter) = self.exporter.take() {
            exporter.shutdown();
        }
    }
}

/// Installs the global `tracing` subscriber: human logs on stderr, filtered by `RUST_LOG`
/// (default `info,async_nats=warn`), and span export over OTLP/HTTP when the environment
/// configures it (see the [crate docs](crate#environment)), with `service.name` taken from
/// `OTEL_SERVICE_NAME` or else `service_name`.
///
/// Never fails: an unusable configuration is logged as a warning and export stays off. When
/// a global subscriber is already installed, this one is not, and nothing is exported.
/// Call it once, early, and keep the guard until the process ends. Export runs on a thread
/// of its own, so this works inside or outside a tokio runtime, of either flavour.
pub fn init(service_name: &str) -> TelemetryGuard {
    let mut warnings = Vec::new();
    let log_filter = filter_from_env("RUST_LOG", DEFAULT_LOG_FILTER, &mut warnings);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter);

    let plan = match export_plan(&|name| std::env::var(name).ok()) {
        Ok(plan) => plan,
        Err(problem) => {
            warnings.push(format!("{problem}; traces are not exported"));
            None
        }
    };
    #[cfg(feature = "otlp")]
    let exporter = plan.as_ref().and_then(|plan| {
        export::Exporter::start(service_name)
            .map_err(|err| {
                warnings.push(format!(
                    "cannot export traces to {}: {err}; traces are not exported",
                    plan.endpoint
                ));
            })
            .ok()
    });
    #[cfg(not(feature = "otlp"))]
    {
        let _ = service_name;
        if plan.is_some() {
            warnings.push(
                "an OTLP endpoint is set but this binary was built without the `otlp` feature; \
                 traces are not exported"
                    .to_owned(),
            );
        }
    }

    #[cfg(feature = "otlp")]
    let traces = exporter.as_ref().map(|exporter| {
        let filter = filter_from_env("JOBFLEET_TRACE_FILTER", DEFAULT_TRACE_FILTER, &mut warnings);
        tracing_opentelemetry::layer()
            .with_tracer(exporter.tracer())
            .with_filter(filter)
    });
    #[cfg(not(feature = "otlp"))]
    let traces: Option<tracing_subscriber::layer::Identity> = None;

    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if !installed {
        eprintln!(
            "jobfleet-telemetry: a global tracing subscriber is already installed; keeping it"
        );
        #[cfg(feature = "otlp")]
        if let Some(exporter) = exporter {
            exporter.shutdown();
        }
        return TelemetryGuard {
            #[cfg(feature = "otlp")]
            exporter: None,
        };
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    #[cfg(feature = "otlp")]
    if let (Some(plan), Some(exporter)) = (&plan, &exporter) {
        exporter.install_globals();
        tracing::info!(
            endpoint = %plan.endpoint,
            service_name = exporter.service_name(),
            "exporting traces over OTLP/HTTP"
        );
    }
    TelemetryGuard {
        #[cfg(feature = "otlp")]
        exporter,
    }
}

/// `variable`'s filter, or `default` when it is unset or (with a warning) invalid.
fn filter_from_env(variable: &str, default: &str, warnings: &mut Vec<String>) -> EnvFilter {
    match std::env::var(variable) {
        Ok(value) => EnvFilter::try_new(&value).unwrap_or_else(|err| {
            warnings.push(format!(
                "{variable}={value:?} is not a valid filter ({err}); using {default:?}"
            ));
            EnvFilter::new(default)
        }),
        Err(_) => EnvFilter::new(default),
    }
}

/// Where spans are to be exported, as the environment configures it.
#[derive(Debug, PartialEq)]
struct ExportPlan {
    /// The configured endpoint, for the log line.
    endpoint: String,
}

/// Reads the export configuration: `Ok(None)` when export is off (not configured, or turned
/// off), `Err` with what is wrong when it is asked for but cannot be honoured.
fn export_plan(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<ExportPlan>, String> {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match var("OTEL_TRACES_EXPORTER") {
        Some(exporter) if exporter.eq_ignore_ascii_case("none") => return Ok(None),
        Some(exporter) if !exporter.eq_ignore_ascii_case("otlp") => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={exporter:?} is not supported (only \"otlp\" or \"none\")"
            ));
        }
        _ => {}
    }
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|name| var(name).map(|value| (name, value)));
    let Some((name, endpoint)) = endpoint else {
        return Ok(None);
    };
    let lower = endpoint.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "{name}={endpoint:?} is not an http:// or https:// URL"
        ));
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = var(name) {
            if protocol != "http/protobuf" {
                return Err(format!(
                    "{name}={protocol:?} is not supported (only \"http/protobuf\")"
                ));
            }
            break;
        }
    }
    Ok(Some(ExportPlan { endpoint }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(vars: &[(&str, &str)]) -> Result<Option<ExportPlan>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        export_plan(&move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn endpoint(url: &str) -> Result<Option<ExportPlan>, String> {
        Ok(Some(ExportPlan {
            endpoint: url.to_owned(),
        }))
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(plan(&[]), Ok(None));
        assert_eq!(plan(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        assert_eq!(
            plan(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
            endpoint("http://collector:4318")
        );
    }

    #[test]
    fn the_traces_endpoint_wins_over_the_general_one() {
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://b/v1/traces"),
            ]),
            endpoint("https://b/v1/traces")
        );
    }

    #[test]
    fn export_can_be_turned_off() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318");
        assert_eq!(plan(&[on, ("OTEL_SDK_DISABLED", "TRUE")]), Ok(None));
        assert_eq!(plan(&[on, ("OTEL_TRACES_EXPORTER", "none")]), Ok(None));
        assert_eq!(
            plan(&[on, ("OTEL_SDK_DISABLED", "false")]),
            endpoint("http://a:4318")
        );
        assert_eq!(
            plan(&[on, ("OTEL_TRACES_EXPORTER", "otlp")]),
            endpoint("http://a:4318")
        );
    }

    #[test]
    fn unusable_configurations_are_reported_not_guessed() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318");
        for bad in [
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "a:4318")],
            vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://a:4317")],
            vec![on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            vec![on, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")],
            vec![on, ("OTEL_TRACES_EXPORTER", "zipkin")],
        ] {
            assert!(plan(&bad).is_err(), "{bad:?}");
        }
        // The signal-specific protocol decides when both are set.
        assert_eq!(
            plan(&[
                on,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ]),
            endpoint("http://a:4318")
        );
    }
}
