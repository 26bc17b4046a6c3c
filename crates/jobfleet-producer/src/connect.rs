//! Connection options shared by every jobfleet process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConnectError, ConnectErrorKind};
use crate::refusals::Refusals;

/// How to reach and authenticate to NATS.
///
/// ```
/// use jobfleet_producer::ConnectOptions;
/// let options = ConnectOptions::new("nats://127.0.0.1:4222")
///     .user_and_password("svc", "secret")
///     .name("billing-service");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectOptions {
    pub(crate) urls: String,
    pub(crate) name: Option<String>,
    pub(crate) credentials_file: Option<PathBuf>,
    pub(crate) token: Option<String>,
    pub(crate) user_password: Option<(String, String)>,
    pub(crate) require_tls: bool,
    pub(crate) root_certificates: Vec<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
    pub(crate) connection_timeout: Duration,
    pub(crate) publish_timeout: Duration,
    pub(crate) enqueue_deadline: Duration,
    pub(crate) inbox_prefix: Option<String>,
}

impl ConnectOptions {
    /// Options for `urls`: one URL or a comma-separated list (`nats://a:4222,nats://b:4222`).
    pub fn new(urls: impl Into<String>) -> Self {
        Self {
            urls: urls.into(),
            name: None,
            credentials_file: None,
            token: None,
            user_password: None,
            require_tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
            connection_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            enqueue_deadline: Duration::from_secs(30),
            inbox_prefix: None,
        }
    }

