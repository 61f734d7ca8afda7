//! The tasks of a running pipeline: sources, agent instances and sinks, one thread each.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::Receiver;

use super::Control;
use super::checkpointing::Checkpoints;
use super::gate::{GateEvent, InputGate};
use super::live::{AgentVersion, SwapOutcome, SwapReport, Version};
use super::router::{Payload, RouteError, Router};
use super::stats::NodeStats;
use crate::Error;
use crate::checkpoint::TaskId;
use crate::config::AgentSpec;
use crate::connectors::{DeadLetters, OnError, Sink, Source};
use crate::state::StateScope;
use crate::time::{BoundedOutOfOrderness, EventTimeSpec, TimeDomain, Timer, event_times};
use crate::wasm::{AgentFailure, AgentInstance, AgentMetrics, Emitted, Tags, WasmRuntime};

/// The file of an instance's timers in its snapshot directory.
pub(crate) const TIMERS_FILE: &str = "timers.bin";

/// How often a sink looks for checkpoints to commit while its input is quiet.
const SINK_POLL: Duration = Duration::from_millis(20);

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Turns a routing failure into the task's outcome: `Ok(false)` when downstream is gone (its
/// failure is the one reported), an error when the batch cannot be partitioned.
fn routed(result: Result<(), RouteError>) -> Result<bool, Error> {
    match result {
        Ok(()) => Ok(true),
        Err(RouteError::Closed) => Ok(false),
        Err(RouteError::Partition(e)) => Err(e),
    }
}

/// A source's task.
pub(crate) struct SourceTask {
    pub name: String,
    pub source: Box<dyn Source>,
    pub router: Router,
    pub node: Arc<NodeStats>,
    pub control: Arc<Control>,
    pub event_time: Option<EventTimeSpec>,
    pub checkpoints: Option<Checkpoints>,
}

impl SourceTask {
    /// Runs until the input ends or the run stops; returns the source's final position.
    pub fn run(mut self) -> Result<serde_json::Value, Error> {
        let _span = tracing::debug_span!("source.run", source = %self.name).entered();
        let result = self.pump();
        if let Some(cp) = &self.checkpoints {
            cp.finished();
        }
        // Downstream may be gone already; the end matters only to those still listening.
        let complete = matches!(result, Ok(true));
        let _ = self.router.broadcast(&Payload::End(complete));
        result.map(|_| self.source.position())
    }

