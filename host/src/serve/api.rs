//! The HTTP API under `/v1/`, the health and metrics endpoints, the event stream and the
//! dashboard.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/healthz`, `/readyz` | alive; ready (kept pipelines loaded and restarted) |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/v1/events` | server-sent events: every pipeline's stats twice a second |
//! | GET | `/v1/modules` | uploaded modules |
//! | POST | `/v1/modules/{name}/{version}` | upload a component (raw body) |
//! | POST | `/v1/modules` | upload a component (multipart: `name`, `version`, `module`) |
//! | GET, DELETE | `/v1/modules/{name}/{version}` | one module; delete (refused while in use) |
//! | GET, POST | `/v1/pipelines` | list; create from TOML or JSON (`?start=true` starts it) |
//! | GET, DELETE | `/v1/pipelines/{name}` | status, graph, stats, swaps; delete (stopped) |
//! | POST | `/v1/pipelines/{name}/start`, `/stop` | `?fresh=true` starts from scratch; `?wait=true` waits for the stop |
//! | GET | `/v1/pipelines/{name}/agents`, `/sources`, `/tables`, `/swaps`, `/logs` | parts of the status |
//! | POST | `/v1/pipelines/{name}/agents/{agent}/swap` | `{"module": "NAME@VERSION", "config": …}` |
//! | GET | `/v1/pipelines/{name}/tables/{agent}/{table}?key=K` | a keyed state entry (queryable state) |
//! | GET | `/v1/cluster` | a cluster's replicas, what each runs, consumer lag (404 on a server alone) |
//! | GET | `/v1/secrets` | the secrets' names (never a value) |
//! | PUT, DELETE | `/v1/secrets/{name}` | store (the body) or delete a secret |
//!
//! Every request but `/`, `/healthz` and `/readyz` needs a bearer token: `read` for GET, `admin`
//! for the rest ([`super::auth`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::auth::Access;
use super::logs::GuestLogs;
use super::modules::{ModuleInfo, ModuleStore, check_name, check_version};
use super::pipelines::{Entry, Pipelines, Status, Swap};
use super::upload::{Spool, Uploads};
use super::{ApiError, ServeConfig};
use crate::dataflow::{NO_WATERMARK, NodeKind};
use crate::wasm::isolate::Isolation;
use crate::wasm::{ModuleError, WasmRuntime};

/// The dashboard page.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub(super) config: ServeConfig,
    pub(super) access: Access,
    runtime: Arc<WasmRuntime>,
    modules: Arc<ModuleStore>,
    pub pipelines: Arc<Pipelines>,
    logs: Arc<GuestLogs>,
    validations: Arc<tokio::sync::Semaphore>,
    compiling: Compiling,
    ready: AtomicBool,
    started: Instant,
}

/// Where uploads are received and compiled.
pub struct Compiling {
    pub uploads: Arc<Uploads>,
    pub isolation: Isolation,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: ServeConfig,
        access: Access,
        runtime: Arc<WasmRuntime>,
        modules: Arc<ModuleStore>,
        pipelines: Arc<Pipelines>,
        logs: Arc<GuestLogs>,
        compiling: Compiling,
    ) -> Self {
        AppState(Arc::new(Shared {
            validations: Arc::new(tokio::sync::Semaphore::new(config.validations)),
            compiling,
            config,
            access,
            runtime,
            modules,
            pipelines,
            logs,
            ready: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }

    /// Says the server is ready (kept pipelines loaded).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// The whole router.
pub fn router(state: AppState) -> axum::Router {
    let upload_limit = usize::try_from(state.config.max_upload_mb << 20).unwrap_or(usize::MAX);
    let api = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/modules", get(list_modules).post(upload_multipart))
        .route(
            "/v1/modules/{name}/{version}",
            get(get_module).post(upload_raw).delete(delete_module),
        )
        .route("/v1/pipelines", get(list_pipelines).post(create_pipeline))
        .route(
            "/v1/pipelines/{name}",
            get(get_pipeline).delete(delete_pipeline),
        )
        .route("/v1/pipelines/{name}/start", post(start_pipeline))
        .route("/v1/pipelines/{name}/stop", post(stop_pipeline))
        .route("/v1/pipelines/{name}/agents", get(list_agents))
        .route("/v1/pipelines/{name}/agents/{agent}/swap", post(swap_agent))
        .route("/v1/pipelines/{name}/swaps", get(list_swaps))
        .route("/v1/pipelines/{name}/sources", get(list_sources))
        .route("/v1/pipelines/{name}/tables", get(list_tables))
        .route(
            "/v1/pipelines/{name}/tables/{agent}/{table}",
            get(read_table),
        )
        .route("/v1/pipelines/{name}/logs", get(read_logs))
        .route(
            "/v1/pipelines/{name}/views/{view}",
            get(super::views::read_in),
        )
        .route("/v1/views", get(super::views::list))
        .route("/v1/views/{name}", get(super::views::read))
        .route("/v1/cluster", get(cluster_view))
        .route("/v1/secrets", get(super::secrets::list))
        .route(
            "/v1/secrets/{name}",
            axum::routing::put(super::secrets::set)
                .post(super::secrets::set)
                .delete(super::secrets::delete),
        )
        // Multipart uploads: the module field is bounded by the upload spool; this bounds the form.
        .layer(DefaultBodyLimit::max(
            upload_limit.saturating_add(64 * 1024),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::guard::deadline,
        ));
    axum::Router::new()
        .route("/", get(dashboard))
        .route("/v1/events", get(events))
        .merge(api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::guard::require_token,
        ))
        .with_state(state)
}

/// The largest body of a request other than an upload (a pipeline definition, a swap).
pub const MAX_BODY: usize = 1 << 20;

/// A request body of at most [`MAX_BODY`] bytes, with a refusal that says what the limit is.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_bounded(
            request.into_body().into_data_stream(),
            MAX_BODY,
            || ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "the body is larger than the {MAX_BODY} bytes the server takes for a definition (modules are uploaded to /v1/modules)"
                ),
            },
            |e| ApiError::bad_request(format!("the body cannot be read: {e}")),
        )
        .await?;
        Ok(Body(bytes.into()))
    }
}