    /// Options from the environment: `NATS_URL` (default `nats://127.0.0.1:4222`),
    /// `NATS_CREDS` (credentials file), `NATS_TOKEN`, `NATS_USER` with `NATS_PASSWORD`,
    /// `NATS_CA` (root certificate, implies TLS), `NATS_CERT` with `NATS_KEY` (client
    /// certificate), `NATS_INBOX_PREFIX` (see [`ConnectOptions::inbox_prefix`]).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut options =
            Self::new(var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()));
        if let Some(path) = var("NATS_CREDS") {
            options = options.credentials_file(path);
        }
        if let Some(token) = var("NATS_TOKEN") {
            options = options.token(token);
        }
        if let (Some(user), Some(password)) = (var("NATS_USER"), var("NATS_PASSWORD")) {
            options = options.user_and_password(user, password);
        }
        if let Some(ca) = var("NATS_CA") {
            options = options.root_certificate(ca);
        }
        if let (Some(cert), Some(key)) = (var("NATS_CERT"), var("NATS_KEY")) {
            options = options.client_certificate(cert, key);
        }
        if let Some(prefix) = var("NATS_INBOX_PREFIX") {
            options = options.inbox_prefix(prefix);
        }
        options
    }

    /// Where this client receives its replies (JetStream API answers, PubAcks, pulled jobs):
    /// subjects under `<prefix>.`, instead of the shared `_INBOX.`. With per-user prefixes
    /// the server's permissions can keep each user's replies private (`subscribe:
    /// "_INBOX_<user>.>"`, as `deploy/nats/auth.conf` does); with the shared one, anyone
    /// allowed `_INBOX.>` could read every other client's replies.
    pub fn inbox_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.inbox_prefix = Some(prefix.into());
        self
    }

    /// Replaces the server URL(s): one URL or a comma-separated list.
    pub fn urls(mut self, urls: impl Into<String>) -> Self {
        self.urls = urls.into();
        self
    }

    /// The connection name shown by the server's monitoring.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Authenticates with a `.creds` file (JWT and nkey seed).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with a user name and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user_password = Some((user.into(), password.into()));
        self
    }

    /// Requires TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Trusts a PEM root certificate (and requires TLS).
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self.require_tls = true;
        self
    }

    /// Presents a PEM client certificate and key (and requires TLS).
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self.require_tls = true;
        self
    }

    /// How long the first connection may take. Default 5 s.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one publish waits for its acknowledgement before it is sent again (with the
    /// same message id). Default 5 s.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long an enqueue keeps retrying (through reconnects and leader elections) before it
    /// reports `NotConnected` or `Timeout`. Default 30 s.
    pub fn enqueue_deadline(mut self, deadline: Duration) -> Self {
        self.enqueue_deadline = deadline;
        self
    }

    fn validate(&self) -> Result<(), ConnectError> {
        let invalid = |msg: String| Err(ConnectError::new(ConnectErrorKind::InvalidOptions, msg));
        if self.urls.trim().is_empty() {
            return invalid("no NATS URL given".into());
        }
        let methods = [
            self.credentials_file.is_some(),
            self.token.is_some(),
            self.user_password.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return invalid("choose one of credentials file, token, or user and password".into());
        }
        let files = self
            .credentials_file
            .iter()
            .chain(&self.root_certificates)
            .chain(self.client_certificate.iter().flat_map(|(c, k)| [c, k]));
        for file in files {
            if !file.is_file() {
                return invalid(format!(
                    "{} does not exist or is not a file",
                    file.display()
                ));
            }
        }
        if self.publish_timeout.is_zero() || self.enqueue_deadline < self.publish_timeout {
            return invalid("publish_timeout must be > 0 and <= enqueue_deadline".into());
        }
        if let Some(prefix) = &self.inbox_prefix {
            let literal_tokens = prefix.split('.').all(|token| {
                !token.is_empty()
                    && token != "*"
                    && token != ">"
                    && !token.chars().any(char::is_whitespace)
            });
            if !literal_tokens {
                return invalid(format!(
                    "inbox prefix {prefix:?} must be a subject of literal tokens (no spaces, wildcards or empty tokens)"
                ));
            }
        }
        Ok(())
    }

    /// Connects a plain async-nats client with these options (every URL of the list,
    /// credentials, TLS); once connected it reconnects forever. Worker binaries use it, so
    /// they take the same `NATS_*` settings as producers.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] when the options are invalid, the server is unreachable, or it
    /// rejects the credentials.
    pub async fn connect_client(&self) -> Result<async_nats::Client, ConnectError> {
        self.connect_recording(None).await
    }

    /// The subject prefix of this connection's reply inboxes.
    pub(crate) fn reply_prefix(&self) -> &str {
        self.inbox_prefix.as_deref().unwrap_or("_INBOX")
    }

    /// Connects like [`ConnectOptions::connect_client`], logging every error the server
    /// reports and recording its permission refusals into `refusals`, if given.
    pub(crate) async fn connect_recording(
        &self,
        refusals: Option<Arc<Refusals>>,
    ) -> Result<async_nats::Client, ConnectError> {
        self.validate()?;
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connection_timeout)
            .require_tls(self.require_tls)
            .max_reconnects(None)
            .event_callback(move |event| {
                let refusals = refusals.clone();
                async move {
                    // The server's `-ERR`s reach the client only here; a refused publish or
                    // subscription is otherwise silent.
                    match event {
                        async_nats::Event::ServerError(error) => {
                            if let Some(refusals) = &refusals {
                                refusals.record(&error);
                            }
                            tracing::warn!(%error, "NATS server reported an error");
                        }
                        async_nats::Event::Connected => {
                            if let Some(refusals) = &refusals {
                                refusals.reconnected();
                            }
                        }
                        _ => {}
                    }
                }
            });
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(path) = &self.credentials_file {
            options = options.credentials_file(path).await.map_err(|err| {
                ConnectError::with_source(
                    ConnectErrorKind::InvalidOptions,
                    format!("cannot use credentials file {}", path.display()),
                    err,
                )
            })?;
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        for root in &self.root_certificates {
            options = options.add_root_certificates(root.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // async-nats parses a single string as one address; a list must be split first.
        let urls: Vec<&str> = self
            .urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        options.connect(urls).await.map_err(|err| {
            use async_nats::ConnectErrorKind as K;
            let kind = match err.kind() {
                K::Authentication | K::AuthorizationViolation => ConnectErrorKind::Authentication,
                K::Tls => ConnectErrorKind::Tls,
                K::ServerParse => ConnectErrorKind::InvalidOptions,
                _ => ConnectErrorKind::Unreachable,
            };
            ConnectError::with_source(
                kind,
                format!("cannot connect to NATS at {}", self.urls),
                err,
            )
        })
    }
}
