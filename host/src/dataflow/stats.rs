//! Live counters of a run, read by the progress line and the summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

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
        }
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
}

impl RunStats {
    pub(crate) fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, NodeKind)>) -> Self {
        RunStats {
            nodes: nodes
                .into_iter()
                .map(|(n, k)| (n.to_owned(), Arc::new(NodeStats::new(k))))
                .collect(),
            started: Instant::now(),
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
