//! The memory backend: an ordered map per agent. Fast, and gone when the process ends.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BackendError, StateBackend};

/// State kept in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Bytes of keys and values kept.
    bytes: AtomicU64,
}

impl MemoryBackend {
    /// A backend holding `entries`.
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let map: BTreeMap<Vec<u8>, Vec<u8>> = entries.into_iter().collect();
        let bytes = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        MemoryBackend {
            map: RwLock::new(map),
            bytes: AtomicU64::new(bytes),
        }
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateBackend for MemoryBackend {
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(keys.iter().map(|k| map.get(k).cloned()).collect())
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), BackendError> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let mut bytes = self.bytes.load(Ordering::Relaxed);
        for (k, v) in writes {
            let key_len = k.len() as u64;
            match v {
                Some(v) => {
                    bytes += key_len + v.len() as u64;
                    if let Some(old) = map.insert(k, v) {
                        bytes -= key_len + old.len() as u64;
                    }
                }
                None => {
                    if let Some(old) = map.remove(&k) {
                        bytes -= key_len + old.len() as u64;
                    }
                }
            }
        }
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&self, dir: &std::path::Path) -> Result<(), BackendError> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return Ok(()); // restoring finds no file: empty state
        }
        super::snapshot::write_memory_snapshot(dir, map.iter())
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
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