/// The bytes of `stream`, refused with `too_long()` as soon as they pass `max`.
async fn read_bounded<E>(
    mut stream: impl futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    max: usize,
    too_long: impl FnOnce() -> ApiError,
    unreadable: impl Fn(E) -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(&unreadable)?;
        if bytes.len() + chunk.len() > max {
            return Err(too_long());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {} (the API is under /v1/: modules, pipelines, events)",
        uri.path()
    ))
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::unavailable("starting: loading kept pipelines").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let text = super::prometheus::render(&s.pipelines.list(), s.started.elapsed().as_secs_f64());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A query string that does not fit, as an API error.
pub(super) fn query_error(e: QueryRejection) -> ApiError {
    ApiError {
        status: e.status(),
        message: format!(
            "the query string does not fit this endpoint: {}",
            e.body_text()
        ),
    }
}

/// Runs blocking work (files, compiling, joining threads) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))?
}

// ---- modules ----

async fn list_modules(State(s): State<AppState>) -> Json<Vec<ModuleInfo>> {
    Json(s.modules.list())
}

async fn get_module(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModuleInfo>, ApiError> {
    check_name("module", &name)?;
    check_version(&version)?;
    Ok(Json(s.modules.get(&name, &version)?))
}

async fn upload_raw(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<ModuleInfo>), Response> {
    let started = Instant::now();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = request.into_body().into_data_stream();
    let checked = check_name("module", &name).and_then(|()| check_version(&version));
    let mut spool = match checked.and_then(|()| s.compiling.uploads.start(declared)) {
        Ok(spool) => spool,
        Err(e) => return Err(drained(e, &mut body, s.config.max_upload_mb << 20).await),
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the body cannot be read: {e}")).into_response()
        })?;
        if let Err(e) = spool.push(&chunk) {
            drop(spool);
            return Err(drained(e, &mut body, s.config.max_upload_mb << 20).await);
        }
    }
    let module = spool.finish().map_err(IntoResponse::into_response)?;
    store_module(s, name, version, module, started)
        .await
        .map_err(IntoResponse::into_response)
}

