//! # sabot-operators: windows, joins, aggregates and views, as a library
//!
//! The built-in operators `builtin:window`, `builtin:join`, `builtin:aggregate`, `builtin:top`,
//! `builtin:over` and `builtin:view` are thin agents over this crate; a Rust agent can use the same types to window,
//! join or aggregate inside its own logic:
//!
//! - [`window::Windows`]: tumbling, sliding and session windows over event time, with
//!   aggregates, allowed lateness and a late side output.
//! - [`join::Join`]: stream–table enrichment, temporal (as-of) joins, interval joins and window
//!   joins, keyed, over event time.
//! - [`updating::UpdatingAggregate`]: `GROUP BY` without a window, emitting a changelog of each
//!   group's result (`builtin:aggregate`).
//! - [`top::Top`]: the first rows of each window by one column (`ROW_NUMBER`, `RANK`,
//!   `DENSE_RANK`), emitted when the watermark closes the window (`builtin:top`).
//! - [`over::Over`]: each row with aggregates of the rows before it in its partition (`ROWS`
//!   and `RANGE` frames, `LAG`), over an append-only stream or a changelog (`builtin:over`).
//! - [`view::View`]: the current row of each key of a stream or changelog, kept where the host's
//!   HTTP API reads it (`builtin:view`).
//!
//! All keep their state in host-managed keyed state (windows and joins close on event-time
//! timers), so they are checkpointed and restored like any agent's state. Rows are held as [`values::Value`]s.

mod group;
pub mod join;
pub mod over;
pub mod top;
pub mod updating;
pub mod values;
pub mod view;
pub mod window;
