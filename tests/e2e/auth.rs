//! The shipped NATS authorization setup: each role may do its own work and nothing else.
//! (Being written; see issue 6.)
