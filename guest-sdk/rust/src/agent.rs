//! The [`Agent`] trait: what a user implements. Mirrors the `handler` interface in
//! `wit/handler.wit`.

use arrow_array::RecordBatch;
use serde::de::DeserializeOwned;

use crate::AgentError;
use crate::timers::Timer;

/// User code that turns record batches into record batches.
///
/// One value of the implementing type lives in each agent instance. The host calls
/// [`Agent::init`] once, then [`Agent::process`] for each batch routed to the instance, never
/// concurrently. If the instance traps (a panic, an out-of-memory, a deadline), the host discards
/// it and starts a fresh one with `init`.
pub trait Agent: Sized + 'static {
    /// Builds the agent from its `config` table in the pipeline file.
    fn init(config: Config) -> Result<Self, AgentError>;

    /// Handles one `batch` that arrived on input `port` (the order of the agent's inputs in the
    /// pipeline, from 0), emitting any number of batches through `out`.
    fn process(
        &mut self,
        port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError>;

    /// The watermark advanced to `watermark`: every event at or before it has arrived. Called
    /// after the event-time timers it passed have fired. Does nothing unless overridden.
    fn on_watermark(&mut self, watermark: i64, out: &mut Emitter) -> Result<(), AgentError> {
        let _ = (watermark, out);
        Ok(())
    }

    /// Timers registered with [`timers`](crate::timers) are due, in time order. Calls
    /// [`Agent::on_timer`] for each unless overridden (to handle them as one batch, say).
    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        for timer in timers {
            self.on_timer(timer, out)?;
        }
        Ok(())
    }

    /// A timer is due. Does nothing unless overridden.
    fn on_timer(&mut self, timer: Timer, out: &mut Emitter) -> Result<(), AgentError> {
        let _ = (timer, out);
        Ok(())
    }
}

/// An agent's configuration: the `config` table of its entry in the pipeline file, as JSON.
#[derive(Debug, Clone)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wraps a JSON configuration string.
    pub fn new(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The configuration as the JSON text the host passed (`{}` when the pipeline gives none).
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// Deserializes the configuration into `T`. The error names the field that did not fit and
    /// where, so the user can fix the pipeline file.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, AgentError> {
        serde_json::from_str(&self.json).map_err(|e| {
            AgentError::invalid_config(format!("invalid agent config {}: {e}", self.json))
        })
    }
}

/// Collects the batches an agent emits while handling one call.
///
/// Batches without rows are dropped, except in answer to a batch without rows: that is how the
/// host asks what an agent returns (SQL types an agent called as a table function by the
/// columns of the batch it emits on port 0), and an empty batch answers with its columns.
#[derive(Debug, Default)]
pub struct Emitter {
    pub(crate) batches: Vec<(u32, RecordBatch)>,
    /// Keep batches without rows: the call is the host's question of what the agent returns.
    pub(crate) answering: bool,
    /// What the host lets this call spend, when it cannot fence the call itself (a native
    /// call: see [`Emitter::reserve`]).
    pub(crate) limit: Option<CallLimit>,
    /// The limit the call went over, for the native driver to report as such.
    pub(crate) over: Option<Over>,
}

/// What one native call may spend: rows emitted, and wall time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimit {
    pub(crate) max_rows: u64,
    pub(crate) deadline: std::time::Instant,
    pub(crate) deadline_ms: u64,
    /// Calls of [`Emitter::reserve`] so far: the clock is read on every
    /// [`DEADLINE_CHECK_EVERY`]th, since a join reserves once per input row.
    pub(crate) reserves: u32,
}

/// How many [`Emitter::reserve`] calls share one reading of the clock.
const DEADLINE_CHECK_EVERY: u32 = 64;

/// A [`CallLimit`] a call went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Rows { rows: u64, max: u64 },
    Deadline { ms: u64 },
}

impl Emitter {
    /// Emits `batch` on the main output (port 0).
    pub fn emit(&mut self, batch: RecordBatch) {
        self.emit_to(0, batch);
    }

    /// Emits `batch` on output `port`, for agents with side outputs. Empty batches are dropped
    /// (but see [`Emitter`] for the host's question of what an agent returns).
    pub fn emit_to(&mut self, port: u32, batch: RecordBatch) {
        if batch.num_rows() > 0 || self.answering {
            self.batches.push((port, batch));
        }
    }

    /// Checks, before building them, that `rows` more output rows fit what the host lets this
    /// call emit, and that the call is within its deadline. An operator whose output can grow
    /// with the product of its inputs (a join) calls it as it goes, so that a call over its
    /// budget fails before it holds the memory. In a component the sandbox fences memory and
    /// time itself and this always succeeds; in a built-in the host runs natively, the error
    /// fails the call as going over `limits.max_output_rows` or `limits.deadline_ms` does.
    pub fn reserve(&mut self, rows: usize) -> Result<(), AgentError> {
        let Some(limit) = self.limit.as_mut() else {
            return Ok(());
        };
        limit.reserves = limit.reserves.wrapping_add(1);
        let read_clock = limit.reserves % DEADLINE_CHECK_EVERY == 1;
        let limit = *limit;
        let emitted: u64 = self.batches.iter().map(|(_, b)| b.num_rows() as u64).sum();
        let rows = emitted.saturating_add(rows as u64);
        let over = if rows > limit.max_rows {
            Over::Rows {
                rows,
                max: limit.max_rows,
            }
        } else if read_clock && std::time::Instant::now() > limit.deadline {
            Over::Deadline {
                ms: limit.deadline_ms,
            }
        } else {
            return Ok(());
        };
        self.over = Some(over);
        Err(AgentError::internal(match over {
            Over::Rows { rows, max } => {
                format!("would emit {rows} rows in one call, over the {max} it may")
            }
            Over::Deadline { ms } => format!("ran past its deadline of {ms} ms"),
        }))
    }

    /// How many batches have been emitted so far in this call.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether nothing has been emitted so far in this call.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}
