//! The built-in operators run natively: the same Rust agents as `builtin:NAME`'s components
//! (`operators/`), linked into the host and called without the component boundary.
//!
//! Built-ins are trusted code shipped in the binary; running them natively spares every batch
//! two IPC copies and the Wasm call, and spares the first run the compile (10–40 s on a cold
//! cache). Their host calls go to the same checks as a component's ([`Services`] here, over the
//! instance's [`HostState`]): key-group ownership, the state and timer budgets, the log
//! throttle, metrics. The sandbox's own fences it does not have: no memory cap, and no deadline
//! the host can enforce from outside. The call's row budget and deadline are passed in and
//! checked by the operators as they build output (`Emitter::reserve`: a join, per input row);
//! set `SABOT_BUILTINS=wasm` to run built-ins as components, under every limit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use sabot_sdk::native::{
    Budget as CallBudget, Entries, Failure, Level, NativeAgent, Packed, Services, StateError,
    Values, WitTimeDomain, WitTimer,
};

use super::HostState;
use super::bindings::ErrorKind;
use super::bindings::sabot::agent::log::{Host as _, Level as HostLevel};
use super::bindings::sabot::agent::state::{Host as StateHost, StateError as HostStateError};
use super::bindings::sabot::agent::timers::{
    Host as TimersHost, TimeDomain as HostTimeDomain, Timer as HostTimer,
};
use super::instance::{self, AgentFailure, Call, Emitted};
use super::limits::{Budget, BudgetExceeded, Limits};
use crate::time::{TimeDomain, Timer};

/// Starts a native agent: `init` with its configuration, host calls to the given services.
pub type Start =
    fn(String, Box<dyn Services>) -> Result<Box<dyn NativeAgent>, sabot_sdk::AgentError>;

/// How a pipeline's `builtin:NAME` agents run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Builtins {
    /// Natively, in the host's process (the default).
    #[default]
    Native,
    /// As Wasm components, sandboxed like any agent.
    Wasm,
}

impl Builtins {
    /// The choice `SABOT_BUILTINS` makes (`native`, the default, or `wasm`).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("SABOT_BUILTINS") {
            Err(_) => Ok(Builtins::Native),
            Ok(v) => match v.as_str() {
                "" | "native" => Ok(Builtins::Native),
                "wasm" => Ok(Builtins::Wasm),
                other => Err(format!(
                    "SABOT_BUILTINS={other:?}: expected `native` or `wasm`"
                )),
            },
        }
    }
}

/// The native form of the built-in operator `name`.
pub fn start(name: &str) -> Option<Start> {
    Some(match name {
        "filter" => sabot_sdk::native::start::<sabot_op_filter::Filter>,
        "project" => sabot_sdk::native::start::<sabot_op_project::Project>,
        "window" => sabot_sdk::native::start::<sabot_op_window::WindowOperator>,
        "join" => sabot_sdk::native::start::<sabot_op_join::JoinOperator>,
        "aggregate" => sabot_sdk::native::start::<sabot_op_aggregate::AggregateOperator>,
        "view" => sabot_sdk::native::start::<sabot_op_view::ViewOperator>,
        "top" => sabot_sdk::native::start::<sabot_op_top::TopOperator>,
        "over" => sabot_sdk::native::start::<sabot_op_over::OverOperator>,
        _ => return None,
    })
}

/// A native instance's host: the same [`HostState`] a component's calls reach, shared with the
/// instance, which reads after each call whether it went over a budget.
pub(super) struct NativeHost(pub(super) Arc<Mutex<HostState>>);

impl NativeHost {
    fn host(&self) -> MutexGuard<'_, HostState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A packed call's result for a native operator: lists that break the packing (a bug in the
/// SDK, which a component's call traps on) fail the call.
fn native_packed<T>(result: super::state::PackedResult<T>) -> Result<T, StateError> {
    match result {
        Ok(r) => r.map_err(to_sdk),
        Err(bug) => Err(StateError::Backend(bug.to_string())),
    }
}

fn timer(t: &WitTimer) -> HostTimer {
    HostTimer {
        domain: match t.domain {
            WitTimeDomain::EventTime => HostTimeDomain::EventTime,
            WitTimeDomain::ProcessingTime => HostTimeDomain::ProcessingTime,
        },
        key: t.key.clone(),
        ts: t.ts,
    }
}

fn to_sdk(e: HostStateError) -> StateError {
    match e {
        HostStateError::NotOwned(m) => StateError::NotOwned(m),
        HostStateError::TooLarge(m) => StateError::TooLarge(m),
        HostStateError::Backend(m) => StateError::Backend(m),
    }
}

impl Services for NativeHost {
    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => HostLevel::Trace,
            Level::Debug => HostLevel::Debug,
            Level::Info => HostLevel::Info,
            Level::Warn => HostLevel::Warn,
            Level::Error => HostLevel::Error,
        };
        self.host().log(level, message.to_owned());
    }

    fn counter_add(&mut self, name: &str, delta: u64) {
        self.host().metrics.counter_add(name, delta);
    }

    fn gauge_set(&mut self, name: &str, value: f64) {
        self.host().metrics.gauge_set(name, value);
    }

    fn histogram_record(&mut self, name: &str, value: f64) {
        self.host().metrics.histogram_record(name, value);
    }

    fn get_many(&mut self, store: &str, keys: &Packed) -> Result<Values, StateError> {
        let (bytes, ends, found) =
            native_packed(self.host().packed_get_many(store, &keys.bytes, &keys.ends))?;
        Ok(Values {
            values: Packed { bytes, ends },
            found,
        })
    }

