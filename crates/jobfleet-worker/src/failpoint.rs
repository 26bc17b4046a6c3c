//! Crash points for fault-injection tests (cargo feature `failpoints`).
//!
//! The runtime's claims about crashes between two writes (a dead-letter copy stored but the
//! job not yet terminated; a terminal audit event stored but the job not yet acknowledged)
//! can only be proven by crashing exactly there. With the feature on,
//! [`WorkerBuilder::failpoint`](crate::WorkerBuilder::failpoint) installs a hook the runtime
//! calls at those points; a test's hook typically exits the process. Without the feature the
//! hook type is empty and every call compiles to nothing.

#[cfg(feature = "failpoints")]
use std::sync::Arc;

use jobfleet_core::JobId;

/// A point in settling a job where a fault test may crash the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failpoint {
    /// The dead-letter copy is stored; the terminal event and the terminate are not sent.
    AfterDeadLetterStored,
    /// The terminal audit event is stored; the ack (or terminate) is not sent.
    AfterTerminalEventStored,
}

/// The hook a fault test installs: called with the point, the job and its attempt.
#[cfg(feature = "failpoints")]
pub type FailpointHook = Arc<dyn Fn(Failpoint, JobId, u32) + Send + Sync>;

/// The installed hook, if any.
#[derive(Clone, Default)]
pub(crate) struct Failpoints {
    #[cfg(feature = "failpoints")]
    pub(crate) hook: Option<FailpointHook>,
}

impl Failpoints {
    /// Calls the hook at `point` (a no-op without the `failpoints` feature).
    #[cfg_attr(not(feature = "failpoints"), allow(clippy::unused_self))]
    pub(crate) fn hit(&self, point: Failpoint, job: JobId, attempt: u32) {
        #[cfg(feature = "failpoints")]
        if let Some(hook) = &self.hook {
            hook(point, job, attempt);
        }
        #[cfg(not(feature = "failpoints"))]
        let _ = (point, job, attempt);
    }
}

impl std::fmt::Debug for Failpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failpoints").finish_non_exhaustive()
    }
}
