//! The checkpoint coordinator as a thread, and the handle tasks use to take part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::Error;
use crate::checkpoint::store::AgentEntry;
use crate::checkpoint::{Ack, CheckpointError, CheckpointStore, Coordinator, Metadata, TaskId};
use crate::config::PipelineSpec;

/// What tasks tell the coordinator.
pub(crate) enum Report {
    Ack(Ack),
    /// A task finished: no new checkpoint could complete.
    Finished,
    /// Someone asks for a checkpoint now (a hot swap waits for the next barrier).
    Trigger,
}

/// A task's handle on checkpoints.
#[derive(Clone)]
pub(crate) struct Checkpoints {
    /// The latest checkpoint sources are asked to start (0: none yet).
    requested: Arc<AtomicU64>,
    /// The newest completed checkpoint (0: none yet).
    pub(crate) completed: Arc<AtomicU64>,
    pub(crate) reports: Sender<Report>,
    store: CheckpointStore,
    /// Whether runs keep a final checkpoint (a data directory that outlives the run).
    pub persistent: bool,
}

impl Checkpoints {
    /// The checkpoint sources should start, if newer than `last`.
    pub fn requested_after(&self, last: u64) -> Option<u64> {
        let r = self.requested.load(Ordering::Acquire);
        (r > last).then_some(r)
    }

    /// The newest checkpoint that completed (0: none yet).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Acknowledges checkpoint `checkpoint` for `task`.
    pub fn ack(&self, checkpoint: u64, task: TaskId, snapshot: serde_json::Value) {
        let _ = self.reports.send(Report::Ack(Ack {
            checkpoint,
            task,
            snapshot,
        }));
    }

    /// Says a task finished.
    pub fn finished(&self) {
        let _ = self.reports.send(Report::Finished);
    }

    /// Where instance `instance` of `agent` writes its snapshot for checkpoint `id` (`None`:
    /// the final one).
    pub fn snapshot_dir(&self, id: Option<u64>, agent: &str, instance: usize) -> PathBuf {
        self.checkpoint_dir(id)
            .join("state")
            .join(agent)
            .join(instance.to_string())
    }

    fn checkpoint_dir(&self, id: Option<u64>) -> PathBuf {
        match id {
            Some(id) => self.store.dir(id),
            None => self.store.final_dir(),
        }
    }

    /// Puts the files sink `sink` needs to finish its pre-committed epochs (its spills) into
    /// checkpoint `id` (`None`: the final one) when checkpoints leave the machine, so that a
    /// run on another machine can commit them: see [`restore_spills`].
    pub fn keep_spills(
        &self,
        id: Option<u64>,
        sink: &str,
        files: &[PathBuf],
    ) -> Result<(), CheckpointError> {
        if !self.store.is_remote() || files.is_empty() {
            return Ok(());
        }
        keep_spills(&self.checkpoint_dir(id), sink, files)
    }
}

/// Hard-links (or copies, across file systems) `files` into `checkpoint/sinks/SINK/`.
pub(crate) fn keep_spills(
    checkpoint: &Path,
    sink: &str,
    files: &[PathBuf],
) -> Result<(), CheckpointError> {
    let dir = checkpoint.join("sinks").join(sink);
    std::fs::create_dir_all(&dir).map_err(|e| CheckpointError::io("create", &dir, e))?;
    for file in files {
        let Some(name) = file.file_name() else {
            continue;
        };
        let to = dir.join(name);
        if to.exists() {
            continue;
        }
        if std::fs::hard_link(file, &to).is_err() {
            std::fs::copy(file, &to).map_err(|e| CheckpointError::io("copy", file, e))?;
        }
    }
    Ok(())
}

/// Puts back the spills that checkpoint `checkpoint` kept for sink `sink` into the sink's own
/// directory `into`, where they are missing (a run on another machine, or a new data
/// directory), before the sink recovers.
pub(crate) fn restore_spills(
    checkpoint: &Path,
    sink: &str,
    into: &Path,
) -> Result<usize, CheckpointError> {
    let dir = checkpoint.join("sinks").join(sink);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    std::fs::create_dir_all(into).map_err(|e| CheckpointError::io("create", into, e))?;
    let mut restored = 0;
    for entry in entries.flatten() {
        let to = into.join(entry.file_name());
        if to.exists() {
            continue;
        }
        let from = entry.path();
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| CheckpointError::io("copy", &from, e))?;
        }
        restored += 1;
    }
    Ok(restored)
}

