//! Permission refusals the server reported on a connection.
//!
//! nats-server drops a publish or subscription the user may not make and tells the
//! connection with `-ERR 'Permissions Violation for Publish to "<subject>"'`; the request
//! itself gets no answer. Without this record a refused enqueue would wait out the enqueue
//! deadline and be reported as an outage.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_nats::ServerError;
use std::time::Instant;

/// How many refusals are remembered (the newest win).
const KEPT: usize = 64;

/// What the user was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Publish,
    Subscription,
}

#[derive(Debug)]
struct Refusal {
    at: Instant,
    operation: Operation,
    subject: String,
}

/// The recent permission refusals of one connection.
#[derive(Debug)]
pub(crate) struct Refusals {
    inbox_prefix: String,
    recent: Mutex<VecDeque<Refusal>>,
}

impl Refusals {
    /// A record for a connection whose reply subjects start with `inbox_prefix`.
    pub(crate) fn new(inbox_prefix: impl Into<String>) -> Self {
        Self {
            inbox_prefix: inbox_prefix.into(),
            recent: Mutex::new(VecDeque::with_capacity(KEPT)),
        }
    }

    /// Records `error` if it is a permissions violation; returns whether it was.
    pub(crate) fn record(&self, error: &ServerError) -> bool {
        let ServerError::Other(text) = error else {
            return false;
        };
        let Some((operation, subject)) = parse(text) else {
            return false;
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(Refusal {
            at: Instant::now(),
            operation,
            subject: subject.to_owned(),
        });
        true
    }

    /// Why a request to `subject` sent at `since` went unanswered, if the server said it
    /// refused it: the publish itself since then, or, at any time, the subscription to this
    /// connection's reply inbox (without which no request is ever answered).
    pub(crate) fn explain(&self, since: Instant, subject: &str) -> Option<String> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .rev()
            .find_map(|refusal| match refusal.operation {
                Operation::Publish if refusal.at >= since && refusal.subject == subject => {
                    Some(format!(
                        "NATS refused this connection's user permission to publish to {subject:?}"
                    ))
                }
                Operation::Subscription if refusal.subject.starts_with(&self.inbox_prefix) => {
                    Some(format!(
                        "NATS refused this connection's user permission to subscribe to its reply \
                     inbox {:?}, so no request is answered (set the inbox prefix the user may \
                     subscribe to: ConnectOptions::inbox_prefix / NATS_INBOX_PREFIX)",
                        refusal.subject
                    ))
                }
                _ => None,
            })
    }
}

/// The operation and subject of `Permissions Violation for <Publish|Subscription> to
/// "<subject>"` (async-nats has already taken off the surrounding quotes of `-ERR`).
fn parse(text: &str) -> Option<(Operation, &str)> {
    let rest = text.trim().strip_prefix("Permissions Violation for ")?;
    let (operation, rest) = if let Some(rest) = rest.strip_prefix("Publish to ") {
        (Operation::Publish, rest)
    } else {
        (
            Operation::Subscription,
            rest.strip_prefix("Subscription to ")?,
        )
    };
    let subject = rest.strip_prefix('"')?;
    let end = subject.find('"')?;
    Some((operation, &subject[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> ServerError {
        ServerError::Other(text.to_owned())
    }

    #[test]
    fn reads_the_servers_permission_violations() {
        assert_eq!(
            parse(r#"Permissions Violation for Publish to "jobfleet.q.emails.ready""#),
            Some((Operation::Publish, "jobfleet.q.emails.ready"))
        );
        // A subscription refusal may name the queue group after the subject.
        assert_eq!(
            parse(r#"Permissions Violation for Subscription to "_INBOX.abc.*" using queue "q""#),
            Some((Operation::Subscription, "_INBOX.abc.*"))
        );
        assert_eq!(parse("Maximum Payload Violation"), None);
        assert_eq!(
            parse(r#"Permissions Violation for Publish to "unterminated"#),
            None
        );
    }

    #[test]
    fn explains_only_refusals_of_the_request_in_question() {
        let refusals = Refusals::new("_INBOX");
        let before = Instant::now();
        assert!(!refusals.record(&ServerError::AuthorizationViolation));
        assert!(!refusals.record(&refusal("Maximum Payload Violation")));
        assert!(refusals.record(&refusal(
            r#"Permissions Violation for Publish to "jobfleet.q.sms.ready""#
        )));
        assert!(refusals.explain(before, "jobfleet.q.sms.ready").is_some());
        assert_eq!(refusals.explain(before, "jobfleet.q.emails.ready"), None);
        let later = Instant::now() + std::time::Duration::from_secs(1);
        assert_eq!(refusals.explain(later, "jobfleet.q.sms.ready"), None);

        assert!(refusals.record(&refusal(
            r#"Permissions Violation for Subscription to "elsewhere.>""#
        )));
        assert_eq!(refusals.explain(later, "jobfleet.q.emails.ready"), None);
        assert!(refusals.record(&refusal(
            r#"Permissions Violation for Subscription to "_INBOX.xyz.*""#
        )));
        let why = refusals.explain(later, "anything").unwrap();
        assert!(why.contains("_INBOX.xyz.*"), "{why}");
    }

    #[test]
    fn keeps_a_bounded_number() {
        let refusals = Refusals::new("_INBOX");
        let start = Instant::now();
        for n in 0..(KEPT + 10) {
            refusals.record(&refusal(&format!(
                r#"Permissions Violation for Publish to "s.{n}""#
            )));
        }
        assert_eq!(refusals.recent.lock().unwrap().len(), KEPT);
        assert_eq!(refusals.explain(start, "s.0"), None);
        assert!(
            refusals
                .explain(start, &format!("s.{}", KEPT + 9))
                .is_some()
        );
    }
}