/// `refusal`, once the rest of the body (up to `limit` bytes, kept nowhere) has been read, so
/// that a client still sending it reads the answer rather than a closed connection. A body over
/// `limit` (a refusal for size) is not read on: the answer then says `Connection: close`, so
/// that no client sends its next request on a connection the server is closing.
async fn drained(refusal: ApiError, body: &mut axum::body::BodyDataStream, limit: u64) -> Response {
    let mut read_all = false;
    if refusal.status != StatusCode::PAYLOAD_TOO_LARGE {
        let mut seen = 0u64;
        loop {
            match body.next().await {
                None => {
                    read_all = true;
                    break;
                }
                Some(Ok(chunk)) => {
                    seen += chunk.len() as u64;
                    if seen > limit {
                        break;
                    }
                }
                Some(Err(_)) => break,
            }
        }
    }
    let mut response = refusal.into_response();
    if !read_all {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The longest `name` or `version` field of a multipart upload.
const MAX_FORM_TEXT: usize = 256;

async fn upload_multipart(
    State(s): State<AppState>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<ModuleInfo>), ApiError> {
    let started = Instant::now();
    let mut form = form.map_err(|e| ApiError {
        status: e.status(),
        message: format!(
            "the body is not multipart/form-data with a boundary: {} (upload the raw bytes to /v1/modules/NAME/VERSION, or a form with `name`, `version` and `module`)",
            e.body_text()
        ),
    })?;
    let (mut name, mut version, mut module) = (None, None, None);
    let bad = |e: axum::extract::multipart::MultipartError| ApiError {
        status: e.status(),
        message: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "the body is larger than the server takes (max_upload_mb, SABOT_MAX_UPLOAD_MB)".into()
        } else {
            format!("the multipart body does not read: {}", e.body_text())
        },
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let field_name = field.name().unwrap_or_default().to_owned();
        match field_name.as_str() {
            "name" | "version" => {
                let text = read_bounded(
                    &mut field,
                    MAX_FORM_TEXT,
                    || {
                        ApiError::bad_request(format!(
                            "the multipart field `{field_name}` is longer than {MAX_FORM_TEXT} bytes: expected a {field_name}"
                        ))
                    },
                    bad,
                )
                .await?;
                let text = String::from_utf8(text).map_err(|_| {
                    ApiError::bad_request(format!(
                        "the multipart field `{field_name}` is not UTF-8"
                    ))
                })?;
                if field_name == "name" {
                    name = Some(text);
                } else {
                    version = Some(text);
                }
            }
            "module" => {
                let mut spool = s.compiling.uploads.start(None)?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    spool.push(&chunk)?;
                }
                module = Some(spool.finish()?);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected multipart field {other:?}: expected `name`, `version` and `module`"
                )));
            }
        }
    }
    let missing = |f: &str| {
        ApiError::bad_request(format!(
            "the multipart body has no `{f}` field: expected `name`, `version` and `module` (the component file)"
        ))
    };
    let name = name.ok_or_else(|| missing("name"))?;
    let version = version.ok_or_else(|| missing("version"))?;
    let module = module.ok_or_else(|| missing("module"))?;
    check_name("module", &name)?;
    check_version(&version)?;
    store_module(s, name, version, module, started).await
}

/// Validates and stores an upload, at most `validations` at a time: compiles it in a child
/// process stopped at the request's deadline, then loads it from the compile cache and checks
/// its world. A refused module leaves nothing behind: its temporary file and its compiled form
/// are removed.
async fn store_module(
    s: AppState,
    name: String,
    version: String,
    upload: Spool,
    started: Instant,
) -> Result<(StatusCode, Json<ModuleInfo>), ApiError> {
    if upload.is_empty() {
        return Err(ApiError::bad_request(
            "the upload is empty: expected the bytes of a WebAssembly component",
        ));
    }
    let timeout = Duration::from_millis(s.config.request_timeout_ms);
    // A little before the request's own timeout, so the answer says why.
    let deadline = started + timeout.mul_f64(0.9);
    let permit = tokio::time::timeout(timeout / 2, s.validations.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::unavailable("busy validating other uploads: retry later"))?
        .map_err(|_| ApiError::internal("the validation queue closed"))?;
    let shared = s.clone();
    let label = format!("{name}@{version}");
    let (info, created) = blocking(move || {
        let _permit = permit;
        let s = shared;
        let bytes = std::fs::read(upload.path()).map_err(|e| {
            ApiError::internal(format!(
                "cannot read the upload back from {}: {e}",
                upload.path().display()
            ))
        })?;
        let refused = |e: ModuleError| match e {
            ModuleError::Engine(m) => ApiError::internal(m),
            e @ ModuleError::CompileTimeout { .. } => ApiError::unprocessable(e.to_string()),
            other => ApiError::unprocessable(other.to_string()),
        };
        crate::wasm::check_header(&label, &bytes).map_err(refused)?;
        let hash = crate::wasm::cache::sha256_hex(&bytes);
        let known = s.modules.list().iter().any(|m| m.sha256 == hash);
        // A module this server holds is compiled already; anything else is compiled apart.
        if !known {
            s.compiling
                .isolation
                .precompile(&label, upload.path(), deadline)
                .map_err(refused)?;
        }
        let forget = |s: &AppState| {
            if !known {
                s.runtime.forget(&hash);
                s.runtime.cache().remove(s.runtime.engine(), &hash);
            }
        };
        let module = match s.runtime.load_bytes(&label, &bytes) {
            Ok(m) => m,
            Err(e) => {
                forget(&s);
                return Err(refused(e));
            }
        };
        let (info, created) = s
            .modules
            .put(&name, &version, &bytes, &module)
            .inspect_err(|_| forget(&s))?;
        if let Some(cluster) = s.pipelines.cluster() {
            // Every replica fetches the bytes from the object store when the tag reaches it.
            cluster.publish_module(&info, bytes).inspect_err(|_| {
                if created {
                    let _ = s.modules.delete(&name, &version);
                }
            })?;
        }
        Ok((info, created))
    })
    .await?;
    tracing::info!(module = %info.reference(), sha256 = %info.sha256, size = info.size, created, "module uploaded");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)))
}

