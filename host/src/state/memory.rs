//! The memory backend: a hash map per agent for what is read and written key by key, and the
//! same keys in order for scans. Fast, and gone when the process ends.
//!
//! Keyed state is mostly point reads and overwrites of keys already there (a count per card):
//! those touch only the hash map. The ordered set changes only when a key appears or goes.
//!
//! Short keys and values (a store, key group and integer key; a count) are kept inline in the
//! map's slots, not in allocations of their own: with many keys, a lookup's cost is its cache
//! misses, and a slot that holds the key and value is one miss instead of three.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use super::{BackendError, Lookup, Put, StateBackend};

/// A key in the hash map: up to 24 bytes inline.
type Key = SmallVec<[u8; 24]>;
/// A value in the hash map: up to 16 bytes inline.
type Value = SmallVec<[u8; 16]>;

#[derive(Debug, Default)]
struct Entries {
    values: HashMap<Key, Value, xxhash_rust::xxh3::Xxh3DefaultBuilder>,
    /// The same keys, in order, for scans and snapshots.
    order: BTreeSet<Box<[u8]>>,
}

/// State kept in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    entries: RwLock<Entries>,
    /// Bytes of keys and values kept.
    bytes: AtomicU64,
}

impl MemoryBackend {
    /// A backend holding `entries`.
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let backend = MemoryBackend::default();
        let writes = entries.into_iter().map(|(k, v)| (k, Some(v))).collect();
        backend
            .write(writes)
            .expect("writing to memory does not fail");
        backend
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.read().values.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entries {
    /// Puts (`Some`) or deletes (`None`) one entry, keeping `bytes` (of keys and values) up to
    /// date.
    fn apply(&mut self, bytes: &mut u64, key: &[u8], value: Option<&[u8]>) {
        let key_len = key.len() as u64;
        match value {
            Some(v) => {
                *bytes += key_len + v.len() as u64;
                if let Some(old) = self.values.get_mut(key) {
                    // An overwrite: the key is in the order already.
                    *bytes -= key_len + old.len() as u64;
                    if old.capacity() >= v.len() && old.capacity() <= 2 * v.len().max(16) {
                        old.clear();
                        old.extend_from_slice(v);
                    } else {
                        // Not one that shrank a lot: what is kept stays what is counted.
                        *old = SmallVec::from_slice(v);
                    }
                } else {
                    self.order.insert(key.into());
                    self.values
                        .insert(SmallVec::from_slice(key), SmallVec::from_slice(v));
                }
            }
            None => {
                if let Some(old) = self.values.remove(key) {
                    self.order.remove(key);
                    *bytes -= key_len + old.len() as u64;
                }
            }
        }
    }
}

impl StateBackend for MemoryBackend {
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let entries = self.read();
        Ok(keys
            .iter()
            .map(|k| entries.values.get(k.as_slice()).map(|v| v.to_vec()))
            .collect())
    }

    fn get_each(
        &self,
        keys: &mut dyn FnMut(&mut Lookup<'_>),
        found: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), BackendError> {
        let entries = self.read();
        keys(&mut |k| found(entries.values.get(k).map(|v| v.as_slice())));
        Ok(())
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), BackendError> {
        self.write_each(&mut |put| {
            for (k, v) in &writes {
                put(k, v.as_deref());
            }
        })
    }

    fn write_each(&self, writes: &mut dyn FnMut(&mut Put<'_>)) -> Result<(), BackendError> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut bytes = self.bytes.load(Ordering::Relaxed);
        writes(&mut |k, v| entries.apply(&mut bytes, k, v));
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&self, dir: &std::path::Path) -> Result<(), BackendError> {
        let entries = self.read();
        if entries.order.is_empty() {
            return Ok(()); // restoring finds no file: empty state
        }
        super::snapshot::write_memory_snapshot(
            dir,
            entries
                .order
                .iter()
                .map(|k| (k.as_ref(), entries.values[k.as_ref()].as_slice())),
        )
    }

    fn size_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<super::Entries, BackendError> {
        let entries = self.read();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        Ok(entries
            .order
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .map(|k| (k.to_vec(), entries.values[k.as_ref()].to_vec()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_deletes_reads_and_scans_agree_with_an_ordered_map() {
        let memory = MemoryBackend::default();
        let mut reference = std::collections::BTreeMap::new();
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..2_000 {
            let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..rng.usize(1..20))
                .map(|_| {
                    // Some keys and values past what is kept inline.
                    let mut key = vec![rng.u8(0..3), rng.u8(0..40)];
                    key.resize(if key[1] % 5 == 0 { 30 } else { 2 }, key[1]);
                    (
                        key,
                        (rng.u8(0..4) > 0).then(|| vec![rng.u8(..); rng.usize(0..24)]),
                    )
                })
                .collect();
            for (k, v) in &writes {
                match v {
                    Some(v) => reference.insert(k.clone(), v.clone()),
                    None => reference.remove(k),
                };
            }
            if rng.bool() {
                memory.write(writes).unwrap();
            } else {
                memory
                    .write_each(&mut |put| {
                        for (k, v) in &writes {
                            put(k, v.as_deref());
                        }
                    })
                    .unwrap();
            }
            // Lent values are the owned ones.
            let keys: Vec<Vec<u8>> = (0..8)
                .map(|_| {
                    let mut key = vec![rng.u8(0..3), rng.u8(0..40)];
                    key.resize(if key[1] % 5 == 0 { 30 } else { 2 }, key[1]);
                    key
                })
                .collect();
            let mut lent = Vec::new();
            memory
                .get_each(
                    &mut |lookup| keys.iter().for_each(|k| lookup(k)),
                    &mut |v| lent.push(v.map(<[u8]>::to_vec)),
                )
                .unwrap();
            assert_eq!(lent, memory.get_many(&keys).unwrap());
            let prefix = [rng.u8(0..3)];
            let after = rng.bool().then(|| vec![prefix[0], rng.u8(0..40)]);
            let expected: Vec<(Vec<u8>, Vec<u8>)> = reference
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                .take(7)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(memory.scan(&prefix, after.as_deref(), 7).unwrap(), expected);
        }
        let bytes: usize = reference.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(memory.size_bytes(), bytes as u64);
        assert_eq!(memory.len(), reference.len());
    }
}
