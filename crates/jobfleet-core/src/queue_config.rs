//! Declarative queue configuration, loaded from code or a TOML file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::AuditLevel;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::retry::RetrySchedule;
use crate::topology::QueueName;

/// Where JetStream keeps a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StorageKind {
    /// On disk (the default): survives server restarts.
    #[default]
    File,
    /// In memory: faster, lost when an R1 server restarts.
    Memory,
}

/// A queue's declaration: stream limits plus the defaults its workers apply.
///
/// Every field but `name` has a default, so the smallest TOML declaration is
/// `[[queue]]` / `name = "emails"`. Unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Queue name: 1-64 ASCII letters, digits, `-`, `_`. Required.
    pub name: String,
    /// Free text shown by tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Jobs older than this are deleted even if never run. Default: none (never; a job queue
    /// should not drop work silently).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
    /// Most jobs stored at once; further enqueues fail with "stream full". Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Most bytes stored at once; further enqueues fail with "stream full". Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Largest job (payload plus headers) in bytes. Default: the server's `max_payload` (1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<u32>,
    /// How long a job id (and so an idempotency key) is remembered to drop repeats.
    /// Default `2m`, at least `30s`. Longer windows cost server memory per job.
    #[serde(default = "default_duplicate_window", with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Copies kept by a JetStream cluster: 1, 3 or 5 (any of 1..=5 is accepted). Default 1.
    #[serde(default = "default_replicas")]
    pub replicas: u8,
    /// `file` (default) or `memory`.
    #[serde(default)]
    pub storage: StorageKind,
    /// Defaults for the workers of this queue.
    #[serde(default)]
    pub worker: WorkerDefaults,
    /// Audit settings.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Dead-letter stream settings.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
}

/// What workers of a queue do unless a job says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WorkerDefaults {
    /// Lease of one delivery: a job not acked or extended for this long is redelivered
    /// (a dead worker's jobs come back after it). Default `30s`, at least `100ms`.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Attempts before a job is dead-lettered, `1..=1000`. Default 10.
    pub max_attempts: u32,
    /// Per-attempt handler timeout. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Jobs in flight across the whole fleet (JetStream `max_ack_pending`). Default 1000.
    pub max_in_flight: u32,
    /// Retry delays up to this are a delayed NAK (the job keeps an in-flight slot); longer
    /// ones re-publish the job as a one-shot schedule. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub nak_delay_limit: Duration,
    /// The retry schedule.
    pub backoff: RetrySchedule,
}

impl Default for WorkerDefaults {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_attempts: 10,
            timeout: Duration::from_secs(300),
            max_in_flight: 1000,
            nak_delay_limit: Duration::from_secs(30),
            backoff: RetrySchedule::default(),
        }
    }
}

/// Audit settings of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuditConfig {
    /// `full` (default), `terminal` or `off`.
    pub level: AuditLevel,
}

/// Dead-letter stream settings of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DeadLetterConfig {
    /// Dead jobs older than this are deleted. Default `14d`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Most dead jobs kept; the oldest go first. Default: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(14 * 24 * 3600),
            max_messages: None,
        }
    }
}

/// Shortest duplicate window accepted: a producer's default enqueue deadline.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(30);

fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}

fn default_replicas() -> u8 {
    1
}

