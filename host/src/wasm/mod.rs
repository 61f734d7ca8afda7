//! Running agents: wasmtime with the component model, sandboxed.
//!
//! - [`WasmRuntime`]: one engine per process, with epoch interruption driven by a ticker thread,
//!   the [`cache::CompileCache`], and the one [`Linker`] that offers the agent world's imports.
//! - [`AgentModule`]: a loaded, compiled and type-checked component.
//! - [`AgentInstance`]: one sandboxed instance within its budget ([`limits`]): a deadline per
//!   call, memory and tables, output rows and bytes, error bytes, log rate, state, timers. A
//!   trapped instance, or one over a budget, is discarded and the next call gets a fresh one.
//! - `crossing`: a batch's IPC written straight into the instance's memory, one copy.
//! - [`native`]: the built-in operators run in the host's process, their host calls checked
//!   as a component's are ([`Builtins`] chooses, `SABOT_BUILTINS=wasm` sandboxes them too).
//! - One file per imported WIT interface: [`log`], [`metrics`], [`state`] (with `packed-state`),
//!   [`timers`]. WASI is linked with nothing granted: no preopened directories, no sockets, no
//!   environment; standard output and error are captured ([`capture`]).

mod bindings;
pub mod builtin;
pub mod cache;
pub mod capture;
pub mod componentize;
mod crossing;
pub mod function;
pub mod inspect;
mod instance;
pub mod isolate;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod native;
pub mod state;
pub mod timers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use cache::{CacheOutcome, CompileCache};
pub use instance::{AgentFailure, AgentInstance, Emitted};
pub use limits::{Budget, BudgetExceeded, Limits, LimitsOverride};
pub use metrics::{AgentMetrics, CallSnapshot};
pub use native::Builtins;

/// The world every agent implements, at the contract's newest version (components built against
/// an earlier `0.1` version run too: the host links them semver-compatibly).
pub const WORLD: &str = "sabot:agent/agent@0.1.1";
/// The world of agents that also work in event time (timers, watermarks).
pub const TIMED_WORLD: &str = "sabot:agent/timed-agent@0.1.1";
/// The interface every agent exports.
pub const HANDLER: &str = "sabot:agent/handler@0.1.1";

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Names an instance in logs and errors.
#[derive(Debug, Clone, Default)]
pub struct Tags {
    pub pipeline: String,
    pub agent: String,
    pub instance: usize,
}

/// Where a module's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleSource {
    /// A `.wasm` component file.
    Path(PathBuf),
    /// One of the operators shipped inside the `sabot` binary (`builtin:NAME`).
    Builtin(String),
}

impl std::fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleSource::Path(p) => write!(f, "{}", p.display()),
            ModuleSource::Builtin(name) => write!(f, "builtin:{name}"),
        }
    }
}

/// Why a module could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The file cannot be read.
    #[error("module {module} cannot be read: {source}")]
    Read {
        module: String,
        #[source]
        source: std::io::Error,
    },
    /// `builtin:NAME` names no built-in operator.
    #[error("there is no built-in operator `{name}` (built-ins: {available})")]
    UnknownBuiltin { name: String, available: String },
    /// A core Wasm module where a component is needed.
    #[error(
        "module {module} is a core WebAssembly module, not a component: build a Rust agent for the wasm32-wasip2 target (cargo build --release --target wasm32-wasip2); wrap a wasip1 module (Go) with `sabot componentize`"
    )]
    NotAComponent { module: String },
    /// Not WebAssembly, or invalid.
    #[error("module {module} is not a valid WebAssembly component: {message}")]
    Invalid { module: String, message: String },
    /// A valid component that does not implement the agent world.
    #[error(
        "module {module} does not implement the {WORLD} world, nor an earlier 0.1 version of it: {message} (build agents with sabot-sdk's export_agent!)"
    )]
    WrongWorld { module: String, message: String },
    /// The engine could not be created.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// A setting of the runtime is not one it understands.
    #[error("{0}")]
    Setting(String),
    /// The compile cache directory is not safe to load native code from.
    #[error(
        "the compile cache directory {dir} is not safe to load compiled code from: {reason}; use a directory of your own that no other user can write (--cache-dir, SABOT_CACHE_DIR)"
    )]
    UntrustedCache { dir: String, reason: String },
    /// Compiling took longer than it was given, and was stopped.
    #[error(
        "module {module} took longer than {ms} ms to compile and was stopped (a module that costs this much to compile is refused)"
    )]
    CompileTimeout { module: String, ms: u128 },
}

/// The store data of one instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: limits::InstanceLimiter,
    /// Where the instance's guest log lines are throttled.
    log: Arc<log::LogThrottle>,
    /// A state or timer budget the running call went over: the call fails, whatever the guest
    /// made of the refusal.
    exceeded: Option<BudgetExceeded>,
    tags: Arc<Tags>,
    metrics: Arc<AgentMetrics>,
    state: crate::state::StateScope,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine every process of this build creates: the same settings, so that one process may
