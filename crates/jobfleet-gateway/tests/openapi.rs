//! The OpenAPI document matches the real routes: the same operations with the same scopes,
//! and every operation, called for real, answers with a status the document lists.

use std::collections::BTreeSet;

use jobfleet_core::QueueConfig;
use jobfleet_gateway::{GatewayConfig, GatewayState, OPENAPI_JSON, Scope, Tokens, routes};
use jobfleet_producer::{ConnectOptions, Producer};
use jobfleet_testkit::NatsServer;
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

#[test]
fn every_route_is_documented_with_its_scope_and_nothing_else_is() {
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let scope = operation["x-jobfleet-scope"].as_str().map(str::to_owned);
            documented.insert((method.to_uppercase(), path.clone(), scope));
        }
    }
    let real: BTreeSet<_> = routes()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_owned(),
                r.scope.map(|s| s.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(documented, real);
}

#[tokio::test]
async fn every_documented_operation_answers_with_a_documented_status() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = NatsServer::start();
    let producer = Producer::connect(ConnectOptions::new(server.url()))
        .await
        .unwrap();
    producer
        .declare_queue(&QueueConfig::new("docs"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = GatewayState::new(
        producer,
        GatewayConfig::default().tokens(Tokens::open().with_token("admin", "t", &[Scope::Admin])),
    );
    tokio::spawn(jobfleet_gateway::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let id = jobfleet_core::JobId::new().to_string();

    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let url = format!(
                "{base}{}",
                path.replace("{queue}", "docs").replace("{id}", &id)
            );
            let mut request = http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth("t");
            if path.ends_with("/purge") {
                request = request.query(&[("confirm", "docs")]);
            }
            if operation.get("requestBody").is_some() {
                request = request.json(&serde_json::json!({"all": true}));
            }
            if path.ends_with("/batch") {
                request = request.json(&serde_json::json!({"jobs": [{"payload": 1}]}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16().to_string();
            assert!(
                operation["responses"].get(&status).is_some(),
                "{} {path} answered {status}, which the document does not list",
                method.to_uppercase()
            );
        }
    }
}
