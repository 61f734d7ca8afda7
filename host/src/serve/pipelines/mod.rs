//! The server's pipelines: defined over the API, run by a supervisor thread each, hot-swapped
//! and rolled back by the swap monitor.
//!
//! On disk, per pipeline, under `DATA/pipelines/NAME/`: `pipeline.toml` (the definition, in the
//! pipeline-file schema), `control.json` (whether it should run, and the version each agent runs
//! after swaps), `run/` (state and checkpoints: a restart resumes from the newest checkpoint).
//!
//! ## A swap
//!
//! 1. `swap` checks the module (uploaded, implements the world), makes it the agent's current
//!    [`Version`](crate::dataflow::Version) and asks for a checkpoint now.
//! 2. Each instance switches at that barrier — state and timers stay in the host — and reports.
//! 3. The monitor: when an instance could not start the new version, every instance goes back
//!    to the old one at the next barrier (*rolled back*). When all started, the version is on
//!    *probation*: a trap within the window rolls back; so does a run that fails because of the
//!    agent — the supervisor then restarts the run from the newest checkpoint with the old version,
//!    which is what keeps the output exactly-once. After the window, the swap is *active* and
//!    recorded in `control.json`.
//!
//! In a cluster ([`super::cluster`]) the operations that change a pipeline — create, start,
//! stop, delete, swap — are written to the command log instead, and every replica's applier
//! makes them happen locally through the `*_local` operations and [`Pipelines::define`].

mod supervisor;
mod swap;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cluster::placement::Placed;
use super::cluster::{Cluster, log as cluster_log};
use super::modules::{ModuleStore, check_name};
use super::{ApiError, logs::GuestLogs};
use crate::Pipeline;
use crate::checkpoint::CheckpointSpec;
use crate::config::PipelineSpec;
use crate::config::secrets::SecretStore;
use crate::dataflow::{Live, RunStats};
use crate::wasm::{ModuleSource, WasmRuntime};
use supervisor::Supervisor;
pub use swap::{Swap, SwapState};

/// Settings of the server's pipelines.
#[derive(Debug, Clone)]
pub struct Settings {
    pub probation: Duration,
    pub checkpoint_ms: u64,
    /// The object store of the checkpoints of pipelines that name none.
    pub checkpoint_storage: Option<crate::checkpoint::StorageSpec>,
    /// Where `${secret:NAME}` references come from.
    pub secrets: Arc<SecretStore>,
    /// The cluster this server is a replica of, if any.
    pub cluster: Option<Arc<Cluster>>,
}

/// What a pipeline is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Defined, never started.
    Created,
    Running,
    /// Asked to stop; flushing and writing its final checkpoint.
    Stopping,
    Stopped,
    /// Its bounded input ended and everything was committed.
    Finished,
    Failed,
}

/// What the supervisor keeps of a pipeline on disk besides its definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ControlFile {
    /// Whether the pipeline should run when the server starts.
    running: bool,
    /// Agents whose version was swapped: module reference and config.
    #[serde(default)]
    versions: BTreeMap<String, SwappedVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SwappedVersion {
    module: String,
    config: String,
}

/// One pipeline of the server.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    /// The definition as TOML.
    pub text: String,
    dir: PathBuf,
    pipeline: Arc<Pipeline>,
    pub live: Arc<Live>,
    /// What of it runs on this replica, in a cluster.
    pub placed: Placed,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    status: Status,
    error: Option<String>,
    stats: Arc<RunStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    swaps: Vec<Swap>,
    restarts: u64,
    runs: u64,
    control: ControlFile,
}

impl Entry {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pipeline's definition.
    pub fn spec(&self) -> &PipelineSpec {
        self.pipeline.spec()
    }

    /// Its status and the error that stopped it, if any.
    pub fn status(&self) -> (Status, Option<String>) {
        let i = self.inner();
        (i.status, i.error.clone())
    }

    /// The counters of the current (or last) run.
    pub fn stats(&self) -> Arc<RunStats> {
        self.inner().stats.clone()
    }

    /// Every swap asked of it, oldest first.
    pub fn swaps(&self) -> Vec<Swap> {
        self.inner().swaps.clone()
    }

    /// Runs restarted after a failed swap.
    pub fn restarts(&self) -> u64 {
        self.inner().restarts
    }

