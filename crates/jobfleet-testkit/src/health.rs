//! Readiness probe: the server's `/healthz` monitoring endpoint over plain HTTP/1.0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Whether `GET /healthz` on the monitoring port answers 200 (JetStream ready, and in a
/// cluster, a meta leader known), and `/varz` shows that the server answering is the one
/// listening on `client_port` (not another test's server that won a port race).
pub(crate) fn healthy(monitor_port: u16, client_port: u16) -> bool {
    let ok = get(monitor_port, "/healthz")
        .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"));
    ok && get(monitor_port, "/varz").is_some_and(|r| {
        r.contains(&format!("\"port\": {client_port},"))
            || r.contains(&format!("\"port\":{client_port},"))
    })
}

pub(crate) fn get(monitor_port: u16, path: &str) -> Option<String> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", monitor_port)) else {
        return None;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    Some(response)
}

/// Whether the node on `monitor_port` leads a JetStream meta group in which all `size - 1`
/// other nodes are current: only then can streams with `size` replicas be placed.
pub(crate) fn meta_leader_with_current_peers(monitor_port: u16, size: usize) -> bool {
    let Some(response) = get(monitor_port, "/jsz") else {
        return false;
    };
    let Some(body) = response.split("\r\n\r\n").nth(1) else {
        return false;
    };
    let Ok(jsz) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let meta = &jsz["meta_cluster"];
    let replicas = meta["replicas"].as_array().map_or(&[][..], Vec::as_slice);
    meta["leader"].as_str().is_some_and(|l| !l.is_empty())
        && replicas.len() + 1 == size
        && replicas
            .iter()
            .all(|r| r["current"].as_bool() == Some(true))
}
