//! Running an agent inside the host's own process, without the component boundary.
//!
//! The host runs its built-in operators this way (trusted code, compiled into the `sabot`
//! binary): batches pass as [`RecordBatch`]es, not IPC, and state, timer, log and metric calls
//! reach the host's [`Services`] as plain function calls. The agent is the same Rust code that
//! [`export_agent!`](crate::export_agent) turns into a component; only where its host calls go
//! differs. Not for agents: the host uses it.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::agent::{CallLimit, Over};
use crate::timers::Timer;
use crate::{Agent, AgentError, Emitter, RecordBatch};

pub use crate::wit::sabot::agent::log::Level;
pub use crate::wit::sabot::agent::packed_state::{Packed, Values};
pub use crate::wit::sabot::agent::state::StateError;
pub use crate::wit::sabot::agent::timers::{TimeDomain as WitTimeDomain, Timer as WitTimer};

/// `(sub-key, value)` pairs, as `state.scan` returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A batch an agent emitted, with its output port.
pub type Emitted = (u32, RecordBatch);

/// What the host offers a native agent: one method per function of the agent world's imports
/// (`wit/`), with the same meaning and the same errors.
pub trait Services: Send {
    /// `log.log`.
    fn log(&mut self, level: Level, message: &str);
    /// `metrics.counter-add`.
    fn counter_add(&mut self, name: &str, delta: u64);
    /// `metrics.gauge-set`.
    fn gauge_set(&mut self, name: &str, value: f64);
    /// `metrics.histogram-record`.
    fn histogram_record(&mut self, name: &str, value: f64);
    /// `packed-state.get-many`.
    fn get_many(&mut self, store: &str, keys: &Packed) -> Result<Values, StateError>;
    /// `packed-state.put-many`.
    fn put_many(&mut self, store: &str, entries: &Packed) -> Result<(), StateError>;
    /// `packed-state.delete-many`.
    fn delete_many(&mut self, store: &str, keys: &Packed) -> Result<(), StateError>;
    /// `state.scan`.
    fn scan(
        &mut self,
        store: &str,
        key: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Entries, StateError>;
    /// `timers.register`.
    fn register(&mut self, timers: &[WitTimer]) -> Result<(), StateError>;
    /// `timers.delete`.
    fn delete(&mut self, timers: &[WitTimer]) -> Result<(), StateError>;
    /// `timers.watermark`.
    fn watermark(&mut self) -> Option<i64>;
}

thread_local! {
    /// The services of the native call running on this thread.
    static SERVICES: RefCell<Option<Box<dyn Services>>> = const { RefCell::new(None) };
}

/// Installs `services` for the duration of `f` on this thread, and hands them back after
/// (also when `f` panics).
fn with_services<R>(services: &mut Option<Box<dyn Services>>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a>(&'a mut Option<Box<dyn Services>>);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            *self.0 = SERVICES.with(|s| s.borrow_mut().take());
        }
    }
    SERVICES.with(|s| *s.borrow_mut() = services.take());
    let _restore = Restore(services);
    f()
}

/// The import functions of a native build, with the signatures `wit-bindgen` gives a Wasm one.
pub(crate) mod calls {
    use super::*;

    fn with<R>(f: impl FnOnce(&mut dyn Services) -> R) -> R {
        SERVICES.with(|s| {
            let mut s = s.borrow_mut();
            let services = s.as_deref_mut().expect(
                "a sabot-sdk host call outside an agent call: natively, agents run only inside \
                 the host's native driver (sabot_sdk::native::NativeAgent)",
            );
            f(services)
        })
    }

    pub(crate) fn log(level: Level, message: &str) {
        with(|s| s.log(level, message))
    }
    pub(crate) fn counter_add(name: &str, delta: u64) {
        with(|s| s.counter_add(name, delta))
    }
    pub(crate) fn gauge_set(name: &str, value: f64) {
        with(|s| s.gauge_set(name, value))
    }
    pub(crate) fn histogram_record(name: &str, value: f64) {
        with(|s| s.histogram_record(name, value))
    }
    pub(crate) fn packed_get_many(store: &str, keys: &Packed) -> Result<Values, StateError> {
        with(|s| s.get_many(store, keys))
    }
    pub(crate) fn packed_put_many(store: &str, entries: &Packed) -> Result<(), StateError> {
        with(|s| s.put_many(store, entries))
    }
    pub(crate) fn packed_delete_many(store: &str, keys: &Packed) -> Result<(), StateError> {
        with(|s| s.delete_many(store, keys))
    }
    pub(crate) fn scan(
        store: &str,
        key: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Entries, StateError> {
        with(|s| s.scan(store, key, prefix, after, limit))
    }
    pub(crate) fn register(timers: &[WitTimer]) -> Result<(), StateError> {
        with(|s| s.register(timers))
    }
    pub(crate) fn delete(timers: &[WitTimer]) -> Result<(), StateError> {
        with(|s| s.delete(timers))
    }
    pub(crate) fn watermark() -> Option<i64> {
        with(|s| s.watermark())
    }
}

/// What the host lets one native call spend, which it cannot fence from outside as the sandbox
/// does: operators check it as they build output ([`Emitter::reserve`]).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most rows the call may emit, all ports together.
    pub max_rows: u64,
    /// Longest it may run, in milliseconds.
    pub deadline_ms: u64,
}

