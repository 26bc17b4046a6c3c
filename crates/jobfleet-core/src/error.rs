//! Error types of the protocol crate.

use std::fmt;

/// What is wrong with a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A queue name that cannot be used in stream names and subjects.
    InvalidName,
    /// A value outside its allowed range, or inconsistent with another value.
    InvalidValue,
    /// A key that the configuration does not know.
    UnknownField,
    /// A file that could not be read or parsed.
    Parse,
}

/// An invalid configuration value, naming the field it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    field: String,
    message: String,
}

impl ConfigError {
    /// Creates an error for `field` (a dotted path such as `worker.max_attempts`).
    pub fn new(
        kind: ConfigErrorKind,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            message: message.into(),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The dotted path of the offending field, e.g. `queue[2].worker.ack_wait`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Prefixes the field path, used when a nested value is validated by its parent.
    pub(crate) fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "invalid `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// What is wrong with a job's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderErrorKind {
    /// A required header is absent.
    Missing,
    /// A header is present but its value cannot be parsed.
    Malformed,
}

/// A job header that is missing or cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError {
    kind: HeaderErrorKind,
    header: &'static str,
    detail: String,
}

impl HeaderError {
    pub(crate) fn missing(header: &'static str) -> Self {
        Self {
            kind: HeaderErrorKind::Missing,
            header,
            detail: String::new(),
        }
    }

    pub(crate) fn malformed(header: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: HeaderErrorKind::Malformed,
            header,
            detail: detail.into(),
        }
    }

    pub(crate) fn renamed(mut self, header: &'static str) -> Self {
        self.header = header;
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> HeaderErrorKind {
        self.kind
    }

    /// The header's name.
    pub fn header(&self) -> &'static str {
        self.header
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HeaderErrorKind::Missing => write!(f, "header `{}` is missing", self.header),
            HeaderErrorKind::Malformed => {
                write!(f, "header `{}` is malformed: {}", self.header, self.detail)
            }
        }
    }
}

impl std::error::Error for HeaderError {}

/// A stored audit event that cannot be read: not JSON, or a field missing or of the wrong
/// type. The cause is [`std::error::Error::source`].
#[derive(Debug)]
pub struct AuditDecodeError {
    source: serde_json::Error,
}

impl AuditDecodeError {
    pub(crate) fn new(source: serde_json::Error) -> Self {
        Self { source }
    }
}

impl fmt::Display for AuditDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit event does not follow schema v1")
    }
}

impl std::error::Error for AuditDecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
