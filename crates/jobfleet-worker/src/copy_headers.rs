//! Copying a job's headers onto a message jobfleet publishes on its behalf.

use async_nats::HeaderMap;

/// The headers of `original` worth carrying to a new message for the same job: never the
/// `Nats-*` control headers (message id, schedule, rollup), which belong to one publish, and
/// the `Jobfleet-*` ones only if `keep_jobfleet` (the caller re-derives them otherwise).
pub(crate) fn carried_headers(original: Option<&HeaderMap>, keep_jobfleet: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(HeaderMap::iter) {
        let name: &str = name.as_ref();
        if has_prefix(name, "nats-") || (!keep_jobfleet && has_prefix(name, "jobfleet-")) {
            continue;
        }
        for value in values {
            out.append(name, value.as_str());
        }
    }
    out
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}
