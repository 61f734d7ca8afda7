//! # sabot-sdk: write Sabot agents in plain Rust
//!
//! An *agent* is the business logic of a Sabot pipeline. It receives Arrow [`RecordBatch`]es,
//! returns record batches, and runs sandboxed inside the Sabot host as a WebAssembly component.
//! This crate hides the component bindings and the Arrow IPC framing: you implement [`Agent`] and
//! name your type in [`export_agent!`].
//!
//! ```
//! use std::sync::Arc;
//! use sabot_sdk::arrow::array::{Array, BooleanArray, Float64Array};
//! use sabot_sdk::arrow::compute::filter_record_batch;
//! use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};
//!
//! /// Keeps the transactions whose `amount` is at least `min_amount`.
//! struct BigSpenders {
//!     min_amount: f64,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     min_amount: f64,
//! }
//!
//! impl Agent for BigSpenders {
//!     fn init(config: Config) -> Result<Self, AgentError> {
//!         let settings: Settings = config.parse()?;
//!         Ok(BigSpenders { min_amount: settings.min_amount })
//!     }
//!
//!     fn process(&mut self, _port: u32, batch: RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
//!         let amounts = batch
//!             .column_by_name("amount")
//!             .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
//!             .ok_or_else(|| AgentError::invalid_input("expected a Float64 column `amount`"))?;
//!         let keep: BooleanArray = amounts.iter().map(|a| a.map(|a| a >= self.min_amount)).collect();
//!         out.emit(filter_record_batch(&batch, &keep)?);
//!         Ok(())
//!     }
//! }
//!
//! sabot_sdk::export_agent!(BigSpenders);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`) and name the
//! resulting `.wasm` file as an agent's `module` in a pipeline file.
//!
//! A method whose signature differs from the trait's does not compile, and rustc's error shows the
//! expected signature:
//!
//! ```compile_fail,E0053
//! # use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};
//! struct Wrong;
//! impl Agent for Wrong {
//!     fn init(_config: Config) -> Result<Self, AgentError> { Ok(Wrong) }
//!     // `port` must be a u32 and the batch is taken by value.
//!     fn process(&mut self, port: usize, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Host services are plain functions and types: [`log`] writes structured log lines that the host
//! tags with the pipeline and agent, [`metrics`] records counters, gauges and histograms, and
//! [`state`] keeps keyed state in the host (`ValueState`, `MapState`, `ListState`,
//! `ReducingState`, `AggregatingState`). Each call crosses the sandbox boundary: call per batch,
//! not per row. [`timers`] registers event-time and processing-time timers per key; they fire
//! through [`Agent::on_timer`], and [`Agent::on_watermark`] follows the watermark. [`changelog`]
//! reads and writes the `_op` column of updating streams (upserts and deletes by key).
//! [`function`] makes a module a set of scalar functions that SQL calls (`CREATE FUNCTION`).

pub mod ipc;

#[cfg(feature = "guest")]
mod agent;
pub mod changelog;
#[cfg(feature = "guest")]
mod error;
pub mod function;
#[cfg(feature = "guest")]
mod imports;
#[cfg(feature = "guest")]
pub mod log;
#[cfg(feature = "guest")]
pub mod metrics;
#[cfg(all(feature = "guest", not(target_arch = "wasm32")))]
pub mod native;
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod runtime;
#[cfg(feature = "guest")]
pub mod state;
#[cfg(feature = "guest")]
pub mod timers;

#[cfg(feature = "guest")]
pub use agent::{Agent, Config, Emitter};
#[cfg(feature = "guest")]
pub use error::{AgentError, ErrorKind};

/// Arrow, re-exported so an agent needs no arrow dependency of its own (and cannot pick a
/// different version than the SDK's).
pub mod arrow {
    pub use arrow_array as array;
    pub use arrow_buffer as buffer;
    pub use arrow_schema as datatypes;
    pub use arrow_schema::ArrowError;
    /// Compute kernels: filtering, sorting, comparison, arithmetic, casts.
    pub mod compute {
        pub use arrow_select::concat::{concat, concat_batches};
        pub use arrow_select::filter::{filter, filter_record_batch};
        pub use arrow_select::take::take;
    }
}

pub use arrow_array::RecordBatch;

/// The SDK version, also stored in every agent component's `sabot-sdk` custom section so
/// `sabot inspect` can report which SDK built a module.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The generated component bindings. Not part of the API: use [`Agent`] and [`export_agent!`].
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "timed-agent",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_agent_world",
        default_bindings_module: "::sabot_sdk::wit",
    });
}