impl QueueConfig {
    /// A declaration with every default.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            max_age: None,
            max_messages: None,
            max_bytes: None,
            max_payload: None,
            duplicate_window: default_duplicate_window(),
            replicas: default_replicas(),
            storage: StorageKind::default(),
            worker: WorkerDefaults::default(),
            audit: AuditConfig::default(),
            dead_letter: DeadLetterConfig::default(),
        }
    }

    /// The validated queue name.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::InvalidName`] for a name that is not a valid [`QueueName`].
    pub fn queue_name(&self) -> Result<QueueName, ConfigError> {
        QueueName::new(self.name.clone())
    }

    /// Checks every field, naming the first bad one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose `field` is the dotted path of the bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.queue_name()?;
        let bad = |field: &str, msg: String| {
            Err(ConfigError::new(ConfigErrorKind::InvalidValue, field, msg))
        };
        if self.max_age.is_some_and(|age| age < Duration::from_secs(1)) {
            return bad("max_age", "must be at least 1s when set".into());
        }
        if self.max_messages == Some(0) {
            return bad(
                "max_messages",
                "must be at least 1 when set (omit it for unlimited)".into(),
            );
        }
        if self.max_bytes == Some(0) {
            return bad(
                "max_bytes",
                "must be at least 1 when set (omit it for unlimited)".into(),
            );
        }
        if self.max_payload == Some(0) {
            return bad("max_payload", "must be at least 1 when set".into());
        }
        if self.max_payload.is_some_and(|p| p > i32::MAX as u32) {
            return bad("max_payload", format!("must be at most {}", i32::MAX));
        }
        if self.duplicate_window < MIN_DUPLICATE_WINDOW {
            // A producer re-sends an unacknowledged publish for up to its enqueue deadline
            // (30 s by default); a shorter window would let a re-send store the job twice.
            return bad(
                "duplicate_window",
                "must be at least 30s (the default enqueue deadline)".into(),
            );
        }
        if let Some(age) = self.max_age.filter(|age| self.duplicate_window > *age) {
            return bad(
                "duplicate_window",
                format!(
                    "must not exceed max_age ({})",
                    humantime::format_duration(age)
                ),
            );
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(
                "replicas",
                format!("must be between 1 and 5, got {}", self.replicas),
            );
        }
        self.worker.validate().map_err(|e| e.within("worker"))?;
        self.dead_letter
            .validate()
            .map_err(|e| e.within("dead_letter"))
    }
}

impl WorkerDefaults {
    /// Checks every field, naming the first bad one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, msg: &str| {
            Err(ConfigError::new(ConfigErrorKind::InvalidValue, field, msg))
        };
        if self.ack_wait < Duration::from_millis(100) {
            return bad("ack_wait", "must be at least 100ms");
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return bad("max_attempts", "must be between 1 and 1000");
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be greater than zero");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        self.backoff.validate().map_err(|e| e.within("backoff"))
    }
}

impl DeadLetterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, msg: &str| {
            Err(ConfigError::new(ConfigErrorKind::InvalidValue, field, msg))
        };
        if self.max_age < Duration::from_secs(1) {
            return bad("max_age", "must be at least 1s");
        }
        if self.max_messages == Some(0) {
            return bad(
                "max_messages",
                "must be at least 1 when set (omit it for unlimited)",
            );
        }
        Ok(())
    }
}

/// A TOML file of queue declarations: one `[[queue]]` table per queue.
///
/// ```
/// let file = jobfleet_core::QueueFile::from_toml(r#"
///     [[queue]]
///     name = "emails"
///     max_age = "7d"
///     [queue.worker]
///     max_attempts = 5
///     backoff = { initial = "2s", max = "10m" }
/// "#)?;
/// assert_eq!(file.queue[0].worker.max_attempts, 5);
/// # Ok::<(), jobfleet_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueFile {
    /// The declared queues.
    #[serde(default)]
    pub queue: Vec<QueueConfig>,
}

