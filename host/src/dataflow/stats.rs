//! Live counters of a run, read by the progress line and the summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::latency::Latency;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Source,
    Agent,
    Sink,
}

/// Counters of one node (all its instances together).
#[derive(Debug)]
pub struct NodeStats {
    pub kind: NodeKind,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub batches_in: AtomicU64,
    pub batches_out: AtomicU64,
    /// Batches skipped or dead-lettered under the `skip` / `dead-letter` policies.
    pub failed_batches: AtomicU64,
    /// Instances replaced after a trap.
    pub restarts: AtomicU64,
    /// Bytes a sink wrote (sinks that count them: files).
    pub bytes_written: AtomicU64,
    /// The newest watermark the node passed on, ms since the epoch ([`NO_WATERMARK`] before the
    /// first).
    pub watermark: AtomicI64,
    /// Sinks: how long the events they wrote took from their source (see [`super::latency`]).
    pub latency: Latency,
}

/// `NodeStats::watermark` before any watermark.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Counters of a run's checkpoints.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints completed.
    pub completed: AtomicU64,
    /// The id of the newest one (0: none yet).
    pub last_id: AtomicU64,
    /// How long the newest one took, from barrier injection to durable metadata, microseconds.
    pub last_duration_us: AtomicU64,
    /// Bytes the newest one wrote (state snapshots, timers, metadata).
    pub last_size_bytes: AtomicU64,
    /// When the newest one completed, ms since the epoch.
    pub last_completed_unix_ms: AtomicU64,
}

impl CheckpointStats {
    pub(crate) fn completed(&self, id: u64, duration: Duration, size: u64) {
        self.last_id.store(id, Ordering::Relaxed);
        self.last_duration_us
            .store(duration.as_micros() as u64, Ordering::Relaxed);
        self.last_size_bytes.store(size, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_completed_unix_ms.store(now, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
}

impl NodeStats {
    fn new(kind: NodeKind) -> Self {
        NodeStats {
            kind,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
            latency: Latency::default(),
        }
    }

    pub(crate) fn watermark(&self, w: i64) {
        self.watermark.fetch_max(w, Ordering::Relaxed);
    }

    pub(crate) fn input(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn output(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_out.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of a whole run, shared with whoever watches it.
#[derive(Debug)]
pub struct RunStats {
    pub nodes: IndexMap<String, Arc<NodeStats>>,
    pub started: Instant,
    pub checkpoints: CheckpointStats,
}

impl RunStats {
    /// Counters for the nodes of a pipeline.
    pub fn for_pipeline(spec: &crate::PipelineSpec) -> Self {
        Self::new(
            spec.sources
                .keys()
                .map(|n| (n.as_str(), NodeKind::Source))
                .chain(spec.agents.keys().map(|n| (n.as_str(), NodeKind::Agent)))
                .chain(spec.sinks.keys().map(|n| (n.as_str(), NodeKind::Sink))),
        )
    }

    pub(crate) fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, NodeKind)>) -> Self {
        RunStats {
            nodes: nodes
                .into_iter()
                .map(|(n, k)| (n.to_owned(), Arc::new(NodeStats::new(k))))
                .collect(),
            started: Instant::now(),
            checkpoints: CheckpointStats::default(),
        }
    }

    /// Counters that add to `self`'s node counters (the same ones, shared), with checkpoint
    /// counters of their own: a partition task's, so a scaled-out pipeline's counters are the
    /// sums over its tasks (and a node's watermark the newest of any task).
    pub(crate) fn sharing_nodes(&self) -> Self {
        RunStats {
            nodes: self.nodes.clone(),
            started: Instant::now(),
            checkpoints: CheckpointStats::default(),
        }
    }

    pub(crate) fn node(&self, name: &str) -> Arc<NodeStats> {
        self.nodes[name].clone()
    }

    fn sum(&self, kind: NodeKind, f: impl Fn(&NodeStats) -> u64) -> u64 {
        self.nodes
            .values()
            .filter(|n| n.kind == kind)
            .map(|n| f(n))
            .sum()
    }

    /// Rows produced by all sources.
    pub fn events_in(&self) -> u64 {
        self.sum(NodeKind::Source, |n| n.rows_out.load(Ordering::Relaxed))
    }

    /// Rows accepted by all sinks.
    pub fn events_out(&self) -> u64 {
        self.sum(NodeKind::Sink, |n| n.rows_in.load(Ordering::Relaxed))
    }

    /// The end-to-end latency of the events every sink wrote.
    pub fn sink_latency(&self) -> Latency {
        let all = Latency::default();
        for n in self.nodes.values().filter(|n| n.kind == NodeKind::Sink) {
            all.add(&n.latency);
        }
        all
    }

    /// Batches agents failed on and that were skipped or dead-lettered.
    pub fn failed_batches(&self) -> u64 {
        self.sum(NodeKind::Agent, |n| {
            n.failed_batches.load(Ordering::Relaxed)
        })
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
