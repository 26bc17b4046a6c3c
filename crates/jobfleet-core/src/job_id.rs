//! Job ids: UUIDv7 by default, UUIDv5 when derived from an idempotency key.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::HeaderError;
use crate::headers;
use crate::topology::QueueName;

/// Namespace of the UUIDv5 ids derived from idempotency keys. Part of the protocol: changing
/// it would give existing keys new ids.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6a6f_6266_6c65_4574_8000_6964_656d_706f);

/// A job's identity, also its JetStream `Nats-Msg-Id`.
///
/// Rendered as a lower-case hyphenated UUID, which is a single NATS subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl JobId {
    /// A new time-ordered id (UUIDv7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of the job enqueued on `queue` with idempotency key `key`: UUIDv5 of
    /// `<queue>\n<key>` in the jobfleet namespace. Equal inputs give equal ids in every
    /// language, which is what makes a repeated enqueue a no-op.
    pub fn from_idempotency_key(queue: &QueueName, key: &str) -> Self {
        let mut name = Vec::with_capacity(queue.as_str().len() + 1 + key.len());
        name.extend_from_slice(queue.as_str().as_bytes());
        name.push(b'\n');
        name.extend_from_slice(key.as_bytes());
        Self(Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// A stable per-job seed for retry jitter, so that every worker computes the same delay.
    pub fn jitter_seed(&self) -> u64 {
        let (high, low) = self.0.as_u64_pair();
        high ^ low
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for JobId {
    type Err = HeaderError;

    /// Accepts only the canonical form (lower-case, hyphenated, 36 characters), so the id a
    /// sender used is exactly the one in subjects and audit records.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uuid = Uuid::try_parse(s)
            .map_err(|err| HeaderError::malformed(headers::JOB_ID, err.to_string()))?;
        let canonical = uuid.hyphenated().to_string();
        if canonical != s {
            return Err(HeaderError::malformed(
                headers::JOB_ID,
                format!("{s:?} is not in canonical form (expected {canonical:?})"),
            ));
        }
        Ok(Self(uuid))
    }
}

impl From<Uuid> for JobId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl serde::Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_time_ordered() {
        let a = JobId::new();
        let b = JobId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn idempotency_ids_are_stable_v5_and_scoped_by_queue() {
        let emails = QueueName::new("emails").unwrap();
        let sms = QueueName::new("sms").unwrap();
        let id = JobId::from_idempotency_key(&emails, "order-42");
        assert_eq!(id.as_uuid().get_version_num(), 5);
        // Pinned: other languages must derive the same id (docs/protocol.md uses this value).
        assert_eq!(id.to_string(), "57918296-d9ef-5ca1-b89d-3f7303c709a2");
        assert_eq!(id, JobId::from_idempotency_key(&emails, "order-42"));
        assert_ne!(id, JobId::from_idempotency_key(&sms, "order-42"));
        assert_ne!(id, JobId::from_idempotency_key(&emails, "order-43"));
    }

    #[test]
    fn parses_and_rejects() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert!("not-a-uuid".parse::<JobId>().is_err());
        let upper = id.to_string().to_uppercase();
        assert!(upper.parse::<JobId>().is_err(), "only the canonical form");
        assert!(id.as_uuid().simple().to_string().parse::<JobId>().is_err());
    }
}
