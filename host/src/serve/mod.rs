//! `sabot serve`: the long-running host and its control plane.
//!
//! ```text
//!   HTTP (axum, /v1)  ──►  api ──► modules::ModuleStore      DATA/modules/   (sha256 blobs, name@version tags)
//!        │  bearer token       └─► pipelines::Pipelines      DATA/pipelines/NAME/ (definition, control, run data)
//!        │  (auth)                    │ one supervisor thread per running pipeline: run, restart after a
//!        │                            │ failed swap, resume from the newest checkpoint
//!        │                            └─ swap monitor: applies and watches hot swaps (probation, rollback)
//!        ├── /v1/views: materialized views, read from the running pipelines' state (views)
//!        ├── /metrics (prometheus), /healthz, /readyz, /v1/events (server-sent stats)
//!        └── /  the dashboard (dashboard.html)
//! ```
//!
//! Wasm never runs on the async threads: an upload is streamed to a temporary file
//! ([`upload`]), compiled in a child process that is killed at the request's deadline (at most
//! [`ServeConfig::validations`] at a time, [`crate::wasm::isolate`]), then loaded from the
//! compile cache; pipelines run on their own task threads. Connections are capped in number and
//! closed when idle ([`listen`]). Every endpoint but the probes and the dashboard's page needs a
//! bearer token: `read` for GET, `admin` for the rest ([`auth`]).

pub mod api;
pub mod auth;
pub mod cluster;
mod guard;
pub mod listen;
pub mod logs;
pub mod modules;
pub mod pipelines;
pub mod prometheus;
mod secrets;
pub mod tls;
pub mod upload;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::Error;
use crate::wasm::{CompileCache, WasmRuntime};

