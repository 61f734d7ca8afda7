//! A test agent whose behaviour is chosen by its config, so one component covers every way an
//! agent can go wrong. `{"mode": "..."}`:
//!
//! - `pass` (default): emits each batch unchanged;
//! - `error`: returns an `invalid-input` error naming row 1;
//! - `panic`: panics with a recognisable message;
//! - `trap-after`: passes `count` batches, then panics (for re-instantiation tests);
//! - `loop`: spins forever;
//! - `bomb`: allocates until memory runs out;
//! - `huge-output`: emits one batch of `bytes` bytes;
//! - `bad-ipc`: returns bytes that are not Arrow IPC (bypassing the SDK's encoder);
//! - `bad-config`: refuses its config;
//! - `log`: logs a line and bumps a counter for each batch, then passes it on.

// Natively (`cargo test --workspace`) nothing exports the agent, so its types look unused.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::sync::Arc;

use sabot_sdk::arrow::array::{ArrayRef, BinaryArray};
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Settings {
    mode: String,
    count: u64,
    bytes: usize,
}

struct Misbehave {
    settings: Settings,
    seen: u64,
}

impl Agent for Misbehave {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        if settings.mode == "bad-config" {
            return Err(AgentError::invalid_config(
                "mode `bad-config` always refuses its config (expected any other mode)",
            ));
        }
        if settings.mode == "bad-ipc" {
            BAD_IPC.with(|b| b.set(true));
        }
        Ok(Misbehave { settings, seen: 0 })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.seen += 1;
        match self.settings.mode.as_str() {
            "" | "pass" | "bad-ipc" => out.emit(batch),
            "error" => {
                return Err(AgentError::invalid_input("misbehave refuses this row").at_row(1));
            }
            "panic" => panic!("misbehave was told to panic"),
            "trap-after" => {
                if self.seen > self.settings.count {
                    panic!("misbehave traps after {} batches", self.settings.count);
                }
                out.emit(batch);
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge-output" => {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "blob",
                    DataType::Binary,
                    false,
                )]));
                let blob = vec![7u8; self.settings.bytes];
                let column: ArrayRef = Arc::new(BinaryArray::from(vec![blob.as_slice()]));
                out.emit(RecordBatch::try_new(schema, vec![column])?);
            }
            "log" => {
                sabot_sdk::log::info(&format!("misbehave saw {} rows", batch.num_rows()));
                sabot_sdk::metrics::counter_add("misbehave_rows", batch.num_rows() as u64);
                sabot_sdk::metrics::gauge_set("misbehave_last_batch_rows", batch.num_rows() as f64);
                sabot_sdk::metrics::histogram_record(
                    "misbehave_batch_rows",
                    batch.num_rows() as f64,
                );
                out.emit(batch);
            }
            other => {
                return Err(AgentError::invalid_config(format!(
                    "unknown mode {other:?} (expected pass, error, panic, trap-after, loop, bomb, \
                     huge-output, bad-ipc, bad-config or log)"
                )));
            }
        }
        Ok(())
    }
}

std::thread_local! {
    static BAD_IPC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// The SDK never produces malformed IPC, so `bad-ipc` wraps the exported handler by hand: it runs
// the agent through the SDK's runtime, then corrupts every output batch.
mod component {
    use sabot_sdk::wit::exports::sabot::agent::handler::Guest;
    use sabot_sdk::wit::sabot::agent::types::{AgentError, Output};

    std::thread_local! {
        static SLOT: std::cell::RefCell<sabot_sdk::runtime::Slot<super::Misbehave>> =
            std::cell::RefCell::new(Default::default());
    }

    struct Component;

    impl Guest for Component {
        fn init(config: String) -> Result<(), AgentError> {
            SLOT.with(|slot| sabot_sdk::runtime::init::<super::Misbehave>(slot, config))
        }

        fn process(port: u32, batch: Vec<u8>) -> Result<Vec<Output>, AgentError> {
            let mut outputs = SLOT
                .with(|slot| sabot_sdk::runtime::process::<super::Misbehave>(slot, port, batch))?;
            if super::BAD_IPC.with(|b| b.get()) {
                for output in &mut outputs {
                    output.batch = b"these bytes are not Arrow IPC".to_vec();
                }
            }
            Ok(outputs)
        }
    }

    #[cfg(target_arch = "wasm32")]
    sabot_sdk::wit::__export_agent_world!(Component with_types_in sabot_sdk::wit);
}