async fn delete_module(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModuleInfo>, ApiError> {
    check_name("module", &name)?;
    check_version(&version)?;
    let info = s.modules.get(&name, &version)?;
    if let Some(p) = s.pipelines.uses(&info.sha256) {
        return Err(ApiError::conflict(format!(
            "module {name}@{version} is in use by pipeline `{p}`: swap it out or delete the pipeline first"
        )));
    }
    let store = s.modules.clone();
    let info = match s.pipelines.cluster().cloned() {
        Some(cluster) => {
            blocking(move || cluster.delete_module(&name, &version)).await?;
            info
        }
        None => blocking(move || store.delete(&name, &version)).await?,
    };
    if s.modules.list().iter().all(|m| m.sha256 != info.sha256) {
        s.runtime.forget(&info.sha256);
    }
    Ok(Json(info))
}

// ---- pipelines ----

/// A node of a pipeline's graph with its counters.
#[derive(Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub kind: &'static str,
    pub rows_in: u64,
    pub rows_out: u64,
    pub batches_in: u64,
    pub batches_out: u64,
    /// ms since the epoch.
    pub watermark: Option<i64>,
    /// Agents: the module version they run, their parallelism and call statistics.
    pub version: Option<String>,
    pub parallelism: Option<usize>,
    pub traps: Option<u64>,
    pub restarts: Option<u64>,
    pub calls: Option<u64>,
    pub call_p99_ms: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// Sinks: the p50 and p99 end-to-end latency of the events written so far, ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EdgeView {
    pub from: String,
    pub from_port: u32,
    pub to: String,
    pub to_port: u32,
}

#[derive(Debug, Serialize)]
pub struct CheckpointView {
    pub completed: u64,
    pub last_id: Option<u64>,
    pub last_duration_ms: Option<f64>,
    pub last_size_bytes: Option<u64>,
    pub age_ms: Option<u64>,
}

/// A pipeline's status.
#[derive(Debug, Serialize)]
pub struct PipelineView {
    pub name: String,
    pub status: Status,
    pub error: Option<String>,
    pub restarts: u64,
    pub uptime_ms: u64,
    pub nodes: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
    pub checkpoints: CheckpointView,
    pub swaps: Vec<Swap>,
    /// The definition (TOML), in the detailed view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Source => "source",
        NodeKind::Agent => "agent",
        NodeKind::Sink => "sink",
    }
}

/// The view of `entry` now.
pub fn view(entry: &Entry, detailed: bool) -> PipelineView {
    let (status, error) = entry.status();
    let stats = entry.stats();
    let versions = entry.versions();
    let spec = entry.spec();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let nodes = stats
        .nodes
        .iter()
        .map(|(name, n)| {
            let calls = (n.kind == NodeKind::Agent)
                .then(|| entry.live.metrics(name))
                .flatten()
                .map(|m| m.calls.snapshot());
            let w = n.watermark.load(Ordering::Relaxed);
            NodeView {
                name: name.clone(),
                kind: kind_name(n.kind),
                rows_in: load(&n.rows_in),
                rows_out: load(&n.rows_out),
                batches_in: load(&n.batches_in),
                batches_out: load(&n.batches_out),
                watermark: (w != NO_WATERMARK).then_some(w),
                version: versions.get(name).cloned(),
                parallelism: spec.agents.get(name).map(|a| a.parallelism),
                traps: calls.as_ref().map(|c| c.traps),
                restarts: (n.kind == NodeKind::Agent).then(|| load(&n.restarts)),
                calls: calls.as_ref().map(|c| c.count),
                call_p99_ms: calls
                    .as_ref()
                    .and_then(|c| c.quantile(0.99))
                    .filter(|q| q.is_finite())
                    .map(|q| q * 1e3),
                memory_bytes: calls.as_ref().map(|c| c.memory_bytes),
                latency_p50_ms: n.latency.quantile(0.5).map(|d| d.as_secs_f64() * 1e3),
                latency_p99_ms: n.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1e3),
            }
        })
        .collect();
    let cp = &stats.checkpoints;
    let completed = load(&cp.completed);
    let done = completed > 0;
    PipelineView {
        name: entry.name.clone(),
        status,
        error,
        restarts: entry.restarts(),
        uptime_ms: stats.elapsed().as_millis() as u64,
        nodes,
        edges: spec
            .edges
            .iter()
            .map(|e| EdgeView {
                from: e.from.clone(),
                from_port: e.from_port,
                to: e.to.clone(),
                to_port: e.to_port,
            })
            .collect(),
        checkpoints: CheckpointView {
            completed,
            last_id: done.then(|| load(&cp.last_id)),
            last_duration_ms: done.then(|| load(&cp.last_duration_us) as f64 / 1e3),
            last_size_bytes: done.then(|| load(&cp.last_size_bytes)),
            age_ms: done
                .then(|| super::now_unix_ms().saturating_sub(load(&cp.last_completed_unix_ms))),
        },
        swaps: entry.swaps(),
        definition: detailed.then(|| crate::config::secrets::redact_definition(&entry.text)),
    }
}

