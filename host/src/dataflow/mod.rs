//! Building and running the task graph of a pipeline.
//!
//! Every source, agent instance and sink is a thread. Edges are bounded channels, so a slow
//! consumer makes its producers wait (backpressure) instead of buffering without bound. A node's
//! router sends each output batch down every edge leaving the port it was emitted on (fan-out),
//! partitioned by key for keyed agents with several instances, round-robin otherwise. Watermarks,
//! checkpoint barriers and the end of input travel in-band on every channel, in order with the
//! batches; each task merges its channels in an input gate that aligns barriers and combines
//! watermarks. Each batch carries the instant its source handed it on, from which sinks measure
//! end-to-end latency ([`latency`]).
//!
//! A run resumes from the newest complete checkpoint in its data directory: sources seek to
//! their positions, agent instances restore their state and timers (at any parallelism), sinks
//! finish the commits the checkpoint covers. It ends with a final checkpoint, so the next run on
//! the same data directory continues after everything already committed.

mod checkpointing;
mod gate;
pub mod latency;
mod live;
mod partition;
mod router;
mod stats;
mod tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

pub use live::{AgentVersion, Live, LiveError, SwapOutcome, SwapReport, Version};
pub use partition::{KEY_GROUPS, instance_of, key_group, key_groups, split};
pub use stats::{CheckpointStats, NO_WATERMARK, NodeKind, NodeStats, RunStats};

use crate::Error;
use crate::checkpoint::{CheckpointStore, Coordinator, Restored, TaskId};
use crate::config::PipelineSpec;
use crate::connectors::{self, ConnectorError, DeadLetters, Sink, SinkSpec, Source, SourceSpec};
use crate::state::{SnapshotSource, StateScope, open_instance, owned_key_groups};
use crate::time::AgentTimers;
use crate::wasm::{AgentMetrics, AgentModule, CompileCache, ModuleSource, WasmRuntime};
use checkpointing::{CoordinatorThread, checkpoint_error};
use gate::InputGate;
use router::{Message, Route, Router, Target};
use tasks::{AgentTask, SinkTask, SourceTask, TIMERS_FILE};

/// The channel feeding one agent instance or sink.
/// A task's input: a bounded queue per upstream instance, and the queue of each channel.
struct Inbox {
    txs: Vec<Sender<Message>>,
    rxs: Vec<Receiver<Message>>,
    queue_of: Vec<usize>,
}
/// A sink's thread: it hands the sink back, to be committed or aborted once every task is done.
type SinkThread = JoinHandle<Result<Box<dyn Sink>, Error>>;

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set to ask for a graceful stop: sources stop, everything in flight is processed and
    /// flushed, sinks commit.
    pub stop: Arc<AtomicBool>,
    /// Where to publish live counters; a fresh one is made when `None`.
    pub stats: Option<Arc<RunStats>>,
    /// Where the run keeps its data: RocksDB state under `state/AGENT/INSTANCE`, checkpoints
    /// under `checkpoints/`. The run resumes from the newest complete checkpoint there. A
    /// temporary directory, removed at the end, when `None`.
    pub data_dir: Option<PathBuf>,
    /// Discard the checkpoints in `data_dir` and start from empty state and the beginning of
    /// every source.
    pub fresh: bool,
    /// The live view a controller keeps of the run: the version each agent runs (the
    /// pipeline's own modules when `None`), its state for queries, checkpoints on demand.
    pub live: Option<Arc<Live>>,
    /// Where agents keep their working state (`state/AGENT/INSTANCE`) when it should not be
    /// `data_dir`: checkpoints and pending output can then live on shared storage while the
    /// working databases stay on a local disk. Emptied at the start of the run.
    pub work_dir: Option<PathBuf>,
}