/// How a native call failed.
#[derive(Debug)]
pub enum Failure {
    /// The agent returned an error.
    Agent(AgentError),
    /// It would have emitted `rows` rows, over the `max` of its [`Budget`].
    OutputRows { rows: u64, max: u64 },
    /// It ran past its [`Budget`]'s deadline of `ms`.
    Deadline { ms: u64 },
}

/// An agent's calls, as the host makes them to a native instance. Each returns what the agent
/// emitted, by output port, in order.
pub trait NativeAgent: Send {
    /// `handler.process`: `batch` arrived on input `port`.
    fn process(
        &mut self,
        port: u32,
        batch: RecordBatch,
        budget: Budget,
    ) -> Result<Vec<Emitted>, Failure>;
    /// `time-handler.on-watermark`.
    fn on_watermark(&mut self, watermark: i64, budget: Budget) -> Result<Vec<Emitted>, Failure>;
    /// `time-handler.on-timers`: `timers` are due, in time order.
    fn on_timers(&mut self, timers: Vec<Timer>, budget: Budget) -> Result<Vec<Emitted>, Failure>;
}

/// Starts the agent `A` natively: `init` with `config`, its host calls going to `services`.
pub fn start<A: Agent + Send>(
    config: String,
    services: Box<dyn Services>,
) -> Result<Box<dyn NativeAgent>, AgentError> {
    let mut services = Some(services);
    let agent = with_services(&mut services, || A::init(crate::Config::new(config)))?;
    Ok(Box::new(Native { agent, services }))
}

/// `A`, run natively, with the services its calls go to.
struct Native<A> {
    agent: A,
    services: Option<Box<dyn Services>>,
}

impl<A: Agent> Native<A> {
    /// Runs one call of the agent and, as the component glue does, sends its buffered timer
    /// registrations when it succeeds and forgets them when it fails.
    fn call(
        &mut self,
        answering: bool,
        budget: Budget,
        f: impl FnOnce(&mut A, &mut Emitter) -> Result<(), AgentError>,
    ) -> Result<Vec<Emitted>, Failure> {
        let agent = &mut self.agent;
        with_services(&mut self.services, || {
            let mut out = Emitter {
                answering,
                limit: Some(CallLimit {
                    max_rows: budget.max_rows,
                    deadline: Instant::now() + Duration::from_millis(budget.deadline_ms),
                    deadline_ms: budget.deadline_ms,
                    reserves: 0,
                }),
                ..Emitter::default()
            };
            let result = f(agent, &mut out).and_then(|()| crate::timers::flush());
            if result.is_err() {
                crate::timers::discard();
            }
            match (result, out.over) {
                (Ok(()), _) => Ok(out.batches),
                (Err(_), Some(Over::Rows { rows, max })) => Err(Failure::OutputRows { rows, max }),
                (Err(_), Some(Over::Deadline { ms })) => Err(Failure::Deadline { ms }),
                (Err(e), None) => Err(Failure::Agent(e)),
            }
        })
    }
}

impl<A: Agent + Send> NativeAgent for Native<A> {
    fn process(
        &mut self,
        port: u32,
        batch: RecordBatch,
        budget: Budget,
    ) -> Result<Vec<Emitted>, Failure> {
        let answering = batch.num_rows() == 0;
        self.call(answering, budget, |agent, out| {
            agent.process(port, batch, out)
        })
    }

    fn on_watermark(&mut self, watermark: i64, budget: Budget) -> Result<Vec<Emitted>, Failure> {
        self.call(false, budget, |agent, out| {
            agent.on_watermark(watermark, out)
        })
    }

    fn on_timers(&mut self, timers: Vec<Timer>, budget: Budget) -> Result<Vec<Emitted>, Failure> {
        self.call(false, budget, |agent, out| agent.on_timers(timers, out))
    }
}