    /// Sends the source's batches downstream; `Ok(true)` when its input ended.
    fn pump(&mut self) -> Result<bool, Error> {
        let mut generator = self
            .event_time
            .as_ref()
            .map(|et| BoundedOutOfOrderness::new(et.max_out_of_orderness_ms));
        if generator.is_none() && !routed(self.router.broadcast(&Payload::Untimed))? {
            return Ok(false);
        }
        let mut sent_watermark: Option<i64> = None;
        let mut last_data = Instant::now();
        let mut idle = false;
        let mut last_barrier = 0;
        // Positions at barriers whose checkpoint has not completed yet.
        let mut acked: std::collections::VecDeque<(u64, serde_json::Value)> = Default::default();
        while !self.control.stopping() {
            if let Some(cp) = &self.checkpoints {
                let done = cp.completed();
                while acked.front().is_some_and(|(n, _)| *n <= done) {
                    let (n, position) = acked.pop_front().expect("checked");
                    if n == done {
                        self.source.checkpoint_completed(&position);
                    }
                }
            }
            if let Some(cp) = &self.checkpoints
                && let Some(n) = cp.requested_after(last_barrier)
            {
                let position = self.source.position();
                acked.push_back((n, position.clone()));
                cp.ack(n, TaskId::Source(self.name.clone()), position);
                last_barrier = n;
                if !routed(self.router.broadcast(&Payload::Barrier(n)))? {
                    return Ok(false);
                }
            }
            let Some((port, batch)) = self.source.next_output()? else {
                return Ok(true);
            };
            if batch.num_rows() == 0 {
                // Per-partition watermarks (with idleness) can move without new rows.
                if !self.source_watermark(&mut sent_watermark)? {
                    return Ok(false);
                }
                let timeout = self.event_time.as_ref().and_then(|et| et.idle_timeout_ms);
                if let Some(ms) = timeout
                    && !idle
                    && last_data.elapsed() >= Duration::from_millis(ms)
                {
                    idle = true;
                    if !routed(self.router.broadcast(&Payload::Idle))? {
                        return Ok(false);
                    }
                }
                continue;
            }
            last_data = Instant::now();
            idle = false;
            self.node.output(batch.num_rows());
            let born = self.source.born().unwrap_or(last_data);
            if !routed(self.router.send(port, &batch, born))? {
                return Ok(false);
            }
            // After the batch, never before it: its rows are not late.
            if !self.source_watermark(&mut sent_watermark)? {
                return Ok(false);
            }
            if let (Some(generator), Some(et)) = (&mut generator, &self.event_time)
                && !self.source.tracks_event_time()
            {
                match event_times(&batch, &et.column) {
                    Ok(Some(max)) => generator.observe(max),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Error::Data(format!(
                            "source `{}`: a batch {e}; fix `event_time.column`",
                            self.name
                        )));
                    }
                }
                if let Some(w) = generator.watermark()
                    && self.source.at_boundary()
                    && sent_watermark.is_none_or(|s| w > s)
                {
                    sent_watermark = Some(w);
                    self.node.watermark(w);
                    if !routed(self.router.broadcast(&Payload::Watermark(w)))? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(false)
    }
}

impl SourceTask {
    /// Sends the watermark of a source that tracks event time itself, when it advanced;
    /// `Ok(false)` when downstream is gone.
    fn source_watermark(&mut self, sent: &mut Option<i64>) -> Result<bool, Error> {
        if !self.source.tracks_event_time() {
            return Ok(true);
        }
        match self.source.watermark() {
            Some(w) if sent.is_none_or(|s| w > s) => {
                *sent = Some(w);
                self.node.watermark(w);
                routed(self.router.broadcast(&Payload::Watermark(w)))
            }
            _ => Ok(true),
        }
    }
}

/// A sink's task.
pub(crate) struct SinkTask {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub gate: InputGate,
    pub node: Arc<NodeStats>,
    pub control: Arc<Control>,
    pub checkpoints: Option<Checkpoints>,
    /// Checkpoints complete, to commit.
    pub commits: Receiver<u64>,
}

impl SinkTask {
    /// Runs until the input ends; hands the sink back for the final commit. On failure, what was
    /// not pre-committed is discarded.
    pub fn run(mut self) -> Result<Box<dyn Sink>, Error> {
        let _span = tracing::debug_span!("sink.run", sink = %self.name).entered();
        match self.pump() {
            Ok(()) => Ok(self.sink),
            Err(e) => {
                let keep = self.checkpoints.as_ref().is_some_and(|c| c.persistent);
                self.sink.abort(keep);
                Err(e)
            }
        }
    }

