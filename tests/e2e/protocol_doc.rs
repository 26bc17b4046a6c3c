//! The nats-py example in docs/protocol.md, run as written against a real server: a job
//! enqueued by the Rust producer is worked by plain nats-py, and a job enqueued by nats-py
//! (with an idempotency key) gets the id the Rust side derives.

use std::time::Duration;

use tokio::process::Command;

use jobfleet_core::{JobId, QueueConfig, QueueName};
use jobfleet_producer::{ConnectOptions, Job, Producer};
use jobfleet_testkit::NatsServer;
use jobfleet_tests::{code_block, python, repo_root};

#[tokio::test]
async fn python_example_in_protocol_doc_interoperates() {
    let doc =
        std::fs::read_to_string(repo_root().join("docs/protocol.md")).expect("docs/protocol.md");
    let script =
        code_block(&doc, "python", "jobfleet-protocol-example").expect("the example block");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.py");
    std::fs::write(&path, script).unwrap();

    let server = NatsServer::start();
    let producer = Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap();
    producer
        .declare_queue(&QueueConfig::new("emails"))
        .await
        .unwrap();
    let from_rust = producer
        .enqueue(
            "emails",
            Job::json(&serde_json::json!({"from": "rust"})).unwrap(),
        )
        .await
        .unwrap();

    let run = Command::new(python())
        .arg(&path)
        .env("NATS_URL", server.url())
        .env("QUEUE", "emails")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the example finishes within a minute")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let expected_id = JobId::from_idempotency_key(&QueueName::new("emails").unwrap(), "order-42");
    assert_eq!(
        lines[0]["enqueued"],
        expected_id.to_string(),
        "Python derives the same idempotent id"
    );
    assert_eq!(
        lines[0]["duplicates"],
        serde_json::json!([false, true]),
        "the repeat was dropped"
    );

    let worked: Vec<&serde_json::Value> = lines[1..].iter().map(|l| &l["worked"]).collect();
    assert_eq!(worked.len(), 2, "{stdout}");
    assert_eq!(worked[0]["id"], from_rust.id.to_string());
    assert_eq!(worked[0]["payload"], serde_json::json!({"from": "rust"}));
    assert_eq!(worked[0]["attempt"], 1);
    assert_eq!(worked[1]["id"], expected_id.to_string());

    let mut stream = producer
        .jetstream()
        .get_stream("JOBFLEET_Q_emails")
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "acked jobs are gone"
    );
}
