//! Keyed state: the backends that keep agents' state, the key layout they share, and the scope
//! that confines an instance to the key groups it owns.
//!
//! An entry of store `s`, key `k` and sub-key `u`, in key group `g`, is kept under
//! `[g: u16 BE][len(s): u8][s][len(k): u32 BE][k][u]`. Key groups come first so that the state of a
//! range of key groups (what an instance owns, what a rescaled instance takes over) is one
//! contiguous range of the backend.

mod cache;
mod memory;
mod rocksdb;
mod snapshot;

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::time::{AgentTimers, TIMER_OVERHEAD, TimeDomain};

pub use cache::CachedBackend;
pub use memory::MemoryBackend;
pub use rocksdb::RocksBackend;
pub use snapshot::{SnapshotSource, open_instance};

use serde::Deserialize;

/// Where a pipeline keeps its agents' state: `[pipeline] state = "memory" | "rocksdb"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// An ordered map in memory: fast, bounded by memory.
    Memory,
    /// RocksDB under the run's data directory (the default): state can outgrow memory.
    #[default]
    Rocksdb,
}

use crate::dataflow::{KEY_GROUPS, instance_of, key_group};

/// Key-value pairs in key order, as scans return them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;
/// An entry's `(key, sub-key)`.
pub type EntryKey = (Vec<u8>, Vec<u8>);

/// Why a backend operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// An entry of a store, read from outside the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    pub key: Vec<u8>,
    pub sub: Vec<u8>,
    pub value: Vec<u8>,
    /// Its backend key: where the next page of a scan starts after.
    pub position: Vec<u8>,
}

/// Looks up one backend key: what [`StateBackend::get_each`] lends its caller.
pub type Lookup<'a> = dyn FnMut(&[u8]) + 'a;
/// Puts (`Some`) or deletes (`None`) one backend key: what [`StateBackend::write_each`] lends
/// its caller.
pub type Put<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// A store of ordered byte keys and values.
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// The values of `keys`, in order.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError>;
    /// Applies writes in order: `Some` puts, `None` deletes.
    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), BackendError>;
    /// [`StateBackend::get_many`] without owning keys or values: `keys` calls `lookup` once per
    /// key, in order, and each lookup hands the value found (or `None`) to `found` before it
    /// returns. The provided form copies both into [`StateBackend::get_many`]'s lists.
    fn get_each(
        &self,
        keys: &mut dyn FnMut(&mut Lookup<'_>),
        found: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), BackendError> {
        let mut owned = Vec::new();
        keys(&mut |k| owned.push(k.to_vec()));
        for value in self.get_many(&owned)? {
            found(value.as_deref());
        }
        Ok(())
    }
    /// [`StateBackend::write`] without owning keys or values: `writes` calls `put` once per
    /// write, in order. The provided form copies them into [`StateBackend::write`]'s list.
    fn write_each(&self, writes: &mut dyn FnMut(&mut Put<'_>)) -> Result<(), BackendError> {
        let mut owned = Vec::new();
        writes(&mut |k, v| owned.push((k.to_vec(), v.map(<[u8]>::to_vec))));
        self.write(owned)
    }
    /// The entries whose keys start with `prefix` and sort after `after` (when given), in key
    /// order, at most `limit`.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, BackendError>;
    /// Writes a consistent copy of everything kept into the empty directory `dir`, to be
    /// restored with [`open_instance`].
    fn snapshot(&self, dir: &std::path::Path) -> Result<(), BackendError>;
    /// About how many bytes of keys and values are kept (exact for memory; for RocksDB its own
    /// estimate of live data plus its memtables).
    fn size_bytes(&self) -> u64;
}

/// The longest store name.
pub const MAX_STORE_NAME: usize = 255;
/// The longest key or sub-key.
pub const MAX_KEY: usize = 64 * 1024;
/// The largest value.
pub const MAX_VALUE: usize = 64 << 20;

/// The backend key of an entry (see the module docs).
pub fn entry_key(store: &str, group: u32, key: &[u8], sub: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 1 + store.len() + 4 + key.len() + sub.len());
    write_entry_key(&mut out, store, group, key, sub);
    out
}

