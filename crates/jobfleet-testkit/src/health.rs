//! Readiness probe: the server's `/healthz` monitoring endpoint over plain HTTP/1.0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Whether `GET /healthz` on the monitoring port answers 200 (JetStream ready, and in a
/// cluster, a meta leader known).
pub(crate) fn healthy(monitor_port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", monitor_port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}
