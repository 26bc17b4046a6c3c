//! Permission refusals the server reported on a connection.
//!
//! nats-server drops a publish or subscription the user may not make and tells the
//! connection with `-ERR 'Permissions Violation for Publish to "<subject>"'`; the request
//! itself gets no answer. Without this record a refused enqueue would wait out the enqueue
//! deadline and be reported as an outage.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_nats::ServerError;

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
    /// `<inbox prefix>.`: the start of this connection's reply subjects.
    inbox: String,
    /// Set by the first refusal, so that a connection without any (the normal case) answers
    /// every question without taking the lock.
    any: AtomicBool,
    recent: Mutex<VecDeque<Refusal>>,
}

impl Refusals {
    /// A record for a connection whose reply subjects start with `inbox_prefix`.
    pub(crate) fn new(inbox_prefix: &str) -> Self {
        Self {
            inbox: format!("{inbox_prefix}."),
            any: AtomicBool::new(false),
            recent: Mutex::new(VecDeque::with_capacity(KEPT)),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<Refusal>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `error` if it is a permissions violation; returns whether it was.
    pub(crate) fn record(&self, error: &ServerError) -> bool {
        let ServerError::Other(text) = error else {
            return false;
        };
        let Some((operation, subject)) = parse(text) else {
            return false;
        };
        let mut recent = self.recent();
        self.any.store(true, Ordering::Release);
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

    /// Forgets the subscription refusals: after a reconnect the client subscribes anew, and
    /// the server reports again whatever it still refuses.
    pub(crate) fn reconnected(&self) {
        if self.any.load(Ordering::Acquire) {
            self.recent()
                .retain(|refusal| refusal.operation == Operation::Publish);
        }
    }

    /// Why a publish to `subject` sent at `since` went unanswered, if the server refused it.
    pub(crate) fn publish_refused(&self, since: Instant, subject: &str) -> Option<String> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.recent()
            .iter()
            .any(|r| r.operation == Operation::Publish && r.at >= since && r.subject == subject)
            .then(|| {
                format!("NATS refused this connection's user permission to publish to {subject:?}")
            })
    }

    /// Why a request to `subject` sent at `since` went unanswered, if the server refused it:
    /// the publish itself, or the subscription to this connection's reply inbox (without
    /// which no request is answered).
    pub(crate) fn request_refused(&self, since: Instant, subject: &str) -> Option<String> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let inbox = self.recent().iter().rev().find_map(|r| {
            (r.operation == Operation::Subscription && r.subject.starts_with(&self.inbox))
                .then(|| r.subject.clone())
        });
        match inbox {
            Some(inbox) => Some(format!(
                "NATS refused this connection's user permission to subscribe to its reply \
                 inbox {inbox:?}, so no request is answered (set the inbox prefix the user may \
                 subscribe to: ConnectOptions::inbox_prefix / NATS_INBOX_PREFIX)"
            )),
            None => self.publish_refused(since, subject),
        }
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
        assert_eq!(
            refusals.request_refused(before, "jobfleet.q.sms.ready"),
            None
        );
        assert!(!refusals.record(&ServerError::AuthorizationViolation));
        assert!(!refusals.record(&refusal("Maximum Payload Violation")));
        assert!(refusals.record(&refusal(
            r#"Permissions Violation for Publish to "jobfleet.q.sms.ready""#
        )));
        assert!(
            refusals
                .publish_refused(before, "jobfleet.q.sms.ready")
                .is_some()
        );
        assert!(
            refusals
                .request_refused(before, "jobfleet.q.sms.ready")
                .is_some()
        );
        assert_eq!(
            refusals.publish_refused(before, "jobfleet.q.emails.ready"),
            None
        );
        let later = Instant::now() + std::time::Duration::from_secs(1);
        assert_eq!(
            refusals.publish_refused(later, "jobfleet.q.sms.ready"),
            None
        );

        // Subscriptions other than the reply inbox do not explain a request; nor does
        // another user's inbox that merely shares the prefix's first characters.
        for other in ["elsewhere.>", "_INBOX_other.abc.*"] {
            assert!(refusals.record(&refusal(&format!(
                r#"Permissions Violation for Subscription to "{other}""#
            ))));
            assert_eq!(refusals.request_refused(later, "x"), None, "{other}");
        }
        assert!(refusals.record(&refusal(
            r#"Permissions Violation for Subscription to "_INBOX.xyz.*""#
        )));
        let why = refusals.request_refused(later, "anything").unwrap();
        assert!(why.contains("_INBOX.xyz.*"), "{why}");
        // A publish is not answered "refused" for the inbox: it may have been stored.
        assert_eq!(refusals.publish_refused(later, "anything"), None);
        // A reconnect subscribes again; until the server refuses anew, nothing is explained.
        refusals.reconnected();
        assert_eq!(refusals.request_refused(later, "anything"), None);
        assert!(
            refusals
                .publish_refused(before, "jobfleet.q.sms.ready")
                .is_some()
        );
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
        assert_eq!(refusals.publish_refused(start, "s.0"), None);
        assert!(
            refusals
                .publish_refused(start, &format!("s.{}", KEPT + 9))
                .is_some()
        );
    }
}
