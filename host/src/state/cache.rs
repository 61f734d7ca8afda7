//! A write-back cache in front of a backend, so state-heavy agents touch RocksDB only for keys
//! they have not seen lately, and write it once per flush instead of once per batch.
//!
//! Reads and writes go to the cache; dirty entries (values and deletions) reach the backend when
//! they exceed the cache's budget, before a scan (which the backend answers), and before a
//! snapshot. Eviction is by two generations: entries used since the last turnover are kept, the
//! others dropped when the young generation fills half the budget — LRU-like at the cost of a
//! map swap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{BackendError, Entries, StateBackend};

/// An entry in the cache: a value, or known absent; dirty when the backend does not have it yet.
#[derive(Debug, Clone)]
struct Slot {
    value: Option<Vec<u8>>,
    dirty: bool,
    /// Whether the backend may hold a value for the key: a deletion of a key it never held
    /// (short-lived state, a closed window) is not written at all.
    stored: bool,
}

type Map = HashMap<Vec<u8>, Slot, xxhash_rust::xxh3::Xxh3DefaultBuilder>;

#[derive(Debug, Default)]
struct Generations {
    young: Map,
    old: Map,
    young_bytes: usize,
    dirty: usize,
    /// What the dirty entries (not yet in the backend) take.
    dirty_bytes: usize,
}

fn size(key: &[u8], slot: &Slot) -> usize {
    key.len() + slot.value.as_ref().map_or(0, Vec::len) + 48
}

/// A backend behind a write-back cache of `budget` bytes.
#[derive(Debug)]
pub struct CachedBackend {
    inner: Arc<dyn StateBackend>,
    budget: usize,
    cache: Mutex<Generations>,
}

