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
//!    [`Version`] and asks for a checkpoint now.
//! 2. Each instance switches at that barrier — state and timers stay in the host — and reports.
//! 3. The monitor: when an instance could not start the new version, every instance goes back
//!    to the old one at the next barrier (*rolled back*). When all started, the version is on
//!    *probation*: a trap within the window rolls back; so does a run that fails because of the
//!    agent — the supervisor then restarts the run from the newest checkpoint with the old version,
//!    which is what keeps the output exactly-once. After the window, the swap is *active* and
//!    recorded in `control.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::modules::{ModuleStore, check_name};
use super::{ApiError, logs::GuestLogs, now_unix_ms};
use crate::checkpoint::CheckpointSpec;
use crate::config::PipelineSpec;
use crate::config::secrets::SecretStore;
use crate::dataflow::{Live, RunStats, SwapOutcome, Version};
use crate::wasm::{ModuleSource, WasmRuntime};
use crate::{Error, Pipeline, RunOptions};

/// How long a swap may wait for its barrier before it is given up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the monitor looks at swaps.
const MONITOR_TICK: Duration = Duration::from_millis(10);

/// Settings of the server's pipelines.
#[derive(Debug, Clone)]
pub struct Settings {
    pub probation: Duration,
    pub checkpoint_ms: u64,
    /// The object store of the checkpoints of pipelines that name none.
    pub checkpoint_storage: Option<crate::checkpoint::StorageSpec>,
    /// Where `${secret:NAME}` references come from.
    pub secrets: Arc<SecretStore>,
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

/// Where a swap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapState {
    /// Waiting for the instances to reach a barrier.
    Pending,
    /// Every instance runs the new version; a trap now rolls back.
    Probation,
    /// Done: the new version stays.
    Active,
    /// The old version is back; `reason` says why.
    RolledBack,
}

