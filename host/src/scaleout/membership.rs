//! The group member's side of a rebalance, and the partition tasks it starts and stops.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};

use super::{Event, OnEvent, ScaleOutOptions};
use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::dataflow::{Live, RunStats};
use crate::{Error, Pipeline, RunOptions, RunSummary};

/// A partition: topic and number.
type Tp = (String, i32);

/// How long the group's committed offsets may take to read.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a task waits before it tries a partition directory its previous owner still locks.
const LOCKED_RETRY: Duration = Duration::from_millis(250);

/// The rdkafka context of the group member: rebalances start and stop partition tasks.
pub(super) struct Membership {
    tasks: Arc<Tasks>,
}

impl Membership {
    pub(super) fn new(tasks: Arc<Tasks>) -> Self {
        Membership { tasks }
    }
}

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    /// Before partitions go: their tasks stop (with a final checkpoint) before the group may
    /// give them to another member.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let mut offsets = TopicPartitionList::new();
            for tp in partitions(tpl) {
                if let Some(next) = self.tasks.stop(&tp, lost) {
                    let _ = offsets.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
                }
            }
            if !lost {
                commit(consumer, &offsets);
            }
        }
    }

    /// After partitions come: the member pauses them (it reads nothing itself) and starts
    /// their tasks.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "cannot pause the member's partitions");
            }
            // What the group committed for them: a partition processed before must find its
            // checkpoints in the shared directory.
            let committed = consumer
                .committed_offsets((*tpl).clone(), COMMITTED_TIMEOUT)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read the group's committed offsets");
                    TopicPartitionList::new()
                });
            for tp in partitions(tpl) {
                let offset = match committed.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => Some(n),
                    _ => None,
                };
                self.tasks.start(tp, offset);
            }
        }
    }
}

