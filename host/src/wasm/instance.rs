//! One sandboxed agent instance: every call within the instance's budget ([`Limits`]); a trapped
//! instance, or one over a budget, is discarded and replaced on the next call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use sabot_sdk::ipc::{BatchDecoder, BatchEncoder};
use wasmtime::Store;

use super::bindings::exports::sabot::agent::time_handler;
use super::bindings::{self, sabot::agent::types::Output};
use super::capture::Capture;
use super::crossing::{IpcMessage, ProcessFunc};
use super::limits::{self, Budget, BudgetExceeded};
use super::log::LogThrottle;
use super::native::NativeLive;
use super::{
    AgentMetrics, AgentModule, AgentPre, EPOCH_TICK, HostState, Limits, Runs, Tags, WasmRuntime,
};
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
    /// The instance tried to hold more memory and tables than its cap.
    #[error("exceeded its memory cap of {memory_mb} MiB (limits.memory_mb) and was stopped: {detail}{}", stderr_suffix(.stderr))]
    Memory {
        memory_mb: u64,
        /// What it asked for.
        detail: String,
        stderr: String,
    },
    /// One call returned more output than allowed.
    #[error(
        "returned {bytes} bytes of output from one call, over the cap of {cap} bytes (limits.max_output_mb)"
    )]
    OutputTooLarge { bytes: usize, cap: usize },
    /// The output is not valid Arrow IPC.
    #[error("returned output on port {port} that is not valid Arrow IPC: {message}")]
    MalformedOutput { port: u32, message: String },
    /// The call went over another budget of the instance's [`Limits`].
    #[error("{0}")]
    Budget(BudgetExceeded),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; the agent wrote to stderr: {stderr}")
    }
}

impl AgentFailure {
    /// Whether the instance trapped: a panic, a deadline, a budget (not an error it returned).
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            AgentFailure::Trap { .. }
                | AgentFailure::Deadline { .. }
                | AgentFailure::Memory { .. }
                | AgentFailure::OutputTooLarge { .. }
                | AgentFailure::Budget(_)
        )
    }

    /// The budget the call went over, if that is what failed.
    pub fn budget(&self) -> Option<Budget> {
        match self {
            AgentFailure::Deadline { .. } => Some(Budget::Deadline),
            AgentFailure::Memory { .. } => Some(Budget::Memory),
            AgentFailure::OutputTooLarge { .. } => Some(Budget::OutputBytes),
            AgentFailure::Budget(b) => Some(b.budget),
            _ => None,
        }
    }

    /// The failure with every text the agent chose cut to `max` bytes (with a marker), so that
    /// what is printed, stored and returned about it stays small.
    pub fn bounded(self, max: u64) -> Self {
        let cut = |m: String| limits::cut_message(m, max);
        match self {
            AgentFailure::Init(m) => AgentFailure::Init(cut(m)),
            AgentFailure::Error { kind, message, row } => AgentFailure::Error {
                kind,
                message: cut(message),
                row,
            },
            AgentFailure::Trap { reason, stderr } => AgentFailure::Trap {
                reason: cut(reason),
                stderr: cut(stderr),
            },
            AgentFailure::Memory {
                memory_mb,
                detail,
                stderr,
            } => AgentFailure::Memory {
                memory_mb,
                detail,
                stderr: cut(stderr),
            },
            AgentFailure::MalformedOutput { port, message } => AgentFailure::MalformedOutput {
                port,
                message: cut(message),
            },
            other => other,
        }
    }

    /// Whether the failure concerns the batch (policy applies) rather than the agent's setup.
    pub fn is_batch_failure(&self) -> bool {
        !matches!(self, AgentFailure::Init(_))
    }
}

/// A running instance: a component in its store, or a built-in operator run natively.
enum Live {
    Wasm(WasmLive),
    Native(NativeLive),
}

struct WasmLive {
    store: Store<HostState>,
    /// `handler.process`, taking the batch as the parts of its IPC message (one copy).
    process: ProcessFunc,
    time_handler: Option<time_handler::Guest>,
    stderr: Capture,
}