/// A swap, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub id: u64,
    pub agent: String,
    pub from: String,
    pub to: String,
    pub state: SwapState,
    pub reason: Option<String>,
    pub requested_unix_ms: u64,
    /// The checkpoint barrier at which the instances switched.
    pub checkpoint: Option<u64>,
    /// The longest pause an instance's switch caused in its data path, microseconds.
    pub pause_us: Option<u64>,
    /// From the request to every instance running the new version, microseconds.
    pub switch_us: Option<u64>,
    #[serde(skip)]
    generation: u64,
    #[serde(skip)]
    old: Version,
    #[serde(skip)]
    new: Version,
    #[serde(skip)]
    requested: Instant,
    #[serde(skip)]
    probation_since: Option<Instant>,
    #[serde(skip)]
    traps_before: u64,
    #[serde(skip)]
    started: usize,
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
fn module_references(text: &str) -> Result<BTreeMap<String, String>, ApiError> {
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
                    std::thread::sleep(MONITOR_TICK);
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
        if spec.scale_out.is_some() {
            return Err(ApiError::bad_request(
                "[pipeline.scale_out]: a server runs whole pipelines; run a scaled-out pipeline with `sabot run` on each member of the group",
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
                    if running && let Err(e) = self.start(&entry.name, false) {
                        tracing::error!(pipeline = %entry.name, error = %e.message, "cannot restart a pipeline");
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %path.display(), error = %e.message, "cannot load a kept pipeline")
                }
            }
        }
    }

    /// Starts `name` (resuming from its newest checkpoint unless `fresh`).
    pub fn start(self: &Arc<Self>, name: &str, fresh: bool) -> Result<Arc<Entry>, ApiError> {
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

    /// Asks `name` to stop; with `wait`, returns once it has (final checkpoint written).
    pub fn stop(&self, name: &str, wait: bool) -> Result<Arc<Entry>, ApiError> {
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

    /// Deletes a pipeline that is not running, with its data.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
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

    /// Swaps `agent` of `pipeline` to the module `reference` (with `config`, else the config it
    /// runs with) at the next checkpoint barrier.
    pub fn swap(
        &self,
        pipeline: &str,
        agent: &str,
        reference: &str,
        config: Option<String>,
    ) -> Result<Swap, ApiError> {
        let entry = self.get(pipeline)?;
        let cell = entry.live.version(agent).cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "pipeline `{pipeline}` has no agent `{agent}` (agents: {})",
                entry
                    .spec()
                    .agents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let (_, module) = self.modules.load(&self.runtime, reference)?;
        let mut inner = entry.inner();
        if inner.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "pipeline `{pipeline}` is not running: a swap happens at a checkpoint barrier of a running pipeline (start it first)"
            )));
        }
        if let Some(s) = inner.swaps.iter().find(|s| {
            s.agent == agent && matches!(s.state, SwapState::Pending | SwapState::Probation)
        }) {
            return Err(ApiError::conflict(format!(
                "agent `{agent}` is already being swapped to {} (swap {}, {:?}): wait for it to end",
                s.to, s.id, s.state
            )));
        }
        let (_, old) = cell.current();
        let new = Version {
            module,
            config: config.unwrap_or_else(|| old.config.clone()),
            label: reference.to_owned(),
        };
        cell.take_reports();
        let generation = cell.set(new.clone());
        let swap = Swap {
            id: self.next_swap.fetch_add(1, Ordering::Relaxed),
            agent: agent.to_owned(),
            from: old.label.clone(),
            to: reference.to_owned(),
            state: SwapState::Pending,
            reason: None,
            requested_unix_ms: now_unix_ms(),
            checkpoint: None,
            pause_us: None,
            switch_us: None,
            generation,
            old: (*old).clone(),
            new,
            requested: Instant::now(),
            probation_since: None,
            traps_before: 0,
            started: 0,
        };
        inner.swaps.push(swap.clone());
        drop(inner);
        entry.live.checkpoint_now();
        tracing::info!(pipeline, agent, from = %swap.from, to = %swap.to, "swap requested");
        Ok(swap)
    }

    /// One look at every swap under way.
    fn watch_swaps(&self) {
        for entry in self.list() {
            let mut inner = entry.inner();
            let probation = self.settings.probation;
            let mut save = false;
            let Inner { swaps, control, .. } = &mut *inner;
            for swap in swaps
                .iter_mut()
                .filter(|s| matches!(s.state, SwapState::Pending | SwapState::Probation))
            {
                let Some(cell) = entry.live.version(&swap.agent) else {
                    continue;
                };
                let parallelism = entry.spec().agents[&swap.agent].parallelism;
                let traps = || {
                    entry.live.metrics(&swap.agent).map_or((0, None), |m| {
                        (m.calls.snapshot().traps, m.calls.last_trap())
                    })
                };
                let mut failed = None;
                for r in cell.take_reports() {
                    if r.generation != swap.generation {
                        continue;
                    }
                    swap.checkpoint = Some(r.checkpoint);
                    match r.outcome {
                        SwapOutcome::Started { pause } => {
                            swap.started += 1;
                            swap.pause_us =
                                Some(swap.pause_us.unwrap_or(0).max(pause.as_micros() as u64));
                        }
                        SwapOutcome::Failed { reason } => {
                            failed = Some(format!(
                                "instance {} could not start {}: {reason}",
                                r.instance, swap.to
                            ))
                        }
                    }
                }
                if let Some(reason) = failed {
                    roll_back(&entry.name, swap, cell, reason);
                    entry.live.checkpoint_now();
                    continue;
                }
                match swap.state {
                    SwapState::Pending if swap.started >= parallelism => {
                        swap.state = SwapState::Probation;
                        swap.probation_since = Some(Instant::now());
                        swap.switch_us = Some(swap.requested.elapsed().as_micros() as u64);
                        swap.traps_before = traps().0;
                        tracing::info!(pipeline = %entry.name, agent = %swap.agent, version = %swap.to, pause_us = swap.pause_us, "every instance runs the new version; on probation");
                    }
                    SwapState::Pending if swap.requested.elapsed() > SWAP_TIMEOUT => {
                        roll_back(
                            &entry.name,
                            swap,
                            cell,
                            format!(
                                "no checkpoint barrier reached every instance within {} s",
                                SWAP_TIMEOUT.as_secs()
                            ),
                        );
                    }
                    SwapState::Probation => {
                        let (now, last) = traps();
                        // Under `on_error = fail` a trap fails the run, and the supervisor rolls
                        // back and restarts it; otherwise the trap was skipped or dead-lettered,
                        // and rolling back at the next barrier is enough.
                        let fails_run = entry.spec().agents[&swap.agent].on_error
                            == crate::connectors::OnError::Fail;
                        if now > swap.traps_before && !fails_run {
                            let reason = format!(
                                "{} trapped within its probation of {} ms: {}",
                                swap.to,
                                probation.as_millis(),
                                last.unwrap_or_default()
                            );
                            roll_back(&entry.name, swap, cell, reason);
                            entry.live.checkpoint_now();
                        } else if swap
                            .probation_since
                            .is_some_and(|t| t.elapsed() >= probation)
                        {
                            swap.state = SwapState::Active;
                            control.versions.insert(
                                swap.agent.clone(),
                                SwappedVersion {
                                    module: swap.to.clone(),
                                    config: swap.new.config.clone(),
                                },
                            );
                            save = true;
                            tracing::info!(pipeline = %entry.name, agent = %swap.agent, version = %swap.to, "swap active");
                        }
                    }
                    _ => {}
                }
            }
            if save {
                entry.save_control(control);
            }
        }
    }
}

