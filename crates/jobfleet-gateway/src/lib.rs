//! The jobfleet HTTP gateway.
