//! `wit/log.wit`: guest log lines become `tracing` events tagged with pipeline, agent and
//! instance.

use super::HostState;
use super::bindings::sabot::agent::log::{Host, Level, add_to_linker};
use wasmtime::component::{HasSelf, Linker};

/// A log line longer than this is cut, so a hostile agent cannot flood the host's log.
const MAX_LINE: usize = 16 * 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let message = super::truncate(&message, MAX_LINE);
        let t = &self.tags;
        match level {
            Level::Trace => {
                tracing::trace!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
        }
    }
}

/// Adds `sabot:agent/log` to `linker`.
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