    fn pump(&mut self) -> Result<(), Error> {
        loop {
            while let Ok(id) = self.commits.try_recv() {
                let _span = tracing::debug_span!("sink.commit", sink = %self.name, checkpoint = id)
                    .entered();
                self.sink.commit(id)?;
            }
            match self.gate.next(Some(Instant::now() + SINK_POLL)) {
                GateEvent::Batch { batch, born, .. } => {
                    if self.control.failed() {
                        return Ok(());
                    }
                    self.sink.write(&batch)?;
                    self.node.input(batch.num_rows());
                    self.node
                        .latency
                        .record(born.elapsed(), batch.num_rows() as u64);
                    self.node
                        .bytes_written
                        .store(self.sink.bytes_written(), Ordering::Relaxed);
                }
                GateEvent::Barrier(n) => {
                    let pending = self.sink.pre_commit(n)?;
                    if let Some(cp) = &self.checkpoints {
                        cp.keep_spills(Some(n), &self.name, &self.sink.spill_files())
                            .map_err(Error::Checkpoint)?;
                        cp.ack(n, TaskId::Sink(self.name.clone()), pending);
                    }
                }
                GateEvent::End { .. } => {
                    if let Some(cp) = &self.checkpoints {
                        cp.finished();
                    }
                    return Ok(());
                }
                GateEvent::Watermark(_) | GateEvent::Untimed | GateEvent::Timeout => {}
            }
        }
    }
}

/// One agent instance's task.
pub(crate) struct AgentTask {
    pub name: String,
    pub instance: usize,
    pub spec: AgentSpec,
    pub pipeline: String,
    pub runtime: Arc<WasmRuntime>,
    /// The version the agent should run; checked at every barrier (a hot swap).
    pub version: Arc<AgentVersion>,
    /// The generation and version this instance runs.
    pub running: (u64, Arc<Version>),
    pub metrics: Arc<AgentMetrics>,
    pub gate: InputGate,
    pub router: Router,
    pub node: Arc<NodeStats>,
    pub control: Arc<Control>,
    pub dead_letters: Arc<DeadLetters>,
    pub state: StateScope,
    pub checkpoints: Option<Checkpoints>,
}

/// What became of handing something to the agent.
enum Handled {
    Continue,
    /// Downstream is gone: stop quietly.
    Stop,
}

impl AgentTask {
    fn agent_error(&self, failure: AgentFailure) -> Error {
        Error::Agent {
            agent: self.name.clone(),
            instance: self.instance,
            failure,
        }
    }

    pub fn run(mut self) -> Result<(), Error> {
        let _span = tracing::debug_span!("agent.run", agent = %self.name, instance = self.instance)
            .entered();
        let result = self.pump();
        if let Some(cp) = &self.checkpoints {
            cp.finished();
        }
        let _ = self
            .router
            .broadcast(&Payload::End(matches!(result, Ok(true))));
        result.map(|_| ())
    }

    /// Starts an instance of `version`.
    fn start(&self, version: &Version) -> Result<AgentInstance, AgentFailure> {
        AgentInstance::start(
            self.runtime.clone(),
            version.module.clone(),
            version.config.clone(),
            self.spec.limits,
            Tags {
                pipeline: self.pipeline.clone(),
                agent: self.name.clone(),
                instance: self.instance,
            },
            self.metrics.clone(),
            self.state.clone(),
        )
    }

    /// At barrier `checkpoint`: when a newer version was set, starts it in place of `instance`
    /// (same state, same timers) and says how it went. A version that does not start leaves
    /// `instance` as it was.
    fn swap(&mut self, instance: &mut AgentInstance, checkpoint: u64) -> bool {
        if self.version.generation() == self.running.0 {
            return false;
        }
        let (generation, version) = self.version.current();
        if version.module.sha256 == self.running.1.module.sha256
            && version.config == self.running.1.config
        {
            // What it runs already (a rollback to the version this instance never left).
            self.running = (generation, version);
            return false;
        }
        let started = Instant::now();
        let outcome = match self.start(&version) {
            Ok(new) => {
                *instance = new;
                let pause = started.elapsed();
                tracing::info!(agent = %self.name, instance = self.instance, checkpoint, version = %version.label, pause_us = pause.as_micros() as u64, "swapped in a new version");
                SwapOutcome::Started { pause }
            }
            Err(f) => {
                tracing::warn!(agent = %self.name, instance = self.instance, checkpoint, version = %version.label, reason = %f, "a new version did not start; keeping the running one");
                SwapOutcome::Failed {
                    reason: f.to_string(),
                }
            }
        };
        let swapped = matches!(outcome, SwapOutcome::Started { .. });
        if swapped {
            self.running = (generation, version);
        } else {
            // Do not try this generation again; a later one (a rollback) is picked up as usual.
            self.running.0 = generation;
        }
        self.version.report(SwapReport {
            generation,
            instance: self.instance,
            checkpoint,
            outcome,
        });
        swapped
    }

