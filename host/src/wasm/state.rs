//! `wit/state.wit`: an agent's keyed state calls, checked against the key groups the instance
//! owns and passed to its agent's backend.

use super::HostState;
use super::bindings::sabot::agent::state::{EntryKey, Host, StateError, add_to_linker};
use crate::state::Refusal;
use wasmtime::component::{HasSelf, Linker};

impl HostState {
    /// What the guest is told of a refusal; one over a budget also fails the call.
    pub(super) fn refused(&mut self, r: Refusal) -> StateError {
        match r {
            Refusal::NotOwned(m) => StateError::NotOwned(m),
            Refusal::TooLarge(m) => StateError::TooLarge(m),
            Refusal::Backend(m) => StateError::Backend(m),
            Refusal::OverBudget { field, message } => {
                if self.exceeded.is_none()
                    && let Some(budget) = super::Budget::from_field(field)
                {
                    self.exceeded = Some(super::BudgetExceeded::new(budget, message.clone()));
                }
                StateError::TooLarge(format!("over the budget limits.{field}: {message}"))
            }
        }
    }
}

impl Host for HostState {
    fn get_many(
        &mut self,
        store: String,
        keys: Vec<EntryKey>,
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let keys: Vec<(Vec<u8>, Vec<u8>)> = keys.into_iter().map(|k| (k.key, k.sub)).collect();
        self.state
            .get_many(&store, &keys)
            .map_err(|r| self.refused(r))
    }

    fn put_many(
        &mut self,
        store: String,
        entries: Vec<(EntryKey, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let writes = entries
            .into_iter()
            .map(|(k, v)| ((k.key, k.sub), Some(v)))
            .collect();
        self.state
            .write(&store, writes)
            .map_err(|r| self.refused(r))
    }

    fn delete_many(&mut self, store: String, keys: Vec<EntryKey>) -> Result<(), StateError> {
        let writes = keys.into_iter().map(|k| ((k.key, k.sub), None)).collect();
        self.state
            .write(&store, writes)
            .map_err(|r| self.refused(r))
    }

    fn scan(
        &mut self,
        store: String,
        key: Vec<u8>,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        self.state
            .scan(&store, &key, &prefix, after.as_deref(), limit)
            .map_err(|r| self.refused(r))
    }
}

/// Adds `sabot:agent/state` to `linker`.
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
