//! The checker every fault scenario ends with: from the jobs the producers were told were
//! stored, the execution log, the audit stream, the dead letters and the queue stream's
//! final state, it computes what was lost, unexpected or duplicated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use jobfleet_core::{AuditEvent, AuditEventKind, JobId, topology};

use crate::harness::{Execution, Ledger};

/// What the checker found. `lost`, `unexplained_unexpected`, `unexplained_duplicates`,
/// `terminal_anomalies`, `unreadable_audit` and `queue_left` must all be empty/zero in
/// every scenario; the rest are figures.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Jobs a producer was told were stored (PubAck / 202).
    pub(crate) accepted: usize,
    /// Accepted jobs with no terminal audit event.
    pub(crate) lost: Vec<JobId>,
    /// Jobs that ran or were audited but were never accepted...
    pub(crate) unexpected: usize,
    /// ...and of those, the ones no producer ever tried to store (a real anomaly; the others
    /// were publishes whose answer was lost, and JetStream stored them anyway).
    pub(crate) unexplained_unexpected: Vec<JobId>,
    /// Executions beyond one per attempt the handler itself asked to retry.
    pub(crate) duplicates: usize,
    /// Repeats of one attempt (same delivery count) with a NATS server crash between them:
    /// the crash lost the consumer's recent delivery state, so the server delivered the
    /// job again as if for the first time. Explained, and counted apart.
    pub(crate) repeated_across_server_crash: usize,
    /// Duplicates not explained by a redelivery: a job ran twice under the same delivery
    /// count with no server crash in between, i.e. two deliveries of one attempt. With the
    /// execution times (unix ms).
    pub(crate) unexplained_duplicates: Vec<(JobId, u32, Vec<u128>)>,
    /// Accepted jobs whose number of terminal events is not exactly one.
    pub(crate) terminal_anomalies: Vec<(JobId, usize)>,
    /// Accepted jobs that succeeded.
    pub(crate) succeeded: usize,
    /// Accepted jobs that were dead-lettered.
    pub(crate) dead_lettered: usize,
    /// Dead-letter entries per job.
    pub(crate) dead_letter_entries: HashMap<JobId, usize>,
    /// Audit messages of this queue that did not decode.
    pub(crate) unreadable_audit: usize,
    /// Messages left in the queue stream.
    pub(crate) queue_left: u64,
    /// Executions in the log.
    pub(crate) executions: usize,
    /// The audit events of this queue, per job, in stream order.
    pub(crate) events: HashMap<JobId, Vec<AuditEvent>>,
}

impl Verdict {
    /// Panics with the details unless nothing was lost, duplicated without a redelivery,
    /// or left behind.
    pub(crate) fn assert_sound(&self, scenario: &str) {
        let problems = self.problems();
        assert!(problems.is_empty(), "{scenario}: {}", problems.join("; "));
    }

    /// Everything that makes a run unsound, one line each.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.lost.is_empty() {
            problems.push(format!(
                "{} accepted jobs lost, e.g. {:?}",
                self.lost.len(),
                &self.lost[..self.lost.len().min(5)]
            ));
        }
        if !self.unexplained_unexpected.is_empty() {
            problems.push(format!(
                "{} jobs ran that no producer sent, e.g. {:?}",
                self.unexplained_unexpected.len(),
                &self.unexplained_unexpected[..self.unexplained_unexpected.len().min(5)]
            ));
        }
        if let Some((id, attempt, times)) = self.unexplained_duplicates.first() {
            problems.push(format!(
                "{} jobs repeated an attempt without a redelivery or a server crash between; \
                 e.g. job {id} attempt {attempt} ran at {times:?} (unix ms), its audit: {:?}",
                self.unexplained_duplicates.len(),
                self.events.get(id).map(|events| events
                    .iter()
                    .map(|e| format!("{}#{}@{}", e.event.as_str(), e.attempt, e.at))
                    .collect::<Vec<_>>())
            ));
        }
        if !self.terminal_anomalies.is_empty() {
            problems.push(format!(
                "{} jobs without exactly one terminal event, e.g. {:?}",
                self.terminal_anomalies.len(),
                &self.terminal_anomalies[..self.terminal_anomalies.len().min(5)]
            ));
        }
        if self.unreadable_audit > 0 {
            problems.push(format!("{} unreadable audit events", self.unreadable_audit));
        }
        if self.queue_left > 0 {
            problems.push(format!(
                "{} messages left in the queue stream",
                self.queue_left
            ));
        }
        problems
    }
}

