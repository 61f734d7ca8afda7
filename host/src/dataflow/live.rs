//! A running pipeline seen from outside: what the control plane reads and changes while it runs.
//!
//! - [`AgentVersion`]: the module (and config) an agent's instances run. Changing it is a hot
//!   swap: each instance picks the new version up at the next checkpoint barrier it passes, with
//!   its state and timers kept (they live in the host, not in the instance), and reports how it
//!   went ([`SwapReport`]).
//! - Queryable state: the state scopes of the running instances, to read a key's entry while the
//!   pipeline runs.
//! - A checkpoint on demand, so a swap does not wait for the next scheduled barrier.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::checkpointing::Report;
use super::partition::{instance_of, key_group};
use crate::state::{Entries, Refusal, StateScope};
use crate::wasm::{AgentMetrics, AgentModule};

/// One version of an agent: its module and the config its `init` gets.
#[derive(Debug, Clone)]
pub struct Version {
    pub module: Arc<AgentModule>,
    /// The config passed to `init` (JSON, or a string as it is).
    pub config: String,
    /// How the version is called in reports: `name@version`, or the module's path.
    pub label: String,
}

/// How an instance's swap to a new version went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum SwapOutcome {
    /// The new version runs; the data path paused for `pause` (instantiation and `init`).
    Started {
        #[serde(rename = "pause_us")]
        #[serde(serialize_with = "micros")]
        pause: Duration,
    },
    /// The new version did not start; the instance kept the version it ran.
    Failed { reason: String },
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// What an instance says after picking up a new version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SwapReport {
    /// The version generation the instance tried.
    pub generation: u64,
    pub instance: usize,
    /// The checkpoint barrier at which it switched.
    pub checkpoint: u64,
    #[serde(flatten)]
    pub outcome: SwapOutcome,
}

/// The version an agent's instances should run. Generations count changes; an instance that
/// has seen a newer generation than the one it runs switches at its next barrier.
#[derive(Debug)]
pub struct AgentVersion {
    generation: AtomicU64,
    current: Mutex<(u64, Arc<Version>)>,
    reports: Mutex<Vec<SwapReport>>,
}

impl AgentVersion {
    /// Starts at generation 1 with `version`.
    pub fn new(version: Version) -> Self {
        AgentVersion {
            generation: AtomicU64::new(1),
            current: Mutex::new((1, Arc::new(version))),
            reports: Mutex::new(Vec::new()),
        }
    }

    /// The generation of the current version: cheap, checked at every barrier.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current version and its generation.
    pub fn current(&self) -> (u64, Arc<Version>) {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (c.0, c.1.clone())
    }

    /// Makes `version` current; returns its generation.
    pub fn set(&self, version: Version) -> u64 {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let generation = c.0 + 1;
        *c = (generation, Arc::new(version));
        self.generation.store(generation, Ordering::Release);
        generation
    }

    pub(crate) fn report(&self, report: SwapReport) {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report);
    }

    /// The reports instances made since the last call.
    pub fn take_reports(&self) -> Vec<SwapReport> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The live view of a run, shared by the run and whoever controls it. Make one with the
/// version of each agent and pass it in [`RunOptions::live`](super::RunOptions::live); it
/// outlives runs, so a restarted run continues with the versions swapped in before.
#[derive(Debug, Default)]
pub struct Live {
    versions: BTreeMap<String, Arc<AgentVersion>>,
    scopes: Mutex<HashMap<String, Vec<StateScope>>>,
    checkpoints: Mutex<Option<Sender<Report>>>,
    metrics: Mutex<HashMap<String, Arc<AgentMetrics>>>,
    /// The views of runs that share this one's versions ([`Live::child`]): the partition tasks
    /// of a scaled-out pipeline.
    children: Mutex<Vec<Weak<Live>>>,
}

/// Why a read of live state failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("agent `{0}` is not running")]
    NotRunning(String),
    #[error("{0}")]
    Refused(String),
    /// The instance that owns the key never used the store: nothing is read, nothing is kept.
    #[error("agent `{agent}` has no table `{table}` (for this key's instance)")]
    UnknownTable { agent: String, table: String },
}

impl Live {
    /// A live view whose agents start with `versions`.
    pub fn new(versions: impl IntoIterator<Item = (String, Version)>) -> Self {
        Live {
            versions: versions
                .into_iter()
                .map(|(agent, v)| (agent, Arc::new(AgentVersion::new(v))))
                .collect(),
            ..Live::default()
        }
    }

    /// The version cell of `agent`.
    pub fn version(&self, agent: &str) -> Option<&Arc<AgentVersion>> {
        self.versions.get(agent)
    }

    /// Every agent's version cell.
    pub fn versions(&self) -> &BTreeMap<String, Arc<AgentVersion>> {
        &self.versions
    }