async fn cluster_view(
    State(s): State<AppState>,
) -> Result<Json<super::cluster::status::View>, ApiError> {
    let Some(cluster) = s.pipelines.cluster().cloned() else {
        return Err(ApiError::not_found(
            "this server is not a replica of a cluster (no [cluster] in its settings)",
        ));
    };
    let pipelines = s.pipelines.clone();
    blocking(move || Ok(cluster.view(&pipelines)))
        .await
        .map(Json)
}

async fn list_pipelines(State(s): State<AppState>) -> Json<Vec<PipelineView>> {
    Json(s.pipelines.list().iter().map(|e| view(e, false)).collect())
}

async fn get_pipeline(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match s.pipelines.get(&name) {
        Ok(entry) => Ok(Json(view(&entry, true)).into_response()),
        Err(not_found) => {
            // A create answered `202` and still going, or refused since.
            if let Some(progress) = s.pipelines.creating(&name) {
                return Ok(Json(serde_json::json!({
                    "name": name, "status": "creating", "progress": progress,
                }))
                .into_response());
            }
            match s.pipelines.refusal(&name) {
                Some(why) => Err(ApiError::not_found(format!(
                    "pipeline `{name}` was not created: {why}"
                ))),
                None => Err(not_found),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct CreateQuery {
    #[serde(default)]
    start: bool,
    /// The name of a pipeline sent as SQL (TOML and JSON carry theirs).
    name: Option<String>,
}

/// A pipeline definition in JSON, as TOML text.
fn json_to_toml(body: &[u8]) -> Result<String, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the pipeline does not parse as JSON: {e} (expected the pipeline-file schema as a JSON object)"
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the pipeline must be a JSON object with `pipeline`, `sources`, `agents`, `sinks` and `edges`",
        ));
    }
    let table: toml::Table = serde_json::from_value(value).map_err(|e| {
        ApiError::bad_request(format!(
            "the pipeline cannot be expressed in the pipeline-file schema: {e} (null values are not allowed)"
        ))
    })?;
    toml::to_string(&table)
        .map_err(|e| ApiError::bad_request(format!("the pipeline cannot be written as TOML: {e}")))
}