/// Appends the backend key of an entry to `out`.
pub fn write_entry_key(out: &mut Vec<u8>, store: &str, group: u32, key: &[u8], sub: &[u8]) {
    out.extend_from_slice(&(group as u16).to_be_bytes());
    out.push(store.len() as u8);
    out.extend_from_slice(store.as_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(sub);
}

/// The backend key prefix of every entry of `key` in `store`.
pub fn key_prefix(store: &str, group: u32, key: &[u8]) -> Vec<u8> {
    entry_key(store, group, key, &[])
}

/// Why an agent's state call was refused: what `state-error` carries to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotOwned(String),
    TooLarge(String),
    Backend(String),
    /// The call would go over one of the instance's budgets: `field` of its `limits`, and the
    /// figures. The guest is told `too-large`; the call then fails.
    OverBudget {
        field: &'static str,
        message: String,
    },
}

impl Refusal {
    /// What the guest is told.
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotOwned(m) | Refusal::TooLarge(m) | Refusal::Backend(m) => m,
            Refusal::OverBudget { message, .. } => message,
        }
    }
}

/// What an instance may keep: state bytes, stores, timers (from its `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBudget {
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Distinct store names.
    pub stores: usize,
    /// Timers registered at once.
    pub timers: usize,
    /// What the timers hold: their keys, and [`TIMER_OVERHEAD`] each.
    pub timer_bytes: u64,
}