    fn put_many(&mut self, store: &str, entries: &Packed) -> Result<(), StateError> {
        native_packed(
            self.host()
                .packed_put_many(store, &entries.bytes, &entries.ends),
        )
    }

    fn delete_many(&mut self, store: &str, keys: &Packed) -> Result<(), StateError> {
        native_packed(
            self.host()
                .packed_delete_many(store, &keys.bytes, &keys.ends),
        )
    }

    fn scan(
        &mut self,
        store: &str,
        key: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Entries, StateError> {
        StateHost::scan(
            &mut *self.host(),
            store.to_owned(),
            key.to_vec(),
            prefix.to_vec(),
            after.map(<[u8]>::to_vec),
            limit,
        )
        .map_err(to_sdk)
    }

    fn register(&mut self, timers: &[WitTimer]) -> Result<(), StateError> {
        TimersHost::register(&mut *self.host(), timers.iter().map(timer).collect()).map_err(to_sdk)
    }

    fn delete(&mut self, timers: &[WitTimer]) -> Result<(), StateError> {
        TimersHost::delete(&mut *self.host(), timers.iter().map(timer).collect()).map_err(to_sdk)
    }

    fn watermark(&mut self) -> Option<i64> {
        TimersHost::watermark(&mut *self.host())
    }
}

/// A built-in operator's native instance, and the host state its calls reach.
pub(super) struct NativeLive {
    agent: Box<dyn NativeAgent>,
    host: Arc<Mutex<HostState>>,
}

impl NativeLive {
    /// Runs `init`; a panic is a failed `init`, as a trap is for a component.
    pub(super) fn start(
        start: Start,
        config: &str,
        state: HostState,
    ) -> Result<Self, AgentFailure> {
        let host = Arc::new(Mutex::new(state));
        let services = Box::new(NativeHost(host.clone()));
        let result = catch_unwind(AssertUnwindSafe(|| start(config.to_owned(), services)));
        let live = NativeLive {
            agent: match result {
                Ok(Ok(agent)) => agent,
                Ok(Err(e)) => {
                    return Err(AgentFailure::Init(format!(
                        "{}: {}",
                        kind_name(e.kind),
                        e.message
                    )));
                }
                Err(panic) => {
                    return Err(AgentFailure::Init(format!(
                        "panicked: {}",
                        panic_message(&panic)
                    )));
                }
            },
            host,
        };
        live.over_budget()?;
        Ok(live)
    }

    /// Fails the call that went over a state or timer budget, whatever the agent did next.
    fn over_budget(&self) -> Result<(), AgentFailure> {
        let exceeded = self
            .host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exceeded
            .take();
        match exceeded {
            Some(exceeded) => Err(AgentFailure::Budget(exceeded)),
            None => Ok(()),
        }
    }

    /// One call, within `limits` as far as the host can hold trusted code to them: the output
    /// rows and the deadline are checked by the operators as they build output, state and
    /// timers by the host. A panic is a trap (the instance is replaced, as a trapped component
    /// is).
    pub(super) fn call(
        &mut self,
        call: Call<'_>,
        limits: &Limits,
        input_rows: Option<usize>,
    ) -> Result<Vec<Emitted>, AgentFailure> {
        let budget = CallBudget {
            max_rows: limits.output_rows(input_rows),
            deadline_ms: limits.deadline_ms,
        };
        let agent = &mut self.agent;
        let result = catch_unwind(AssertUnwindSafe(|| match call {
            Call::Process(port, batch) => agent.process(port, batch.clone(), budget),
            Call::Watermark(w) => agent.on_watermark(w, budget),
            Call::Timers(timers) => agent.on_timers(timers.iter().map(sdk_timer).collect(), budget),
        }));
        self.over_budget()?;
        match result {
            Ok(Ok(emitted)) => Ok(emitted),
            Ok(Err(Failure::Agent(e))) => Err(AgentFailure::Error {
                kind: kind_name(e.kind),
                message: e.message,
                row: e.row,
            }),
            Ok(Err(Failure::Deadline { ms })) => Err(AgentFailure::Deadline { deadline_ms: ms }),
            Ok(Err(Failure::OutputRows { rows, max })) => {
                Err(AgentFailure::Budget(BudgetExceeded::new(
                    Budget::OutputRows,
                    format!(
                        "was about to emit {rows} rows in one call, over its budget of {max} (limits.max_output_rows, and limits.max_output_ratio per input row)"
                    ),
                )))
            }
            Err(panic) => Err(AgentFailure::Trap {
                reason: format!("panicked: {}", panic_message(&panic)),
                stderr: String::new(),
            }),
        }
    }
}

fn sdk_timer(t: &Timer) -> sabot_sdk::timers::Timer {
    sabot_sdk::timers::Timer {
        domain: match t.domain {
            TimeDomain::EventTime => sabot_sdk::timers::TimeDomain::EventTime,
            TimeDomain::ProcessingTime => sabot_sdk::timers::TimeDomain::ProcessingTime,
        },
        key: t.key.clone(),
        ts: t.ts,
    }
}

/// The name of an error's kind, as a component's is named ([`instance::kind_name`]).
fn kind_name(kind: sabot_sdk::ErrorKind) -> &'static str {
    instance::kind_name(match kind {
        sabot_sdk::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
        sabot_sdk::ErrorKind::InvalidConfig => ErrorKind::InvalidConfig,
        sabot_sdk::ErrorKind::Internal => ErrorKind::Internal,
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_owned(),
    }
}