/// How long a replica waits to read its cluster's command log before it says it is ready.
const CLUSTER_READY_WAIT: Duration = Duration::from_secs(60);

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
    /// The most the compile cache may hold, MiB (`SABOT_CACHE_MB`); least recently used entries go.
    pub cache_mb: u64,
    /// Connections held at once (`SABOT_MAX_CONNECTIONS`); one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a client has to send a request's head, from connecting or from the previous
    /// response, ms (`SABOT_HEADER_TIMEOUT_MS`).
    pub header_timeout_ms: u64,
    /// How long a connection may move no byte either way, ms (`SABOT_IDLE_TIMEOUT_MS`); never
    /// less than `request_timeout_ms` + 1 s, so that a request being answered is not cut.
    pub idle_timeout_ms: u64,
    /// All uploads being received at once, MiB (`SABOT_UPLOAD_BUFFER_MB`); on disk, not memory.
    pub upload_buffer_mb: u64,
    /// The address space of a module's compiler process, MiB (`SABOT_COMPILE_MEMORY_MB`).
    pub compile_memory_mb: u64,
    /// More tokens, by name, each with its scope: `[tokens.grafana] token = "…", scope = "read"`.
    /// `SABOT_READ_TOKEN` adds one named `read` with scope `read`.
    pub tokens: std::collections::BTreeMap<String, auth::NamedToken>,
    /// Let reads (GET) through without a token (`SABOT_PUBLIC_READS=true`); off by default.
    pub public_reads: bool,
    /// HTTPS: the certificate chain, PEM (`SABOT_TLS_CERT`); with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key, PEM (`SABOT_TLS_KEY`); with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `[checkpoint_storage]`: the object store that keeps the checkpoints of pipelines that
    /// name none (`SABOT_CHECKPOINT_URL` sets its `url`; the rest then comes from `AWS_*`).
    pub checkpoint_storage: Option<crate::checkpoint::StorageSpec>,
    /// `[cluster]`: this server is a replica of a cluster on Kafka (`SABOT_CLUSTER_KAFKA` sets
    /// its `kafka`; `SABOT_CLUSTER_NAME`, `SABOT_REPLICA`, `SABOT_ADVERTISE` the rest). Needs
    /// `checkpoint_storage`: checkpoints and module bytes live in the object store.
    pub cluster: Option<cluster::ClusterSpec>,
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
            cache_mb: crate::wasm::cache::DEFAULT_CACHE_MB,
            max_connections: 256,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            upload_buffer_mb: 256,
            compile_memory_mb: 4_096,
            tokens: std::collections::BTreeMap::new(),
            public_reads: false,
            tls_cert: None,
            tls_key: None,
            checkpoint_storage: None,
            cluster: None,
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
        let env: Vec<(String, String)> = env.into_iter().collect();
        let late: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "SABOT_CLUSTER_NAME" | "SABOT_REPLICA" | "SABOT_ADVERTISE"
                )
            })
            .cloned()
            .collect();
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
                "SABOT_CACHE_MB" => config.cache_mb = number("a size in MiB")?,
                "SABOT_MAX_CONNECTIONS" => config.max_connections = number("a count")? as usize,
                "SABOT_HEADER_TIMEOUT_MS" => config.header_timeout_ms = number("milliseconds")?,
                "SABOT_IDLE_TIMEOUT_MS" => config.idle_timeout_ms = number("milliseconds")?,
                "SABOT_UPLOAD_BUFFER_MB" => config.upload_buffer_mb = number("a size in MiB")?,
                "SABOT_COMPILE_MEMORY_MB" => config.compile_memory_mb = number("a size in MiB")?,
                "SABOT_READ_TOKEN" => {
                    config.tokens.insert(
                        "read".into(),
                        auth::NamedToken {
                            token: value.clone(),
                            scope: auth::Scope::Read,
                        },
                    );
                }
                "SABOT_TLS_CERT" => config.tls_cert = Some(PathBuf::from(&value)),
                "SABOT_TLS_KEY" => config.tls_key = Some(PathBuf::from(&value)),
                "SABOT_CHECKPOINT_URL" => match &mut config.checkpoint_storage {
                    Some(storage) => storage.url = value.clone(),
                    None => {
                        config.checkpoint_storage = Some(crate::checkpoint::StorageSpec {
                            url: value.clone(),
                            endpoint: None,
                            region: None,
                            access_key_id: None,
                            secret_access_key: None,
                        })
                    }
                },
                "SABOT_CLUSTER_KAFKA" => match &mut config.cluster {
                    Some(c) => c.kafka = value.clone(),
                    None => config.cluster = Some(cluster::ClusterSpec::new(value.clone())),
                },
                "SABOT_CLUSTER_NAME" | "SABOT_REPLICA" | "SABOT_ADVERTISE" => {
                    // Applied once every variable was read: they need `[cluster]` or
                    // SABOT_CLUSTER_KAFKA.
                }
                "SABOT_PUBLIC_READS" => {
                    config.public_reads = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("true or false")),
                    }
                }
                _ => {}
            }
        }
        for (key, value) in late {
            let Some(c) = &mut config.cluster else {
                return Err(Error::Usage(format!(
                    "environment variable {key} needs a cluster: set SABOT_CLUSTER_KAFKA (or [cluster] kafka in the settings file)"
                )));
            };
            match key.as_str() {
                "SABOT_CLUSTER_NAME" => c.name = value,
                "SABOT_REPLICA" => c.replica = Some(value),
                _ => c.advertise = Some(value),
            }
        }
        Ok(config)
    }

    /// The idle timeout applied: `idle_timeout_ms`, raised to `request_timeout_ms` + 1 s.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(
            self.idle_timeout_ms
                .max(self.request_timeout_ms.saturating_add(1_000)),
        )
    }

    /// Checks the settings that cannot be zero.
    pub fn check(&self) -> Result<(), Error> {
        let positive = [
            ("max_upload_mb", self.max_upload_mb),
            ("request_timeout_ms", self.request_timeout_ms),
            ("validations", self.validations as u64),
            ("checkpoint_ms", self.checkpoint_ms),
            ("cache_mb", self.cache_mb),
            ("max_connections", self.max_connections as u64),
            ("header_timeout_ms", self.header_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("upload_buffer_mb", self.upload_buffer_mb),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Usage(format!(
                    "server setting `{name}` is 0: expected at least 1"
                )));
            }
        }
        if self.upload_buffer_mb < self.max_upload_mb {
            return Err(Error::Usage(format!(
                "server setting `upload_buffer_mb` ({}) is smaller than `max_upload_mb` ({}): expected at least one upload's worth",
                self.upload_buffer_mb, self.max_upload_mb
            )));
        }
        if self.compile_memory_mb < 256 {
            return Err(Error::Usage(format!(
                "server setting `compile_memory_mb` is {}: expected at least 256 (MiB of address space for the compiler)",
                self.compile_memory_mb
            )));
        }
        if let Some(token) = &self.token
            && token.len() < 16
        {
            return Err(Error::Usage(
                "the API token is shorter than 16 characters: use a longer, random one (or leave it unset for a generated one)".into(),
            ));
        }
        if let Some(storage) = &self.checkpoint_storage
            && let Err((field, message)) = storage.validate()
        {
            return Err(Error::Usage(format!(
                "server setting `checkpoint_storage.{field}`: {message}"
            )));
        }
        if let Some(c) = &self.cluster {
            if let Err((field, message)) = c.validate() {
                return Err(Error::Usage(format!(
                    "server setting `cluster.{field}`: {message}"
                )));
            }
            if self.checkpoint_storage.is_none() {
                return Err(Error::Usage(
                    "server setting `cluster` needs `checkpoint_storage` (or SABOT_CHECKPOINT_URL): a cluster keeps its checkpoints and module bytes in object storage, where every replica reaches them".into(),
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Usage(
                "server settings `tls_cert` and `tls_key` go together: give both (PEM files) for HTTPS, or neither for HTTP".into(),
            ));
        }
        for (name, t) in &self.tokens {
            if t.token.len() < 16 {
                return Err(Error::Usage(format!(
                    "token `{name}` is shorter than 16 characters: use a longer, random one"
                )));
            }
            if self.token.as_deref() == Some(t.token.as_str())
                || self
                    .tokens
                    .iter()
                    .any(|(other, o)| other != name && o.token == t.token)
            {
                return Err(Error::Usage(format!(
                    "token `{name}` is the same as another token: each name needs its own token"
                )));
            }
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy, not broken: the client is told to retry.
            tracing::debug!(status = 503, error = %self.message, "request deferred");
        } else if self.status.is_server_error() {
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
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let token = auth::Token::load_or_generate(config.token.as_deref(), data)?;
    let cache_dir = config
        .cache_dir
        .clone()
        .unwrap_or_else(|| data.join("cache"));
    let cache = CompileCache::new(Some(cache_dir.clone())).with_budget(config.cache_mb << 20);
    let runtime = WasmRuntime::new(cache)?;
    let isolation = crate::wasm::isolate::Isolation {
        exe: std::env::current_exe()
            .map_err(|e| Error::Internal(format!("cannot find the sabot binary: {e}")))?,
        memory_mb: config.compile_memory_mb,
        cache_dir,
        cache_mb: config.cache_mb,
    };
    let uploads = upload::Uploads::new(
        data.join("uploads"),
        config.max_upload_mb << 20,
        config.upload_buffer_mb << 20,
    )
    .map_err(|source| Error::File {
        path: data.join("uploads").display().to_string(),
        source,
    })?;
    let modules = Arc::new(
        modules::ModuleStore::open(&data.join("modules")).map_err(|e| Error::Usage(e.message))?,
    );
    let secrets = Arc::new(
        crate::config::secrets::SecretStore::open(&data.join("secrets")).map_err(|source| {
            Error::File {
                path: data.join("secrets").display().to_string(),
                source,
            }
        })?,
    );
    let cluster = match (&config.cluster, &config.checkpoint_storage) {
        (Some(spec), Some(storage)) => Some(cluster::Cluster::connect(
            spec.clone(),
            storage.clone(),
            config.listen,
            tls.is_some(),
        )?),
        _ => None,
    };
    let pipelines = pipelines::Pipelines::new(
        data.join("pipelines"),
        runtime.clone(),
        modules.clone(),
        pipelines::Settings {
            probation: Duration::from_millis(config.probation_ms),
            checkpoint_ms: config.checkpoint_ms,
            checkpoint_storage: config.checkpoint_storage.clone(),
            secrets: secrets.clone(),
            cluster: cluster.clone(),
        },
        logs.clone(),
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sabot-http")
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the HTTP runtime: {e}")))?;
    let access = auth::Access::new(token, &config.tokens, config.public_reads);
    let state = api::AppState::new(
        config.clone(),
        access,
        runtime,
        modules,
        pipelines.clone(),
        logs,
        api::Compiling { uploads, isolation },
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
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!("sabot: listening on {scheme}://{addr}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
        let ready = state.clone();
        // Pipelines that were running when the server stopped start again, off the accept loop.
        tokio::task::spawn_blocking(move || {
            match ready.pipelines.cluster() {
                // A replica's pipelines are the cluster's: ready once it read the command log.
                Some(cluster) => cluster.clone().join(&ready.pipelines, CLUSTER_READY_WAIT),
                None => ready.pipelines.resume_all(),
            }
            ready.set_ready();
        });
        let limits = listen::ConnLimits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            idle_timeout: config.idle_timeout(),
        };
        raise_open_files(config.max_connections);
        listen::serve(listener, api::router(state), limits, tls, shutdown_signal()).await;
        Ok::<(), Error>(())
    });
    tracing::info!("stopping every pipeline");
    if let Some(cluster) = pipelines.cluster() {
        // No record applied from now on starts anything here.
        cluster.set_leaving();
    }
    pipelines.stop_all();
    if let Some(cluster) = pipelines.cluster() {
        cluster.leave();
    }
    drop(tokio);
    result
}

/// Raises the soft limit of open files to the hard one, so that `max_connections` sockets and
/// the pipelines' files fit; warns when they may not.
fn raise_open_files(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit`/`setrlimit` read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    if limit.rlim_cur < max_connections as u64 + 256 {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit leaves little room beyond max_connections: raise `ulimit -n` or lower max_connections"
        );
    }
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