impl QueueFile {
    /// Parses and validates a TOML document.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::Parse`] or [`ConfigErrorKind::UnknownField`] with the line and the
    /// expected keys for a document that does not parse; the validation error of the first
    /// bad queue, with its field prefixed `queue[<index>]`; [`ConfigErrorKind::InvalidValue`]
    /// for a name declared twice.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let file: Self = toml::from_str(text).map_err(|err| {
            let kind = if err.message().starts_with("unknown field") {
                ConfigErrorKind::UnknownField
            } else {
                ConfigErrorKind::Parse
            };
            ConfigError::new(kind, "", err.to_string().trim_end().to_owned())
        })?;
        let mut seen = std::collections::HashSet::new();
        for (index, queue) in file.queue.iter().enumerate() {
            let path = format!("queue[{index}]");
            queue.validate().map_err(|e| e.within(&path))?;
            if !seen.insert(queue.name.as_str()) {
                return Err(ConfigError::new(
                    ConfigErrorKind::InvalidValue,
                    format!("{path}.name"),
                    format!("queue {:?} is declared twice", queue.name),
                ));
            }
        }
        Ok(file)
    }

    /// Reads, parses and validates a TOML file.
    ///
    /// # Errors
    ///
    /// As [`QueueFile::from_toml`], plus [`ConfigErrorKind::Parse`] when the file cannot be read.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::new(
                ConfigErrorKind::Parse,
                "",
                format!("cannot read {}: {err}", path.display()),
            )
        })?;
        Self::from_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_declaration_takes_documented_defaults() {
        let file = QueueFile::from_toml("[[queue]]\nname = \"emails\"\n").unwrap();
        let q = &file.queue[0];
        assert_eq!(q, &QueueConfig::new("emails"));
        assert_eq!(q.worker.ack_wait, Duration::from_secs(30));
        assert_eq!(q.worker.max_attempts, 10);
        assert_eq!(q.duplicate_window, Duration::from_secs(120));
        assert_eq!(q.audit.level, AuditLevel::Full);
        assert_eq!(q.max_age, None);
    }

    #[test]
    fn full_declaration_parses() {
        let file = QueueFile::from_toml(
            r#"
            [[queue]]
            name = "reports"
            description = "nightly"
            max_age = "7d"
            max_messages = 100000
            max_bytes = 1073741824
            max_payload = 65536
            duplicate_window = "1h"
            replicas = 3
            storage = "memory"
            worker = { ack_wait = "10s", max_attempts = 3, timeout = "1m", max_in_flight = 64 }
            audit = { level = "terminal" }
            dead_letter = { max_age = "30d", max_messages = 5000 }
            "#,
        )
        .unwrap();
        let q = &file.queue[0];
        assert_eq!(q.replicas, 3);
        assert_eq!(q.storage, StorageKind::Memory);
        assert_eq!(q.worker.max_in_flight, 64);
        assert_eq!(q.audit.level, AuditLevel::Terminal);
        assert_eq!(q.dead_letter.max_messages, Some(5000));
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_expected_ones() {
        let err = QueueFile::from_toml("[[queue]]\nname = \"a\"\nmax_agee = \"1d\"\n").unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::UnknownField);
        assert!(err.to_string().contains("max_age"), "{err}");
        let err = QueueFile::from_toml("[[queue]]\nname = \"a\"\n[queue.worker]\nretries = 3\n")
            .unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::UnknownField);
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            (
                "name = \"a.b\"",
                ConfigErrorKind::InvalidName,
                "queue[0].name",
            ),
            (
                "name = \"a\"\nreplicas = 7",
                ConfigErrorKind::InvalidValue,
                "queue[0].replicas",
            ),
            (
                "name = \"a\"\nmax_messages = 0",
                ConfigErrorKind::InvalidValue,
                "queue[0].max_messages",
            ),
            (
                "name = \"a\"\nmax_age = \"1m\"\nduplicate_window = \"1h\"",
                ConfigErrorKind::InvalidValue,
                "queue[0].duplicate_window",
            ),
            (
                "name = \"a\"\nworker = { max_attempts = 0 }",
                ConfigErrorKind::InvalidValue,
                "queue[0].worker.max_attempts",
            ),
            (
                "name = \"a\"\nworker = { ack_wait = \"1ms\" }",
                ConfigErrorKind::InvalidValue,
                "queue[0].worker.ack_wait",
            ),
            (
                "name = \"a\"\nworker = { backoff = { factor = 0.1 } }",
                ConfigErrorKind::InvalidValue,
                "queue[0].worker.backoff.factor",
            ),
            (
                "name = \"a\"\ndead_letter = { max_age = \"0s\" }",
                ConfigErrorKind::InvalidValue,
                "queue[0].dead_letter.max_age",
            ),
        ];
        for (body, kind, field) in cases {
            let err = QueueFile::from_toml(&format!("[[queue]]\n{body}\n")).unwrap_err();
            assert_eq!((err.kind(), err.field()), (kind, field), "{body}: {err}");
        }
    }

    #[test]
    fn duplicate_names_and_syntax_errors() {
        let err =
            QueueFile::from_toml("[[queue]]\nname = \"a\"\n[[queue]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(
            (err.kind(), err.field()),
            (ConfigErrorKind::InvalidValue, "queue[1].name")
        );
        let err = QueueFile::from_toml("[[queue]\nname = ").unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::Parse);
        let err =
            QueueFile::from_toml("[[queue]]\nname = \"a\"\nmax_age = \"soon\"\n").unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::Parse);
    }
}
