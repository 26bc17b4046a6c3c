//! `jobfleet gateway` exports an `enqueue` span that continues the caller's trace, and the
//! stored job carries the gateway span as its parent, so the worker's span nests under it.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use jobfleet_testkit::{NatsServer, eventually, eventually_async, send_signal};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    async fn receive(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> &'static str {
        if let Ok(request) = ExportTraceServiceRequest::decode(body) {
            let mut spans = spans.lock().unwrap();
            for rs in request.resource_spans {
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
        ""
    }
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans)
}

fn post_job(port: u16) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = "{\"n\": 1}";
    write!(
        stream,
        "POST /v1/queues/traced/jobs HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n\
         traceparent: 00-{TRACE_ID}-{CALLER_SPAN}-01\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_continues_the_callers_trace_into_the_job() {
    let server = NatsServer::start();
    let (collector_addr, spans) = collector().await;
    let mut queues = tempfile::NamedTempFile::new().unwrap();
    queues.write_all(b"[[queue]]\nname = \"traced\"\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_jobfleet"))
        .args([
            "gateway",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--queues-file",
        ])
        .arg(queues.path())
        .env("NATS_URL", server.url())
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_SERVICE_NAME", "gateway-under-test")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = eventually("the gateway to accept a job", WAIT, || post_job(port));
    assert_eq!(status, 202);
    send_signal(gateway.id(), "TERM");
    let exit = eventually("the gateway to exit", WAIT, || gateway.try_wait().unwrap());
    assert!(exit.success());

    // The exported span continues the caller's trace ...
    let enqueue = eventually_async("the enqueue span", WAIT, || async {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "enqueue")
            .cloned()
    })
    .await;
    assert_eq!(hex(&enqueue.trace_id), TRACE_ID);
    assert_eq!(hex(&enqueue.parent_span_id), CALLER_SPAN);

    // ... and the stored job names that span as its parent.
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let stream = js.get_stream("JOBFLEET_Q_traced").await.unwrap();
    let stored = stream.direct_get(1).await.unwrap();
    let traceparent = stored
        .headers
        .get("traceparent")
        .unwrap()
        .as_str()
        .to_owned();
    assert_eq!(
        traceparent,
        format!("00-{TRACE_ID}-{}-01", hex(&enqueue.span_id)),
        "the job's parent is the gateway's span"
    );
}
