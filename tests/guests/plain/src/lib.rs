//! An agent of the plain `sabot:agent/agent@0.1.0` world — built with wit-bindgen alone against
//! the frozen first version of the contract (`wit/0.1.0/`) — as components built before `0.1.1`
//! are: it proves that such a component still runs on this host, through the `state@0.1.0`
//! calls it was built with.
//!
//! It echoes every batch's IPC bytes back on port 0 (the framing is the same both ways). With a
//! config naming the mode `tally`, it also counts the batches it handles in the store `tally`
//! under the key `all`, a JSON integer, as every SDK writes a `ValueState<u64>`: the `misbehave`
//! guest's `tally` mode reads and writes the same entry through `packed-state@0.1.1`.

// Natively (`cargo build --workspace`) nothing is exported, so the agent looks unused.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

wit_bindgen::generate!({
    world: "agent",
    path: "../../../wit/0.1.0",
});

use std::sync::atomic::{AtomicBool, Ordering};

use exports::sabot::agent::handler::Guest;
use sabot::agent::state::{EntryKey, StateError, get_many, put_many};
use sabot::agent::types::{AgentError, ErrorKind, Output};

/// Whether `init` was given the `tally` mode.
static TALLY: AtomicBool = AtomicBool::new(false);

struct Plain;

fn failed(e: StateError) -> AgentError {
    let message = match e {
        StateError::NotOwned(m) | StateError::TooLarge(m) | StateError::Backend(m) => m,
    };
    AgentError {
        kind: ErrorKind::Internal,
        message: format!("state `tally`: {message}"),
        row: None,
    }
}

/// Adds one to the tally: a read and a write through `state@0.1.0`.
fn tally() -> Result<(), AgentError> {
    let entry = EntryKey {
        key: b"all".to_vec(),
        sub: Vec::new(),
    };
    let before = get_many("tally", std::slice::from_ref(&entry)).map_err(failed)?;
    let n = match before.first().cloned().flatten() {
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| AgentError {
                kind: ErrorKind::Internal,
                message: "state `tally`: the stored value is not a JSON integer".into(),
                row: None,
            })?,
        None => 0,
    };
    put_many("tally", &[(entry, (n + 1).to_string().into_bytes())]).map_err(failed)
}

impl Guest for Plain {
    fn init(config: String) -> Result<(), AgentError> {
        TALLY.store(config.contains("tally"), Ordering::Relaxed);
        Ok(())
    }

    fn process(_port: u32, batch: Vec<u8>) -> Result<Vec<Output>, AgentError> {
        if TALLY.load(Ordering::Relaxed) {
            tally()?;
        }
        Ok(vec![Output { port: 0, batch }])
    }
}

// Only a Wasm build exports the component's functions (their names do not link natively).
#[cfg(target_arch = "wasm32")]
export!(Plain);