    /// Runs the instance over its input; `Ok(true)` when the input was complete.
    fn pump(&mut self) -> Result<bool, Error> {
        let running = self.running.1.clone();
        let mut instance = self.start(&running).map_err(|f| self.agent_error(f))?;
        let mut restarts = 0;
        loop {
            let deadline = self.next_processing_timer();
            let event = self.gate.next(deadline);
            if self.control.failed() {
                return Ok(false);
            }
            let handled = match event {
                GateEvent::Batch { port, batch, born } => {
                    self.node.input(batch.num_rows());
                    let result = instance.process(port, &batch);
                    self.outcome(result, Some(&batch), born)?
                }
                GateEvent::Watermark(w) => self.advance(&mut instance, w)?,
                GateEvent::Untimed => {
                    if routed(self.router.broadcast(&Payload::Untimed))? {
                        Handled::Continue
                    } else {
                        Handled::Stop
                    }
                }
                GateEvent::Timeout => self.fire_processing_timers(&mut instance)?,
                GateEvent::Barrier(n) => {
                    if let Some(cp) = &self.checkpoints {
                        self.snapshot(cp, Some(n))?;
                        cp.ack(
                            n,
                            TaskId::Agent(self.name.clone(), self.instance),
                            serde_json::Value::Null,
                        );
                    }
                    if !routed(self.router.broadcast(&Payload::Barrier(n)))? {
                        Handled::Stop
                    } else {
                        if self.swap(&mut instance, n) {
                            restarts = 0;
                        }
                        Handled::Continue
                    }
                }
                GateEvent::End { complete } => {
                    // The input is complete: every event-time timer is due. (Stopped, the input
                    // goes on in the next run, and so do the timers.)
                    let timed = self.timers(|t| t.watermark.is_some() || !t.event.is_empty());
                    if complete
                        && timed
                        && self.timers(|t| t.watermark) != Some(i64::MAX)
                        && let Handled::Stop = self.advance(&mut instance, i64::MAX)?
                    {
                        return Ok(false);
                    }
                    if let Some(cp) = &self.checkpoints
                        && cp.persistent
                    {
                        self.snapshot(cp, None)?;
                    }
                    return Ok(complete);
                }
            };
            if instance.restarts() != restarts {
                self.node
                    .restarts
                    .fetch_add(instance.restarts() - restarts, Ordering::Relaxed);
                restarts = instance.restarts();
            }
            if let Handled::Stop = handled {
                return Ok(false);
            }
        }
    }