/// The outcome of a successful run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub pipeline: String,
    /// Rows produced by all sources.
    pub events_in: u64,
    /// Rows accepted by all sinks.
    pub events_out: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Batches skipped or dead-lettered by agents.
    pub failed_batches: u64,
    /// Records written to the dead-letter file.
    pub dead_letters: u64,
    /// Whether the run ended because it was asked to stop, rather than at the end of its input.
    pub interrupted: bool,
    /// Per-node counters.
    pub stats: Arc<RunStats>,
    /// Per-agent guest metrics.
    pub agent_metrics: HashMap<String, Arc<AgentMetrics>>,
    /// The checkpoint the run resumed from.
    pub restored_from: Option<u64>,
    /// Checkpoints completed during the run (not counting the final one).
    pub checkpoints: u64,
    /// The final checkpoint, when the run keeps its data directory.
    pub final_checkpoint: Option<u64>,
}

/// A validated pipeline with its modules loaded, ready to run (any number of times).
#[derive(Debug, Clone)]
pub struct Pipeline {
    spec: PipelineSpec,
    runtime: Arc<WasmRuntime>,
    modules: HashMap<String, Arc<AgentModule>>,
}

impl Pipeline {
    /// Loads the pipeline file at `path`, with the default compile cache.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let spec = PipelineSpec::load(path)?;
        let runtime = WasmRuntime::new(CompileCache::new(CompileCache::default_dir()))?;
        Self::new(spec, runtime)
    }

    /// Loads (compiles, type-checks) every module of `spec`.
    pub fn new(spec: PipelineSpec, runtime: Arc<WasmRuntime>) -> Result<Self, Error> {
        let mut loaded: HashMap<ModuleSource, Arc<AgentModule>> = HashMap::new();
        let mut modules = HashMap::new();
        for (name, agent) in &spec.agents {
            let module = match loaded.get(&agent.module) {
                Some(m) => m.clone(),
                None => {
                    let m = runtime.load(&agent.module)?;
                    loaded.insert(agent.module.clone(), m.clone());
                    m
                }
            };
            modules.insert(name.clone(), module);
        }
        check_builtin_configs(&spec, &runtime, &modules)?;
        Ok(Pipeline {
            spec,
            runtime,
            modules,
        })
    }

    /// The pipeline's definition.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The loaded module of each agent.
    pub fn modules(&self) -> &HashMap<String, Arc<AgentModule>> {
        &self.modules
    }

    /// The version agent `name` runs unless a [`Live`] view says otherwise: the pipeline's module
    /// and config.
    pub fn version(&self, name: &str) -> Version {
        let agent = &self.spec.agents[name];
        Version {
            module: self.modules[name].clone(),
            config: agent.config.clone(),
            label: agent.module.to_string(),
        }
    }

    /// A live view of this pipeline's runs, starting with its own modules.
    pub fn live(&self) -> Live {
        Live::new(
            self.spec
                .agents
                .keys()
                .map(|name| (name.clone(), self.version(name))),
        )
    }

    /// This pipeline with its definition changed by `change`, its modules kept: for settings
    /// a host adds, such as a cluster's group session timeout.
    pub fn with_spec(&self, change: impl FnOnce(&mut PipelineSpec)) -> Pipeline {
        let mut spec = self.spec.clone();
        change(&mut spec);
        Pipeline {
            spec,
            runtime: self.runtime.clone(),
            modules: self.modules.clone(),
        }
    }

    /// The copy of this pipeline that a scaled-out run (`[pipeline.scale_out]`) runs for one
    /// partition of its shared source: named `PIPELINE.TOPIC.PARTITION` (which names its
    /// checkpoints, its exactly-once sinks' `transactional.id` and epoch groups), reading that
    /// partition alone and committing no offsets itself (the group member does).
    pub fn for_partition(&self, topic: &str, partition: i32) -> Result<Pipeline, Error> {
        let Some(scale) = &self.spec.scale_out else {
            return Err(Error::Internal(format!(
                "pipeline `{}` has no [pipeline.scale_out]",
                self.spec.name
            )));
        };
        let mut spec = self.spec.clone();
        spec.name = format!("{}.{topic}.{partition}", self.spec.name);
        spec.scale_out = None;
        match spec.sources.get_mut(&scale.source) {
            Some(SourceSpec::Kafka(k)) => {
                k.topics = vec![topic.to_owned()];
                k.partitions = Some(vec![partition]);
                k.commit_offsets = false;
            }
            _ => {
                return Err(Error::Internal(format!(
                    "the scale-out source `{}` is not a Kafka source",
                    scale.source
                )));
            }
        }
        Ok(Pipeline {
            spec,
            runtime: self.runtime.clone(),
            modules: self.modules.clone(),
        })
    }

    /// Runs the pipeline until its bounded inputs end, it is asked to stop, or something fails.
    ///
    /// A pipeline with `[pipeline.scale_out]` runs with [`crate::scaleout::run`] instead.
    pub fn run(&self, options: RunOptions) -> Result<RunSummary, Error> {
        let spec = &self.spec;
        if spec.scale_out.is_some() {
            return Err(Error::Internal(format!(
                "pipeline `{}` shares its partitions with a consumer group ([pipeline.scale_out]): run it with `sabot run` (sabot_host::scaleout::run)",
                spec.name
            )));
        }
        let _span = tracing::info_span!("dataflow.run", pipeline = %spec.name).entered();
        let started = Instant::now();
        let stats = options
            .stats
            .clone()
            .unwrap_or_else(|| Arc::new(RunStats::for_pipeline(spec)));
        let live = options
            .live
            .clone()
            .unwrap_or_else(|| Arc::new(self.live()));
        // However the run ends, it lets go of its state and checkpoints — but for the views',
        // which stay readable. The state of a previous run's views goes now.
        struct Detach(Arc<Live>, Vec<String>);
        impl Drop for Detach {
            fn drop(&mut self) {
                self.0.detach_keeping(&self.1);
            }
        }
        live.detach();
        let views: Vec<String> = spec
            .agents
            .iter()
            .filter(|(_, a)| matches!(&a.module, ModuleSource::Builtin(op) if op == "view"))
            .map(|(name, _)| name.clone())
            .collect();
        let _detach = Detach(live.clone(), views.clone());
        let mut scopes: HashMap<String, Vec<StateScope>> = HashMap::new();
        let dead_letters = Arc::new(DeadLetters::new(
            &spec.name,
            spec.dead_letter.clone(),
            spec.dead_letter_mb << 20,
        ));
        let control = Arc::new(Control {
            stop: options.stop.clone(),
            failure: Mutex::new(None),
            secrets: spec.secrets.clone(),
        });

        // Where the run keeps its data, and what it resumes from.
        let root = DataRoot::new(options.data_dir.clone(), &spec.name)?;
        let mut store = CheckpointStore::new(root.path(), &spec.name);
        if let Some(storage) = spec.checkpoint.as_ref().and_then(|c| c.storage.as_ref()) {
            let remote = crate::checkpoint::Remote::open(storage, &spec.name)
                .map_err(|e| control.redacted(checkpoint_error(e)))?;
            store = store.with_remote(remote);
        }
        // Checkpoints outlast the run: in the data directory, or in the object store.
        let durable = root.persistent || store.is_remote();
        if options.fresh || !durable {
            store.clear().map_err(checkpoint_error)?;
        }
        let restored = store.latest().map_err(checkpoint_error)?;
        match &restored {
            Some(r) => {
                store
                    .discard_incomplete(r.metadata.id)
                    .map_err(checkpoint_error)?;
                tracing::info!(
                    checkpoint = r.metadata.id,
                    after_complete_run = r.metadata.last,
                    "resuming from a checkpoint"
                );
            }
            None => store.clear().map_err(checkpoint_error)?,
        }
        let first_id = restored.as_ref().map_or(1, |r| r.metadata.id + 1);
        let checkpointing = spec.checkpoint.is_some() || durable;
        let (handle, reports, requested) = checkpointing::channel(store.clone(), durable);
        let checkpoints = checkpointing.then(|| handle.clone());

        // One inbox per agent instance and per sink: a bounded queue per upstream instance.
        let mut inboxes: HashMap<String, Vec<Inbox>> = HashMap::new();
        let channels = Channels::new(spec);
        let inbox = |name: &str| -> Inbox {
            let queue_of = channels.queues(spec, name);
            let queues = queue_of.iter().max().map_or(0, |q| q + 1);
            let (txs, rxs) = (0..queues)
                .map(|q| {
                    let shared = queue_of.iter().filter(|&&x| x == q).count();
                    bounded(spec.channel_capacity * shared)
                })
                .unzip();
            Inbox { txs, rxs, queue_of }
        };
        for (name, agent) in &spec.agents {
            inboxes.insert(
                name.clone(),
                (0..agent.parallelism).map(|_| inbox(name)).collect(),
            );
        }
        for name in spec.sinks.keys() {
            inboxes.insert(name.clone(), vec![inbox(name)]);
        }
        let router_for = |node: &str, instance: usize| -> Router {
            let routes = spec
                .outputs_of(node)
                .map(|edge| {
                    let base = channels.base(edge);
                    let channel = base + instance as u32;
                    let targets: Vec<Target> = inboxes[&edge.to]
                        .iter()
                        .map(|inbox| Target {
                            tx: inbox.txs[inbox.queue_of[channel as usize]].clone(),
                            channel,
                        })
                        .collect();
                    let key = spec.agents.get(&edge.to).and_then(|a| a.key.clone());
                    Route {
                        from_port: edge.from_port,
                        to: edge.to.clone(),
                        to_port: edge.to_port,
                        key: if targets.len() > 1 { key } else { None },
                        next: AtomicUsize::new(instance),
                        targets,
                    }
                })
                .collect();
            Router {
                node: node.to_owned(),
                routes,
            }
        };

        let mut sources: Vec<(String, JoinHandle<Result<serde_json::Value, Error>>)> = Vec::new();
        let mut workers: Vec<(String, JoinHandle<Result<(), Error>>)> = Vec::new();
        let mut sink_threads: Vec<(String, SinkThread)> = Vec::new();
        let mut commits = HashMap::new();
        let mut agent_metrics = HashMap::new();
        let mut tasks = Vec::new();
        let spawn_failed =
            |e: std::io::Error| Error::Internal(format!("cannot start a task thread: {e}"));

        // Sinks first, so their inboxes drain as soon as data flows.
        for (name, sink_spec) in &spec.sinks {
            let input = &inboxes[name][0];
            let mut sink = open_sink(spec, name, sink_spec, root.path())?;
            if let Some(r) = &restored {
                let into = root.path().join("sinks").join(name);
                let n =
                    checkpointing::restore_spills(&r.dir, name, &into).map_err(checkpoint_error)?;
                if n > 0 {
                    tracing::info!(sink = %name, files = n, "spills of pre-committed epochs restored from the checkpoint");
                }
            }
            sink.recover(restored.as_ref().and_then(|r| r.metadata.sinks.get(name)))?;
            let (commit_tx, commit_rx) = crossbeam_channel::unbounded();
            commits.insert(name.clone(), commit_tx);
            tasks.push(TaskId::Sink(name.clone()));
            let task = SinkTask {
                name: name.clone(),
                sink,
                gate: InputGate::new(input.rxs.clone(), &input.queue_of),
                node: stats.node(name),
                control: control.clone(),
                checkpoints: checkpoints.clone(),
                commits: commit_rx,
            };
            let handle = std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || task.run())
                .map_err(spawn_failed)?;
            sink_threads.push((name.clone(), handle));
        }

        for (name, agent) in &spec.agents {
            let version = match live.version(name) {
                Some(v) => v.clone(),
                None => Arc::new(AgentVersion::new(self.version(name))),
            };
            let (generation, current) = version.current();
            let metrics = Arc::new(AgentMetrics::default());
            agent_metrics.insert(name.clone(), metrics.clone());
            let snapshots = restored.as_ref().and_then(|r| snapshot_source(r, name));
            for (i, input) in inboxes[name].iter().enumerate() {
                let owned = owned_key_groups(i, agent.parallelism);
                let backend = open_instance(
                    spec.state,
                    &options
                        .work_dir
                        .as_deref()
                        .unwrap_or(root.path())
                        .join("state")
                        .join(name)
                        .join(i.to_string()),
                    snapshots.as_ref(),
                    i,
                    agent.parallelism,
                    owned.clone(),
                    usize::try_from(spec.state_cache_mb << 20).unwrap_or(usize::MAX),
                )?;
                let timers = match &snapshots {
                    Some(s) => restore_timers(s, &owned)?,
                    None => AgentTimers::default(),
                };
                tasks.push(TaskId::Agent(name.clone(), i));
                let state =
                    StateScope::new(backend, name, i, agent.parallelism, agent.key.is_some())
                        .with_timers(timers);
                scopes.entry(name.clone()).or_default().push(state.clone());
                let task = AgentTask {
                    name: name.clone(),
                    instance: i,
                    spec: agent.clone(),
                    pipeline: spec.name.clone(),
                    runtime: self.runtime.clone(),
                    version: version.clone(),
                    running: (generation, current.clone()),
                    metrics: metrics.clone(),
                    gate: InputGate::new(input.rxs.clone(), &input.queue_of),
                    router: router_for(name, i),
                    node: stats.node(name),
                    control: control.clone(),
                    dead_letters: dead_letters.clone(),
                    state,
                    checkpoints: checkpoints.clone(),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("agent-{name}-{i}"))
                    .spawn(move || task.run())
                    .map_err(spawn_failed)?;
                workers.push((format!("{name}[{i}]"), handle));
            }
        }

        for (name, source_spec) in &spec.sources {
            let opened = open_source(name, source_spec, spec.batch_size, dead_letters.clone())
                .and_then(|mut s| {
                    if let Some(position) =
                        restored.as_ref().and_then(|r| r.metadata.sources.get(name))
                    {
                        s.seek(position)?;
                    }
                    Ok(s)
                });
            let source = match opened {
                Ok(mut s) => {
                    let ports: Vec<u32> = spec.outputs_of(name).map(|e| e.from_port).collect();
                    s.connect(&ports);
                    s
                }
                Err(e) => {
                    control.fail(e);
                    break;
                }
            };
            tasks.push(TaskId::Source(name.clone()));
            let task = SourceTask {
                name: name.clone(),
                source,
                router: router_for(name, 0),
                node: stats.node(name),
                control: control.clone(),
                event_time: source_spec.event_time().cloned(),
                checkpoints: checkpoints.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("source-{name}"))
                .spawn(move || task.run())
                .map_err(spawn_failed)?;
            sources.push((name.clone(), handle));
        }
        // The graph now holds every sender it needs; dropping ours lets channels close.
        drop(inboxes);

        let completed = handle.completed.clone();
        let coordinator = match (&spec.checkpoint, control.failed()) {
            (Some(every), false) => {
                let thread = CoordinatorThread {
                    coordinator: Coordinator::new(tasks, every.interval_ms, first_id, 0),
                    store: store.clone(),
                    spec: spec.clone(),
                    reports,
                    requested,
                    commits,
                    retain: every.retain,
                    completed: completed.clone(),
                    stats: stats.clone(),
                };
                // A checkpoint that cannot be written stops the run at once, not at its end.
                let control = control.clone();
                Some(
                    std::thread::Builder::new()
                        .name("checkpoints".into())
                        .spawn(move || {
                            thread.run(started).map_err(|e| {
                                control.fail(e);
                                Error::Internal("the checkpoint coordinator stopped".into())
                            })
                        })
                        .map_err(spawn_failed)?,
                )
            }
            _ => {
                drop(reports);
                None
            }
        };
        live.set_metrics(agent_metrics.clone());
        live.attach(scopes, coordinator.as_ref().map(|_| handle.reports.clone()));
        drop(handle);
        drop(checkpoints);

        let mut positions = Vec::new();
        for (name, handle) in sources {
            match handle.join() {
                Ok(Ok(position)) => positions.push((TaskId::Source(name), position)),
                Ok(Err(e)) => control.fail(e),
                Err(_) => control.fail(Error::Internal(format!("source {name} panicked"))),
            }
        }
        for (name, handle) in workers {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => control.fail(e),
                Err(_) => control.fail(Error::Internal(format!("task {name} panicked"))),
            }
        }
        let mut sinks = Vec::new();
        for (name, handle) in sink_threads {
            match handle.join() {
                Ok(Ok(sink)) => sinks.push((name, sink)),
                Ok(Err(e)) => control.fail(e),
                Err(_) => control.fail(Error::Internal(format!("sink {name} panicked"))),
            }
        }
        // The coordinator ends when the last handle on it goes.
        live.detach_keeping(&views);
        let mut final_id = first_id;
        if let Some(handle) = coordinator {
            match handle.join() {
                Ok(Ok(c)) => final_id = c.next_id(),
                Ok(Err(e)) => control.fail(e),
                Err(_) => control.fail(Error::Internal(
                    "the checkpoint coordinator panicked".into(),
                )),
            }
        }

        if let Some(error) = control.take_failure() {
            for (_, mut sink) in sinks {
                sink.abort(durable);
            }
            return Err(control.redacted(error));
        }
        // The final epoch: pre-commit, record it in the final checkpoint, commit.
        let mut pending = Vec::new();
        for (name, sink) in &mut sinks {
            pending.push((TaskId::Sink(name.clone()), sink.pre_commit(final_id)?));
            if store.is_remote() {
                checkpointing::keep_spills(&store.final_dir(), name, &sink.spill_files())
                    .map_err(checkpoint_error)?;
            }
        }
        let final_checkpoint = if durable {
            let m =
                checkpointing::metadata(spec, final_id, true, positions.into_iter().chain(pending));
            store
                .complete(m, &store.final_dir())
                .map_err(checkpoint_error)?;
            store
                .retain(spec.checkpoint.as_ref().map_or(1, |c| c.retain))
                .map_err(checkpoint_error)?;
            Some(final_id)
        } else {
            None
        };
        for (name, mut sink) in sinks {
            let _span = tracing::debug_span!("sink.commit", sink = %name).entered();
            sink.commit(final_id)?;
        }
        let last = completed.load(Ordering::Acquire);
        Ok(RunSummary {
            pipeline: spec.name.clone(),
            events_in: stats.events_in(),
            events_out: stats.events_out(),
            elapsed: stats.elapsed(),
            failed_batches: stats.failed_batches(),
            dead_letters: dead_letters.count(),
            interrupted: options.stop.load(Ordering::Relaxed),
            stats,
            agent_metrics,
            restored_from: restored.map(|r| r.metadata.id),
            checkpoints: if last == 0 { 0 } else { last + 1 - first_id },
            final_checkpoint,
        })
    }
}