/// compile into the cache for another ([`isolate`]).
pub(crate) fn new_engine() -> Result<Engine, ModuleError> {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    Engine::new(&config).map_err(|e| ModuleError::Engine(e.to_string()))
}

/// Refuses at once bytes that are not a component: a core module, or not WebAssembly.
pub fn check_header(name: &str, bytes: &[u8]) -> Result<(), ModuleError> {
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(ModuleError::NotAComponent {
            module: name.to_owned(),
        });
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(ModuleError::Invalid {
            module: name.to_owned(),
            message: "the file does not start with the WebAssembly component header".into(),
        });
    }
    Ok(())
}

/// The engine, linker and compile cache shared by every agent of a process.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: CompileCache,
    /// Components compiled by this process, by sha256: loading a module twice (two agents, two
    /// pipelines, concurrent loads) compiles it once.
    compiled: Mutex<HashMap<String, Arc<Mutex<Option<Component>>>>>,
    /// How `builtin:NAME` agents run.
    builtins: Builtins,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// Creates the engine (epoch interruption on, optimising compiler) and starts its ticker;
    /// built-in operators run as `SABOT_BUILTINS` says (natively unless it says `wasm`).
    pub fn new(cache: CompileCache) -> Result<Arc<Self>, ModuleError> {
        let builtins = Builtins::from_env().map_err(ModuleError::Setting)?;
        Self::with_builtins(cache, builtins)
    }

    /// [`WasmRuntime::new`], with built-in operators run as `builtins` says.
    pub fn with_builtins(
        cache: CompileCache,
        builtins: Builtins,
    ) -> Result<Arc<Self>, ModuleError> {
        if let Err(reason) = cache.verify() {
            return Err(ModuleError::UntrustedCache {
                dir: cache
                    .dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                reason,
            });
        }
        let engine = new_engine()?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| ModuleError::Engine(e.to_string()))?;
        log::add(&mut linker).map_err(|e| ModuleError::Engine(e.to_string()))?;
        metrics::add(&mut linker).map_err(|e| ModuleError::Engine(e.to_string()))?;
        state::add(&mut linker).map_err(|e| ModuleError::Engine(e.to_string()))?;
        timers::add(&mut linker).map_err(|e| ModuleError::Engine(e.to_string()))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("sabot-epoch".into())
            .spawn(move || {
                // The epoch follows wall time, not the number of wake-ups: on a loaded machine a
                // late wake-up catches up, so a deadline never stretches with the ticker's delays.
                let started = Instant::now();
                let mut ticks: u128 = 0;
                while let Some(engine) = weak.upgrade() {
                    let due = started.elapsed().as_millis() / EPOCH_TICK.as_millis();
                    while ticks < due {
                        engine.increment_epoch();
                        ticks += 1;
                    }
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| ModuleError::Engine(format!("cannot start the epoch ticker: {e}")))?;

        Ok(Arc::new(WasmRuntime {
            engine,
            linker,
            cache,
            compiled: Mutex::new(HashMap::new()),
            builtins,
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compile cache.
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// How built-in operators run.
    pub fn builtins(&self) -> Builtins {
        self.builtins
    }

    /// Reads, compiles (or loads from the cache) and type-checks a module.
    pub fn load(&self, source: &ModuleSource) -> Result<Arc<AgentModule>, ModuleError> {
        let name = source.to_string();
        let bytes = match source {
            ModuleSource::Path(path) => std::fs::read(path).map_err(|e| ModuleError::Read {
                module: name.clone(),
                source: e,
            })?,
            ModuleSource::Builtin(op) => {
                let bytes = builtin::bytes(op).ok_or_else(|| ModuleError::UnknownBuiltin {
                    name: op.clone(),
                    available: builtin::names().join(", "),
                })?;
                if self.builtins == Builtins::Native
                    && let Some(start) = native::start(op)
                {
                    return Ok(Arc::new(AgentModule {
                        name,
                        // The component's: the version of the operator, whichever way it runs.
                        sha256: cache::sha256_hex(bytes),
                        size: bytes.len(),
                        cache: CacheOutcome::Native,
                        load_time: Duration::ZERO,
                        runs: Runs::Native(start),
                    }));
                }
                bytes.to_vec()
            }
        };
        self.load_bytes(&name, &bytes)
    }

    /// Compiles (or loads from the cache) and type-checks a module from its bytes; `name` is used
    /// in messages.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Arc<AgentModule>, ModuleError> {
        let _span = tracing::info_span!("wasm.load", module = %name).entered();
        check_header(name, bytes)?;
        let hash = cache::sha256_hex(bytes);
        let started = Instant::now();
        let slot = self
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(hash.clone())
            .or_default()
            .clone();
        // Concurrent loads of the same module wait here for the first one to compile it.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let (component, outcome) = match &*slot {
            Some(component) => (component.clone(), CacheOutcome::Reused),
            None => {
                let (component, outcome) = self
                    .cache
                    .load_or_compile(&self.engine, bytes, &hash)
                    .map_err(|e| ModuleError::Invalid {
                    module: name.to_owned(),
                    message: format!("{e:#}"),
                })?;
                *slot = Some(component.clone());
                (component, outcome)
            }
        };
        drop(slot);
        let load_time = started.elapsed();
        let wrong_world = |e: wasmtime::Error| {
            // Not an agent: keep nothing of it in memory (an upload server sees many such).
            self.forget(&hash);
            ModuleError::WrongWorld {
                module: name.to_owned(),
                message: format!("{e:#}"),
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let handler = bindings::HandlerIndices::new(&pre).map_err(wrong_world)?;
        // `process` again, to call it with the batch lowered in place (`crossing`).
        let process = component
            .get_export_index(None, HANDLER)
            .and_then(|h| component.get_export_index(Some(&h), "process"))
            .ok_or_else(|| {
                wrong_world(wasmtime::Error::msg(format!("no `process` in `{HANDLER}`")))
            })?;
        // Optional: a component of the plain `agent` world has no event-time hooks.
        let time_handler = bindings::TimeHandlerIndices::new(&pre).ok();
        let pre = AgentPre {
            pre,
            handler,
            process,
            time_handler,
        };
        tracing::debug!(module = %name, sha256 = %hash, cache = ?outcome, ms = load_time.as_millis() as u64, "module ready");
        Ok(Arc::new(AgentModule {
            name: name.to_owned(),
            sha256: hash,
            size: bytes.len(),
            cache: outcome,
            load_time,
            runs: Runs::Component { component, pre },
        }))
    }

    /// Drops the compiled component of `sha256` from memory (the on-disk cache keeps it); modules
    /// already loaded keep their own handle.
    pub fn forget(&self, sha256: &str) {
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sha256);
    }

    fn host_state(
        &self,
        limits: &Limits,
        tags: Arc<Tags>,
        metrics: Arc<AgentMetrics>,
        state: crate::state::StateScope,
        log: Arc<log::LogThrottle>,
    ) -> (HostState, capture::Capture) {
        let stdout = capture::Capture::new("stdout", tags.clone(), log.clone());
        let stderr = capture::Capture::new("stderr", tags.clone(), log.clone());
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.stdout(stdout)
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let host = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: limits::InstanceLimiter::new(limits),
            log,
            exceeded: None,
            tags,
            metrics,
            state,
        };
        (host, stderr)
    }
}

/// A compiled component that implements the agent world.
pub struct AgentModule {
    /// The module's name in messages: its path, or `builtin:NAME`.
    pub name: String,
    /// The sha256 of its bytes, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: usize,
    /// Whether it came from the compile cache.
    pub cache: CacheOutcome,
    /// How long compiling (or loading from the cache) took.
    pub load_time: Duration,
    runs: Runs,
}

/// What an instance of a module runs.
enum Runs {
    /// A component, in the sandbox.
    Component { component: Component, pre: AgentPre },
    /// A built-in operator, natively.
    Native(native::Start),
}

impl AgentModule {
    /// Whether the module exports the event-time hooks (`time-handler`); every built-in does.
    pub fn has_time_handler(&self) -> bool {
        match &self.runs {
            Runs::Component { pre, .. } => pre.time_handler.is_some(),
            Runs::Native(_) => true,
        }
    }

    /// The compiled component, unless it runs natively.
    pub(crate) fn component(&self) -> Option<&Component> {
        match &self.runs {
            Runs::Component { component, .. } => Some(component),
            Runs::Native(_) => None,
        }
    }

    /// Whether it runs natively (a built-in operator) rather than as a sandboxed component.
    pub fn is_native(&self) -> bool {
        matches!(self.runs, Runs::Native(_))
    }
}

/// A component linked and checked, ready to instantiate: its exports located once.
struct AgentPre {
    pre: wasmtime::component::InstancePre<HostState>,
    handler: bindings::HandlerIndices,
    /// `handler.process`, called through [`crossing::ProcessFunc`].
    process: wasmtime::component::ComponentExportIndex,
    time_handler: Option<bindings::TimeHandlerIndices>,
}

impl std::fmt::Debug for AgentModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentModule")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Resolves a module path relative to `base`.
pub fn resolve(base: &Path, module: &str) -> ModuleSource {
    match module.strip_prefix("builtin:") {
        Some(name) => ModuleSource::Builtin(name.to_owned()),
        None => ModuleSource::Path(base.join(module)),
    }
}
