//! `jobfleet`: the command-line interface.

fn main() {}
