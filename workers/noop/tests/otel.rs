//! Trace export from the real worker binary to a stand-in OTLP/HTTP collector (an HTTP server
//! on 127.0.0.1 that decodes the protobuf bodies): a job's span is a child of the producer's
//! `traceparent`, buffered spans are flushed at a graceful exit, and a bad configuration
//! leaves the worker working.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use jobfleet_core::{AuditEventKind, JobId, QueueConfig};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::{NatsServer, eventually_async, send_signal};
use jobfleet_worker::job_status;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const WAIT: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// What the stand-in collector received.
#[derive(Clone, Default)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    undecodable: Arc<Mutex<usize>>,
}

impl Collector {
    /// Serves `POST /v1/traces` on a free port of 127.0.0.1.
    async fn start() -> (SocketAddr, Self) {
        let collector = Self::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, collector)
    }

    /// Spans received so far, each with its resource's `service.name`.
    fn spans(&self) -> Vec<(Option<String>, Span)> {
        assert_eq!(*self.undecodable.lock().unwrap(), 0, "undecodable export");
        let requests = self.requests.lock().unwrap();
        let mut out = Vec::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.name"));
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                out.push((service.clone(), span.clone()));
            }
        }
        out
    }

    /// The `job` span of `job`, with its service name, if received.
    fn job_span(&self, job: JobId) -> Option<(Option<String>, Span)> {
        let id = job.to_string();
        self.spans().into_iter().find(|(_, span)| {
            span.name == "job" && string_attribute(&span.attributes, "job_id") == Some(id.clone())
        })
    }
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> impl IntoResponse {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            collector.requests.lock().unwrap().push(request);
            // An empty ExportTraceServiceResponse: full success.
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
            )
        }
        Err(_) => {
            *collector.undecodable.lock().unwrap() += 1;
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
            )
        }
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) => Some(s.clone()),
            _ => None,
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn setup(server: &NatsServer, queue: &str) -> Producer {
    let producer = Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap();
    producer
        .declare_queue(&QueueConfig::new(queue))
        .await
        .unwrap();
    producer
}

/// A worker process, killed if a failed assertion leaves it running (it would otherwise
/// outlive the test and hold its output pipe open).
struct Worker(Option<Child>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the worker binary with the given OpenTelemetry environment (nothing inherited).
fn worker(server: &NatsServer, queue: &str, otel_env: &[(&str, &str)]) -> Worker {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobfleet-worker-noop"));
    command
        .args(["--queue", queue, "--nats-url", &server.url()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") || name == "JOBFLEET_TRACE_FILTER" {
            command.env_remove(name);
        }
    }
    command.envs(otel_env.iter().copied());
    Worker(Some(command.spawn().expect("start the worker binary")))
}

/// SIGTERM, then waits for the exit.
async fn stop(mut worker: Worker) -> ExitStatus {
    send_signal(worker.0.as_ref().expect("running").id(), "TERM");
    let status = eventually_async("the worker to exit", WAIT, || {
        let exited = worker.0.as_mut().and_then(|c| c.try_wait().ok().flatten());
        async move { exited }
    })
    .await;
    worker.0 = None; // exited: nothing to kill
    status
}

async fn succeeded(producer: &Producer, job: JobId) {
    eventually_async("the job to succeed", WAIT, || async {
        job_status(producer.jetstream(), job)
            .await
            .unwrap()
            .filter(|s| s.last.event == AuditEventKind::Succeeded)
    })
    .await;
}

fn traced_job() -> Job {
    Job::bytes("{}").traceparent(format!("00-{TRACE_ID}-{PARENT_ID}-01"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_span_is_exported_as_a_child_of_the_producers_span() {
    let server = NatsServer::start();
    let producer = setup(&server, "traced").await;
    let (addr, collector) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    let child = worker(
        &server,
        "traced",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let untraced = producer.enqueue("traced", Job::bytes("{}")).await.unwrap();
    let job = producer.enqueue("traced", traced_job()).await.unwrap();

    // Exported while the worker runs, by the batch processor's schedule.
    let (service, span) = eventually_async("the job's span to be exported", WAIT, || async {
        collector.job_span(job.id)
    })
    .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID, "the producer's trace");
    assert_eq!(hex(&span.parent_span_id), PARENT_ID, "the producer's span");
    assert_ne!(hex(&span.span_id), PARENT_ID, "a span of its own");
    assert_eq!(
        string_attribute(&span.attributes, "queue").as_deref(),
        Some("traced")
    );
    assert_eq!(service.as_deref(), Some("jobfleet-worker-noop"));

    // A job without a traceparent is a root span in a trace of its own.
    let (_, root) = eventually_async("the untraced job's span", WAIT, || async {
        collector.job_span(untraced.id)
    })
    .await;
    assert!(root.parent_span_id.is_empty(), "no parent");
    assert_ne!(hex(&root.trace_id), TRACE_ID);
    assert!(stop(child).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_buffered_are_flushed_when_the_worker_exits() {
    let server = NatsServer::start();
    let producer = setup(&server, "flushed").await;
    let (addr, collector) = Collector::start().await;
    let endpoint = format!("http://{addr}/v1/traces");
    // No scheduled export within the test: the span can only leave at exit.
    let child = worker(
        &server,
        "flushed",
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_SERVICE_NAME", "noop-under-test"),
        ],
    );
    let job = producer.enqueue("flushed", traced_job()).await.unwrap();
    succeeded(&producer, job.id).await;
    assert!(
        collector.job_span(job.id).is_none(),
        "not exported before exit"
    );

    assert!(stop(child).await.success());
    // The guard waits for the export before the process exits: no waiting needed here.
    let (service, span) = collector
        .job_span(job.id)
        .expect("the job's span exported at exit");
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(service.as_deref(), Some("noop-under-test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_trace_configuration_leaves_the_worker_working() {
    let server = NatsServer::start();
    let producer = setup(&server, "misconfigured").await;
    let unreachable = "http://127.0.0.1:9"; // the discard port: nothing listens
    for env in [
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")][..],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", unreachable),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ][..],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", unreachable),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("JOBFLEET_TRACE_FILTER", "not a [filter"),
        ][..],
    ] {
        let child = worker(&server, "misconfigured", env);
        let job = producer
            .enqueue("misconfigured", traced_job())
            .await
            .unwrap();
        succeeded(&producer, job.id).await;
        assert!(stop(child).await.success(), "{env:?}");
    }
}
