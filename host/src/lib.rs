//! # sabot-host: the Sabot runtime
//!
//! Sabot runs *agents* — user code compiled to WebAssembly components — over streams of Arrow
//! record batches. The host owns everything that must be fast and trustworthy; agents see only
//! batches and the interfaces declared in `wit/`.
//!
//! ## The map
//!
//! ```text
//!   connectors::Source ──► dataflow (router: fan-out, key partitioning) ──► agent tasks ──► … ──► connectors::Sink
//!   (generator, file,        bounded channels, one thread per task          wasm::AgentInstance     (stdout, file, blackhole,
//!    nexmark, kafka)                                                                                 kafka)
//!        │                   watermarks, barriers, end of input in-band     state::StateScope        two-phase commit
//!        └── position ──────────────► checkpoint::Coordinator ◄── acks: snapshots (state, timers), pending commits
//! ```
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | the pipeline file (TOML): parsing, validation with errors that name file, table and field (and where a changelog goes); paths confined on a server; `${env:}`/`${file:}`/`${secret:}` references and the server's secret store |
//! | [`sql`] | SQL pipelines: `CREATE TABLE`/`CREATE VIEW`/`CREATE MATERIALIZED VIEW`/`INSERT INTO … SELECT` compiled to the same pipeline document as TOML (built-in filter, project, window, join, aggregate and view agents), `CREATE FUNCTION`/`CREATE AGGREGATE` calling agents (type-checked by asking their modules), updating queries sent only where their changelog can be applied, errors at line and column |
//! | [`wasm`] | wasmtime: the engine, the on-disk compile cache, the one `bindgen!`, one file per imported WIT interface (`log`, `metrics`, `state` with `packed-state`, `timers`), the sandbox (deadline, memory cap, output cap), module inspection, `componentize` (a wasip1 core module, such as Go's, into an agent component), what a function module returns for a call (`function`), and the built-in operators run natively in the host (`native`: the same Rust operators, their host calls checked as a component's; `SABOT_BUILTINS=wasm` sandboxes them) |
//! | [`dataflow`] | building the task graph from a pipeline and running it: threads, bounded channels with backpressure, hash partitioning on a key column, input gates (barrier alignment, watermark merging), the checkpoint coordinator thread, resume from a checkpoint, graceful shutdown, run statistics and end-to-end latency (`dataflow::latency`) |
//! | [`connectors`] | sources and sinks, one folder per system (generator, file, nexmark, stdout, blackhole, kafka over TLS/SASL: a bounded first contact that names what to check, a batch of records per librdkafka call each way (fetch and produce), offsets in checkpoints, per-partition watermarks, column-wise MessagePack, an exactly-once transactional sink), and the row-level bad-input policy |
//! | [`time`] | event time as pure state machines: watermarks per partition and across inputs (with idleness), timers, the event-time column |
//! | [`state`] | keyed state: memory and RocksDB backends, the write-back cache, snapshots and restore (at any parallelism), the key layout, and the scope that confines an instance to its key groups |
//! | [`checkpoint`] | Chandy–Lamport checkpoints: the coordinator as a pure state machine, and checkpoint storage (atomic metadata, checksums, fallback, retention), locally and in S3-compatible object storage (`object_store`: metadata last, conditional puts, parallel transfers) |
//! | [`scaleout`] | several `sabot` processes sharing a Kafka source's partitions as one consumer group: one pipeline copy per partition, started and stopped by cooperative rebalances, resuming from checkpoints on shared storage or in object storage |
//! | [`serve`] | the control plane of `sabot serve`: the HTTP API (axum) for modules (content-addressed, `name@version`) and pipelines, hot swap at a checkpoint barrier with probation and rollback, `read`/`admin` bearer tokens, secrets, HTTPS (rustls), creates followed past their request (`202`), `/metrics`, health, server-sent stats, the dashboard, materialized views (`/v1/views`); and [`serve::cluster`]: replicas as one cluster, with a command log on Kafka (ksqlDB's model), placement by consumer groups, heartbeats, module bytes in object storage |
//! | [`cli`] | the `sabot` binary: `run`, `validate`, `explain`, `inspect`, `componentize`, `new agent` (scaffolds in Rust, JavaScript, Python and Go), `serve`, and the client commands `deploy`, `submit`, `swap`, `pipelines`, `agents`, `tables`, `modules`, `secret`, `health` |
//!
//! The same name is used on both sides of the WIT boundary: `wit/log.wit` ↔ [`wasm::log`] ↔
//! `sabot_sdk::log`, and likewise for `state` and `timers` (and in the other SDKs:
//! `guest-sdk/js/src/host.js`, `guest-sdk/python/sabot_agent/host.py`, `guest-sdk/go/state.go`).
//!
//! ## Running a pipeline from Rust
//!
//! ```no_run
//! use sabot_host::{Pipeline, RunOptions};
//!
//! let pipeline = Pipeline::load("examples/fraud-detection/pipeline.toml")?;
//! let summary = pipeline.run(RunOptions::default())?;
//! println!("{} events in, {} out", summary.events_in, summary.events_out);
//! # Ok::<(), sabot_host::Error>(())
//! ```
//!
//! ## Threads
//!
//! Wasm runs on dedicated task threads, never on an async I/O thread: each source, each agent
//! instance and each sink is one thread, connected by bounded channels, so a slow sink slows its
//! sources instead of growing memory.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod dataflow;
mod error;
pub mod scaleout;
pub mod serve;
pub mod sql;
pub mod state;
pub mod time;
pub mod wasm;

pub use config::PipelineSpec;
pub use dataflow::{Pipeline, RunOptions, RunSummary};
pub use error::{Error, Fault};