/// Reads everything and computes the [`Verdict`] for `queue`.
pub(crate) async fn check(
    js: &jetstream::Context,
    queue: &str,
    ledger: &Ledger,
    executions: &[Execution],
) -> Verdict {
    let executions: Vec<&Execution> = executions.iter().filter(|e| e.queue == queue).collect();
    let accepted: HashSet<JobId> = ledger.accepted.iter().copied().collect();
    let attempted: HashSet<JobId> = ledger.attempted.iter().copied().collect();
    let (events, unreadable_audit) = audit_events(js, queue).await;
    let dead = jobfleet_worker::dead_letters(js, queue)
        .await
        .expect("read the dead letters");
    let mut dead_letter_entries = HashMap::new();
    for letter in &dead {
        *dead_letter_entries.entry(letter.id).or_insert(0) += 1;
    }
    let queue_left =
        jetstream_stream_messages(js, &format!("{}{queue}", topology::QUEUE_STREAM_PREFIX)).await;

    let mut verdict = Verdict {
        accepted: accepted.len(),
        unreadable_audit,
        queue_left,
        executions: executions.len(),
        dead_letter_entries,
        ..Verdict::default()
    };
    for id in &accepted {
        let terminal: Vec<&AuditEvent> = events
            .get(id)
            .map(|e| e.iter().filter(|e| e.event.is_terminal()).collect())
            .unwrap_or_default();
        match terminal.len() {
            0 => verdict.lost.push(*id),
            1 => {}
            n => verdict.terminal_anomalies.push((*id, n)),
        }
        if let Some(last) = terminal.last() {
            if last.event == AuditEventKind::Succeeded {
                verdict.succeeded += 1;
            } else {
                verdict.dead_lettered += 1;
            }
        }
    }
    let mut seen: HashSet<JobId> = events.keys().copied().collect();
    seen.extend(executions.iter().map(|e| e.id));
    for id in seen.difference(&accepted) {
        verdict.unexpected += 1;
        if !attempted.contains(id) {
            verdict.unexplained_unexpected.push(*id);
        }
    }

    // Duplicates: every execution beyond (1 + the retries its handler asked for). One is
    // explained when its delivery count is new for the job (the server redelivered it);
    // two executions under the same count mean one attempt was delivered twice.
    let mut by_job: BTreeMap<JobId, Vec<(u32, u128)>> = BTreeMap::new();
    for execution in &executions {
        by_job
            .entry(execution.id)
            .or_default()
            .push((execution.attempt, execution.at_ms));
    }
    for (id, attempts) in &by_job {
        let asked = events.get(id).map_or(0, |e| {
            e.iter()
                .filter(|e| e.event == AuditEventKind::Retried)
                .count()
        });
        verdict.duplicates += attempts.len().saturating_sub(1 + asked);
        let mut times: BTreeMap<u32, Vec<u128>> = BTreeMap::new();
        for (attempt, at) in attempts {
            times.entry(*attempt).or_default().push(*at);
        }
        for (attempt, mut at) in times {
            at.sort_unstable();
            for pair in at.windows(2) {
                let crashed_between = ledger
                    .server_crashes
                    .iter()
                    .any(|t| pair[0] <= *t && *t <= pair[1]);
                if crashed_between {
                    verdict.repeated_across_server_crash += 1;
                } else {
                    verdict
                        .unexplained_duplicates
                        .push((*id, attempt, at.clone()));
                    break;
                }
            }
        }
    }
    verdict.events = events;
    verdict
}

/// Messages currently in a stream.
pub(crate) async fn jetstream_stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("read the stream");
    stream.info().await.expect("stream info").state.messages
}

/// Every audit event of `queue`, per job, in stream order, and how many did not decode.
async fn audit_events(
    js: &jetstream::Context,
    queue: &str,
) -> (HashMap<JobId, Vec<AuditEvent>>, usize) {
    let mut stream = js
        .get_stream(topology::AUDIT_STREAM)
        .await
        .expect("the audit stream");
    let last = stream
        .info()
        .await
        .expect("audit stream info")
        .state
        .last_sequence;
    let mut events: HashMap<JobId, Vec<AuditEvent>> = HashMap::new();
    let mut unreadable = 0;
    if last == 0 {
        return (events, unreadable);
    }
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("an audit reader");
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .expect("read the audit stream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let next = tokio::time::timeout_at(deadline, messages.next())
            .await
            .expect("the audit stream read in time")
            .expect("the audit stream ended early")
            .expect("an audit message");
        let sequence = next.info().expect("message info").stream_sequence;
        match AuditEvent::decode(&next.payload) {
            Ok(Some(event)) if event.queue == queue => {
                events.entry(event.job_id).or_default().push(event);
            }
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
        if sequence >= last {
            break;
        }
    }
    (events, unreadable)
}