impl Default for StateBudget {
    /// No limit: for scopes that only read (queries) and for tools.
    fn default() -> Self {
        StateBudget {
            bytes: u64::MAX,
            stores: usize::MAX,
            timers: usize::MAX,
            timer_bytes: u64::MAX,
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// An instance's view of its agent's state: the backend, and the key groups it owns.
#[derive(Debug, Clone)]
pub struct StateScope {
    backend: Arc<dyn StateBackend>,
    agent: String,
    instance: usize,
    parallelism: usize,
    keyed: bool,
    owned: Range<u32>,
    timers: Arc<Mutex<AgentTimers>>,
    /// The stores (tables) the instance has used, for the control plane's listing.
    stores: Arc<Mutex<std::collections::BTreeSet<String>>>,
    budget: StateBudget,
    /// The state kept, in bytes, as last measured (before a write).
    size: Arc<std::sync::atomic::AtomicU64>,
}

/// The key groups instance `instance` of `parallelism` owns.
pub fn owned_key_groups(instance: usize, parallelism: usize) -> Range<u32> {
    let start = (0..KEY_GROUPS)
        .find(|g| instance_of(*g, parallelism) == instance)
        .unwrap_or(KEY_GROUPS);
    let end = (start..KEY_GROUPS)
        .find(|g| instance_of(*g, parallelism) != instance)
        .unwrap_or(KEY_GROUPS);
    start..end
}

impl StateScope {
    /// The scope of instance `instance` of agent `agent` (`parallelism` instances, `keyed` when
    /// its input is partitioned by a key column).
    pub fn new(
        backend: Arc<dyn StateBackend>,
        agent: &str,
        instance: usize,
        parallelism: usize,
        keyed: bool,
    ) -> Self {
        StateScope {
            backend,
            agent: agent.to_owned(),
            instance,
            parallelism,
            keyed,
            owned: owned_key_groups(instance, parallelism),
            timers: Arc::default(),
            stores: Arc::default(),
            budget: StateBudget::default(),
            size: Arc::default(),
        }
    }

    /// This scope, held to `budget` (an agent instance's; other scopes are unlimited).
    pub fn with_budget(mut self, budget: StateBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The state this instance keeps, in bytes, as last measured.
    pub fn size_bytes(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the instance has used store `store`.
    pub fn has_store(&self, store: &str) -> bool {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(store)
    }

    /// The scope of a lone instance with its own memory state: for tests, benchmarks and tools
    /// that run one instance outside a pipeline.
    pub fn standalone(agent: &str) -> Self {
        Self::new(Arc::new(MemoryBackend::default()), agent, 0, 1, false)
    }

    /// The backend this scope reads and writes.
    pub fn backend(&self) -> &Arc<dyn StateBackend> {
        &self.backend
    }

    /// The instance's timers: keyed like its state, checkpointed with it.
    pub fn timers(&self) -> &Arc<Mutex<AgentTimers>> {
        &self.timers
    }

    /// Replaces the instance's timers (a restore).
    pub fn with_timers(mut self, timers: AgentTimers) -> Self {
        self.timers = Arc::new(Mutex::new(timers));
        self
    }

    /// The key groups this instance owns.
    pub fn owned(&self) -> Range<u32> {
        self.owned.clone()
    }

    /// The key group of `key`, if this instance owns it.
    pub fn owns(&self, key: &[u8]) -> Result<u32, Refusal> {
        self.group(key)
    }

    fn group(&self, key: &[u8]) -> Result<u32, Refusal> {
        if key.len() > MAX_KEY {
            return Err(Refusal::TooLarge(format!(
                "a key of {} bytes is over the limit of {MAX_KEY}",
                key.len()
            )));
        }
        if !self.keyed && self.parallelism > 1 {
            return Err(Refusal::NotOwned(format!(
                "agent `{}` runs {} instances without a `key`: keyed state needs the agent's input partitioned by a key column, so that each key lives in one instance",
                self.agent, self.parallelism
            )));
        }
        let group = key_group(key);
        if !self.owned.contains(&group) {
            return Err(Refusal::NotOwned(format!(
                "key {} is in key group {group}, which instance {} owns; instance {} of agent `{}` owns key groups {}..{}: use the value of the agent's key column from the rows it is given",
                String::from_utf8(key.to_vec()).unwrap_or_else(|_| format!("{key:?}")),
                instance_of(group, self.parallelism),
                self.instance,
                self.agent,
                self.owned.start,
                self.owned.end
            )));
        }
        Ok(group)
    }

    fn check_store(&self, store: &str) -> Result<(), Refusal> {
        if store.is_empty() || store.len() > MAX_STORE_NAME {
            return Err(Refusal::TooLarge(format!(
                "a store name must be 1 to {MAX_STORE_NAME} bytes, got {}",
                store.len()
            )));
        }
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if !stores.contains(store) {
            if stores.len() >= self.budget.stores {
                return Err(Refusal::OverBudget {
                    field: "max_stores",
                    message: format!(
                        "store `{store}` would be its store number {}, over the limit of {}",
                        stores.len() + 1,
                        self.budget.stores
                    ),
                });
            }
            stores.insert(store.to_owned());
        }
        Ok(())
    }

    /// Refuses writing `incoming` more bytes when the state would go over its budget.
    fn check_size(&self, store: &str, incoming: u64) -> Result<(), Refusal> {
        if self.budget.bytes == u64::MAX && incoming == 0 {
            return Ok(());
        }
        let size = self.backend.size_bytes();
        self.size.store(size, std::sync::atomic::Ordering::Relaxed);
        if size.saturating_add(incoming) > self.budget.bytes {
            return Err(Refusal::OverBudget {
                field: "state_mb",
                message: format!(
                    "writing {incoming} bytes to store `{store}` would keep {} of state, over the budget of {}",
                    mib(size.saturating_add(incoming)),
                    mib(self.budget.bytes)
                ),
            });
        }
        Ok(())
    }

    /// Registers timers `(domain, key, ts)`, each on a key this instance owns, within the
    /// instance's timer budget (all or none).
    pub fn register_timers(&self, timers: Vec<(TimeDomain, Vec<u8>, i64)>) -> Result<(), Refusal> {
        for (_, key, _) in &timers {
            self.owns(key).map_err(|r| match r {
                Refusal::NotOwned(m) => Refusal::NotOwned(format!("timer: {m}")),
                Refusal::TooLarge(m) => Refusal::TooLarge(format!("timer: {m}")),
                other => other,
            })?;
        }
        let mut all = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        let count = all.len().saturating_add(timers.len());
        if count > self.budget.timers {
            return Err(Refusal::OverBudget {
                field: "max_timers",
                message: format!(
                    "registering {} timers would make {count}, over the limit of {}",
                    timers.len(),
                    self.budget.timers
                ),
            });
        }
        let bytes = timers
            .iter()
            .map(|(_, k, _)| k.len() as u64 + TIMER_OVERHEAD)
            .fold(all.bytes(), u64::saturating_add);
        if bytes > self.budget.timer_bytes {
            return Err(Refusal::OverBudget {
                field: "timers_mb",
                message: format!(
                    "registering {} timers would hold {} of timers, over the budget of {}",
                    timers.len(),
                    mib(bytes),
                    mib(self.budget.timer_bytes)
                ),
            });
        }
        for (domain, key, ts) in timers {
            all.queue(domain).register(key, ts);
        }
        Ok(())
    }

    /// The stores (tables) this instance has read or written, in name order.
    pub fn stores(&self) -> Vec<String> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn backend_error(e: BackendError) -> Refusal {
        Refusal::Backend(e.0)
    }

    /// `get-many`.
    pub fn get_many(
        &self,
        store: &str,
        keys: &[EntryKey],
    ) -> Result<Vec<Option<Vec<u8>>>, Refusal> {
        let mut values = Vec::with_capacity(keys.len());
        self.get_each(store, keys.iter().map(|(k, s)| (&k[..], &s[..])), |v| {
            values.push(v.map(<[u8]>::to_vec))
        })?;
        Ok(values)
    }

    /// Hands the value of each `(key, sub-key)` entry of `store` (or `None`) to `found`, in
    /// order, all or none: every key is checked before any is read. The backend keys are
    /// composed one at a time into one buffer, and the values are lent where the backend
    /// keeps them, so a backend that overrides [`StateBackend::get_each`] allocates nothing
    /// per entry.
    pub fn get_each<'k>(
        &self,
        store: &str,
        keys: impl IntoIterator<Item = (&'k [u8], &'k [u8]), IntoIter: Clone>,
        mut found: impl FnMut(Option<&[u8]>),
    ) -> Result<(), Refusal> {
        self.check_store(store)?;
        // Two passes over the keys rather than a list of them: a batch's list would be a fresh
        // allocation of hundreds of KB per call.
        let keys = keys.into_iter();
        for (key, _) in keys.clone() {
            self.group(key)?;
        }
        let mut buffer = Vec::new();
        self.backend
            .get_each(
                &mut |lookup| {
                    for (key, sub) in keys.clone() {
                        buffer.clear();
                        write_entry_key(&mut buffer, store, key_group(key), key, sub);
                        lookup(&buffer);
                    }
                },
                &mut found,
            )
            .map_err(Self::backend_error)
    }

    /// `put-many` (values) and `delete-many` (`None`s).
    pub fn write(
        &self,
        store: &str,
        writes: Vec<(EntryKey, Option<Vec<u8>>)>,
    ) -> Result<(), Refusal> {
        self.write_entries(
            store,
            writes
                .iter()
                .map(|((k, s), v)| ((&k[..], &s[..]), v.as_deref())),
        )
    }

    /// Writes (`Some`) and deletes (`None`) `(key, sub-key)` entries of `store`, all or none:
    /// `put-many` and `delete-many` of either state interface, without owning the keys or the
    /// values (a backend that overrides [`StateBackend::write_each`] copies each once, into
    /// where it keeps it).
    pub fn write_entries<'k>(
        &self,
        store: &str,
        writes: impl IntoIterator<Item = ((&'k [u8], &'k [u8]), Option<&'k [u8]>), IntoIter: Clone>,
    ) -> Result<(), Refusal> {
        self.check_store(store)?;
        // Passes over the writes rather than a list of them, as in `get_each`.
        let writes = writes.into_iter();
        let incoming = writes
            .clone()
            .map(|((key, sub), value)| {
                value.map_or(0, |v| {
                    (v.len() + key.len() + sub.len() + store.len() + 7) as u64
                })
            })
            .fold(0, u64::saturating_add);
        self.check_size(store, incoming)?;
        for ((key, _), value) in writes.clone() {
            if let Some(v) = value
                && v.len() > MAX_VALUE
            {
                return Err(Refusal::TooLarge(format!(
                    "a value of {} bytes is over the limit of {MAX_VALUE}",
                    v.len()
                )));
            }
            self.group(key)?;
        }
        let mut buffer = Vec::new();
        self.backend
            .write_each(&mut |put| {
                for ((key, sub), value) in writes.clone() {
                    buffer.clear();
                    write_entry_key(&mut buffer, store, key_group(key), key, sub);
                    put(&buffer, value);
                }
            })
            .map_err(Self::backend_error)
    }

    /// Up to `limit` entries of every key of `store` this instance owns, in backend-key order
    /// (key group, then key, then sub-key), starting after the backend key `after`, and no more
    /// once their values reach `max_bytes`: a page of a whole table, for reading it from
    /// outside the pipeline.
    pub fn scan_store(
        &self,
        store: &str,
        after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoreEntry>, Refusal> {
        /// Entries read from the backend at a time, so a page of large values stops early.
        const CHUNK: usize = 256;
        self.check_store(store)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        let first = after
            .and_then(|a| a.get(..2))
            .map(|g| u32::from(u16::from_be_bytes([g[0], g[1]])));
        for group in self.owned.clone() {
            if first.is_some_and(|f| group < f) {
                continue;
            }
            let mut prefix = Vec::with_capacity(3 + store.len());
            prefix.extend_from_slice(&(group as u16).to_be_bytes());
            prefix.push(store.len() as u8);
            prefix.extend_from_slice(store.as_bytes());
            let mut position = after.filter(|a| a.starts_with(&prefix)).map(<[u8]>::to_vec);
            loop {
                if out.len() >= limit || bytes >= max_bytes {
                    return Ok(out);
                }
                let chunk = (limit - out.len()).min(CHUNK);
                let entries = self
                    .backend
                    .scan(&prefix, position.as_deref(), chunk)
                    .map_err(Self::backend_error)?;
                let full = entries.len() == chunk;
                for (k, value) in entries {
                    position = Some(k.clone());
                    let rest = &k[prefix.len()..];
                    let Some(len) = rest.get(..4) else { continue };
                    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                    let Some(key) = rest.get(4..4 + len) else {
                        continue;
                    };
                    bytes += value.len();
                    out.push(StoreEntry {
                        key: key.to_vec(),
                        sub: rest[4 + len..].to_vec(),
                        value,
                        position: k.clone(),
                    });
                    if bytes >= max_bytes {
                        return Ok(out);
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// `scan`: sub-keys and values under `key`.
    pub fn scan(
        &self,
        store: &str,
        key: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Entries, Refusal> {
        self.check_store(store)?;
        let base = key_prefix(store, self.group(key)?, key);
        let mut full = base.clone();
        full.extend_from_slice(prefix);
        let after = after.map(|a| {
            let mut k = base.clone();
            k.extend_from_slice(a);
            k
        });
        let entries = self
            .backend
            .scan(&full, after.as_deref(), limit.min(64 * 1024) as usize)
            .map_err(Self::backend_error)?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k[base.len()..].to_vec(), v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(instance: usize, parallelism: usize) -> StateScope {
        StateScope::new(
            Arc::new(MemoryBackend::default()),
            "a",
            instance,
            parallelism,
            true,
        )
    }

    #[test]
    fn a_whole_store_pages_by_position_each_entry_once_and_stops_at_its_byte_budget() {
        let s = scope(0, 1);
        let keys: Vec<Vec<u8>> = (0..500i64).map(|k| k.to_le_bytes().to_vec()).collect();
        let writes = keys
            .iter()
            .flat_map(|k| {
                [
                    ((k.clone(), vec![]), Some(vec![7; 10])),
                    ((k.clone(), vec![1]), Some(vec![8; 10])),
                ]
            })
            .collect();
        s.write("rows", writes).unwrap();
        s.write(
            "other",
            vec![((keys[0].clone(), vec![]), Some(b"x".to_vec()))],
        )
        .unwrap();

        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = s
                .scan_store("rows", after.as_deref(), 33, usize::MAX)
                .unwrap();
            assert!(page.len() <= 33);
            seen.extend(page.iter().map(|e| (e.key.clone(), e.sub.clone())));
            match page.last() {
                Some(e) if page.len() == 33 => after = Some(e.position.clone()),
                _ => break,
            }
        }
        assert_eq!(
            seen.len(),
            1000,
            "every entry of the store, none of another"
        );
        let unique: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 1000, "each once");
        // A key's entries come together, in sub-key order.
        let at = seen.iter().position(|(k, _)| *k == keys[42]).unwrap();
        assert_eq!(seen[at].1, Vec::<u8>::new());
        assert_eq!(seen[at + 1], (keys[42].clone(), vec![1]));

        let page = s.scan_store("rows", None, 1000, 95).unwrap();
        assert_eq!(page.len(), 10, "stops once 95 bytes of values are read");
    }

    #[test]
    fn key_group_ranges_cover_every_group_once() {
        for p in [1, 2, 3, 7, 256] {
            let mut next = 0;
            for i in 0..p {
                let r = owned_key_groups(i, p);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, KEY_GROUPS);
        }
    }

    #[test]
    fn an_instance_reads_what_it_wrote_and_scans_in_sub_key_order() {
        let s = scope(0, 1);
        let k = 42i64.to_le_bytes().to_vec();
        s.write(
            "m",
            vec![
                ((k.clone(), b"b".to_vec()), Some(b"2".to_vec())),
                ((k.clone(), b"a".to_vec()), Some(b"1".to_vec())),
            ],
        )
        .unwrap();
        assert_eq!(
            s.get_many(
                "m",
                &[(k.clone(), b"a".to_vec()), (k.clone(), b"z".to_vec())]
            )
            .unwrap(),
            vec![Some(b"1".to_vec()), None]
        );
        let all = s.scan("m", &k, b"", None, 10).unwrap();
        assert_eq!(
            all,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(
            s.scan("m", &k, b"", Some(b"a"), 10).unwrap(),
            vec![(b"b".to_vec(), b"2".to_vec())]
        );
        s.write("m", vec![((k.clone(), b"a".to_vec()), None)])
            .unwrap();
        assert_eq!(s.scan("m", &k, b"", None, 10).unwrap().len(), 1);
    }

    #[test]
    fn keys_of_other_instances_are_refused_naming_the_owner() {
        let key = 7i64.to_le_bytes().to_vec();
        let owner = instance_of(key_group(&key), 4);
        let other = (owner + 1) % 4;
        assert!(
            scope(owner, 4)
                .get_many("v", &[(key.clone(), vec![])])
                .is_ok()
        );
        match scope(other, 4).get_many("v", &[(key, vec![])]) {
            Err(Refusal::NotOwned(m)) => {
                assert!(m.contains(&format!("which instance {owner} owns")), "{m}")
            }
            other => panic!("expected NotOwned, got {other:?}"),
        }
    }

    #[test]
    fn stores_do_not_see_each_other() {
        let s = scope(0, 1);
        let k = b"card".to_vec();
        s.write("x", vec![((k.clone(), vec![]), Some(b"1".to_vec()))])
            .unwrap();
        assert_eq!(s.get_many("y", &[(k.clone(), vec![])]).unwrap(), vec![None]);
        assert!(matches!(
            s.get_many("", &[(k, vec![])]),
            Err(Refusal::TooLarge(_))
        ));
    }

    #[test]
    fn a_batch_with_one_key_another_instance_owns_reads_and_writes_nothing() {
        let backend = Arc::new(MemoryBackend::default());
        let s = StateScope::new(backend.clone(), "a", 0, 4, true);
        let mine = (0i64..)
            .map(|k| k.to_le_bytes().to_vec())
            .find(|k| instance_of(key_group(k), 4) == 0)
            .unwrap();
        let theirs = (0i64..)
            .map(|k| k.to_le_bytes().to_vec())
            .find(|k| instance_of(key_group(k), 4) != 0)
            .unwrap();
        let batch = [(&mine[..], &b""[..]), (&theirs[..], &b""[..])];
        let err = s
            .write_entries("v", batch.iter().map(|&k| (k, Some(&b"1"[..]))))
            .unwrap_err();
        assert!(matches!(err, Refusal::NotOwned(_)), "{err:?}");
        assert!(backend.is_empty(), "a refused batch wrote its first entry");
        let mut handed = 0;
        let err = s.get_each("v", batch, |_| handed += 1).unwrap_err();
        assert!(matches!(err, Refusal::NotOwned(_)), "{err:?}");
        assert_eq!(handed, 0, "a refused read handed out values");
        s.write_entries("v", [((&mine[..], &b"s"[..]), Some(&b"1"[..]))])
            .unwrap();
        let mut values = Vec::new();
        s.get_each("v", [(&mine[..], &b"s"[..]), (&mine[..], &b""[..])], |v| {
            values.push(v.map(<[u8]>::to_vec))
        })
        .unwrap();
        assert_eq!(values, vec![Some(b"1".to_vec()), None]);
    }
}
