//! Bearer tokens and their scopes.
//!
//! Every request but `/healthz`, `/readyz` and the dashboard's page carries
//! `Authorization: Bearer TOKEN`: a `read` token lets GET through, an `admin` token everything.
//! The default admin token is `SABOT_TOKEN` (or `token` in the settings file); unset, the first
//! start generates one from the system's random source, keeps it in `DATA/token` (mode 0600) and
//! prints it once; later starts use the kept one. More tokens are named in the settings file
//! (`[tokens.NAME] token = "…", scope = "read"`), and `public_reads = true` opens reads to anyone.

use std::path::Path;

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::ApiError;
use crate::Error;

/// The file under the data directory that keeps a generated token.
pub const TOKEN_FILE: &str = "token";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// GET requests: status, stats, logs, metrics, the event stream.
    Read,
    /// Everything: uploads, definitions, starts and stops, swaps, secrets.
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// A token of the settings file: `[tokens.NAME]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub token: String,
    pub scope: Scope,
}

impl std::fmt::Debug for NamedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamedToken({:?}, …)", self.scope)
    }
}

/// Every token the server takes, and whether reads need one.
#[derive(Debug, Clone)]
pub struct Access {
    /// (name, token, scope); the default admin token is named `admin`.
    tokens: Vec<(String, Token, Scope)>,
    public_reads: bool,
}

impl Access {
    pub fn new(
        admin: Token,
        named: &std::collections::BTreeMap<String, NamedToken>,
        public_reads: bool,
    ) -> Self {
        let mut tokens = vec![("admin".to_owned(), admin, Scope::Admin)];
        for (name, t) in named {
            tokens.push((name.clone(), Token(t.token.clone()), t.scope));
        }
        Access {
            tokens,
            public_reads,
        }
    }

    /// Checks that the request's token allows `needed`: the name of the token used (`None`
    /// for a public read).
    pub fn allow(&self, headers: &HeaderMap, needed: Scope) -> Result<Option<String>, ApiError> {
        if needed == Scope::Read && self.public_reads {
            return Ok(None);
        }
        let what = match needed {
            Scope::Read => {
                "this request reads the server's state and needs `Authorization: Bearer TOKEN` with a `read` or `admin` token"
            }
            Scope::Admin => {
                "this request changes the server and needs `Authorization: Bearer TOKEN` with an `admin` token"
            }
        };
        let given = bearer(headers).ok_or_else(|| ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: format!("{what} (the admin token is SABOT_TOKEN, or the one in DATA/token)"),
        })?;
        // Every token is compared, in time independent of where a wrong one differs.
        let mut found = None;
        for (name, token, scope) in &self.tokens {
            if token.matches(given) && found.is_none() {
                found = Some((name, *scope));
            }
        }
        match found {
            Some((name, scope)) if scope >= needed => Ok(Some(name.clone())),
            Some((name, scope)) => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: format!("token `{name}` has scope `{}`: {what}", scope.name()),
            }),
            None => Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "the bearer token is not one of the server's tokens".into(),
            }),
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// An API token.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// The configured token, else the one kept in `data_dir`, else a new one (kept and printed).
    pub fn load_or_generate(configured: Option<&str>, data_dir: &Path) -> Result<Self, Error> {
        if let Some(t) = configured {
            return Ok(Token(t.to_owned()));
        }
        let path = data_dir.join(TOKEN_FILE);
        let file_error = |source| Error::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => {
                tracing::info!(file = %path.display(), "using the API token kept in the data directory");
                return Ok(Token(t.trim().to_owned()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        let mut bytes = [0u8; 24];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| Error::Internal(format!("cannot read /dev/urandom for a token: {e}")))?;
        let token = hex::encode(bytes);
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .map_err(file_error)?;
        eprintln!(
            "sabot: generated an API token (kept in {}; shown this once):\n\n    {token}\n\nsend it as `Authorization: Bearer TOKEN` (or SABOT_TOKEN for the CLI)",
            path.display()
        );
        Ok(Token(token))
    }

    /// Whether `given` is this token, in time independent of where a wrong one differs.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, byte) in b.iter().enumerate() {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn a_read_token_reads_and_is_refused_changes_by_name() {
        let named: BTreeMap<String, NamedToken> = [(
            "grafana".to_owned(),
            NamedToken {
                token: "r".repeat(20),
                scope: Scope::Read,
            },
        )]
        .into();
        let access = Access::new(Token("a".repeat(20)), &named, false);
        let read = headers(&format!("Bearer {}", "r".repeat(20)));
        assert_eq!(
            access.allow(&read, Scope::Read).unwrap(),
            Some("grafana".into())
        );
        let e = access.allow(&read, Scope::Admin).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            e.message.contains("`grafana`") && e.message.contains("admin"),
            "{}",
            e.message
        );
        let open = Access::new(Token("a".repeat(20)), &named, true);
        assert_eq!(open.allow(&HeaderMap::new(), Scope::Read).unwrap(), None);
        assert!(open.allow(&HeaderMap::new(), Scope::Admin).is_err());
    }

    #[test]
    fn a_generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Token::load_or_generate(None, dir.path()).unwrap();
        let again = Token::load_or_generate(None, dir.path()).unwrap();
        assert_eq!(first.0, again.0);
        assert_eq!(first.0.len(), 48);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let access = Access::new(first.clone(), &BTreeMap::new(), false);
        let admin = format!("Bearer {}", first.0);
        assert_eq!(
            access.allow(&headers(&admin), Scope::Admin).unwrap(),
            Some("admin".into())
        );
        assert!(access.allow(&headers("Bearer nope"), Scope::Read).is_err());
        assert!(access.allow(&headers(&first.0), Scope::Read).is_err());
        let e = access.allow(&HeaderMap::new(), Scope::Read).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("Bearer TOKEN"));
    }
}
