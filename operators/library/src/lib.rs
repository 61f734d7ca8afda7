//! # sabot-operators: windows and joins, as a library
//!
//! The built-in operators `builtin:window` and `builtin:join` are thin agents over this crate;
//! a Rust agent can use the same types to window or join inside its own logic:
//!
//! - [`window::Windows`]: tumbling, sliding and session windows over event time, with
//!   aggregates, allowed lateness and a late side output.
//! - [`join::Join`]: stream–table enrichment, temporal (as-of) joins, interval joins and window
//!   joins, keyed, over event time.
//!
//! Both keep their state in host-managed keyed state and close on event-time timers, so they are
//! checkpointed and restored like any agent's state. Rows are held as [`values::Value`]s.

mod group;
pub mod join;
pub mod values;
pub mod window;