/// The snapshots of `agent` in a checkpoint, if it has any.
fn snapshot_source(restored: &Restored, agent: &str) -> Option<SnapshotSource> {
    let Some(entry) = restored.metadata.agents.get(agent) else {
        tracing::warn!(
            agent,
            checkpoint = restored.metadata.id,
            "the agent is not in the checkpoint: it starts with empty state"
        );
        return None;
    };
    let base = restored.dir.join("state").join(agent);
    Some(SnapshotSource {
        dirs: (0..entry.parallelism)
            .map(|i| base.join(i.to_string()))
            .collect(),
        kind: entry.backend,
    })
}

/// The timers of the key groups `owned` in every old instance's snapshot.
fn restore_timers(
    from: &SnapshotSource,
    owned: &std::ops::Range<u32>,
) -> Result<AgentTimers, Error> {
    let mut timers = AgentTimers::default();
    for dir in &from.dirs {
        let path = dir.join(TIMERS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Checkpoint(crate::checkpoint::CheckpointError::io(
                    "read", &path, e,
                )));
            }
        };
        let old: AgentTimers = postcard::from_bytes(&bytes).map_err(|e| {
            Error::Checkpoint(crate::checkpoint::CheckpointError::Snapshot {
                id: 0,
                message: format!("{} does not decode: {e}", path.display()),
            })
        })?;
        let owns = |key: &[u8]| owned.contains(&key_group(key));
        timers.event.absorb(old.event, owns);
        timers.processing.absorb(old.processing, owns);
    }
    Ok(timers)
}

