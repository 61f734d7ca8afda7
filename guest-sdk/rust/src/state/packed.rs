//! The lists of one `wit/packed-state.wit` call: every key, sub-key and value of a batch laid end
//! to end in one buffer, so a batch of state calls builds, copies and frees two lists, not two
//! per entry.

use super::StateKey;
pub(crate) use crate::wit::sabot::agent::packed_state::{Packed, Values};

impl Packed {
    /// Room for `strings` strings of about `bytes` bytes in all.
    pub(crate) fn with_capacity(strings: usize, bytes: usize) -> Self {
        Packed {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    /// Appends one string.
    pub(crate) fn push(&mut self, string: &[u8]) {
        self.bytes.extend_from_slice(string);
        self.end();
    }

    /// Appends a state key, written in place.
    pub(crate) fn push_key(&mut self, key: &(impl StateKey + ?Sized)) {
        key.write_state_key(&mut self.bytes);
        self.end();
    }

    /// Appends a key with no sub-key: a single value's entry.
    pub(crate) fn push_entry(&mut self, key: &(impl StateKey + ?Sized)) {
        self.push_key(key);
        self.end();
    }

    /// Ends the string under way at the bytes written so far.
    pub(crate) fn end(&mut self) {
        let end = u32::try_from(self.bytes.len())
            .expect("one state call's keys and values fit in 4 GiB (the host refuses far less)");
        self.ends.push(end);
    }

    /// The strings, in order.
    pub(crate) fn strings(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.bytes[start..end as usize];
            start = end as usize;
            s
        })
    }

    /// Whether it holds no string.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl Values {
    /// Each entry's value, `None` where there is none.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.values
            .strings()
            .zip(&self.found)
            .map(|(v, &found)| found.then_some(v))
    }
}
