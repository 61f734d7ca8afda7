//! The coordinator's side of the protocol, without threads or clocks: which checkpoint is due,
//! which tasks have acknowledged it, and when it is complete.

use std::collections::{BTreeMap, BTreeSet};

/// A task that takes part in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TaskId {
    Source(String),
    Agent(String, usize),
    Sink(String),
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskId::Source(s) => write!(f, "source `{s}`"),
            TaskId::Agent(a, i) => write!(f, "agent `{a}` instance {i}"),
            TaskId::Sink(s) => write!(f, "sink `{s}`"),
        }
    }
}

/// A task's acknowledgement of a checkpoint, with what it contributes to the metadata: a source's
/// position, a sink's pending commits (`null` for agents, whose snapshot is in files).
#[derive(Debug, Clone)]
pub struct Ack {
    pub checkpoint: u64,
    pub task: TaskId,
    pub snapshot: serde_json::Value,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    acks: BTreeMap<TaskId, serde_json::Value>,
}

/// Decides when checkpoints start and when they are complete.
#[derive(Debug)]
pub struct Coordinator {
    tasks: BTreeSet<TaskId>,
    interval_ms: u64,
    next_id: u64,
    pending: Option<Pending>,
    last_done_ms: u64,
    stopped: bool,
}

impl Coordinator {
    /// A coordinator of `tasks` that starts a checkpoint `interval_ms` after the previous one
    /// ended (the first one `interval_ms` after `now_ms`), numbering them from `first_id`.
    pub fn new(
        tasks: impl IntoIterator<Item = TaskId>,
        interval_ms: u64,
        first_id: u64,
        now_ms: u64,
    ) -> Self {
        Coordinator {
            tasks: tasks.into_iter().collect(),
            interval_ms,
            next_id: first_id,
            pending: None,
            last_done_ms: now_ms,
            stopped: false,
        }
    }

    /// When the next checkpoint is due, if one can start.
    pub fn next_due_ms(&self) -> Option<u64> {
        (!self.stopped && self.pending.is_none())
            .then(|| self.last_done_ms.saturating_add(self.interval_ms))
    }

    /// Starts the checkpoint due at `now_ms`, if any, and returns its id.
    pub fn start(&mut self, now_ms: u64) -> Option<u64> {
        if self.next_due_ms()? > now_ms {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending = Some(Pending {
            id,
            acks: BTreeMap::new(),
        });
        Some(id)
    }

    /// Starts a checkpoint now, whatever the schedule, unless one is in flight or checkpoints
    /// have stopped; returns its id.
    pub fn start_now(&mut self) -> Option<u64> {
        self.start(u64::MAX)
    }

    /// The checkpoint in flight.
    pub fn in_flight(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// The id the next checkpoint (or the final one) will have.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// No more checkpoints start (a task has finished, so a new one could never complete). One in
    /// flight may still complete.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Records `ack`. When it is the last one the checkpoint in flight needed, returns the
    /// checkpoint's id and every task's contribution. Acks of other checkpoints are ignored.
    pub fn ack(
        &mut self,
        ack: Ack,
        now_ms: u64,
    ) -> Option<(u64, BTreeMap<TaskId, serde_json::Value>)> {
        let pending = self.pending.as_mut()?;
        if ack.checkpoint != pending.id || !self.tasks.contains(&ack.task) {
            return None;
        }
        pending.acks.insert(ack.task, ack.snapshot);
        if pending.acks.len() < self.tasks.len() {
            return None;
        }
        let done = self.pending.take().expect("checked above");
        self.last_done_ms = now_ms;
        Some((done.id, done.acks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(checkpoint: u64, task: TaskId) -> Ack {
        Ack {
            checkpoint,
            task,
            snapshot: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_checkpoint_completes_when_every_task_has_acknowledged_it() {
        let tasks = [TaskId::Source("s".into()), TaskId::Sink("k".into())];
        let mut c = Coordinator::new(tasks.clone(), 100, 7, 0);
        assert_eq!(c.start(99), None, "not due yet");
        assert_eq!(c.start(100), Some(7));
        assert_eq!(c.start(500), None, "one in flight at a time");
        assert!(c.ack(ack(7, tasks[0].clone()), 150).is_none());
        assert!(
            c.ack(ack(6, tasks[1].clone()), 150).is_none(),
            "a stale ack counts for nothing"
        );
        let (id, acks) = c.ack(ack(7, tasks[1].clone()), 160).expect("complete");
        assert_eq!((id, acks.len()), (7, 2));
        assert_eq!(
            c.next_due_ms(),
            Some(260),
            "the interval counts from the end"
        );
        assert_eq!(c.start(260), Some(8));
    }

    #[test]
    fn after_stop_no_checkpoint_starts_but_the_one_in_flight_can_complete() {
        let tasks = [TaskId::Source("s".into())];
        let mut c = Coordinator::new(tasks.clone(), 10, 1, 0);
        assert_eq!(c.start(10), Some(1));
        c.stop();
        assert!(c.ack(ack(1, tasks[0].clone()), 20).is_some());
        assert_eq!(c.start(1_000), None);
        assert_eq!(c.next_id(), 2);
    }
}