    fn timers<T>(&self, f: impl FnOnce(&mut crate::time::AgentTimers) -> T) -> T {
        f(&mut self
            .state
            .timers()
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
    }

    fn next_processing_timer(&self) -> Option<Instant> {
        let next = self.timers(|t| t.processing.next())?;
        let wait = next.saturating_sub(now_unix_ms()).max(0) as u64;
        Some(Instant::now() + Duration::from_millis(wait))
    }

    /// Sends an agent call's output downstream — born when its input was, or, for a timer or
    /// watermark call, when the call began — or applies the bad-input policy to its failure.
    fn outcome(
        &self,
        result: Result<Vec<Emitted>, AgentFailure>,
        input: Option<&RecordBatch>,
        born: Instant,
    ) -> Result<Handled, Error> {
        match result {
            Ok(outputs) => {
                for (port, batch) in outputs {
                    self.node.output(batch.num_rows());
                    if !routed(self.router.send(port, &batch, born))? {
                        return Ok(Handled::Stop);
                    }
                }
            }
            Err(failure) if !failure.is_batch_failure() => return Err(self.agent_error(failure)),
            Err(failure) => match self.spec.on_error {
                OnError::Fail => return Err(self.agent_error(failure)),
                OnError::Skip => {
                    self.node.failed_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(agent = %self.name, instance = self.instance, rows = input.map_or(0, |b| b.num_rows()), reason = %failure, "skipped a batch");
                }
                OnError::DeadLetter => {
                    self.node.failed_batches.fetch_add(1, Ordering::Relaxed);
                    match input {
                        Some(batch) => {
                            self.dead_letters
                                .batch(&self.name, &failure.to_string(), batch)?
                        }
                        None => {
                            tracing::warn!(agent = %self.name, instance = self.instance, reason = %failure, "a timer or watermark call failed; nothing to dead-letter")
                        }
                    }
                }
            },
        }
        Ok(Handled::Continue)
    }

    /// The watermark advanced to `w`: fire the event-time timers it passed (also those they
    /// register at or before `w`), tell the agent, and pass the watermark on.
    fn advance(&mut self, instance: &mut AgentInstance, w: i64) -> Result<Handled, Error> {
        self.timers(|t| t.watermark = Some(w));
        self.node.watermark(w);
        loop {
            let due = self.timers(|t| t.event.fire(w));
            if due.is_empty() {
                break;
            }
            let due: Vec<Timer> = due
                .into_iter()
                .map(|(key, ts)| Timer {
                    domain: TimeDomain::EventTime,
                    ts,
                    key,
                })
                .collect();
            let born = Instant::now();
            if let Handled::Stop = self.outcome(instance.on_timers(&due), None, born)? {
                return Ok(Handled::Stop);
            }
        }
        let born = Instant::now();
        if let Handled::Stop = self.outcome(instance.on_watermark(w), None, born)? {
            return Ok(Handled::Stop);
        }
        Ok(if routed(self.router.broadcast(&Payload::Watermark(w)))? {
            Handled::Continue
        } else {
            Handled::Stop
        })
    }

    fn fire_processing_timers(&mut self, instance: &mut AgentInstance) -> Result<Handled, Error> {
        let due: Vec<Timer> = self
            .timers(|t| t.processing.fire(now_unix_ms()))
            .into_iter()
            .map(|(key, ts)| Timer {
                domain: TimeDomain::ProcessingTime,
                ts,
                key,
            })
            .collect();
        let born = Instant::now();
        self.outcome(instance.on_timers(&due), None, born)
    }

    /// Writes the instance's state and timers for checkpoint `id` (`None`: the final one).
    fn snapshot(&self, cp: &Checkpoints, id: Option<u64>) -> Result<(), Error> {
        let _span = tracing::debug_span!("agent.snapshot", agent = %self.name, instance = self.instance, checkpoint = ?id).entered();
        let started = Instant::now();
        let dir = cp.snapshot_dir(id, &self.name, self.instance);
        let io = |action: &'static str, e: std::io::Error| {
            Error::Checkpoint(crate::checkpoint::CheckpointError::io(action, &dir, e))
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        self.state.backend().snapshot(&dir)?;
        // No timers, no file: restoring finds none.
        let timers = self.timers(|t| {
            (!t.event.is_empty() || !t.processing.is_empty()).then(|| postcard::to_stdvec(&*t))
        });
        if let Some(timers) = timers {
            let timers =
                timers.map_err(|e| Error::Internal(format!("cannot encode timers: {e}")))?;
            let path = dir.join(TIMERS_FILE);
            let file = std::fs::File::create(&path).map_err(|e| io("create", e))?;
            use std::io::Write;
            let mut w = std::io::BufWriter::new(file);
            w.write_all(&timers).map_err(|e| io("write", e))?;
            w.into_inner()
                .map_err(|e| io("write", e.into_error()))?
                .sync_all()
                .map_err(|e| io("sync", e))?;
        }
        tracing::debug!(agent = %self.name, instance = self.instance, checkpoint = ?id, ms = started.elapsed().as_secs_f64() * 1e3, "state snapshot written");
        Ok(())
    }
}