/// What the host asks of an agent, whichever way it runs.
pub(super) enum Call<'a> {
    /// `handler.process`: a batch on an input port.
    Process(u32, &'a RecordBatch),
    /// `time-handler.on-watermark`.
    Watermark(i64),
    /// `time-handler.on-timers`.
    Timers(&'a [Timer]),
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
    log: Arc<LogThrottle>,
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
        let tags = Arc::new(tags);
        let log = Arc::new(LogThrottle::new(&limits, tags.clone(), metrics.clone()));
        let mut instance = AgentInstance {
            runtime,
            module,
            config,
            limits,
            tags,
            metrics,
            state: state.with_budget(limits.state_budget()),
            log,
            live: None,
            to_guest: HashMap::new(),
            from_guest: HashMap::new(),
            restarts: 0,
        };
        instance.instantiate().map_err(|f| instance.failed(f))?;
        Ok(instance)
    }

    /// Bounds a failure's texts and counts it in the metrics.
    fn failed(&self, failure: AgentFailure) -> AgentFailure {
        let failure = failure.bounded(self.limits.max_error_bytes);
        if let Some(budget) = failure.budget() {
            self.metrics.sandbox.exceeded(budget);
        }
        if failure.is_trap() {
            self.metrics.calls.trapped(failure.to_string());
        }
        failure
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
            self.log.clone(),
        );
        let module = self.module.clone();
        let live = match &module.runs {
            Runs::Component { pre, .. } => {
                Live::Wasm(self.instantiate_component(pre, state, stderr)?)
            }
            Runs::Native(start) => Live::Native(NativeLive::start(*start, &self.config, state)?),
        };
        self.to_guest.clear();
        self.from_guest.clear();
        self.live = Some(live);
        Ok(())
    }

    fn instantiate_component(
        &self,
        pre: &AgentPre,
        state: HostState,
        stderr: Capture,
    ) -> Result<WasmLive, AgentFailure> {
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks());
        let loaded = pre.pre.instantiate(&mut store).and_then(|instance| {
            let handler = pre.handler.load(&mut store, &instance)?;
            let process = instance
                .get_func(&mut store, pre.process)
                .ok_or_else(|| wasmtime::Error::msg("the component has no `process` export"))?
                .typed(&store)?;
            let time_handler = match &pre.time_handler {
                Some(t) => Some(t.load(&mut store, &instance)?),
                None => None,
            };
            Ok((handler, process, time_handler))
        });
        let (handler, process, time_handler) = match loaded {
            Ok(b) => b,
            Err(e) => return Err(at_init(Self::classify(&self.limits, e, &store, &stderr))),
        };
        let result = handler.call_init(&mut store, &self.config);
        stderr.flush();
        if let Some(exceeded) = store.data_mut().exceeded.take() {
            return Err(AgentFailure::Budget(exceeded));
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(AgentFailure::Init(format!(
                    "{}: {}",
                    kind_name(e.kind),
                    e.message
                )));
            }
            Err(e) => return Err(at_init(Self::classify(&self.limits, e, &store, &stderr))),
        }
        Ok(WasmLive {
            store,
            process,
            time_handler,
            stderr,
        })
    }

    /// Turns a wasmtime error from a call into the failure it means.
    fn classify(
        caps: &Limits,
        e: wasmtime::Error,
        store: &Store<HostState>,
        stderr: &Capture,
    ) -> AgentFailure {
        let tail = stderr.tail();
        stderr.clear_tail();
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return AgentFailure::Deadline {
                deadline_ms: caps.deadline_ms,
            };
        }
        if let Some(exceeded) = &store.data().limiter.exceeded {
            return AgentFailure::Memory {
                memory_mb: caps.memory_mb,
                detail: exceeded.message.clone(),
                stderr: tail,
            };
        }
        if let Some(exceeded) = limits::count_exceeded(&e, caps) {
            return AgentFailure::Budget(exceeded);
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
        self.invoke(Some(batch.num_rows()), Call::Process(port, batch))
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
        self.invoke(None, Call::Watermark(watermark))
    }

    /// Fires `timers` (due, in time order).
    pub fn on_timers(&mut self, timers: &[Timer]) -> Result<Vec<Emitted>, AgentFailure> {
        if !self.has_time_handler() || timers.is_empty() {
            return Ok(Vec::new());
        }
        self.invoke(None, Call::Timers(timers))
    }

    /// Makes one call (instantiating first if the last one failed) and checks its output;
    /// `input_rows` are the rows of a `process` call's batch. On failure the instance is
    /// discarded.
    fn invoke(
        &mut self,
        input_rows: Option<usize>,
        call: Call<'_>,
    ) -> Result<Vec<Emitted>, AgentFailure> {
        if self.live.is_none() {
            self.restarts += 1;
            tracing::info!(agent = %self.tags.agent, instance = self.tags.instance, restarts = self.restarts, "starting a fresh instance after a failure");
            if let Err(f) = self.instantiate() {
                return Err(self.failed(f));
            }
        }
        let (started, cpu) = (Instant::now(), super::metrics::thread_cpu_time());
        let result = match self.live.as_mut().expect("instantiated above") {
            Live::Wasm(_) => self.call_component(call),
            Live::Native(native) => native.call(call, &self.limits, input_rows),
        };
        self.metrics.calls.record(
            started.elapsed(),
            super::metrics::thread_cpu_time().saturating_sub(cpu),
        );
        let result = result.and_then(|emitted| {
            self.check_output(input_rows, &emitted)?;
            Ok(emitted)
        });
        self.log.report(false);
        self.metrics
            .sandbox
            .state(self.tags.instance, self.state.size_bytes());
        result.map_err(|f| {
            self.discard();
            self.failed(f)
        })
    }

    /// One call of a component: the input encoded as IPC, the guest called within its deadline,
    /// its output checked for size and decoded.
    fn call_component(&mut self, call: Call<'_>) -> Result<Vec<Emitted>, AgentFailure> {
        let ticks = self.deadline_ticks();
        let message = match call {
            Call::Process(port, batch) => Some(
                self.to_guest
                    .entry(port)
                    .or_default()
                    .encode_parts(batch)
                    .map(IpcMessage::new)
                    .map_err(|e| AgentFailure::Error {
                        kind: "host",
                        message: format!("cannot encode the input batch as Arrow IPC: {e}"),
                        row: None,
                    })?,
            ),
            _ => None,
        };
        let Some(Live::Wasm(live)) = self.live.as_mut() else {
            unreachable!("called for a component instance");
        };
        live.store.set_epoch_deadline(ticks);
        let result: RawResult = match (call, &live.time_handler) {
            (Call::Process(port, _), _) => live
                .process
                .call(&mut live.store, (port, message.unwrap_or_default()))
                .map(|(result,)| result),
            (Call::Watermark(w), Some(t)) => t.call_on_watermark(&mut live.store, w),
            (Call::Timers(timers), Some(t)) => {
                let timers: Vec<_> = timers.iter().map(super::timers::to_wit).collect();
                t.call_on_timers(&mut live.store, &timers)
            }
            (_, None) => Ok(Ok(Vec::new())),
        };
        self.metrics
            .calls
            .memory(self.tags.instance, live.store.data().limiter.held() as u64);
        live.stderr.flush();
        // A state or timer budget gone over fails the call, whatever the guest did next.
        if let Some(exceeded) = live.store.data_mut().exceeded.take() {
            return Err(AgentFailure::Budget(exceeded));
        }
        let outputs = match result {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => {
                return Err(AgentFailure::Error {
                    kind: kind_name(e.kind),
                    message: e.message,
                    row: e.row,
                });
            }
            Err(e) => return Err(Self::classify(&self.limits, e, &live.store, &live.stderr)),
        };
        let total: usize = outputs.iter().map(|o| o.batch.len()).sum();
        let cap = self.limits.output_bytes();
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

    /// Refuses output over the row budget, or that expands past the byte budget when written
    /// out (a few bytes of IPC can declare millions of rows, or repeat one large dictionary value
    /// in every row).
    fn check_output(
        &self,
        input_rows: Option<usize>,
        emitted: &[Emitted],
    ) -> Result<(), AgentFailure> {
        let rows: u64 = emitted.iter().map(|(_, b)| b.num_rows() as u64).sum();
        let max_rows = self.limits.output_rows(input_rows);
        if rows > max_rows {
            let relative = match input_rows {
                Some(n) if max_rows < self.limits.max_output_rows => format!(
                    " for {n} input rows (limits.max_output_ratio = {} per input row, at least {})",
                    self.limits.max_output_ratio,
                    limits::OUTPUT_ROWS_FLOOR
                ),
                _ => String::new(),
            };
            let budget = if relative.is_empty() {
                "limits.max_output_rows"
            } else {
                "the relative row budget"
            };
            return Err(AgentFailure::Budget(BudgetExceeded::new(
                Budget::OutputRows,
                format!("emitted {rows} rows in one call, over {budget} of {max_rows}{relative}"),
            )));
        }
        let cap = self.limits.output_bytes() as u64;
        let mut expanded: u64 = 0;
        for (port, batch) in emitted {
            expanded = expanded.saturating_add(limits::expanded_bytes(batch));
            if expanded > cap {
                return Err(AgentFailure::Budget(BudgetExceeded::new(
                    Budget::OutputBytes,
                    format!(
                        "the output of one call (up to port {port}) expands to more than {cap} bytes when written out (dictionary and view values counted per row), over the cap of {} MiB",
                        self.limits.max_output_mb
                    ),
                )));
            }
        }
        Ok(())
    }
}

/// A failure while instantiating or in `init`: a budget keeps its name, anything else is an
/// `init` failure.
fn at_init(failure: AgentFailure) -> AgentFailure {
    if failure.budget().is_some() {
        failure
    } else {
        AgentFailure::Init(failure.to_string())
    }
}

impl Drop for AgentInstance {
    fn drop(&mut self) {
        self.log.report(true);
    }
}

pub(super) fn kind_name(kind: bindings::ErrorKind) -> &'static str {
    match kind {
        bindings::ErrorKind::InvalidInput => "invalid-input",
        bindings::ErrorKind::InvalidConfig => "invalid-config",
        bindings::ErrorKind::Internal => "internal",
    }
}
