//! One sandboxed agent instance: calls with a deadline, a memory cap and an output cap; a trapped
//! instance is discarded and replaced on the next call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use sabot_sdk::ipc::{BatchDecoder, BatchEncoder};
use wasmtime::Store;

use super::bindings::exports::sabot::agent::{handler, time_handler};
use super::bindings::{self, sabot::agent::types::Output};
use super::capture::Capture;
use super::{AgentMetrics, AgentModule, EPOCH_TICK, HostState, Limits, Tags, WasmRuntime};
use crate::state::StateScope;
use crate::time::Timer;

/// A batch an agent emitted, decoded, with its output port.
pub type Emitted = (u32, RecordBatch);

/// How an agent call went wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentFailure {
    /// `init` refused the configuration, or failed.
    #[error("init failed: {0}")]
    Init(String),
    /// The agent reported an error for a batch (not a trap).
    #[error("{kind} error{}: {message}", row.map(|r| format!(" at row {r}")).unwrap_or_default())]
    Error {
        kind: &'static str,
        message: String,
        row: Option<u32>,
    },
    /// The instance trapped: a panic, an `unreachable`, a stack overflow...
    #[error("trapped: {reason}{}", stderr_suffix(.stderr))]
    Trap { reason: String, stderr: String },
    /// A call ran past its deadline and was interrupted.
    #[error("exceeded its deadline of {deadline_ms} ms for one call and was stopped")]
    Deadline { deadline_ms: u64 },
    /// The instance tried to grow its memory past the cap.
    #[error("exceeded its memory cap of {memory_mb} MiB and was stopped{}", stderr_suffix(.stderr))]
    Memory { memory_mb: u64, stderr: String },
    /// One call returned more output than allowed.
    #[error(
        "returned {bytes} bytes of output from one call, over the cap of {cap} bytes (limits.max_output_mb)"
    )]
    OutputTooLarge { bytes: usize, cap: usize },
    /// The output is not valid Arrow IPC.
    #[error("returned output on port {port} that is not valid Arrow IPC: {message}")]
    MalformedOutput { port: u32, message: String },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; the agent wrote to stderr: {stderr}")
    }
}

impl AgentFailure {
    /// Whether the instance trapped: a panic, a deadline, the memory cap (not an error it
    /// returned).
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            AgentFailure::Trap { .. } | AgentFailure::Deadline { .. } | AgentFailure::Memory { .. }
        )
    }

    /// Whether the failure concerns the batch (policy applies) rather than the agent's setup.
    pub fn is_batch_failure(&self) -> bool {
        !matches!(self, AgentFailure::Init(_))
    }
}

struct Live {
    store: Store<HostState>,
    handler: handler::Guest,
    time_handler: Option<time_handler::Guest>,
    stderr: Capture,
}

/// What a guest call returns before its outputs are checked and decoded.
type RawResult = wasmtime::Result<Result<Vec<Output>, bindings::sabot::agent::types::AgentError>>;

/// One sandboxed instance of an agent.
pub struct AgentInstance {
    runtime: Arc<WasmRuntime>,
    module: Arc<AgentModule>,
    config: String,
    limits: Limits,
    tags: Arc<Tags>,
    metrics: Arc<AgentMetrics>,
    state: StateScope,
    live: Option<Live>,
    to_guest: HashMap<u32, BatchEncoder>,
    from_guest: HashMap<u32, BatchDecoder>,
    restarts: u64,
}

impl std::fmt::Debug for AgentInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentInstance")
            .field("tags", &self.tags)
            .field("module", &self.module.name)
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}

impl AgentInstance {
    /// Instantiates `module` and calls its `init` with `config`.
    pub fn start(
        runtime: Arc<WasmRuntime>,
        module: Arc<AgentModule>,
        config: String,
        limits: Limits,
        tags: Tags,
        metrics: Arc<AgentMetrics>,
        state: StateScope,
    ) -> Result<Self, AgentFailure> {
        let mut instance = AgentInstance {
            runtime,
            module,
            config,
            limits,
            tags: Arc::new(tags),
            metrics,
            state,
            live: None,
            to_guest: HashMap::new(),
            from_guest: HashMap::new(),
            restarts: 0,
        };
        instance.instantiate()?;
        Ok(instance)
    }

