//! `sabot serve`: the long-running host and its control plane.
//!
//! ```text
//!   HTTP (axum, /v1)  ──►  api ──► modules::ModuleStore      DATA/modules/   (sha256 blobs, name@version tags)
//!        │  bearer token       └─► pipelines::Pipelines      DATA/pipelines/NAME/ (definition, control, run data)
//!        │  (auth)                    │ one supervisor thread per running pipeline: run, restart after a
//!        │                            │ failed swap, resume from the newest checkpoint
//!        │                            └─ swap monitor: applies and watches hot swaps (probation, rollback)
//!        ├── /metrics (prometheus), /healthz, /readyz, /v1/events (server-sent stats)
//!        └── /  the dashboard (dashboard.html)
//! ```
//!
//! Wasm never runs on the async threads: validation compiles on blocking threads (at most
//! [`ServeConfig::validations`] at a time), pipelines run on their own task threads. Every
//! mutating endpoint needs the bearer token; reads are open.

pub mod api;
pub mod auth;
pub mod logs;
pub mod modules;
pub mod pipelines;
pub mod prometheus;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::Error;
use crate::wasm::{CompileCache, WasmRuntime};

/// The server's settings: a TOML file (`--config`), then `SABOT_*` environment variables, then
/// command-line flags, each overriding the one before.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Where to listen (`SABOT_LISTEN`).
    pub listen: SocketAddr,
    /// Modules, pipelines, state and checkpoints (`SABOT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The bearer token of mutating requests (`SABOT_TOKEN`); generated on first start and kept in
    /// `DATA/token` when unset.
    pub token: Option<String>,
    /// The largest module upload, MiB (`SABOT_MAX_UPLOAD_MB`).
    pub max_upload_mb: u64,
    /// The longest a request may take, ms (`SABOT_REQUEST_TIMEOUT_MS`); the event stream is exempt.
    pub request_timeout_ms: u64,
    /// Modules validated (compiled) at once (`SABOT_VALIDATIONS`); more uploads wait.
    pub validations: usize,
    /// How long a swapped-in version is watched; a trap within it rolls back (`SABOT_PROBATION_MS`).
    pub probation_ms: u64,
    /// Checkpoint interval of pipelines that set none (`SABOT_CHECKPOINT_MS`): a swap happens at a
    /// checkpoint barrier.
    pub checkpoint_ms: u64,
    /// The compiled-component cache (`SABOT_CACHE_DIR`; default `DATA/cache`).
    pub cache_dir: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("sabot-data"),
            token: None,
            max_upload_mb: 64,
            request_timeout_ms: 30_000,
            validations: 2,
            probation_ms: 5_000,
            checkpoint_ms: 1_000,
            cache_dir: None,
        }
    }
}

impl ServeConfig {
    /// Reads `file` (when given) and applies the `SABOT_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::File {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| {
                    Error::Usage(format!("{}: {}", path.display(), e.to_string().trim_end()))
                })?
            }
            None => ServeConfig::default(),
        };
        for (key, value) in env {
            let bad = |expected: &str| {
                Error::Usage(format!(
                    "environment variable {key}={value:?} is not valid: expected {expected}"
                ))
            };
            let number = |expected: &str| value.parse::<u64>().map_err(|_| bad(expected));
            match key.as_str() {
                "SABOT_LISTEN" => {
                    config.listen = value
                        .parse()
                        .map_err(|_| bad("an address such as 127.0.0.1:8080"))?
                }
                "SABOT_DATA_DIR" => config.data_dir = PathBuf::from(&value),
                "SABOT_TOKEN" => config.token = Some(value.clone()),
                "SABOT_MAX_UPLOAD_MB" => config.max_upload_mb = number("a size in MiB")?,
                "SABOT_REQUEST_TIMEOUT_MS" => config.request_timeout_ms = number("milliseconds")?,
                "SABOT_VALIDATIONS" => config.validations = number("a count")? as usize,
                "SABOT_PROBATION_MS" => config.probation_ms = number("milliseconds")?,
                "SABOT_CHECKPOINT_MS" => config.checkpoint_ms = number("milliseconds")?,
                "SABOT_CACHE_DIR" => config.cache_dir = Some(PathBuf::from(&value)),
                _ => {}
            }
        }
        Ok(config)
    }

    /// Checks the settings that cannot be zero.
    pub fn check(&self) -> Result<(), Error> {
        let positive = [
            ("max_upload_mb", self.max_upload_mb),
            ("request_timeout_ms", self.request_timeout_ms),
            ("validations", self.validations as u64),
            ("checkpoint_ms", self.checkpoint_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Usage(format!(
                    "server setting `{name}` is 0: expected at least 1"
                )));
            }
        }
        if let Some(token) = &self.token
            && token.len() < 16
        {
            return Err(Error::Usage(
                "the API token is shorter than 16 characters: use a longer, random one (or leave it unset for a generated one)".into(),
            ));
        }
        Ok(())
    }
}