/// How the channels into each task are numbered: for each edge into a node, in order, one
/// channel per instance of the node it comes from.
struct Channels {
    base: HashMap<(String, u32, String, u32), u32>,
    count: HashMap<String, usize>,
}

impl Channels {
    fn new(spec: &PipelineSpec) -> Self {
        let mut base = HashMap::new();
        let mut count = HashMap::new();
        for node in spec.agents.keys().chain(spec.sinks.keys()) {
            let mut next = 0u32;
            for edge in spec.inputs_of(node) {
                base.insert(
                    (
                        edge.from.clone(),
                        edge.from_port,
                        edge.to.clone(),
                        edge.to_port,
                    ),
                    next,
                );
                next += spec.agents.get(&edge.from).map_or(1, |a| a.parallelism) as u32;
            }
            count.insert(node.clone(), next as usize);
        }
        Channels { base, count }
    }

    fn base(&self, edge: &crate::config::Edge) -> u32 {
        self.base[&(
            edge.from.clone(),
            edge.from_port,
            edge.to.clone(),
            edge.to_port,
        )]
    }

    /// The queue each input channel of `node` arrives on: one per upstream instance, whatever
    /// the number of edges from it, so that what an instance sends arrives in order.
    fn queues(&self, spec: &PipelineSpec, node: &str) -> Vec<usize> {
        let mut queues: HashMap<(&str, usize), usize> = HashMap::new();
        let mut queue_of = Vec::with_capacity(self.count(node));
        for edge in spec.inputs_of(node) {
            let instances = spec.agents.get(&edge.from).map_or(1, |a| a.parallelism);
            for i in 0..instances {
                let next = queues.len();
                queue_of.push(*queues.entry((edge.from.as_str(), i)).or_insert(next));
            }
        }
        queue_of
    }

