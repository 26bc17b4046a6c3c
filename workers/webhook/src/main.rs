//! `jobfleet-worker-webhook`: delivers the HTTP requests its jobs describe.

fn main() {}