async fn create_pipeline(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<CreateQuery>, QueryRejection>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let text = if content_type.starts_with("application/json") {
        json_to_toml(&body)?
    } else if content_type.starts_with("application/sql") {
        let name = q.name.as_deref().ok_or_else(|| {
            ApiError::bad_request(
                "a SQL pipeline needs a name: POST /v1/pipelines?name=NAME with Content-Type: application/sql",
            )
        })?;
        let sql = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("the pipeline is not UTF-8 text: expected SQL"))?
            .to_owned();
        // Function modules are asked for their calls' types: Wasm runs, off the event loop,
        // and at most `validations` at a time, as uploads are checked.
        let permit = if crate::sql::declared_functions(&sql).is_ok_and(|f| !f.is_empty()) {
            let wait = Duration::from_millis(s.config.request_timeout_ms) / 2;
            Some(
                tokio::time::timeout(wait, s.validations.clone().acquire_owned())
                    .await
                    .map_err(|_| {
                        ApiError::unavailable(
                            "busy checking other modules (uploads, SQL functions): retry later",
                        )
                    })?
                    .map_err(|_| ApiError::internal("the validation queue closed"))?,
            )
        } else {
            None
        };
        let pipelines = s.pipelines.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pipelines.sql_to_toml(&sql, &name)
        })
        .await
        .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))??
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| {
            ApiError::bad_request(
                "the pipeline is not UTF-8 text: expected TOML (or JSON with Content-Type: application/json, or SQL with application/sql)",
            )
        })?
    };
    let name = super::pipelines::name_of(&text)?;
    let pipelines = s.pipelines.clone();
    let task = tokio::task::spawn_blocking(move || {
        let entry = pipelines.create(&text)?;
        if q.start {
            pipelines.start(&entry.name, false)?;
        }
        Ok::<_, ApiError>(entry)
    });
    // Most creates take milliseconds; one whose modules must be compiled again goes on in the
    // background, and the client follows it.
    // In a cluster the create is a command-log write, which is answered whole (it decides
    // which of two creates of one name wins), within most of the request's time.
    let wait = match s.pipelines.cluster() {
        Some(_) => Duration::from_millis(s.config.request_timeout_ms * 4 / 5),
        None => Duration::from_millis(s.config.request_timeout_ms / 3).min(CREATE_WAIT),
    };
    match tokio::time::timeout(wait, task).await {
        Ok(joined) => {
            let entry =
                joined.map_err(|e| ApiError::internal(format!("a worker failed: {e}")))??;
            Ok((StatusCode::CREATED, Json(view(&entry, true))).into_response())
        }
        Err(_) => {
            let progress = s
                .pipelines
                .creating(&name)
                .unwrap_or_else(|| "finishing".into());
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "name": name,
                    "status": "creating",
                    "progress": progress,
                    "follow": format!("/v1/pipelines/{name}"),
                })),
            )
                .into_response())
        }
    }
}

/// How long a create is waited for before it is answered `202` and goes on in the background.
const CREATE_WAIT: Duration = Duration::from_secs(5);

async fn delete_pipeline(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let pipelines = s.pipelines.clone();
    blocking(move || pipelines.delete(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    #[serde(default)]
    fresh: bool,
}

async fn start_pipeline(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<StartQuery>, QueryRejection>,
) -> Result<Json<PipelineView>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let pipelines = s.pipelines.clone();
    let entry = blocking(move || pipelines.start(&name, q.fresh)).await?;
    Ok(Json(view(&entry, false)))
}

#[derive(Debug, Deserialize)]
struct StopQuery {
    #[serde(default)]
    wait: bool,
}

async fn stop_pipeline(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<StopQuery>, QueryRejection>,
) -> Result<Json<PipelineView>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let pipelines = s.pipelines.clone();
    let entry = blocking(move || pipelines.stop(&name, q.wait)).await?;
    Ok(Json(view(&entry, false)))
}

