//! Bearer tokens with scopes.
//!
//! Tokens are configured as SHA-256 digests (hex), so the tokens file holds no secret:
//!
//! ```toml
//! [[token]]
//! name = "orders-service"          # shown in logs, never the token itself
//! sha256 = "<hex of sha256(token)>"  # e.g. `printf %s "$TOKEN" | sha256sum`
//! scopes = ["enqueue", "read"]
//! ```
//!
//! `admin` implies `read` and `enqueue`. With no tokens configured the gateway is open.

use std::fmt;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scope {
    /// Read job status, queue stats and dead letters.
    Read,
    /// Enqueue jobs.
    Enqueue,
    /// Everything, including pause/resume, purge, redrive and delete.
    Admin,
}

impl Scope {
    /// The scope's name as written in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Enqueue => "enqueue",
            Self::Admin => "admin",
        }
    }
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

#[derive(Clone)]
struct TokenEntry {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.name, &e.scopes)))
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
}

/// A tokens file that cannot be used.
#[derive(Debug)]
pub struct TokensFileError(String);

impl fmt::Display for TokensFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokensFileError {}

/// The hex SHA-256 digest of `token`, as the tokens file wants it.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// No tokens: every request is allowed.
    pub fn open() -> Self {
        Self::default()
    }

    /// Whether any token is configured (and so requests must carry one).
    pub fn is_enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Adds a token by its plain value (for tests and programmatic set-up).
    pub fn with_token(mut self, name: &str, token: &str, scopes: &[Scope]) -> Self {
        self.entries.push(TokenEntry {
            name: name.to_owned(),
            digest: Sha256::digest(token.as_bytes()).into(),
            scopes: scopes.to_vec(),
        });
        self
    }

    /// Parses a tokens file (see the module docs).
    ///
    /// # Errors
    ///
    /// [`TokensFileError`] naming the entry and field at fault.
    pub fn from_toml(text: &str) -> Result<Self, TokensFileError> {
        let file: TokensFile =
            toml::from_str(text).map_err(|e| TokensFileError(format!("tokens file: {e}")))?;
        let mut tokens = Self::default();
        for (i, spec) in file.token.into_iter().enumerate() {
            let digest = parse_hex32(&spec.sha256).ok_or_else(|| {
                TokensFileError(format!(
                    "tokens file: token[{i}].sha256 must be 64 hex digits (sha256 of the token)"
                ))
            })?;
            if spec.scopes.is_empty() {
                return Err(TokensFileError(format!(
                    "tokens file: token[{i}].scopes is empty"
                )));
            }
            tokens.entries.push(TokenEntry {
                name: spec.name,
                digest,
                scopes: spec.scopes,
            });
        }
        Ok(tokens)
    }

    /// Checks the request's `Authorization` header for `needed`; returns the token's name.
    ///
    /// # Errors
    ///
    /// 401 when no valid token is presented, 403 when the token lacks the scope. The bodies
    /// never repeat the presented token.
    pub fn authorize(&self, headers: &HeaderMap, needed: Scope) -> Result<Option<&str>, Problem> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(presented) = presented else {
            return Err(unauthorized("a bearer token is required"));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare against every entry in constant time so timing reveals nothing.
        let mut found: Option<&TokenEntry> = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        let Some(entry) = found else {
            return Err(unauthorized("the bearer token is not valid"));
        };
        let allowed = entry
            .scopes
            .iter()
            .any(|&s| s == needed || s == Scope::Admin);
        if allowed {
            Ok(Some(&entry.name))
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} lacks the {:?} scope",
                    entry.name,
                    needed.as_str()
                ),
            ))
        }
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

/// The `WWW-Authenticate` value sent with 401s.
pub(crate) const WWW_AUTHENTICATE: HeaderValue =
    HeaderValue::from_static("Bearer realm=\"jobfleet\"");

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn scopes_and_admin() {
        let tokens = Tokens::open()
            .with_token("reader", "r-secret", &[Scope::Read])
            .with_token("boss", "a-secret", &[Scope::Admin]);
        assert_eq!(
            tokens.authorize(&bearer("r-secret"), Scope::Read).unwrap(),
            Some("reader")
        );
        let err = tokens
            .authorize(&bearer("r-secret"), Scope::Enqueue)
            .unwrap_err();
        assert_eq!(err.status, 403);
        assert!(
            tokens
                .authorize(&bearer("a-secret"), Scope::Enqueue)
                .is_ok()
        );
        let err = tokens.authorize(&bearer("nope"), Scope::Read).unwrap_err();
        assert_eq!(err.status, 401);
        assert!(!err.detail.contains("nope"));
        assert_eq!(
            tokens
                .authorize(&HeaderMap::new(), Scope::Read)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn file_holds_digests_only() {
        let text = format!(
            "[[token]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"enqueue\"]\n",
            token_digest("s3cret")
        );
        let tokens = Tokens::from_toml(&text).unwrap();
        assert!(tokens.authorize(&bearer("s3cret"), Scope::Enqueue).is_ok());
        assert!(
            Tokens::from_toml("[[token]]\nname=\"x\"\nsha256=\"zz\"\nscopes=[\"read\"]").is_err()
        );
        assert!(
            Tokens::from_toml("[[token]]\nname=\"x\"\nsha256=\"00\"\nscopes=[\"root\"]").is_err()
        );
    }
}
