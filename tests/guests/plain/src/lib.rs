//! An agent of the plain `sabot:agent/agent@0.1.0` world, built with wit-bindgen alone: it echoes
//! every batch's IPC bytes back on port 0 (the framing is the same both ways). It proves that a
//! component without the event-time hooks — built before they existed, or in a language whose SDK
//! does not offer them — still runs on this host.

// Natively (`cargo build --workspace`) nothing is exported, so the agent looks unused.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

wit_bindgen::generate!({
    world: "agent",
    path: "../../../wit",
});

use exports::sabot::agent::handler::Guest;
use sabot::agent::types::{AgentError, Output};

struct Plain;

impl Guest for Plain {
    fn init(_config: String) -> Result<(), AgentError> {
        Ok(())
    }

    fn process(_port: u32, batch: Vec<u8>) -> Result<Vec<Output>, AgentError> {
        Ok(vec![Output { port: 0, batch }])
    }
}

// Only a Wasm build exports the component's functions (their names do not link natively).
#[cfg(target_arch = "wasm32")]
export!(Plain);