/// Puts the old version back.
fn roll_back(
    pipeline: &str,
    swap: &mut Swap,
    cell: &crate::dataflow::AgentVersion,
    reason: String,
) {
    tracing::warn!(pipeline, agent = %swap.agent, from = %swap.to, to = %swap.from, %reason, "rolling back a swap");
    cell.set(swap.old.clone());
    swap.state = SwapState::RolledBack;
    swap.reason = Some(reason);
}

/// Runs one pipeline; restarts it (from the newest checkpoint) when it failed because of a
/// version on probation, after putting the old version back.
struct Supervisor {
    entry: Arc<Entry>,
    /// What runs: the entry's pipeline, or the same definition with its secrets resolved anew.
    pipeline: Arc<Pipeline>,
    logs: Arc<GuestLogs>,
}

impl Supervisor {
    fn run(self, fresh: bool) {
        let entry = &self.entry;
        let _span = tracing::info_span!("pipeline.supervise", pipeline = %entry.name).entered();
        let _ = &self.logs;
        let mut fresh = fresh;
        loop {
            let (stop, stats) = {
                let mut inner = entry.inner();
                inner.stats = Arc::new(RunStats::for_pipeline(entry.spec()));
                inner.runs += 1;
                (inner.stop.clone(), inner.stats.clone())
            };
            let result = self.pipeline.run(RunOptions {
                stop: stop.clone(),
                stats: Some(stats),
                data_dir: Some(entry.dir.join("run")),
                fresh,
                live: Some(entry.live.clone()),
                work_dir: None,
            });
            fresh = false;
            let mut inner = entry.inner();
            match result {
                Ok(summary) => {
                    inner.status = if summary.interrupted {
                        Status::Stopped
                    } else {
                        Status::Finished
                    };
                    if inner.status == Status::Finished {
                        inner.control.running = false;
                        entry.save_control(&inner.control);
                    }
                    for s in inner
                        .swaps
                        .iter_mut()
                        .filter(|s| s.state == SwapState::Probation)
                    {
                        // The input ended within the window without a trap.
                        s.state = SwapState::Active;
                    }
                    for s in inner
                        .swaps
                        .iter_mut()
                        .filter(|s| s.state == SwapState::Pending)
                    {
                        if let Some(cell) = entry.live.version(&s.agent) {
                            roll_back(&entry.name, s, cell, "the pipeline stopped before a checkpoint barrier reached every instance".into());
                        }
                    }
                    tracing::info!(
                        events_in = summary.events_in,
                        events_out = summary.events_out,
                        "pipeline ended"
                    );
                    return;
                }
                Err(error) => {
                    // Whatever the error quotes, the values of secrets are not shown or logged.
                    let shown = self.pipeline.spec().secrets.redact(&error.to_string());
                    let failed_agent = match &error {
                        Error::Agent { agent, .. } => Some(agent.clone()),
                        _ => None,
                    };
                    let wanted = inner.control.running;
                    let on_trial = failed_agent.as_ref().and_then(|agent| {
                        inner.swaps.iter_mut().find(|s| {
                            &s.agent == agent
                                && matches!(s.state, SwapState::Pending | SwapState::Probation)
                        })
                    });
                    match on_trial {
                        Some(swap) if wanted => {
                            let reason = format!("{} failed the pipeline: {shown}", swap.to);
                            if let Some(cell) = entry.live.version(&swap.agent) {
                                roll_back(&entry.name, swap, cell, reason);
                            }
                            inner.restarts += 1;
                            tracing::warn!(
                                "restarting the pipeline from its newest checkpoint with the old version"
                            );
                            // The failed run set its stop flag; the next run gets a new one.
                            inner.stop = Arc::default();
                            continue;
                        }
                        _ => {
                            inner.status = Status::Failed;
                            tracing::error!(error = %shown, "pipeline failed");
                            inner.error = Some(shown);
                            return;
                        }
                    }
                }
            }
        }
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
