//! The kit's own tests: real servers start, restart, die and form a cluster.

use std::time::Duration;

use jobfleet_testkit::{NatsCluster, NatsServer, eventually};

fn client_port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn single_server_starts_restarts_and_dies() {
    let mut server = NatsServer::start();
    let port = server.port();
    assert!(server.url().ends_with(&format!(":{port}")));
    assert!(client_port_open(port));

    server.kill();
    assert!(!server.is_running());
    eventually("the port to close", Duration::from_secs(5), || {
        (!client_port_open(port)).then_some(())
    });

    server.restart();
    assert_eq!(server.port(), port, "restart keeps the port");
    assert!(server.is_running());
    assert!(client_port_open(port));
}

#[test]
fn two_servers_get_distinct_ports_and_stores() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
}

#[test]
fn cluster_of_three_survives_a_node_restart() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.urls().split(',').count(), 3);
    cluster.node(1).kill();
    cluster.restart_node(1);
    assert!(cluster.node(1).is_running());
}
