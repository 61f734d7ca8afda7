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
//! These are the building blocks of the dataflow's event-time support; the dataflow wiring (an
//! event-time column per source, watermarks in-band with the batches, `on-watermark` and
//! `on-timer` hooks in the agent contract) builds on them.

mod timers;
mod watermark;

pub use timers::TimerQueue;
pub use watermark::{BoundedOutOfOrderness, WatermarkTracker};
