//! Building and running the task graph of a pipeline.
//!
//! Every source, agent instance and sink is a thread. Edges are bounded channels of batches, so a
//! slow consumer makes its producers wait (backpressure) instead of buffering without bound. A
//! node's [`Router`] sends each output batch down every edge leaving the port it was emitted on
//! (fan-out), partitioned by key for keyed agents with several instances, round-robin otherwise.
//! Several edges into one node share its channel (fan-in), tagged with the input port.
//!
//! Shutdown is by channel closure: a source that ends (or sees the stop flag) drops its senders;
//! an agent instance drains its channel, then drops its own; sinks drain last. Only when every
//! task has finished without error do sinks commit, so a failed run leaves no half-written output.

mod partition;
mod stats;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender, bounded};

pub use partition::{KEY_GROUPS, instance_of, key_group, key_groups, split};
pub use stats::{NodeKind, NodeStats, RunStats};

use crate::Error;
use crate::config::{AgentSpec, PipelineSpec};
use crate::connectors::ConnectorError;
use crate::connectors::{self, DeadLetters, OnError, Sink, SinkSpec, Source, SourceSpec};
use crate::state::{BackendKind, MemoryBackend, RocksBackend, StateBackend, StateScope};
use crate::wasm::{
    AgentInstance, AgentMetrics, AgentModule, CompileCache, ModuleSource, Tags, WasmRuntime,
};

/// A batch on its way into a node, tagged with the input port it arrives on.
#[derive(Debug, Clone)]
struct Message {
    port: u32,
    batch: RecordBatch,
}

/// The channel feeding one agent instance or sink.
type Inbox = (Sender<Message>, Receiver<Message>);
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
    /// Where the run keeps its data (RocksDB state under `state/AGENT`); a temporary directory,
    /// removed at the end, when `None`.
    pub data_dir: Option<std::path::PathBuf>,
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
}

/// A validated pipeline with its modules loaded, ready to run (any number of times).
#[derive(Debug)]
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

    /// Runs the pipeline until its bounded inputs end, it is asked to stop, or something fails.
    pub fn run(&self, options: RunOptions) -> Result<RunSummary, Error> {
        let spec = &self.spec;
        let _span = tracing::info_span!("dataflow.run", pipeline = %spec.name).entered();
        let stats = options.stats.clone().unwrap_or_else(|| {
            Arc::new(RunStats::new(
                spec.sources
                    .keys()
                    .map(|n| (n.as_str(), NodeKind::Source))
                    .chain(spec.agents.keys().map(|n| (n.as_str(), NodeKind::Agent)))
                    .chain(spec.sinks.keys().map(|n| (n.as_str(), NodeKind::Sink))),
            ))
        });
        let dead_letters = Arc::new(DeadLetters::new(&spec.name, spec.dead_letter.clone()));
        let control = Arc::new(Control {
            stop: options.stop.clone(),
            failure: Mutex::new(None),
        });

        // One channel per agent instance and per sink.
        let mut inboxes: HashMap<String, Vec<Inbox>> = HashMap::new();
        for (name, agent) in &spec.agents {
            let inputs = spec.inputs_of(name).count().max(1);
            inboxes.insert(
                name.clone(),
                (0..agent.parallelism)
                    .map(|_| bounded(spec.channel_capacity * inputs))
                    .collect(),
            );
        }
        for name in spec.sinks.keys() {
            let inputs = spec.inputs_of(name).count().max(1);
            inboxes.insert(name.clone(), vec![bounded(spec.channel_capacity * inputs)]);
        }
        let router_for = |node: &str| -> Router {
            let routes = spec
                .outputs_of(node)
                .map(|edge| {
                    let targets: Vec<Sender<Message>> =
                        inboxes[&edge.to].iter().map(|(tx, _)| tx.clone()).collect();
                    let key = spec.agents.get(&edge.to).and_then(|a| a.key.clone());
                    Route {
                        from_port: edge.from_port,
                        to: edge.to.clone(),
                        to_port: edge.to_port,
                        key: if targets.len() > 1 { key } else { None },
                        next: AtomicUsize::new(0),
                        targets,
                    }
                })
                .collect();
            Router {
                node: node.to_owned(),
                routes,
            }
        };

        let mut workers: Vec<(String, JoinHandle<Result<(), Error>>)> = Vec::new();
        let mut sink_threads: Vec<(String, SinkThread)> = Vec::new();
        let mut agent_metrics = HashMap::new();
        let state_dirs = StateDirs::new(options.data_dir.clone(), &spec.name);

        // Sinks first, so their inboxes drain as soon as data flows.
        for (name, sink_spec) in &spec.sinks {
            let (_, rx) = inboxes[name][0].clone();
            let sink = open_sink(name, sink_spec)?;
            let node = stats.node(name);
            let control = control.clone();
            let sink_name = name.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || run_sink(sink_name, sink, rx, node, control))
                .map_err(|e| Error::Internal(format!("cannot start a sink thread: {e}")))?;
            sink_threads.push((name.clone(), handle));
        }

        for (name, agent) in &spec.agents {
            let module = self.modules[name].clone();
            let metrics = Arc::new(AgentMetrics::default());
            let backend = state_dirs.backend(spec.state, name)?;
            agent_metrics.insert(name.clone(), metrics.clone());
            for (i, (_, rx)) in inboxes[name].iter().enumerate() {
                let task = AgentTask {
                    name: name.clone(),
                    instance: i,
                    spec: agent.clone(),
                    pipeline: spec.name.clone(),
                    runtime: self.runtime.clone(),
                    module: module.clone(),
                    metrics: metrics.clone(),
                    inbox: rx.clone(),
                    router: router_for(name),
                    node: stats.node(name),
                    control: control.clone(),
                    dead_letters: dead_letters.clone(),
                    state: StateScope::new(
                        backend.clone(),
                        name,
                        i,
                        agent.parallelism,
                        agent.key.is_some(),
                    ),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("agent-{name}-{i}"))
                    .spawn(move || task.run())
                    .map_err(|e| Error::Internal(format!("cannot start an agent thread: {e}")))?;
                workers.push((format!("{name}[{i}]"), handle));
            }
        }

        for (name, source_spec) in &spec.sources {
            let source = match open_source(name, source_spec, spec.batch_size, dead_letters.clone())
            {
                Ok(s) => s,
                Err(e) => {
                    control.fail(e);
                    break;
                }
            };
            let router = router_for(name);
            let node = stats.node(name);
            let control = control.clone();
            let handle = std::thread::Builder::new()
                .name(format!("source-{name}"))
                .spawn(move || run_source(source, router, node, control))
                .map_err(|e| Error::Internal(format!("cannot start a source thread: {e}")))?;
            workers.push((name.clone(), handle));
        }
        // The graph now holds every sender it needs; dropping ours lets channels close.
        drop(inboxes);

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

        if let Some(error) = control.take_failure() {
            for (_, sink) in sinks {
                sink.abort();
            }
            return Err(error);
        }
        for (name, sink) in sinks {
            let _span = tracing::debug_span!("sink.commit", sink = %name).entered();
            sink.commit()?;
        }
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
        })
    }
}

