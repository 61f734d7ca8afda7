//! Timers kept by the host: `wit/timers.wit`.
//!
//! Register a timer for a key (the value of the agent's key column, as for [`state`](crate::state))
//! at a time in milliseconds since the Unix epoch. An event-time timer fires when the watermark
//! reaches its time, a processing-time timer when the wall clock does; either way the host calls
//! [`Agent::on_timer`](crate::Agent::on_timer), in time order, once per timer. Timers are
//! checkpointed with the agent's state.
//!
//! Registrations are buffered and reach the host in one call when the agent returns, so
//! registering one timer per row costs no boundary crossing per row.
//!
//! ```no_run
//! use sabot_sdk::timers;
//! // Fire one minute of event time after this transaction of card 42.
//! timers::register_event_time(&42i64, 1_767_225_660_000);
//! ```

use std::cell::RefCell;

use crate::AgentError;
use crate::imports;
use crate::state::StateKey;
use crate::wit::sabot::agent::state::StateError;
use crate::wit::sabot::agent::timers::{self as wit, TimeDomain as WitDomain};

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer's time.
    EventTime,
    /// Fires when the wall clock reaches the timer's time.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub domain: TimeDomain,
    /// The key it was registered for, encoded as for state.
    pub key: Vec<u8>,
    /// Its time, in milliseconds since the Unix epoch.
    pub ts: i64,
}

impl Timer {
    /// The key as an `i64` (a key column of type int64).
    pub fn key_i64(&self) -> Option<i64> {
        Some(i64::from_le_bytes(self.key.as_slice().try_into().ok()?))
    }

    /// The key as a string (a key column of type utf8).
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }
}

fn to_wit(domain: TimeDomain) -> WitDomain {
    match domain {
        TimeDomain::EventTime => WitDomain::EventTime,
        TimeDomain::ProcessingTime => WitDomain::ProcessingTime,
    }
}

pub(crate) fn from_wit(t: wit::Timer) -> Timer {
    Timer {
        domain: match t.domain {
            WitDomain::EventTime => TimeDomain::EventTime,
            WitDomain::ProcessingTime => TimeDomain::ProcessingTime,
        },
        key: t.key,
        ts: t.ts,
    }
}

thread_local! {
    /// Registrations (`true`) and deletions (`false`) not yet sent, in order.
    static PENDING: RefCell<Vec<(bool, wit::Timer)>> = const { RefCell::new(Vec::new()) };
}

fn push(register: bool, domain: TimeDomain, key: &impl StateKey, ts: i64) {
    PENDING.with(|p| {
        p.borrow_mut().push((
            register,
            wit::Timer {
                domain: to_wit(domain),
                key: key.state_key(),
                ts,
            },
        ))
    });
}

/// Registers an event-time timer for `key` at `ts`.
pub fn register_event_time(key: &impl StateKey, ts: i64) {
    push(true, TimeDomain::EventTime, key, ts);
}

/// Registers a processing-time timer for `key` at `ts` (wall clock).
pub fn register_processing_time(key: &impl StateKey, ts: i64) {
    push(true, TimeDomain::ProcessingTime, key, ts);
}

/// Deletes the event-time timer for `key` at `ts`, if there is one.
pub fn delete_event_time(key: &impl StateKey, ts: i64) {
    push(false, TimeDomain::EventTime, key, ts);
}

/// Deletes the processing-time timer for `key` at `ts`, if there is one.
pub fn delete_processing_time(key: &impl StateKey, ts: i64) {
    push(false, TimeDomain::ProcessingTime, key, ts);
}

/// The instance's current watermark: every event at or before it has arrived. `None` until
/// the inputs have one.
pub fn watermark() -> Option<i64> {
    imports::watermark()
}

/// Sends buffered registrations and deletions to the host, in order, one call per run of the
/// same kind. The SDK calls it when the agent returns from each call.
pub fn flush() -> Result<(), AgentError> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut rest = pending.as_slice();
    while let Some((register, _)) = rest.first() {
        let n = rest.iter().take_while(|(r, _)| r == register).count();
        let run: Vec<wit::Timer> = rest[..n].iter().map(|(_, t)| t.clone()).collect();
        let result = if *register {
            imports::register(&run)
        } else {
            imports::delete(&run)
        };
        result.map_err(|e| match e {
            StateError::NotOwned(m) | StateError::Backend(m) => AgentError::internal(m),
            StateError::TooLarge(m) => AgentError::invalid_input(m),
        })?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Forgets buffered registrations (the call that made them failed).
pub(crate) fn discard() {
    PENDING.with(|p| p.borrow_mut().clear());
}