    /// A view for another run of the same pipeline that shares this one's version cells: a
    /// swap made here reaches that run too, its reports come here, and [`Live::checkpoint_now`],
    /// [`Live::traps`] and [`Live::runs`] count it.
    pub fn child(&self) -> Arc<Live> {
        let child = Arc::new(Live {
            versions: self.versions.clone(),
            ..Live::default()
        });
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child));
        child
    }

    fn children(&self) -> Vec<Arc<Live>> {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Asks the run (and every child's) for a checkpoint now (when none is in flight); `false`
    /// when no run with checkpoints is going.
    pub fn checkpoint_now(&self) -> bool {
        let own = match &*self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(Report::Trigger).is_ok(),
            None => false,
        };
        self.children()
            .iter()
            .fold(own, |any, c| c.checkpoint_now() || any)
    }

    /// The runs going with this view: its own and its children's.
    pub fn runs(&self) -> usize {
        let own = self
            .checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        usize::from(own) + self.children().iter().map(|c| c.runs()).sum::<usize>()
    }

    /// The traps of `agent` in the current runs (this one's and its children's), and the last
    /// trap's message.
    pub fn traps(&self, agent: &str) -> (u64, Option<String>) {
        let own = self.metrics(agent).map_or((0, None), |m| {
            (m.calls.snapshot().traps, m.calls.last_trap())
        });
        self.children().iter().fold(own, |(n, last), c| {
            let (m, l) = c.traps(agent);
            (n + m, l.or(last))
        })
    }

    /// The agents' metrics of the current (or last) run.
    pub fn metrics(&self, agent: &str) -> Option<Arc<AgentMetrics>> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned()
    }

    pub(crate) fn set_metrics(&self, metrics: HashMap<String, Arc<AgentMetrics>>) {
        *self.metrics.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
    }

    pub(crate) fn attach(
        &self,
        scopes: HashMap<String, Vec<StateScope>>,
        checkpoints: Option<Sender<Report>>,
    ) {
        *self.scopes.lock().unwrap_or_else(|p| p.into_inner()) = scopes;
        *self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()) = checkpoints;
    }

    /// Lets go of the run's state (its RocksDB instances close once the run drops them too) and
    /// of its checkpoint coordinator; the metrics stay for whoever looks after the run.
    pub(crate) fn detach(&self) {
        self.attach(HashMap::new(), None);
    }

    /// Lets go of the run's state and checkpoint coordinator, except the state of `keep` (the
    /// materialized views, `builtin:view` agents): a finished pipeline's views stay readable
    /// until it runs again, is deleted, or the process ends.
    pub(crate) fn detach_keeping(&self, keep: &[String]) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.retain(|agent, _| keep.contains(agent));
        drop(scopes);
        *self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn scope_for(&self, agent: &str, key: &[u8]) -> Result<StateScope, LiveError> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let instances = scopes
            .get(agent)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| LiveError::NotRunning(agent.to_owned()))?;
        Ok(instances[instance_of(key_group(key), instances.len())].clone())
    }

    fn refused(r: Refusal) -> LiveError {
        LiveError::Refused(r.message().to_owned())
    }

    /// The scope of the instance that owns `key`, when it has used `store`: a read never
    /// registers a store name.
    fn scope_with(&self, agent: &str, store: &str, key: &[u8]) -> Result<StateScope, LiveError> {
        let scope = self.scope_for(agent, key)?;
        if !scope.has_store(store) {
            return Err(LiveError::UnknownTable {
                agent: agent.to_owned(),
                table: store.chars().take(255).collect(),
            });
        }
        Ok(scope)
    }

    /// The value of `key` (sub-key `sub`) in `store` of `agent`, as the agent last wrote it.
    pub fn get(
        &self,
        agent: &str,
        store: &str,
        key: &[u8],
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, LiveError> {
        let scope = self.scope_with(agent, store, key)?;
        let mut values = scope
            .get_many(store, &[(key.to_vec(), sub.to_vec())])
            .map_err(Self::refused)?;
        Ok(values.pop().flatten())
    }

    /// Up to `limit` sub-keys and values of `key` in `store` of `agent`.
    pub fn scan(
        &self,
        agent: &str,
        store: &str,
        key: &[u8],
        limit: u32,
    ) -> Result<Entries, LiveError> {
        let scope = self.scope_with(agent, store, key)?;
        scope
            .scan(store, key, b"", None, limit)
            .map_err(Self::refused)
    }

    /// Up to `limit` sub-keys and values of `key` in `store` of `agent` (after sub-key `after`),
    /// a store the caller names (a built-in operator's): read even before the agent has used it
    /// in this run, as after a restore.
    pub fn read_store(
        &self,
        agent: &str,
        store: &str,
        key: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Entries, LiveError> {
        self.scope_for(agent, key)?
            .scan(store, key, b"", after, limit)
            .map_err(Self::refused)
    }

    /// Up to `limit` entries of `store` of `agent`, across its instances, in backend-key order,
    /// after the position `after` (the last entry's of the page before), until their values
    /// reach `max_bytes`. Like [`Live::read_store`], for a store the caller names.
    pub fn scan_store(
        &self,
        agent: &str,
        store: &str,
        after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<crate::state::StoreEntry>, LiveError> {
        let instances = {
            let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
            scopes
                .get(agent)
                .filter(|s| !s.is_empty())
                .cloned()
                .ok_or_else(|| LiveError::NotRunning(agent.to_owned()))?
        };
        let mut out: Vec<crate::state::StoreEntry> = Vec::new();
        let mut bytes = 0;
        let start = after
            .and_then(|a| a.get(..2))
            .map_or(0, |g| u32::from(u16::from_be_bytes([g[0], g[1]])));
        for scope in instances {
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
            if scope.owned().end <= start {
                continue;
            }
            let page = scope
                .scan_store(store, after, limit - out.len(), max_bytes - bytes)
                .map_err(Self::refused)?;
            bytes += page.iter().map(|e| e.value.len()).sum::<usize>();
            out.extend(page);
        }
        Ok(out)
    }

    /// The state stores (tables) each running agent has used.
    pub fn tables(&self) -> BTreeMap<String, BTreeSet<String>> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes
            .iter()
            .map(|(agent, instances)| {
                let mut names = BTreeSet::new();
                for s in instances {
                    names.extend(s.stores());
                }
                (agent.clone(), names)
            })
            .collect()
    }
}