    fn count(&self, node: &str) -> usize {
        self.count.get(node).copied().unwrap_or(0)
    }
}

/// Where a run keeps its data: `--data-dir`, or a temporary directory removed when the run ends.
struct DataRoot {
    path: PathBuf,
    persistent: bool,
    /// Held for the run: two runs on one data directory would corrupt each other's state.
    _lock: Option<std::fs::File>,
}

impl DataRoot {
    fn new(data_dir: Option<PathBuf>, pipeline: &str) -> Result<Self, Error> {
        let (path, persistent) = match data_dir {
            Some(root) => (root, true),
            None => {
                static RUNS: AtomicU64 = AtomicU64::new(0);
                let n = RUNS.fetch_add(1, Ordering::Relaxed);
                (
                    std::env::temp_dir()
                        .join(format!("sabot-{pipeline}-{}-{n}", std::process::id())),
                    false,
                )
            }
        };
        let io = |action, p: &Path, e| {
            Error::Checkpoint(crate::checkpoint::CheckpointError::io(action, p, e))
        };
        std::fs::create_dir_all(&path).map_err(|e| io("create", &path, e))?;
        let lock_path = path.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Checkpoint(
                    crate::checkpoint::CheckpointError::Busy { dir: path },
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path, e)),
        }
        Ok(DataRoot {
            path,
            persistent,
            _lock: Some(lock),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataRoot {
    fn drop(&mut self) {
        if !self.persistent {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Shared run state: the stop flag and the first failure.
#[derive(Debug)]
pub(crate) struct Control {
    stop: Arc<AtomicBool>,
    failure: Mutex<Option<Error>>,
    /// The values of the definition's secrets, kept out of what is logged and returned.
    secrets: crate::config::secrets::Resolved,
}

impl Control {
    /// Records `error` (the first one wins) and stops the run.
    fn fail(&self, error: Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            tracing::error!(error = %self.secrets.redact(&error.to_string()), "pipeline failed");
            *failure = Some(error);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// `error`, made an internal error with the secrets' values replaced by their references
    /// when its message quotes one (a client library quoting a bad property value).
    fn redacted(&self, error: Error) -> Error {
        let text = error.to_string();
        let shown = self.secrets.redact(&text);
        if shown == text {
            error
        } else {
            Error::Internal(shown)
        }
    }

    fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

fn open_source(
    name: &str,
    spec: &SourceSpec,
    batch_size: usize,
    dead_letters: Arc<DeadLetters>,
) -> Result<Box<dyn Source>, Error> {
    Ok(match spec {
        SourceSpec::Generator(g) => Box::new(g.open(batch_size)),
        SourceSpec::File(f) => connectors::file::open_source(name, f, batch_size, dead_letters)?,
        SourceSpec::Nexmark(n) => Box::new(n.open(batch_size)),
        SourceSpec::Kafka(k) => Box::new(connectors::kafka::KafkaSource::open(
            name,
            k,
            batch_size,
            dead_letters,
        )?),
    })
}

/// Opens sink `name` of `pipeline`; sinks that keep files of their own (spills) keep them under
/// `data/sinks/NAME`.
fn open_sink(
    pipeline: &PipelineSpec,
    name: &str,
    spec: &SinkSpec,
    data: &Path,
) -> Result<Box<dyn Sink>, ConnectorError> {
    let file_sink_mb = pipeline.file_sink_mb;
    let pipeline = pipeline.name.as_str();
    Ok(match spec {
        SinkSpec::Stdout(s) => Box::new(s.open(name)),
        SinkSpec::File(f) => {
            Box::new(connectors::file::FileSink::open(name, f)?.with_budget(file_sink_mb << 20))
        }
        SinkSpec::Blackhole(_) => Box::new(connectors::blackhole::Blackhole),
        SinkSpec::Kafka(k) => match k.delivery {
            connectors::kafka::Delivery::ExactlyOnce => {
                Box::new(connectors::kafka::TransactionalSink::open(
                    pipeline,
                    name,
                    k,
                    &data.join("sinks").join(name),
                )?)
            }
            connectors::kafka::Delivery::AtLeastOnce => {
                Box::new(connectors::kafka::KafkaSink::open(name, k)?)
            }
        },
    })
}

/// A built-in operator reads its config in `init`: each is started once, with no state, so that
/// a mistake (`preceding = 10001`, an unknown aggregate, a missing setting) is the pipeline's —
/// `validate` exits 2 naming the agent — rather than a failure of the run.
fn check_builtin_configs(
    spec: &PipelineSpec,
    runtime: &Arc<WasmRuntime>,
    modules: &HashMap<String, Arc<AgentModule>>,
) -> Result<(), Error> {
    for (name, agent) in &spec.agents {
        if !matches!(agent.module, ModuleSource::Builtin(_)) {
            continue;
        }
        crate::wasm::AgentInstance::start(
            runtime.clone(),
            modules[name].clone(),
            agent.config.clone(),
            crate::wasm::Limits::default(),
            crate::wasm::Tags::default(),
            Arc::new(AgentMetrics::default()),
            StateScope::standalone(name),
        )
        .map_err(|failure| crate::config::ConfigError::Invalid {
            file: spec.file.clone(),
            location: format!("[agents.{name}] field `config`"),
            message: failure.to_string(),
        })?;
    }
    Ok(())
}