/// Where a run's RocksDB state lives: under `--data-dir`, or a temporary directory removed when
/// the run ends.
struct StateDirs {
    root: std::path::PathBuf,
    temporary: bool,
}

impl StateDirs {
    fn new(data_dir: Option<std::path::PathBuf>, pipeline: &str) -> Self {
        match data_dir {
            Some(root) => StateDirs {
                root,
                temporary: false,
            },
            None => StateDirs {
                root: std::env::temp_dir().join(format!("sabot-{pipeline}-{}", std::process::id())),
                temporary: true,
            },
        }
    }

    /// The backend of `agent`. Until checkpoints restore state, every run starts from empty state.
    fn backend(&self, kind: BackendKind, agent: &str) -> Result<Arc<dyn StateBackend>, Error> {
        Ok(match kind {
            BackendKind::Memory => Arc::new(MemoryBackend::default()),
            BackendKind::Rocksdb => {
                let dir = self.root.join("state").join(agent);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| {
                        crate::state::BackendError(format!(
                            "cannot clear the state directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                Arc::new(RocksBackend::open(&dir)?)
            }
        })
    }
}

impl Drop for StateDirs {
    fn drop(&mut self) {
        if self.temporary && self.root.exists() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Shared run state: the stop flag and the first failure.
#[derive(Debug)]
struct Control {
    stop: Arc<AtomicBool>,
    failure: Mutex<Option<Error>>,
}

impl Control {
    /// Records `error` (the first one wins) and stops the run.
    fn fail(&self, error: Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            tracing::error!(error = %error, "pipeline failed");
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

    fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// One edge leaving a node's output port.
#[derive(Debug)]
struct Route {
    from_port: u32,
    to: String,
    to_port: u32,
    /// Partition by this column (keyed agent with several instances).
    key: Option<String>,
    /// Round-robin position (several instances, no key).
    next: AtomicUsize,
    targets: Vec<Sender<Message>>,
}

/// Sends a node's output batches down its edges.
#[derive(Debug)]
struct Router {
    node: String,
    routes: Vec<Route>,
}

/// Why a batch could not be routed.
enum RouteError {
    /// The receiving task is gone: it failed, and that failure is the one reported.
    Closed,
    /// The batch cannot be partitioned (no key column, unhashable key).
    Partition(Error),
}

impl Router {
    fn send(&self, port: u32, batch: &RecordBatch) -> Result<(), RouteError> {
        for route in self.routes.iter().filter(|r| r.from_port == port) {
            let deliver = |target: &Sender<Message>, batch: RecordBatch| {
                target
                    .send(Message {
                        port: route.to_port,
                        batch,
                    })
                    .map_err(|_| RouteError::Closed)
            };
            match (&route.key, route.targets.len()) {
                (_, 1) => deliver(&route.targets[0], batch.clone())?,
                (Some(key), n) => {
                    let parts = split(batch, key, n).map_err(|m| {
                        RouteError::Partition(Error::Data(format!(
                            "the input of keyed agent `{}` from `{}` {m}",
                            route.to, self.node
                        )))
                    })?;
                    for (target, part) in route.targets.iter().zip(parts) {
                        if let Some(part) = part {
                            deliver(target, part)?;
                        }
                    }
                }
                (None, n) => {
                    let i = route.next.fetch_add(1, Ordering::Relaxed) % n;
                    deliver(&route.targets[i], batch.clone())?;
                }
            }
        }
        Ok(())
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
    })
}

fn open_sink(name: &str, spec: &SinkSpec) -> Result<Box<dyn Sink>, ConnectorError> {
    Ok(match spec {
        SinkSpec::Stdout(s) => Box::new(s.open(name)),
        SinkSpec::File(f) => Box::new(connectors::file::FileSink::open(name, f)?),
        SinkSpec::Blackhole(_) => Box::new(connectors::blackhole::Blackhole),
    })
}

fn run_source(
    mut source: Box<dyn Source>,
    router: Router,
    node: Arc<NodeStats>,
    control: Arc<Control>,
) -> Result<(), Error> {
    let _span = tracing::debug_span!("source.run", source = %router.node).entered();
    while !control.stopping() {
        let Some(batch) = source.next_batch()? else {
            break;
        };
        if batch.num_rows() == 0 {
            continue;
        }
        node.output(batch.num_rows());
        match router.send(0, &batch) {
            Ok(()) => {}
            Err(RouteError::Closed) => break,
            Err(RouteError::Partition(e)) => return Err(e),
        }
    }
    Ok(())
}

fn run_sink(
    name: String,
    mut sink: Box<dyn Sink>,
    inbox: Receiver<Message>,
    node: Arc<NodeStats>,
    control: Arc<Control>,
) -> Result<Box<dyn Sink>, Error> {
    let _span = tracing::debug_span!("sink.run", sink = %name).entered();
    for message in inbox.iter() {
        if control.failed() {
            break;
        }
        if let Err(e) = sink.write(&message.batch) {
            sink.abort();
            return Err(e.into());
        }
        node.input(message.batch.num_rows());
    }
    Ok(sink)
}

/// One agent instance's task.
struct AgentTask {
    name: String,
    instance: usize,
    spec: AgentSpec,
    pipeline: String,
    runtime: Arc<WasmRuntime>,
    module: Arc<AgentModule>,
    metrics: Arc<AgentMetrics>,
    inbox: Receiver<Message>,
    router: Router,
    node: Arc<NodeStats>,
    control: Arc<Control>,
    dead_letters: Arc<DeadLetters>,
    state: StateScope,
}

impl AgentTask {
    fn run(self) -> Result<(), Error> {
        let _span = tracing::debug_span!("agent.run", agent = %self.name, instance = self.instance)
            .entered();
        let agent_error = |failure| Error::Agent {
            agent: self.name.clone(),
            instance: self.instance,
            failure,
        };
        let mut instance = AgentInstance::start(
            self.runtime.clone(),
            self.module.clone(),
            self.spec.config.clone(),
            self.spec.limits,
            Tags {
                pipeline: self.pipeline.clone(),
                agent: self.name.clone(),
                instance: self.instance,
            },
            self.metrics.clone(),
            self.state.clone(),
        )
        .map_err(agent_error)?;
        let mut restarts = 0;
        for message in self.inbox.iter() {
            if self.control.failed() {
                break;
            }
            self.node.input(message.batch.num_rows());
            let result = instance.process(message.port, &message.batch);
            if instance.restarts() != restarts {
                self.node
                    .restarts
                    .fetch_add(instance.restarts() - restarts, Ordering::Relaxed);
                restarts = instance.restarts();
            }
            match result {
                Ok(outputs) => {
                    for (port, batch) in outputs {
                        self.node.output(batch.num_rows());
                        match self.router.send(port, &batch) {
                            Ok(()) => {}
                            Err(RouteError::Closed) => return Ok(()),
                            Err(RouteError::Partition(e)) => return Err(e),
                        }
                    }
                }
                Err(failure) if !failure.is_batch_failure() => return Err(agent_error(failure)),
                Err(failure) => match self.spec.on_error {
                    OnError::Fail => return Err(agent_error(failure)),
                    OnError::Skip => {
                        self.node.failed_batches.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(agent = %self.name, instance = self.instance, rows = message.batch.num_rows(), reason = %failure, "skipped a batch");
                    }
                    OnError::DeadLetter => {
                        self.node.failed_batches.fetch_add(1, Ordering::Relaxed);
                        self.dead_letters.batch(
                            &self.name,
                            &failure.to_string(),
                            &message.batch,
                        )?;
                    }
                },
            }
        }
        Ok(())
    }
}