    /// The version label each agent runs now.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.live
            .versions()
            .iter()
            .map(|(agent, v)| (agent.clone(), v.current().1.label.clone()))
            .collect()
    }

    fn save_control(&self, control: &ControlFile) {
        let bytes = serde_json::to_vec_pretty(control).unwrap_or_default();
        if let Err(e) = super::modules::write_atomic(&self.dir.join("control.json"), &bytes) {
            tracing::error!(pipeline = %self.name, error = %e.message, "cannot save the pipeline's control file");
        }
    }
}

/// Every pipeline of the server.
#[derive(Debug)]
pub struct Pipelines {
    dir: PathBuf,
    runtime: Arc<WasmRuntime>,
    modules: Arc<ModuleStore>,
    settings: Settings,
    logs: Arc<GuestLogs>,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// Names being created, with what each create is doing (see [`Pipelines::reserve`]).
    creating: Mutex<BTreeMap<String, String>>,
    /// Why recent creates were refused, by name, for clients that followed them (202).
    refusals: Mutex<BTreeMap<String, String>>,
    next_swap: std::sync::atomic::AtomicU64,
}

/// A name taken by a create in progress.
struct Reservation<'a> {
    pipelines: &'a Pipelines,
    name: String,
}

impl Reservation<'_> {
    fn progress(&self, what: &str) {
        self.pipelines.progress(&self.name, what);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.pipelines
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

/// The `[pipeline] name` of a definition, checked.
pub fn name_of(text: &str) -> Result<String, ApiError> {
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let name = doc
        .get("pipeline")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| {
            ApiError::bad_request("the pipeline has no name: expected `[pipeline] name = \"…\"`")
        })?
        .to_owned();
    check_name("pipeline", &name)?;
    Ok(name)
}

/// The module references in a definition: agent → `module` as written.
pub(crate) fn module_references(text: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "the pipeline does not parse: {}",
            e.to_string().trim_end()
        ))
    })?;
    let mut refs = BTreeMap::new();
    if let Some(agents) = doc.get("agents").and_then(|a| a.as_table()) {
        for (name, agent) in agents {
            if let Some(m) = agent.get("module").and_then(|m| m.as_str()) {
                refs.insert(name.clone(), m.to_owned());
            }
        }
    }
    Ok(refs)
}

impl Pipelines {
    /// The pipelines kept under `dir` (loaded, not started: see [`Pipelines::resume_all`]).
    pub fn new(
        dir: PathBuf,
        runtime: Arc<WasmRuntime>,
        modules: Arc<ModuleStore>,
        settings: Settings,
        logs: Arc<GuestLogs>,
    ) -> Arc<Self> {
        let pipelines = Arc::new(Pipelines {
            dir,
            runtime,
            modules,
            settings,
            logs,
            entries: Mutex::new(BTreeMap::new()),
            creating: Mutex::default(),
            refusals: Mutex::default(),
            next_swap: std::sync::atomic::AtomicU64::new(1),
        });
        let monitor = Arc::downgrade(&pipelines);
        let _ = std::thread::Builder::new()
            .name("swap-monitor".into())
            .spawn(move || {
                while let Some(p) = monitor.upgrade() {
                    p.watch_swaps();
                    drop(p);
                    std::thread::sleep(swap::MONITOR_TICK);
                }
            });
        pipelines
    }