async fn list_agents(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<NodeView>>, ApiError> {
    let entry = s.pipelines.get(&name)?;
    Ok(Json(
        view(&entry, false)
            .nodes
            .into_iter()
            .filter(|n| n.kind == "agent")
            .collect(),
    ))
}

async fn list_sources(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let entry = s.pipelines.get(&name)?;
    let spec = entry.spec();
    let nodes = view(&entry, false).nodes;
    Ok(Json(
        nodes
            .into_iter()
            .filter(|n| n.kind == "source")
            .map(|n| {
                let kind = spec.sources.get(&n.name).map(|s| match s {
                    crate::connectors::SourceSpec::Generator(_) => "generator",
                    crate::connectors::SourceSpec::File(_) => "file",
                    crate::connectors::SourceSpec::Nexmark(_) => "nexmark",
                    crate::connectors::SourceSpec::Kafka(_) => "kafka",
                });
                let lag_ms = n
                    .watermark
                    .map(|w| (super::now_unix_ms() as i64).saturating_sub(w).max(0));
                serde_json::json!({
                    "name": n.name, "type": kind, "rows": n.rows_out, "batches": n.batches_out,
                    "watermark": n.watermark, "watermark_lag_ms": lag_ms,
                })
            })
            .collect(),
    ))
}

async fn list_swaps(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Swap>>, ApiError> {
    Ok(Json(s.pipelines.get(&name)?.swaps()))
}

#[derive(Debug, Deserialize)]
struct SwapBody {
    module: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

async fn swap_agent(
    State(s): State<AppState>,
    Path((name, agent)): Path<(String, String)>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Swap>), ApiError> {
    let body: SwapBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the swap request does not parse: {e} (expected {{\"module\": \"NAME@VERSION\", \"config\": optional}})"
        ))
    })?;
    let config = body.config.map(|c| match c {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    });
    let pipelines = s.pipelines.clone();
    let swap = blocking(move || pipelines.swap(&name, &agent, &body.module, config)).await?;
    Ok((StatusCode::ACCEPTED, Json(swap)))
}

async fn list_tables(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BTreeMap<String, Vec<String>>>, ApiError> {
    let entry = s.pipelines.get(&name)?;
    let mut tables: BTreeMap<String, Vec<String>> = entry
        .spec()
        .agents
        .keys()
        .map(|a| (a.clone(), Vec::new()))
        .collect();
    for (agent, names) in entry.live.tables() {
        tables.insert(agent, names.into_iter().collect());
    }
    Ok(Json(tables))
}

#[derive(Debug, Deserialize)]
struct TableQuery {
    key: String,
    /// How `key` is encoded: int8…int64, uint8…uint64, utf8, hex; by default an integer is an
    /// int64 and anything else utf8 — as the host and the SDKs encode key columns.
    #[serde(default)]
    key_type: Option<String>,
    /// The sub-key (map state), UTF-8.
    #[serde(default)]
    sub: Option<String>,
    /// List the key's sub-keys and values (map state) instead of one value.
    #[serde(default)]
    scan: bool,
}

/// A key's bytes, as the host encodes a key column's values.
pub(super) fn encode_key(key: &str, key_type: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let bad = |t: &str| ApiError::bad_request(format!("key {key:?} is not a valid {t}"));
    macro_rules! int {
        ($t:ty, $name:expr) => {
            key.parse::<$t>()
                .map(|v| v.to_le_bytes().to_vec())
                .map_err(|_| bad($name))
        };
    }
    match key_type {
        None => Ok(match key.parse::<i64>() {
            Ok(v) => v.to_le_bytes().to_vec(),
            Err(_) => key.as_bytes().to_vec(),
        }),
        Some("int8") => int!(i8, "int8"),
        Some("int16") => int!(i16, "int16"),
        Some("int32") => int!(i32, "int32"),
        Some("int64") => int!(i64, "int64"),
        Some("uint8") => int!(u8, "uint8"),
        Some("uint16") => int!(u16, "uint16"),
        Some("uint32") => int!(u32, "uint32"),
        Some("uint64") => int!(u64, "uint64"),
        Some("utf8") => Ok(key.as_bytes().to_vec()),
        Some("hex") => hex::decode(key).map_err(|_| bad("hex string")),
        Some(other) => Err(ApiError::bad_request(format!(
            "key_type {other:?} is not known: expected int8, int16, int32, int64, uint8, uint16, uint32, uint64, utf8 or hex"
        ))),
    }
}

/// A stored value in the readings that may apply: hex always; UTF-8 and JSON (every SDK's
/// encoding) when it is; an unsigned and a zig-zag varint (postcard, the built-in operators'
/// encoding of integers) when the bytes are exactly one.
fn describe_value(bytes: &[u8]) -> serde_json::Value {
    let mut v = serde_json::json!({ "hex": hex::encode(bytes), "bytes": bytes.len() });
    if let Ok(text) = std::str::from_utf8(bytes) {
        v["utf8"] = text.into();
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
            v["json"] = json;
        }
    }
    let mut n: u64 = 0;
    let mut complete = false;
    for (i, b) in bytes.iter().enumerate() {
        if i >= 10 {
            complete = false;
            break;
        }
        n |= u64::from(b & 0x7f) << (7 * i);
        complete = b & 0x80 == 0;
        if complete && i + 1 != bytes.len() {
            complete = false;
            break;
        }
    }
    if complete {
        v["varint"] = n.into();
        v["zigzag"] = (((n >> 1) as i64) ^ -((n & 1) as i64)).into();
    }
    v
}

async fn read_table(
    State(s): State<AppState>,
    Path((name, agent, table)): Path<(String, String, String)>,
    q: Result<Query<TableQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let entry = s.pipelines.get(&name)?;
    if !entry.spec().agents.contains_key(&agent) {
        return Err(ApiError::not_found(format!(
            "pipeline `{name}` has no agent `{agent}`"
        )));
    }
    let key = encode_key(&q.key, q.key_type.as_deref())?;
    let live_error = |e: crate::dataflow::LiveError| match e {
        crate::dataflow::LiveError::NotRunning(_) => ApiError::conflict(format!(
            "{e}: state is read from the running pipeline (start it first)"
        )),
        crate::dataflow::LiveError::Refused(m) => ApiError::bad_request(m),
        e @ crate::dataflow::LiveError::UnknownTable { .. } => ApiError::not_found(e.to_string()),
    };
    if q.scan {
        let entries = entry
            .live
            .scan(&agent, &table, &key, 1000)
            .map_err(live_error)?;
        return Ok(Json(serde_json::json!({
            "agent": agent, "table": table, "key": q.key,
            "entries": entries.iter().map(|(sub, value)| serde_json::json!({
                "sub": String::from_utf8_lossy(sub), "sub_hex": hex::encode(sub), "value": describe_value(value),
            })).collect::<Vec<_>>(),
        })));
    }
    let sub = q.sub.unwrap_or_default();
    let value = entry
        .live
        .get(&agent, &table, &key, sub.as_bytes())
        .map_err(live_error)?;
    Ok(Json(serde_json::json!({
        "agent": agent, "table": table, "key": q.key, "sub": sub,
        "found": value.is_some(),
        "value": value.as_deref().map(describe_value),
    })))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    limit: Option<usize>,
}

async fn read_logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<Vec<super::logs::LogLine>>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    s.pipelines.get(&name)?;
    Ok(Json(s.logs.lines(&name, q.limit.unwrap_or(200))))
}

// ---- the event stream ----

/// Every pipeline's view, twice a second, with rows per second since the previous event.
async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let state = (
        s,
        BTreeMap::<(String, String), (u64, u64)>::new(),
        None::<Instant>,
    );
    let stream = futures_util::stream::unfold(state, |(s, mut last, mut at)| async move {
        if at.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let now = Instant::now();
        let secs = at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        at = Some(now);
        let pipelines: Vec<serde_json::Value> = s
            .pipelines
            .list()
            .iter()
            .map(|e| {
                let v = view(e, false);
                let mut json = serde_json::to_value(&v).unwrap_or_default();
                for (i, n) in v.nodes.iter().enumerate() {
                    let key = (v.name.clone(), n.name.clone());
                    let (rin, rout) = last
                        .insert(key, (n.rows_in, n.rows_out))
                        .unwrap_or((n.rows_in, n.rows_out));
                    let rate = |now: u64, before: u64| {
                        if secs > 0.0 {
                            now.saturating_sub(before) as f64 / secs
                        } else {
                            0.0
                        }
                    };
                    json["nodes"][i]["rate_in"] = rate(n.rows_in, rin).into();
                    json["nodes"][i]["rate_out"] = rate(n.rows_out, rout).into();
                }
                json
            })
            .collect();
        let event = Event::default()
            .event("stats")
            .json_data(
                serde_json::json!({ "unix_ms": super::now_unix_ms(), "pipelines": pipelines }),
            )
            .unwrap_or_else(|_| Event::default().comment("unencodable"));
        Some((Ok(event), (s, last, at)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_as_the_host_encodes_key_columns() {
        assert_eq!(encode_key("7", None).unwrap(), 7i64.to_le_bytes());
        assert_eq!(encode_key("card-7", None).unwrap(), b"card-7");
        assert_eq!(encode_key("7", Some("int32")).unwrap(), 7i32.to_le_bytes());
        assert_eq!(encode_key("7", Some("utf8")).unwrap(), b"7");
        assert_eq!(encode_key("ff00", Some("hex")).unwrap(), vec![0xff, 0]);
        assert!(
            encode_key("x", Some("int64"))
                .unwrap_err()
                .message
                .contains("not a valid int64")
        );
        assert!(
            encode_key("1", Some("float"))
                .unwrap_err()
                .message
                .contains("expected int8")
        );
    }

    #[test]
    fn values_are_described_in_every_reading_that_applies() {
        let v = describe_value(&[0xac, 0x02]);
        assert_eq!(v["varint"], 300);
        assert_eq!(v["zigzag"], 150);
        assert!(v.get("utf8").is_none());
        let v = describe_value(b"{\"n\":1}");
        assert_eq!(v["json"]["n"], 1);
        assert!(v.get("varint").is_none());
        assert!(describe_value(&[0x80, 0x80]).get("varint").is_none());
    }

    #[test]
    fn json_definitions_become_toml_and_nulls_are_refused() {
        let t = json_to_toml(br#"{"pipeline": {"name": "p"}, "edges": ["a -> b"]}"#).unwrap();
        assert!(t.contains("name = \"p\""), "{t}");
        assert!(
            json_to_toml(b"[1]")
                .unwrap_err()
                .message
                .contains("JSON object")
        );
        assert!(json_to_toml(br#"{"pipeline": null}"#).is_err());
        assert!(
            json_to_toml(b"{")
                .unwrap_err()
                .message
                .contains("does not parse as JSON")
        );
    }
}