impl CachedBackend {
    /// Caches `inner` with about `budget` bytes of entries.
    pub fn new(inner: Arc<dyn StateBackend>, budget: usize) -> Self {
        CachedBackend {
            inner,
            budget: budget.max(1 << 16),
            cache: Mutex::new(Generations::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes every dirty entry to the backend, in one batch.
    fn flush(&self, g: &mut Generations) -> Result<(), BackendError> {
        if g.dirty == 0 {
            return Ok(());
        }
        let mut writes = Vec::with_capacity(g.dirty);
        for (k, slot) in g.young.iter_mut().chain(g.old.iter_mut()) {
            if slot.dirty {
                writes.push((k.clone(), slot.value.clone()));
                slot.dirty = false;
                slot.stored = slot.value.is_some();
            }
        }
        g.dirty = 0;
        g.dirty_bytes = 0;
        self.inner.write(writes)
    }

    fn insert(&self, g: &mut Generations, key: Vec<u8>, slot: Slot) -> Result<(), BackendError> {
        if let Some(old) = g.old.remove(&key)
            && old.dirty
        {
            g.dirty -= 1;
            g.dirty_bytes -= size(&key, &old);
        }
        let bytes = size(&key, &slot);
        g.young_bytes += bytes;
        if slot.dirty {
            g.dirty += 1;
            g.dirty_bytes += bytes;
        }
        let key_len = key.len();
        if let Some(previous) = g.young.insert(key, slot) {
            // Replaced: the young generation holds the new entry instead of this one (a key
            // rewritten batch after batch does not fill it).
            let previous_bytes = key_len + previous.value.as_ref().map_or(0, Vec::len) + 48;
            g.young_bytes -= previous_bytes;
            if previous.dirty {
                g.dirty -= 1;
                g.dirty_bytes -= previous_bytes;
            }
        }
        if g.young_bytes > self.budget / 2 {
            // Turnover: what was not used since the last one goes (written first if dirty).
            self.flush(g)?;
            // The next generation will hold about as many entries: sized for them up front,
            // it does not rehash as it fills.
            let fresh = Map::with_capacity_and_hasher(g.young.len(), Default::default());
            g.old = std::mem::replace(&mut g.young, fresh);
            g.young_bytes = 0;
        }
        Ok(())
    }

    fn lookup(g: &mut Generations, key: &[u8]) -> Option<Slot> {
        if let Some(slot) = g.young.get(key) {
            return Some(slot.clone());
        }
        let (k, slot) = g.old.remove_entry(key)?;
        // Used again: back to the young generation.
        g.young_bytes += size(&k, &slot);
        g.young.insert(k, slot.clone());
        Some(slot)
    }
}

impl StateBackend for CachedBackend {
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match Self::lookup(&mut g, key) {
                Some(slot) => out.push(slot.value),
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let wanted: Vec<Vec<u8>> = missing.iter().map(|i| keys[*i].clone()).collect();
            let found = self.inner.get_many(&wanted)?;
            for (i, value) in missing.into_iter().zip(found) {
                out[i].clone_from(&value);
                let stored = value.is_some();
                self.insert(
                    &mut g,
                    keys[i].clone(),
                    Slot {
                        value,
                        dirty: false,
                        stored,
                    },
                )?;
            }
        }
        Ok(out)
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), BackendError> {
        let mut g = self.lock();
        for (key, value) in writes {
            // Unknown keys may be in the backend.
            let stored = g
                .young
                .get(&key)
                .or_else(|| g.old.get(&key))
                .is_none_or(|s| s.stored);
            let dirty = value.is_some() || stored;
            self.insert(
                &mut g,
                key,
                Slot {
                    value,
                    dirty,
                    stored,
                },
            )?;
        }
        Ok(())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, BackendError> {
        let mut g = self.lock();
        self.flush(&mut g)?;
        self.inner.scan(prefix, after, limit)
    }

    fn snapshot(&self, dir: &std::path::Path) -> Result<(), BackendError> {
        let mut g = self.lock();
        self.flush(&mut g)?;
        self.inner.snapshot(dir)
    }

    fn size_bytes(&self) -> u64 {
        // Dirty entries are not in the backend yet; an overwrite of one it holds counts twice
        // until the next flush.
        self.inner.size_bytes() + self.lock().dirty_bytes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    /// Keys rewritten batch after batch stay in the cache, however many bytes the rewrites add
    /// up to; keys that outgrow it reach the backend.
    #[test]
    fn rewriting_the_same_keys_does_not_spill_them_but_new_keys_past_the_budget_do() {
        let inner = Arc::new(MemoryBackend::default());
        let cached = CachedBackend::new(inner.clone(), 1 << 16);
        for round in 0..1_000u32 {
            let writes = (0..10u8)
                .map(|k| (vec![k], Some(vec![round as u8; 1_000])))
                .collect();
            cached.write(writes).unwrap();
        }
        assert!(
            inner.scan(&[], None, usize::MAX).unwrap().is_empty(),
            "10 MB of rewrites of 10 KB of keys were written to the backend"
        );
        assert_eq!(
            cached.get_many(&[vec![3]]).unwrap(),
            [Some(vec![231; 1_000])]
        );
        let writes = (0..200u16)
            .map(|k| (k.to_be_bytes().to_vec(), Some(vec![1; 1_000])))
            .collect();
        cached.write(writes).unwrap();
        assert!(!inner.scan(&[], None, usize::MAX).unwrap().is_empty());
    }

    /// Random operations through a small cache answer like the backend alone, and the backend
    /// holds everything after a snapshot's flush.
    #[test]
    fn a_cached_backend_answers_like_the_backend_alone() {
        let reference = MemoryBackend::default();
        let inner = Arc::new(MemoryBackend::default());
        let cached = CachedBackend::new(inner.clone(), 1 << 16);
        let mut rng = fastrand::Rng::with_seed(9);
        for round in 0..3_000 {
            let key = |rng: &mut fastrand::Rng| vec![rng.u8(0..4), rng.u8(..), rng.u8(..)];
            let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..rng.usize(0..40))
                .map(|_| {
                    (
                        key(&mut rng),
                        (rng.u8(0..5) > 0).then(|| vec![round as u8; rng.usize(0..200)]),
                    )
                })
                .collect();
            reference.write(writes.clone()).unwrap();
            cached.write(writes).unwrap();
            let probe: Vec<Vec<u8>> = (0..20).map(|_| key(&mut rng)).collect();
            assert_eq!(
                cached.get_many(&probe).unwrap(),
                reference.get_many(&probe).unwrap()
            );
            if round % 500 == 0 {
                let prefix = [rng.u8(0..4)];
                assert_eq!(
                    cached.scan(&prefix, None, 1_000).unwrap(),
                    reference.scan(&prefix, None, 1_000).unwrap()
                );
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        cached.snapshot(tmp.path()).unwrap();
        assert_eq!(
            inner.scan(&[], None, usize::MAX).unwrap(),
            reference.scan(&[], None, usize::MAX).unwrap()
        );
    }
}
