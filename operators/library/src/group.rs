//! Rows grouped by key, keys in the order they first appear: how operators turn a batch into one
//! state read and one state write per key.

use std::collections::HashMap;
use std::hash::Hash;

/// A batch's row indices per key.
pub(crate) struct Groups<K> {
    /// The keys, in order of first appearance.
    pub order: Vec<K>,
    rows: HashMap<K, Vec<usize>>,
}

impl<K: Hash + Eq + Clone> Groups<K> {
    pub fn new() -> Self {
        Groups {
            order: Vec::new(),
            rows: HashMap::new(),
        }
    }

    /// Adds `row` to `key`'s group.
    pub fn push(&mut self, key: &K, row: usize) {
        match self.rows.get_mut(key) {
            Some(rows) => rows.push(row),
            None => {
                self.order.push(key.clone());
                self.rows.insert(key.clone(), vec![row]);
            }
        }
    }

    /// The rows of `key`, in the order they were added.
    pub fn rows(&self, key: &K) -> &[usize] {
        self.rows.get(key).map_or(&[], Vec::as_slice)
    }
}
