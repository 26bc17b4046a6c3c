//! A queue's settings as stored in its stream's metadata by `declare_queue`.

use async_nats::jetstream::{self, context::GetStreamErrorKind};
use jobfleet_core::{AuditLevel, QueueName, WorkerDefaults, topology};

use crate::error::{WorkerError, WorkerErrorKind};

/// The settings every worker of a queue applies.
#[derive(Debug, Clone)]
pub(crate) struct QueueSettings {
    pub(crate) name: QueueName,
    pub(crate) worker: WorkerDefaults,
    pub(crate) audit: AuditLevel,
}

impl QueueSettings {
    pub(crate) async fn load(js: &jetstream::Context, queue: &str) -> Result<Self, WorkerError> {
        let name = QueueName::new(queue).map_err(|e| {
            WorkerError::with_source(
                WorkerErrorKind::InvalidConfig,
                format!("invalid queue name {queue:?}"),
                e,
            )
        })?;
        let mut stream =
            js.get_stream(name.stream_name())
                .await
                .map_err(|err| match err.kind() {
                    GetStreamErrorKind::JetStream(e) if e.code() == 404 => WorkerError::new(
                        WorkerErrorKind::UnknownQueue,
                        format!("queue {queue:?} does not exist (declare it first)"),
                    ),
                    _ => WorkerError::with_source(
                        WorkerErrorKind::Unavailable,
                        format!("cannot look up queue {queue:?}"),
                        err,
                    ),
                })?;
        let info = stream.info().await.map_err(|e| {
            WorkerError::with_source(
                WorkerErrorKind::Unavailable,
                "cannot read the queue's stream",
                e,
            )
        })?;
        let metadata = &info.config.metadata;
        if !metadata.contains_key(topology::METADATA_PROTOCOL) {
            return Err(WorkerError::new(
                WorkerErrorKind::UnknownQueue,
                format!("stream {} is not a jobfleet queue", name.stream_name()),
            ));
        }
        let worker = match metadata.get(topology::METADATA_WORKER) {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                WorkerError::with_source(
                    WorkerErrorKind::InvalidConfig,
                    format!("queue {queue:?} has worker settings this version cannot read (declared by a newer jobfleet?)"),
                    e,
                )
            })?,
            None => WorkerDefaults::default(),
        };
        let audit = metadata
            .get(topology::METADATA_AUDIT)
            .and_then(|l| AuditLevel::parse(l))
            .unwrap_or_default();
        Ok(Self {
            name,
            worker,
            audit,
        })
    }
}
