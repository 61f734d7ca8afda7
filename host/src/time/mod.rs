//! Event time: watermarks and timers, as pure state machines (no clocks, no I/O: callers pass the
//! time in), so their semantics are checked exactly by tests.
//!
//! - [`BoundedOutOfOrderness`]: a source partition's watermark — the largest event time seen
//!   minus the allowed lateness.
//! - [`WatermarkTracker`]: the watermark of a task with several inputs — the minimum over inputs
//!   that are not idle, only ever advancing; an input quiet for longer than the idle timeout stops
//!   holding the others back until it produces again.
//! - [`TimerQueue`]: event-time timers per key, fired in timestamp order as the watermark passes
//!   them, each once.
//!
//! The dataflow carries watermarks in-band with the batches: a source with an [`EventTimeSpec`]
//! reads each batch's event times ([`event_times`]) and sends its watermark after the batch; a
//! task combines its input channels' watermarks, fires the timers the watermark passed, calls
//! the agent's `on-watermark`, and forwards the watermark. Event time is in milliseconds since
//! the Unix epoch throughout.

mod column;
mod timers;
mod watermark;

pub use column::{EventTimeError, event_times};
pub use timers::{AgentTimers, TIMER_OVERHEAD, TimeDomain, Timer, TimerQueue};
pub use watermark::{BoundedOutOfOrderness, WatermarkTracker};

use serde::Deserialize;

/// `event_time = { column = "ts", max_out_of_orderness_ms = 5000, idle_timeout_ms = 10000 }` in
/// a `[sources.NAME]` table: where a source's rows carry their event time, and how its
/// watermark follows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// The column holding each row's event time: a timestamp (any unit), or an integer of
    /// milliseconds since the Unix epoch.
    pub column: String,
    /// How far behind the latest event time an event may still arrive, in milliseconds.
    #[serde(default)]
    pub max_out_of_orderness_ms: i64,
    /// After this long without a row, the source is idle: it stops holding back the watermark
    /// of the tasks downstream until it produces again.
    pub idle_timeout_ms: Option<u64>,
}