/// An API error: an HTTP status and a message naming what was wrong and what was expected.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }
    pub fn unprocessable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request refused");
        }
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the server until SIGINT or SIGTERM; then stops every pipeline gracefully (each ends
/// with a checkpoint, and resumes from it when the server starts again).
pub fn serve(config: ServeConfig, logs: Arc<logs::GuestLogs>) -> Result<(), Error> {
    config.check()?;
    let data = &config.data_dir;
    std::fs::create_dir_all(data).map_err(|source| Error::File {
        path: data.display().to_string(),
        source,
    })?;
    let token = auth::Token::load_or_generate(config.token.as_deref(), data)?;
    let cache = CompileCache::new(
        config
            .cache_dir
            .clone()
            .or_else(|| Some(data.join("cache"))),
    );
    let runtime = WasmRuntime::new(cache)?;
    let modules = Arc::new(
        modules::ModuleStore::open(&data.join("modules")).map_err(|e| Error::Usage(e.message))?,
    );
    let pipelines = pipelines::Pipelines::new(
        data.join("pipelines"),
        runtime.clone(),
        modules.clone(),
        pipelines::Settings {
            probation: Duration::from_millis(config.probation_ms),
            checkpoint_ms: config.checkpoint_ms,
        },
        logs.clone(),
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sabot-http")
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the HTTP runtime: {e}")))?;
    let state = api::AppState::new(
        config.clone(),
        token,
        runtime,
        modules,
        pipelines.clone(),
        logs,
    );
    let result = tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("no local address: {e}")))?;
        // The one line tools wait for (stdout, flushed): where the server is.
        #[allow(clippy::print_stdout)]
        {
            println!("sabot: listening on http://{addr}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
        let ready = state.clone();
        // Pipelines that were running when the server stopped start again, off the accept loop.
        tokio::task::spawn_blocking(move || {
            ready.pipelines.resume_all();
            ready.set_ready();
        });
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::Internal(format!("the HTTP server failed: {e}")))
    });
    tracing::info!("stopping every pipeline");
    pipelines.stop_all();
    drop(tokio);
    result
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_and_bad_values_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nprobation_ms = 100\n").unwrap();
        let c = ServeConfig::load(
            Some(&file),
            [("SABOT_PROBATION_MS".to_owned(), "250".to_owned())],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.probation_ms, 250);
        let e = ServeConfig::load(None, [("SABOT_LISTEN".to_owned(), "nowhere".to_owned())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SABOT_LISTEN=\"nowhere\"") && e.contains("127.0.0.1:8080"),
            "{e}"
        );
        std::fs::write(&file, "listen_on = 1\n").unwrap();
        let e = ServeConfig::load(Some(&file), []).unwrap_err().to_string();
        assert!(e.contains("listen_on"), "{e}");
        let short = ServeConfig {
            token: Some("short".into()),
            ..ServeConfig::default()
        };
        assert!(
            short
                .check()
                .unwrap_err()
                .to_string()
                .contains("16 characters")
        );
    }
}
