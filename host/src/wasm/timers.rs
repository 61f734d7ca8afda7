//! `wit/timers.wit`: an agent's timer registrations, checked against the key groups the
//! instance owns and kept in its [`AgentTimers`](crate::time::AgentTimers).

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use super::bindings::sabot::agent::state::StateError;
use super::bindings::sabot::agent::timers::{
    Host, TimeDomain as WitDomain, Timer as WitTimer, add_to_linker,
};
use crate::time::{TimeDomain, Timer};

pub(crate) fn domain(d: WitDomain) -> TimeDomain {
    match d {
        WitDomain::EventTime => TimeDomain::EventTime,
        WitDomain::ProcessingTime => TimeDomain::ProcessingTime,
    }
}

/// A host timer as the guest sees it.
pub(crate) fn to_wit(t: &Timer) -> WitTimer {
    WitTimer {
        domain: match t.domain {
            TimeDomain::EventTime => WitDomain::EventTime,
            TimeDomain::ProcessingTime => WitDomain::ProcessingTime,
        },
        key: t.key.clone(),
        ts: t.ts,
    }
}

impl HostState {
    fn with_timers<T>(&self, f: impl FnOnce(&mut crate::time::AgentTimers) -> T) -> T {
        f(&mut self
            .state
            .timers()
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
    }
}

impl Host for HostState {
    fn register(&mut self, timers: Vec<WitTimer>) -> Result<(), StateError> {
        let timers = timers
            .into_iter()
            .map(|t| (domain(t.domain), t.key, t.ts))
            .collect();
        self.state
            .register_timers(timers)
            .map_err(|r| self.refused(r))
    }

    fn delete(&mut self, timers: Vec<WitTimer>) -> Result<(), StateError> {
        self.with_timers(|all| {
            for t in timers {
                all.queue(domain(t.domain)).delete(&t.key, t.ts);
            }
        });
        Ok(())
    }

    fn watermark(&mut self) -> Option<i64> {
        self.with_timers(|all| all.watermark)
    }
}

/// Adds `sabot:agent/timers` to `linker`.
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
