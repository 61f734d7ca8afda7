//! Rows grouped by key, keys in the order they first appear: how operators turn a batch into one
//! state read and one state write per key.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::Hash;

/// A fast hasher for a batch's keys (integers and short strings): the map lives for one batch.
type Fast = foldhash::fast::RandomState;

/// A batch's row indices per key.
pub(crate) struct Groups<K> {
    /// The keys, in order of first appearance.
    pub order: Vec<K>,
    /// Each key's position in `order`.
    index: HashMap<K, usize, Fast>,
    /// The position in `order` of each row pushed, in push order.
    pushed: Vec<(usize, usize)>,
    /// The rows of each key, one after the other (`starts[i]..starts[i + 1]` for key `i`):
    /// built once, at the first [`Groups::rows`].
    grouped: OnceCell<(Vec<usize>, Vec<usize>)>,
}

impl<K: Hash + Eq + Clone> Groups<K> {
    pub fn new() -> Self {
        Groups {
            order: Vec::new(),
            index: HashMap::with_hasher(Fast::default()),
            pushed: Vec::new(),
            grouped: OnceCell::new(),
        }
    }

    /// Adds `row` to `key`'s group.
    pub fn push(&mut self, key: &K, row: usize) {
        let at = match self.pushed.last() {
            // Runs of one key (a window's rows, sorted input) skip the hash.
            Some(&(last, _)) if self.order[last] == *key => last,
            _ => match self.index.get(key) {
                Some(at) => *at,
                None => {
                    self.order.push(key.clone());
                    self.index.insert(key.clone(), self.order.len() - 1);
                    self.order.len() - 1
                }
            },
        };
        self.pushed.push((at, row));
        self.grouped.take();
    }

    /// The rows of `key`, in the order they were added.
    pub fn rows(&self, key: &K) -> &[usize] {
        let Some(&at) = self.index.get(key) else {
            return &[];
        };
        let (starts, rows) = self.grouped.get_or_init(|| {
            // A counting sort of the rows by key, stable.
            let mut starts = vec![0; self.order.len() + 1];
            for &(k, _) in &self.pushed {
                starts[k + 1] += 1;
            }
            for i in 0..self.order.len() {
                starts[i + 1] += starts[i];
            }
            let mut next = starts.clone();
            let mut rows = vec![0; self.pushed.len()];
            for &(k, row) in &self.pushed {
                rows[next[k]] = row;
                next[k] += 1;
            }
            (starts, rows)
        });
        &rows[starts[at]..starts[at + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::Groups;

    #[test]
    fn rows_are_grouped_by_key_in_order_of_first_appearance_and_of_arrival() {
        let mut g = Groups::new();
        for (row, key) in ["b", "a", "b", "c", "a", "b"].iter().enumerate() {
            g.push(key, row);
        }
        assert_eq!(g.order, ["b", "a", "c"]);
        assert_eq!(g.rows(&"b"), [0, 2, 5]);
        assert_eq!(g.rows(&"a"), [1, 4]);
        assert_eq!(g.rows(&"c"), [3]);
        assert!(g.rows(&"z").is_empty());
        // A push after a read is seen by the next read.
        g.push(&"c", 6);
        assert_eq!(g.rows(&"c"), [3, 6]);
    }
}
