//! `wit/state.wit` and `wit/packed-state.wit`: an agent's keyed state calls, checked against
//! the key groups the instance owns and passed to its agent's backend.

use super::HostState;
use super::bindings::sabot::agent::packed_state::{self, Packed, Values};
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

/// The strings of a packed list (`packed-state`'s `packed` record), checked: `ends` never
/// decreases, ends at `bytes`' length, and holds a whole number of entries of `width` strings.
fn unpack<'p>(
    call: &str,
    bytes: &'p [u8],
    ends: &'p [u32],
    width: usize,
) -> wasmtime::Result<impl Iterator<Item = &'p [u8]> + Clone> {
    if !ends.len().is_multiple_of(width) {
        wasmtime::bail!(
            "packed-state.{call}: {} strings is not a whole number of entries of {width} \
             (a bug in the agent's SDK)",
            ends.len()
        );
    }
    let mut start = 0usize;
    for (i, &end) in ends.iter().enumerate() {
        let end = end as usize;
        if end < start || end > bytes.len() {
            wasmtime::bail!(
                "packed-state.{call}: string {i} ends at {end}, before its start {start} or past \
                 the {} bytes (a bug in the agent's SDK)",
                bytes.len()
            );
        }
        start = end;
    }
    if start != bytes.len() {
        wasmtime::bail!(
            "packed-state.{call}: the strings end at {start} of {} bytes (a bug in the agent's SDK)",
            bytes.len()
        );
    }
    let mut start = 0usize;
    Ok(ends.iter().map(move |&end| {
        let s = &bytes[start..end as usize];
        start = end as usize;
        s
    }))
}

/// `(key, sub-key)` pairs of a packed list of two strings per entry.
fn pairs<'p>(
    mut strings: impl Iterator<Item = &'p [u8]> + Clone,
) -> impl Iterator<Item = (&'p [u8], &'p [u8])> + Clone {
    std::iter::from_fn(move || Some((strings.next()?, strings.next()?)))
}

/// What a packed call returns: a trap for lists that break the packing, else the call's result.
pub(super) type PackedResult<T> = wasmtime::Result<Result<T, StateError>>;

/// The packed calls on plain slices, for a component's `packed-state` imports and for the
/// built-in operators run natively alike.
impl HostState {
    /// `packed-state.get-many`: the values found, packed, and which entries were there.
    pub(super) fn packed_get_many(
        &mut self,
        store: &str,
        bytes: &[u8],
        ends: &[u32],
    ) -> PackedResult<(Vec<u8>, Vec<u32>, Vec<bool>)> {
        let keys = pairs(unpack("get-many", bytes, ends, 2)?);
        let entries = ends.len() / 2;
        let mut values = Vec::new();
        let mut value_ends = Vec::with_capacity(entries);
        let mut present = Vec::with_capacity(entries);
        let read = self.state.get_each(store, keys, |value| {
            if let Some(v) = value {
                values.extend_from_slice(v);
            }
            value_ends.push(values.len() as u32);
            present.push(value.is_some());
        });
        Ok(match read {
            Ok(()) => Ok((values, value_ends, present)),
            Err(r) => Err(self.refused(r)),
        })
    }

    /// `packed-state.put-many`.
    pub(super) fn packed_put_many(
        &mut self,
        store: &str,
        bytes: &[u8],
        ends: &[u32],
    ) -> PackedResult<()> {
        let mut strings = unpack("put-many", bytes, ends, 3)?;
        let writes = std::iter::from_fn(move || {
            let key = strings.next()?;
            let sub = strings.next()?;
            Some(((key, sub), Some(strings.next()?)))
        });
        Ok(self
            .state
            .write_entries(store, writes)
            .map_err(|r| self.refused(r)))
    }

    /// `packed-state.delete-many`.
    pub(super) fn packed_delete_many(
        &mut self,
        store: &str,
        bytes: &[u8],
        ends: &[u32],
    ) -> PackedResult<()> {
        let deletes = pairs(unpack("delete-many", bytes, ends, 2)?).map(|k| (k, None));
        Ok(self
            .state
            .write_entries(store, deletes)
            .map_err(|r| self.refused(r)))
    }
}

impl packed_state::Host for HostState {
    fn get_many(&mut self, store: String, keys: Packed) -> PackedResult<Values> {
        Ok(self
            .packed_get_many(&store, &keys.bytes, &keys.ends)?
            .map(|(bytes, ends, found)| Values {
                values: Packed { bytes, ends },
                found,
            }))
    }

    fn put_many(&mut self, store: String, entries: Packed) -> PackedResult<()> {
        self.packed_put_many(&store, &entries.bytes, &entries.ends)
    }

    fn delete_many(&mut self, store: String, keys: Packed) -> PackedResult<()> {
        self.packed_delete_many(&store, &keys.bytes, &keys.ends)
    }
}

/// Adds `sabot:agent/state` and `sabot:agent/packed-state` to `linker`.
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    packed_state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(bytes: &[u8], ends: &[u32], width: usize) -> Result<Vec<Vec<u8>>, String> {
        unpack("put-many", bytes, ends, width)
            .map(|s| s.map(<[u8]>::to_vec).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn packed_lists_unpack_into_their_strings_empty_ones_included() {
        assert_eq!(
            strings(b"k1v", &[2, 2, 3], 3).unwrap(),
            vec![b"k1".to_vec(), Vec::new(), b"v".to_vec()]
        );
        assert_eq!(strings(b"", &[], 2).unwrap(), Vec::<Vec<u8>>::new());
        let keys: Vec<_> = pairs(unpack("get-many", b"ab", &[1, 1, 2, 2], 2).unwrap()).collect();
        assert_eq!(keys, vec![(&b"a"[..], &b""[..]), (&b"b"[..], &b""[..])]);
    }

    #[test]
    fn packed_lists_that_break_the_packing_are_refused_naming_the_call_and_the_fault() {
        let e = strings(b"abc", &[1, 2, 3], 2).unwrap_err();
        assert!(
            e.contains("packed-state.put-many")
                && e.contains("3 strings is not a whole number of entries of 2"),
            "{e}"
        );
        let e = strings(b"abc", &[2, 1, 3], 3).unwrap_err();
        assert!(e.contains("string 1 ends at 1, before its start 2"), "{e}");
        let e = strings(b"abc", &[1, 9, 9], 3).unwrap_err();
        assert!(
            e.contains("string 1 ends at 9") && e.contains("past the 3 bytes"),
            "{e}"
        );
        let e = strings(b"abcdef", &[1, 2, 3], 3).unwrap_err();
        assert!(e.contains("the strings end at 3 of 6 bytes"), "{e}");
    }
}
