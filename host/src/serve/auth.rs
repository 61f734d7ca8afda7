//! The bearer token every mutating request must carry.
//!
//! Set with `SABOT_TOKEN` (or `token` in the config file). Unset, the first start generates one
//! from the system's random source, keeps it in `DATA/token` (mode 0600) and prints it once;
//! later starts use the kept one.

use std::path::Path;

use axum::http::HeaderMap;

use super::ApiError;
use crate::Error;

/// The file under the data directory that keeps a generated token.
pub const TOKEN_FILE: &str = "token";

/// The API token.
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

    /// Checks the request's `Authorization: Bearer …` header, in time independent of where a
    /// wrong token differs.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let unauthorized = |m: &str| ApiError {
            status: axum::http::StatusCode::UNAUTHORIZED,
            message: m.to_owned(),
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                unauthorized(
                    "this request changes the server and needs `Authorization: Bearer TOKEN` (the token is SABOT_TOKEN, or the one in DATA/token)",
                )
            })?;
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, byte) in b.iter().enumerate() {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
        }
        if diff == 0 {
            Ok(())
        } else {
            Err(unauthorized("the bearer token is wrong"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        h
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
        assert!(
            first
                .check(&headers(&format!("Bearer {}", first.0)))
                .is_ok()
        );
        assert!(first.check(&headers("Bearer nope")).is_err());
        assert!(first.check(&headers(&first.0)).is_err());
        assert!(
            first
                .check(&HeaderMap::new())
                .unwrap_err()
                .message
                .contains("Bearer TOKEN")
        );
    }
}