/// Commits the offsets of final checkpoints to the group (monitoring only).
pub(super) fn commit<C: ConsumerContext>(consumer: &BaseConsumer<C>, offsets: &TopicPartitionList) {
    if offsets.count() > 0
        && let Err(e) = consumer.commit(offsets, rdkafka::consumer::CommitMode::Sync)
    {
        tracing::debug!(error = %e, "cannot commit offsets (monitoring only)");
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// A running partition task.
struct Task {
    stop: Arc<AtomicBool>,
    stats: Arc<RunStats>,
    thread: JoinHandle<Result<Option<RunSummary>, Error>>,
    store: CheckpointStore,
    /// The newest checkpoint whose offsets were committed to the group.
    committed: u64,
}

/// The partition tasks of this process.
pub(super) struct Tasks {
    pipeline: Pipeline,
    source: String,
    group: String,
    /// The shared directory of the partitions' checkpoints; `None` when they are in object
    /// storage.
    shared: Option<PathBuf>,
    local: PathBuf,
    on_event: Option<OnEvent>,
    /// The live view the tasks share (each task's own view shares its version cells).
    live: Option<Arc<Live>>,
    /// The counters the tasks add to, when the caller watches them.
    stats: Option<Arc<RunStats>>,
    running: Mutex<BTreeMap<Tp, Task>>,
    failure: Mutex<Option<Error>>,
    events_in: AtomicU64,
    events_out: AtomicU64,
    started: AtomicU64,
    /// Set when the process leaves the group: a rebalance that librdkafka delivers while the
    /// member unsubscribes must not start a task that nothing would stop.
    closing: AtomicBool,
}

impl Tasks {
    /// The tasks of `pipeline`'s partitions of `source` in `group`, telling `options`'
    /// watchers (its events, live view and counters) what they do.
    pub(super) fn new(
        pipeline: Pipeline,
        (source, group): (String, String),
        shared: Option<PathBuf>,
        local: PathBuf,
        options: &ScaleOutOptions,
    ) -> Self {
        Tasks {
            pipeline,
            source,
            group,
            shared,
            local,
            on_event: options.on_event.clone(),
            live: options.live.clone(),
            stats: options.stats.clone(),
            running: Mutex::new(BTreeMap::new()),
            failure: Mutex::new(None),
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            started: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    fn running(&self) -> MutexGuard<'_, BTreeMap<Tp, Task>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event(&self, event: Event) {
        tracing::info!(%event, "scale-out");
        if let Some(f) = &self.on_event {
            f(&event);
        }
    }

    fn fail(&self, error: Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(error);
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub(super) fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The directory of a partition on shared storage: checkpoints, pending output, the lock.
    fn partition_dir(&self, (topic, partition): &Tp) -> String {
        format!("{topic}.{partition}")
    }

    /// Starts the task of a partition assigned here, for which the group committed `committed`.
    fn start(&self, tp: Tp, committed: Option<i64>) {
        let mut running = self.running();
        if running.contains_key(&tp) || self.failed() || self.closing.load(Ordering::SeqCst) {
            return;
        }
        let pipeline = match self.pipeline.for_partition(&tp.0, tp.1) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        let name = self.partition_dir(&tp);
        // Checkpoints in the shared directory (which also holds the working state's lock), or
        // in the local directory, uploaded to the object store.
        let (dir, work_dir) = match &self.shared {
            Some(shared) => (shared.join(&name), Some(self.local.join(&name))),
            None => (self.local.join(&name), None),
        };
        let has_checkpoints = match pipeline
            .spec()
            .checkpoint
            .as_ref()
            .and_then(|c| c.storage.as_ref())
        {
            Some(storage) if self.shared.is_none() => {
                match crate::checkpoint::Remote::open(storage, &pipeline.spec().name)
                    .and_then(|remote| remote.ids())
                {
                    Ok(ids) => !ids.is_empty(),
                    Err(e) => return self.fail(Error::Checkpoint(e)),
                }
            }
            _ => std::fs::read_dir(dir.join("checkpoints"))
                .is_ok_and(|mut entries| entries.next().is_some()),
        };
        if let Some(offset) = committed.filter(|o| *o > 0 && !has_checkpoints) {
            let place = match &self.shared {
                Some(_) => dir.join("checkpoints").display().to_string(),
                None => format!("the object store under the name `{}`", pipeline.spec().name),
            };
            return self.fail(Error::Usage(format!(
                "partition {}/{}: consumer group `{}` committed offset {offset} for it, but {place} holds no checkpoint of it: every member must see the same checkpoints, or the partition would start over and repeat its output (to start the group over, use a new `group`)",
                tp.0, tp.1, self.group,
            )));
        }
        let store = CheckpointStore::new(&dir, &pipeline.spec().name);
        let options = RunOptions {
            stop: Arc::new(AtomicBool::new(false)),
            stats: Some(Arc::new(match &self.stats {
                Some(shared) => shared.sharing_nodes(),
                None => RunStats::for_pipeline(pipeline.spec()),
            })),
            data_dir: Some(dir),
            work_dir,
            fresh: false,
            live: self.live.as_ref().map(|l| l.child()),
        };
        let (stop, stats) = (options.stop.clone(), options.stats.clone().expect("set"));
        self.event(Event::Assigned {
            topic: tp.0.clone(),
            partition: tp.1,
        });
        let on_waiting = {
            let event = Event::Waiting {
                topic: tp.0.clone(),
                partition: tp.1,
            };
            let on_event = self.on_event.clone();
            move || {
                tracing::info!(%event, "scale-out");
                if let Some(f) = &on_event {
                    f(&event);
                }
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("partition-{}-{}", tp.0, tp.1))
            .spawn(move || run_partition(&pipeline, options, on_waiting));
        match spawned {
            Ok(thread) => {
                self.started.fetch_add(1, Ordering::Relaxed);
                running.insert(
                    tp,
                    Task {
                        stop,
                        stats,
                        thread,
                        store,
                        committed: 0,
                    },
                );
            }
            Err(e) => self.fail(Error::Internal(format!(
                "cannot start a partition task thread: {e}"
            ))),
        }
    }

    /// Stops the task of a partition that leaves this process, waiting for its final
    /// checkpoint. With `lost` (the group gave it away while this member was unreachable) a
    /// failure to commit is expected — the new owner fenced this one — and only logged.
    /// Returns the partition's next offset in its final checkpoint.
    pub(super) fn stop(&self, tp: &Tp, lost: bool) -> Option<i64> {
        let task = self.running().remove(tp)?;
        task.stop.store(true, Ordering::Relaxed);
        let final_checkpoint = match task.thread.join() {
            Ok(Ok(summary)) => {
                self.count(&task.stats);
                summary.and_then(|s| s.final_checkpoint)
            }
            Ok(Err(e)) if lost => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "a lost partition's task failed as it stopped; its new owner resumes from its checkpoints");
                None
            }
            Ok(Err(e)) => {
                self.fail(e);
                None
            }
            Err(_) => {
                self.fail(Error::Internal(format!(
                    "the task of partition {}/{} panicked",
                    tp.0, tp.1
                )));
                None
            }
        };
        self.event(Event::Released {
            topic: tp.0.clone(),
            partition: tp.1,
            final_checkpoint,
        });
        final_checkpoint.and_then(|id| self.next_offset(&task.store, id, tp))
    }

    /// Stops every task (the process is leaving) and starts none after; returns their final
    /// offsets.
    pub(super) fn stop_all(&self) -> TopicPartitionList {
        let all: Vec<Tp> = {
            // Under the lock `start` holds throughout: a task it is starting is in the list.
            let running = self.running();
            self.closing.store(true, Ordering::SeqCst);
            running.keys().cloned().collect()
        };
        let mut offsets = TopicPartitionList::new();
        for tp in all {
            if let Some(next) = self.stop(&tp, false) {
                let _ = offsets.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
            }
        }
        offsets
    }

    /// The next offset of `tp` in checkpoint `id` of its task.
    fn next_offset(&self, store: &CheckpointStore, id: u64, tp: &Tp) -> Option<i64> {
        let metadata = store.read(id).ok()??;
        let offsets = crate::connectors::kafka::offsets_of(metadata.sources.get(&self.source)?);
        match offsets.find_partition(&tp.0, tp.1)?.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }
    }

    /// Notices tasks that ended by themselves: a failure fails the run.
    pub(super) fn reap(&self) {
        let ended: Vec<Tp> = self
            .running()
            .iter()
            .filter(|(_, t)| t.thread.is_finished())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in ended {
            self.stop(&tp, false);
        }
    }

    /// Adds a stopped task's rows to the totals (already there when the tasks share counters).
    fn count(&self, stats: &RunStats) {
        if self.stats.is_some() {
            return;
        }
        self.events_in
            .fetch_add(stats.events_in(), Ordering::Relaxed);
        self.events_out
            .fetch_add(stats.events_out(), Ordering::Relaxed);
    }

    /// The offsets of the checkpoints completed since the last call, to commit to the group.
    pub(super) fn new_offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (tp, task) in self.running().iter_mut() {
            let id = task.stats.checkpoints.last_id.load(Ordering::Relaxed);
            if id <= task.committed {
                continue;
            }
            // A checkpoint already retired yields nothing: the next one will do.
            if let Some(next) = self.next_offset(&task.store, id, tp) {
                task.committed = id;
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
            }
        }
        tpl
    }

    /// Rows in and out of every task that stopped, and tasks started.
    pub(super) fn totals(&self) -> (u64, u64, u64) {
        let started = self.started.load(Ordering::Relaxed);
        match &self.stats {
            Some(stats) => (stats.events_in(), stats.events_out(), started),
            None => (
                self.events_in.load(Ordering::Relaxed),
                self.events_out.load(Ordering::Relaxed),
                started,
            ),
        }
    }
}

/// Runs one partition's task until it is stopped, waiting while the partition's directory is
/// locked by its previous owner.
fn run_partition(
    pipeline: &Pipeline,
    options: RunOptions,
    on_waiting: impl Fn(),
) -> Result<Option<RunSummary>, Error> {
    let mut waiting = false;
    loop {
        if options.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match pipeline.run(options.clone()) {
            Err(Error::Checkpoint(CheckpointError::Busy { .. })) => {
                if !waiting {
                    on_waiting();
                    waiting = true;
                }
                std::thread::sleep(LOCKED_RETRY);
            }
            other => return other.map(Some),
        }
    }
}