    /// How many times the instance was replaced after a failure.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    fn deadline_ticks(&self) -> u64 {
        // One extra tick: the current one may be nearly over when the call starts.
        self.limits
            .deadline_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            .max(1)
            + 1
    }

    fn instantiate(&mut self) -> Result<(), AgentFailure> {
        let _span = tracing::debug_span!("wasm.instantiate", agent = %self.tags.agent, instance = self.tags.instance).entered();
        let (state, stderr) = self.runtime.host_state(
            &self.limits,
            self.tags.clone(),
            self.metrics.clone(),
            self.state.clone(),
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks());
        let pre = &self.module.pre;
        let loaded = pre.pre.instantiate(&mut store).and_then(|instance| {
            let handler = pre.handler.load(&mut store, &instance)?;
            let time_handler = match &pre.time_handler {
                Some(t) => Some(t.load(&mut store, &instance)?),
                None => None,
            };
            Ok((handler, time_handler))
        });
        let (handler, time_handler) = match loaded {
            Ok(b) => b,
            Err(e) => {
                return Err(AgentFailure::Init(
                    self.classify(e, &store, &stderr).to_string(),
                ));
            }
        };
        let result = handler.call_init(&mut store, &self.config);
        stderr.flush();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(AgentFailure::Init(format!(
                    "{}: {}",
                    kind_name(e.kind),
                    e.message
                )));
            }
            Err(e) => {
                return Err(AgentFailure::Init(
                    self.classify(e, &store, &stderr).to_string(),
                ));
            }
        }
        self.to_guest.clear();
        self.from_guest.clear();
        self.live = Some(Live {
            store,
            handler,
            time_handler,
            stderr,
        });
        Ok(())
    }

    /// Turns a wasmtime error from a call into the failure it means.
    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<HostState>,
        stderr: &Capture,
    ) -> AgentFailure {
        let tail = stderr.tail();
        stderr.clear_tail();
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return AgentFailure::Deadline {
                deadline_ms: self.limits.deadline_ms,
            };
        }
        if store.data().limiter.hit {
            return AgentFailure::Memory {
                memory_mb: self.limits.memory_mb,
                stderr: tail,
            };
        }
        let mut reason = match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{e:#}"),
        };
        // Where it trapped, innermost first: the guest's own function names when it kept them.
        if let Some(trace) = e.downcast_ref::<wasmtime::WasmBacktrace>() {
            let names: Vec<String> = trace
                .frames()
                .iter()
                .map(|f| match f.func_name() {
                    Some(name) => name.to_owned(),
                    None => format!("#{}", f.func_index()),
                })
                .collect();
            // The innermost frames, and the outermost when the trace is deep.
            let mut frames: Vec<String> = names.iter().take(6).cloned().collect();
            if names.len() > 12 {
                frames.push("…".into());
            }
            frames.extend(
                names
                    .iter()
                    .skip(6.max(names.len().saturating_sub(6)))
                    .cloned(),
            );
            if !frames.is_empty() {
                reason.push_str(&format!(" (in {})", frames.join(" ← ")));
            }
        }
        AgentFailure::Trap {
            reason,
            stderr: tail,
        }
    }

    /// Discards the instance; the next call instantiates a fresh one.
    fn discard(&mut self) {
        self.live = None;
        self.to_guest.clear();
        self.from_guest.clear();
    }

    /// Hands `batch`, arriving on input `port`, to the agent and returns what it emitted.
    ///
    /// On any failure the instance is discarded (so host and guest agree on the IPC stream state
    /// again) and the next call starts a fresh one.
    pub fn process(
        &mut self,
        port: u32,
        batch: &RecordBatch,
    ) -> Result<Vec<Emitted>, AgentFailure> {
        let bytes = self
            .to_guest
            .entry(port)
            .or_default()
            .encode(batch)
            .map_err(|e| AgentFailure::Error {
                kind: "host",
                message: format!("cannot encode the input batch as Arrow IPC: {e}"),
                row: None,
            });
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                self.discard();
                return Err(e);
            }
        };
        self.invoke(|live| live.handler.call_process(&mut live.store, port, &bytes))
    }

    /// Whether the agent exports the event-time hooks.
    pub fn has_time_handler(&self) -> bool {
        self.module.has_time_handler()
    }

    /// Tells the agent the watermark advanced to `watermark` (nothing when it does not export
    /// the event-time hooks).
    pub fn on_watermark(&mut self, watermark: i64) -> Result<Vec<Emitted>, AgentFailure> {
        if !self.has_time_handler() {
            return Ok(Vec::new());
        }
        self.invoke(|live| match &live.time_handler {
            Some(t) => t.call_on_watermark(&mut live.store, watermark),
            None => Ok(Ok(Vec::new())),
        })
    }

    /// Fires `timers` (due, in time order).
    pub fn on_timers(&mut self, timers: &[Timer]) -> Result<Vec<Emitted>, AgentFailure> {
        if !self.has_time_handler() || timers.is_empty() {
            return Ok(Vec::new());
        }
        let timers: Vec<_> = timers.iter().map(super::timers::to_wit).collect();
        self.invoke(|live| match &live.time_handler {
            Some(t) => t.call_on_timers(&mut live.store, &timers),
            None => Ok(Ok(Vec::new())),
        })
    }

    /// Makes one guest call (instantiating first if the last one failed) and checks and decodes
    /// its output. On failure the instance is discarded.
    fn invoke(
        &mut self,
        call: impl FnOnce(&mut Live) -> RawResult,
    ) -> Result<Vec<Emitted>, AgentFailure> {
        if self.live.is_none() {
            self.restarts += 1;
            tracing::info!(agent = %self.tags.agent, instance = self.tags.instance, restarts = self.restarts, "starting a fresh instance after a failure");
            self.instantiate()?;
        }
        let result = self.call(call);
        if let Err(f) = &result {
            if f.is_trap() {
                self.metrics.calls.trapped(f.to_string());
            }
            self.discard();
        }
        result
    }

    fn call(
        &mut self,
        call: impl FnOnce(&mut Live) -> RawResult,
    ) -> Result<Vec<Emitted>, AgentFailure> {
        let ticks = self.deadline_ticks();
        let live = self.live.as_mut().expect("instantiated above");
        live.store.set_epoch_deadline(ticks);
        let (started, cpu) = (Instant::now(), super::metrics::thread_cpu_time());
        let result = call(live);
        let calls = &self.metrics.calls;
        calls.record(
            started.elapsed(),
            super::metrics::thread_cpu_time().saturating_sub(cpu),
        );
        calls.memory(self.tags.instance, live.store.data().limiter.bytes as u64);
        live.stderr.flush();
        let outputs = match result {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => {
                return Err(AgentFailure::Error {
                    kind: kind_name(e.kind),
                    message: e.message,
                    row: e.row,
                });
            }
            Err(e) => {
                let live = self.live.as_ref().expect("still live");
                return Err(self.classify(e, &live.store, &live.stderr));
            }
        };
        let total: usize = outputs.iter().map(|o| o.batch.len()).sum();
        let cap = usize::try_from(self.limits.max_output_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX);
        if total > cap {
            return Err(AgentFailure::OutputTooLarge { bytes: total, cap });
        }
        outputs
            .into_iter()
            .map(|o| {
                let port = o.port;
                self.from_guest
                    .entry(port)
                    .or_default()
                    .decode(o.batch)
                    .map(|b| (port, b))
                    .map_err(|e| AgentFailure::MalformedOutput {
                        port,
                        message: e.to_string(),
                    })
            })
            .collect()
    }
}

fn kind_name(kind: bindings::ErrorKind) -> &'static str {
    match kind {
        bindings::ErrorKind::InvalidInput => "invalid-input",
        bindings::ErrorKind::InvalidConfig => "invalid-config",
        bindings::ErrorKind::Internal => "internal",
    }
}