    /// Takes `name` for a pipeline being created: refused when a pipeline has it or another
    /// create holds it; given back when the guard drops (the entry is in the map by then).
    fn reserve(&self, name: &str) -> Result<Reservation<'_>, ApiError> {
        let entries = self.entries();
        let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if entries.contains_key(name) || creating.contains_key(name) {
            let what = if entries.contains_key(name) {
                "exists"
            } else {
                "is being created"
            };
            return Err(ApiError::conflict(format!(
                "pipeline `{name}` {what}: stop and delete it first, or choose another name"
            )));
        }
        creating.insert(name.to_owned(), "checking the definition".to_owned());
        self.refusals().remove(name);
        Ok(Reservation {
            pipelines: self,
            name: name.to_owned(),
        })
    }

    /// Says what the create of `name` is doing now (shown while it is `creating`).
    fn progress(&self, name: &str, what: &str) {
        if let Some(p) = self
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(name)
        {
            *p = what.to_owned();
        }
    }

    /// What the create of `name` is doing, while it is in progress.
    pub fn creating(&self, name: &str) -> Option<String> {
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Why the last create of `name` was refused, if it was (and no pipeline has the name).
    pub fn refusal(&self, name: &str) -> Option<String> {
        self.refusals().get(name).cloned()
    }

    fn refused(&self, name: &str, why: &str) {
        let mut refusals = self.refusals();
        // Bounded: the latest refusals are what a client following a create asks about.
        if refusals.len() >= 256 {
            refusals.pop_first();
        }
        refusals.insert(name.to_owned(), why.to_owned());
    }

    fn refusals(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's secrets.
    pub fn secrets(&self) -> &Arc<SecretStore> {
        &self.settings.secrets
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every pipeline, by name.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.entries().values().cloned().collect()
    }

    /// The pipeline `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Entry>, ApiError> {
        self.entries()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no pipeline `{name}`")))
    }

    /// Whether a pipeline uses `sha256` (any agent's current version or its definition).
    pub fn uses(&self, sha256: &str) -> Option<String> {
        self.entries().values().find_map(|e| {
            let current = e
                .live
                .versions()
                .values()
                .any(|v| v.current().1.module.sha256 == sha256);
            let defined = e.pipeline.modules().values().any(|m| m.sha256 == sha256);
            (current || defined).then(|| e.name.clone())
        })
    }

    /// A definition sent as SQL, as the TOML the server keeps: its `CREATE FUNCTION`s name
    /// uploaded modules (`NAME@VERSION`), which answer for their calls' types.
    pub fn sql_to_toml(&self, sql: &str, name: &str) -> Result<String, ApiError> {
        let functions = |module: &str, config: &str, input: &arrow_schema::SchemaRef| {
            let source = match module.strip_prefix("builtin:") {
                Some(builtin) => ModuleSource::Builtin(builtin.to_owned()),
                None if module.contains('@') => {
                    ModuleSource::Path(self.modules.path(module).map_err(|e| e.message)?)
                }
                None => {
                    return Err(format!(
                        "on a server, a function's module is NAME@VERSION of an uploaded module (see GET /v1/modules), not '{module}'"
                    ));
                }
            };
            crate::wasm::function::answer(&self.runtime, &source, config, input)
        };
        crate::config::sql_to_toml(sql, name, Some(&functions))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// Validates a definition (TOML) and builds its pipeline: modules from the store, paths kept
    /// under its directory, a checkpoint interval when it has none.
    fn build(
        &self,
        text: &str,
        swapped: &BTreeMap<String, SwappedVersion>,
    ) -> Result<(PipelineSpec, Pipeline, BTreeMap<String, String>), ApiError> {
        let mut refs = module_references(text)?;
        let name = name_of(text)?;
        self.progress(&name, "checking the definition");
        let dir = self.dir.join(&name);
        let mut overrides = Vec::new();
        for (agent, module) in &refs {
            if module.starts_with("builtin:") {
                continue;
            }
            if !module.contains('@') {
                return Err(ApiError::bad_request(format!(
                    "[agents.{agent}] field `module`: {module:?} is not an uploaded module: on a server, expected NAME@VERSION (see GET /v1/modules) or builtin:NAME"
                )));
            }
            let path = self.modules.path(module).map_err(|e| ApiError {
                status: e.status,
                message: format!("[agents.{agent}] field `module`: {}", e.message),
            })?;
            overrides.push((agent.clone(), ModuleSource::Path(path)));
        }
        let mut spec = PipelineSpec::parse_confined(
            text,
            &dir.join("pipeline.toml"),
            &overrides,
            &self.settings.secrets,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if spec.scale_out.is_some() && self.settings.cluster.is_none() {
            return Err(ApiError::bad_request(
                "[pipeline.scale_out]: a server runs whole pipelines unless it is a replica of a cluster ([cluster] in its settings); run a scaled-out pipeline with `sabot run` on each member of the group",
            ));
        }
        if spec.checkpoint.is_none() {
            spec.checkpoint = Some(CheckpointSpec {
                interval_ms: self.settings.checkpoint_ms,
                retain: 3,
                storage: None,
            });
            // What depends on the interval is checked against the server's.
            for (sink, s) in &spec.sinks {
                if let crate::connectors::SinkSpec::Kafka(k) = s
                    && let Err((field, message)) =
                        k.validate_with_checkpoints(self.settings.checkpoint_ms)
                {
                    return Err(ApiError::bad_request(format!(
                        "[sinks.{sink}] field `{field}`: {message} (the server's `checkpoint_ms`, as the pipeline sets no `[pipeline.checkpoint] interval_ms`)"
                    )));
                }
            }
        }
        if let Some(c) = &mut spec.checkpoint
            && c.storage.is_none()
        {
            c.storage = self.settings.checkpoint_storage.clone();
        }
        let uploaded: Vec<&str> = refs
            .values()
            .filter(|m| !m.starts_with("builtin:"))
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.progress(
            &name,
            &format!(
                "loading the agents' modules ({}), compiling any the compile cache lost",
                if uploaded.is_empty() {
                    "built-in".to_owned()
                } else {
                    uploaded.join(", ")
                }
            ),
        );
        let pipeline = Pipeline::new(spec.clone(), self.runtime.clone())
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        for (agent, v) in swapped {
            if spec.agents.contains_key(agent) {
                refs.insert(agent.clone(), v.module.clone());
            }
        }
        Ok((spec, pipeline, refs))
    }

    /// The live view with each agent's label (its module reference) and swapped versions.
    fn live_for(
        &self,
        pipeline: &Pipeline,
        refs: &BTreeMap<String, String>,
        swapped: &BTreeMap<String, SwappedVersion>,
    ) -> Result<Live, ApiError> {
        let mut versions = Vec::new();
        for name in pipeline.spec().agents.keys() {
            let mut v = pipeline.version(name);
            if let Some(s) = swapped.get(name) {
                v.module = self.modules.load(&self.runtime, &s.module)?.1;
                v.config = s.config.clone();
            }
            if let Some(r) = refs.get(name) {
                v.label = r.clone();
            }
            versions.push((name.clone(), v));
        }
        Ok(Live::new(versions))
    }

    /// Defines a pipeline from its TOML definition. Refused when one of that name exists.
    pub fn create(&self, text: &str) -> Result<Arc<Entry>, ApiError> {
        // The name is taken first, under the lock, so that of two creates of one name exactly
        // one succeeds; the other is refused before it loads or writes anything.
        let name = name_of(text)?;
        let reserved = self.reserve(&name)?;
        let built = self.build(text, &BTreeMap::new());
        let (spec, pipeline, refs) = match built {
            Ok(built) => built,
            Err(e) => {
                self.refused(&name, &e.message);
                return Err(e);
            }
        };
        if let Some(cluster) = &self.settings.cluster {
            // Checked here; defined on every replica (this one too) by the command log.
            reserved.progress("writing the definition to the cluster's command log");
            drop((spec, pipeline));
            let result = cluster.create(text);
            if let Err(e) = &result {
                self.refused(&name, &e.message);
            }
            return result.and_then(|()| self.get(&name));
        }
        reserved.progress("writing the definition");
        let dir = self.dir.join(&spec.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
        super::modules::write_atomic(&dir.join("pipeline.toml"), text.as_bytes())?;
        let live = self.live_for(&pipeline, &refs, &BTreeMap::new())?;
        let entry = self.insert(spec, pipeline, text, live, ControlFile::default());
        entry.save_control(&entry.inner().control);
        Ok(entry)
    }

    /// Defines a pipeline of the cluster on this replica, as its record says (the applier).
    pub fn define(
        &self,
        text: &str,
        record: &cluster_log::PipelineRecord,
    ) -> Result<Arc<Entry>, ApiError> {
        let versions: BTreeMap<String, SwappedVersion> = record
            .versions
            .iter()
            .map(|(agent, v)| {
                (
                    agent.clone(),
                    SwappedVersion {
                        module: v.module.clone(),
                        config: v.config.clone(),
                    },
                )
            })
            .collect();
        let (spec, pipeline, refs) = self.build(text, &versions)?;
        let dir = self.dir.join(&spec.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
        super::modules::write_atomic(&dir.join("pipeline.toml"), text.as_bytes())?;
        let live = self.live_for(&pipeline, &refs, &versions)?;
        let control = ControlFile {
            running: false,
            versions,
        };
        let entry = self.insert(spec, pipeline, text, live, control);
        entry.save_control(&entry.inner().control);
        Ok(entry)
    }

    fn insert(
        &self,
        spec: PipelineSpec,
        pipeline: Pipeline,
        text: &str,
        live: Live,
        control: ControlFile,
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            name: spec.name.clone(),
            text: text.to_owned(),
            dir: self.dir.join(&spec.name),
            live: Arc::new(live),
            placed: Placed::default(),
            inner: Mutex::new(Inner {
                status: Status::Created,
                error: None,
                stats: Arc::new(RunStats::for_pipeline(&spec)),
                stop: Arc::default(),
                thread: None,
                swaps: Vec::new(),
                restarts: 0,
                runs: 0,
                control,
            }),
            pipeline: Arc::new(pipeline),
        });
        self.entries().insert(spec.name.clone(), entry.clone());
        entry
    }

    /// Loads the pipelines kept on disk and starts those that were running.
    pub fn resume_all(self: &Arc<Self>) {
        if self.settings.cluster.is_some() {
            // A replica's pipelines come from the command log ([`Pipelines::define`]).
            return;
        }
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for dir in dirs.flatten() {
            let path = dir.path();
            let Ok(text) = std::fs::read_to_string(path.join("pipeline.toml")) else {
                continue;
            };
            let control: ControlFile = std::fs::read(path.join("control.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let loaded = self
                .build(&text, &control.versions)
                .and_then(|(spec, pipeline, refs)| {
                    let live = self.live_for(&pipeline, &refs, &control.versions)?;
                    Ok((spec, pipeline, live))
                });
            match loaded {
                Ok((spec, pipeline, live)) => {
                    let running = control.running;
                    let entry = self.insert(spec, pipeline, &text, live, control);
                    if running && let Err(e) = self.start_local(&entry.name, false) {
                        tracing::error!(pipeline = %entry.name, error = %e.message, "cannot restart a pipeline");
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %path.display(), error = %e.message, "cannot load a kept pipeline")
                }
            }
        }
    }

    /// Starts `name` (resuming from its newest checkpoint unless `fresh`); in a cluster, on
    /// every replica.
    pub fn start(self: &Arc<Self>, name: &str, fresh: bool) -> Result<Arc<Entry>, ApiError> {
        match &self.settings.cluster {
            Some(cluster) => {
                cluster.start(name, fresh)?;
                self.get(name)
            }
            None => self.start_local(name, fresh),
        }
    }

    /// Starts `name` on this server.
    pub fn start_local(self: &Arc<Self>, name: &str, fresh: bool) -> Result<Arc<Entry>, ApiError> {
        let entry = self.get(name)?;
        // A definition with `${…}` references is loaded anew, so that each start uses the
        // secrets as they are now.
        let pipeline = if entry.text.contains("${") {
            let versions = entry.inner().control.versions.clone();
            Arc::new(self.build(&entry.text, &versions)?.1)
        } else {
            entry.pipeline.clone()
        };
        let mut inner = entry.inner();
        if matches!(inner.status, Status::Running | Status::Stopping) {
            return Err(ApiError::conflict(format!(
                "pipeline `{name}` is {}",
                serde_json::to_value(inner.status)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("busy")
            )));
        }
        if let Some(old) = inner.thread.take() {
            let _ = old.join();
        }
        inner.status = Status::Running;
        inner.error = None;
        inner.stop = Arc::default();
        inner.control.running = true;
        entry.save_control(&inner.control);
        let supervisor = Supervisor {
            entry: entry.clone(),
            pipeline,
            logs: self.logs.clone(),
            cluster: self.settings.cluster.clone(),
        };
        inner.thread = Some(
            std::thread::Builder::new()
                .name(format!("supervise-{name}"))
                .spawn(move || supervisor.run(fresh))
                .map_err(|e| ApiError::internal(format!("cannot start a thread: {e}")))?,
        );
        drop(inner);
        Ok(entry)
    }

    /// Asks `name` to stop; with `wait`, returns once it has (final checkpoint written); in a
    /// cluster, on every replica.
    pub fn stop(&self, name: &str, wait: bool) -> Result<Arc<Entry>, ApiError> {
        match &self.settings.cluster {
            Some(cluster) => {
                cluster.stop(name, wait)?;
                self.get(name)
            }
            None => self.stop_local(name, wait),
        }
    }

    /// Asks `name` to stop on this server.
    pub fn stop_local(&self, name: &str, wait: bool) -> Result<Arc<Entry>, ApiError> {
        let entry = self.get(name)?;
        let thread = {
            let mut inner = entry.inner();
            inner.control.running = false;
            entry.save_control(&inner.control);
            if inner.status == Status::Running {
                inner.status = Status::Stopping;
            }
            inner.stop.store(true, Ordering::SeqCst);
            if wait { inner.thread.take() } else { None }
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
        Ok(entry)
    }

    /// Stops every pipeline and waits (server shutdown); they restart with the server.
    pub fn stop_all(&self) {
        let entries = self.list();
        for e in &entries {
            e.inner().stop.store(true, Ordering::SeqCst);
        }
        for e in entries {
            let t = e.inner().thread.take();
            if let Some(t) = t {
                let _ = t.join();
            }
        }
    }

    /// Deletes a pipeline that is not running, with its data; in a cluster, on every replica,
    /// with its checkpoints in the object store.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        match &self.settings.cluster {
            Some(cluster) => cluster.delete(name),
            None => self.delete_local(name),
        }
    }

    /// Deletes a pipeline of this server that is not running, with its local data.
    pub fn delete_local(&self, name: &str) -> Result<(), ApiError> {
        let entry = self.get(name)?;
        {
            let inner = entry.inner();
            if matches!(inner.status, Status::Running | Status::Stopping) {
                return Err(ApiError::conflict(format!(
                    "pipeline `{name}` is running: stop it first (POST /v1/pipelines/{name}/stop)"
                )));
            }
        }
        self.entries().remove(name);
        self.logs.forget(name);
        std::fs::remove_dir_all(&entry.dir)
            .map_err(|e| ApiError::internal(format!("cannot remove {}: {e}", entry.dir.display())))
    }

    /// The server's modules.
    pub fn modules(&self) -> &Arc<ModuleStore> {
        &self.modules
    }

    /// The cluster this server is a replica of.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.settings.cluster.as_ref()
    }

    /// Shows how a pipeline of the cluster ended (on whichever replica it ended).
    pub fn mark_ended(&self, name: &str, ended: &cluster_log::Ended) {
        let Ok(entry) = self.get(name) else {
            return;
        };
        let mut inner = entry.inner();
        if matches!(inner.status, Status::Running | Status::Stopping) {
            return;
        }
        match ended {
            cluster_log::Ended::Finished { .. } => {
                inner.status = Status::Finished;
                inner.error = None;
            }
            cluster_log::Ended::Failed { replica, error } => {
                inner.status = Status::Failed;
                inner.error = Some(format!("on replica `{replica}`: {error}"));
            }
        }
    }

    /// What this replica runs of each pipeline, for its heartbeat.
    pub fn here(&self) -> BTreeMap<String, super::cluster::status::Here> {
        self.list()
            .into_iter()
            .map(|entry| {
                let (status, error) = entry.status();
                let stats = entry.stats();
                let here = super::cluster::status::Here {
                    status: serde_json::to_value(status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    tasks: entry
                        .placed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned()
                        .collect(),
                    events_in: stats.events_in(),
                    events_out: stats.events_out(),
                    swaps: entry
                        .swaps()
                        .iter()
                        .map(|s| {
                            let state = serde_json::to_value(s.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            (s.id, state)
                        })
                        .collect(),
                    error,
                };
                (entry.name.clone(), here)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_references_are_read_from_the_definition() {
        let refs = module_references(
            "[pipeline]\nname = \"p\"\n[agents.a]\nmodule = \"x@1\"\n[agents.b]\nmodule = \"builtin:filter\"\n",
        )
        .unwrap();
        assert_eq!(refs["a"], "x@1");
        assert_eq!(refs["b"], "builtin:filter");
        assert!(
            module_references("[pipeline")
                .unwrap_err()
                .message
                .contains("does not parse")
        );
    }
}