/// The coordinator thread's inputs.
pub(crate) struct CoordinatorThread {
    pub coordinator: Coordinator,
    pub store: CheckpointStore,
    pub spec: PipelineSpec,
    pub reports: Receiver<Report>,
    pub requested: Arc<AtomicU64>,
    /// Per sink, where to say a checkpoint is complete and can be committed.
    pub commits: HashMap<String, Sender<u64>>,
    pub retain: usize,
    pub completed: Arc<AtomicU64>,
    pub stats: Arc<super::RunStats>,
}

/// Creates the handle tasks share and the channel the coordinator reads.
pub(crate) fn channel(
    store: CheckpointStore,
    persistent: bool,
) -> (Checkpoints, Receiver<Report>, Arc<AtomicU64>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let requested = Arc::new(AtomicU64::new(0));
    (
        Checkpoints {
            requested: requested.clone(),
            completed: Arc::new(AtomicU64::new(0)),
            reports: tx,
            store,
            persistent,
        },
        rx,
        requested,
    )
}

/// The metadata of a checkpoint of `spec` from every task's contribution.
pub(crate) fn metadata(
    spec: &PipelineSpec,
    id: u64,
    last: bool,
    contributions: impl IntoIterator<Item = (TaskId, serde_json::Value)>,
) -> Metadata {
    let mut m = Metadata::new(&spec.name, id, last);
    for (task, value) in contributions {
        match task {
            TaskId::Source(name) => {
                m.sources.insert(name, value);
            }
            TaskId::Sink(name) => {
                m.sinks.insert(name, value);
            }
            TaskId::Agent(..) => {}
        }
    }
    for (name, agent) in &spec.agents {
        m.agents.insert(
            name.clone(),
            AgentEntry {
                parallelism: agent.parallelism,
                backend: spec.state,
            },
        );
    }
    m
}

impl CoordinatorThread {
    /// Runs until every task has dropped its handle. Returns the coordinator, so the final
    /// checkpoint can take the next id.
    pub fn run(mut self, started: Instant) -> Result<Coordinator, Error> {
        let _span =
            tracing::debug_span!("checkpoint.coordinator", pipeline = %self.spec.name).entered();
        let now_ms = || started.elapsed().as_millis() as u64;
        let mut checkpoint_started = Instant::now();
        // A checkpoint asked for (`Report::Trigger`) while another was in flight: it starts as
        // soon as that one completes.
        let mut wanted = false;
        loop {
            let deadline = if wanted && self.coordinator.in_flight().is_none() {
                Some(Instant::now())
            } else {
                self.coordinator
                    .next_due_ms()
                    .map(|ms| started + Duration::from_millis(ms))
            };
            let report = match deadline {
                Some(d) => self.reports.recv_deadline(d),
                None => self
                    .reports
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match report {
                Err(RecvTimeoutError::Disconnected) => return Ok(self.coordinator),
                Err(RecvTimeoutError::Timeout) | Ok(Report::Trigger) => {
                    let asked = wanted || report.is_ok();
                    let id = if asked {
                        self.coordinator.start_now()
                    } else {
                        self.coordinator.start(now_ms())
                    };
                    wanted = asked && id.is_none() && self.coordinator.in_flight().is_some();
                    if let Some(id) = id {
                        checkpoint_started = Instant::now();
                        self.store
                            .prepare(&self.store.dir(id))
                            .map_err(checkpoint_error)?;
                        tracing::debug!(checkpoint = id, "checkpoint started");
                        self.requested.store(id, Ordering::Release);
                    }
                }
                Ok(Report::Finished) => self.coordinator.stop(),
                Ok(Report::Ack(ack)) => {
                    if let Some((id, contributions)) = self.coordinator.ack(ack, now_ms()) {
                        let aligned = checkpoint_started.elapsed();
                        let m = metadata(&self.spec, id, false, contributions);
                        self.store
                            .complete(m, &self.store.dir(id))
                            .map_err(checkpoint_error)?;
                        tracing::info!(
                            checkpoint = id,
                            acknowledged_ms = aligned.as_secs_f64() * 1e3,
                            total_ms = checkpoint_started.elapsed().as_secs_f64() * 1e3,
                            "checkpoint done"
                        );
                        self.completed.store(id, Ordering::Release);
                        self.stats.checkpoints.completed(
                            id,
                            checkpoint_started.elapsed(),
                            dir_size(&self.store.dir(id)),
                        );
                        for tx in self.commits.values() {
                            // A sink that has finished commits everything at the end.
                            let _ = tx.send(id);
                        }
                        self.store.retain(self.retain).map_err(checkpoint_error)?;
                    }
                }
            }
        }
    }
}

/// The bytes of every file under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

pub(crate) fn checkpoint_error(e: CheckpointError) -> Error {
    Error::Checkpoint(e)
}
