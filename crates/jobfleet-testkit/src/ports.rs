//! Free loopback ports.

use std::net::TcpListener;

/// `n` distinct ports that were free a moment ago. The server may still lose a race for one;
/// callers retry start-up with fresh ports when that happens.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    // Hold all listeners until every port is chosen, so the OS hands out distinct ones.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("listener address").port())
        .collect()
}
