//! Scale-out: several `sabot` processes share the partitions of a Kafka source, as members of its
//! consumer group, the way Kafka Streams instances share an application's tasks.
//!
//! A pipeline with `[pipeline.scale_out]` runs one copy per partition of that source (a *partition
//! task*, [`crate::Pipeline::for_partition`]), on whichever process the group assigns the partition
//! to. Each task keeps its checkpoints and its exactly-once sinks' pending output under
//! `shared_dir/PIPELINE/TOPIC.PARTITION/`, a directory every process reaches, and its working
//! state under the process's own data directory:
//!
//! ```text
//!   process A ── member of group G ── partitions 0, 1 ──► task p0, task p1 ─┐
//!   process B ── member of group G ── partitions 2, 3 ──► task p2, task p3 ─┼─► shared_dir/PIPELINE/TOPIC.P/
//!                                                                          │     checkpoints/, sinks/, .lock
//! ```
//!
//! When a partition moves — a process joins, leaves, or dies and its session times out — the
//! member that loses it stops its task with a final checkpoint before the group hands it on
//! (cooperative rebalancing: only moved partitions stop), and the member that gains it starts
//! the task, which resumes from the partition's newest checkpoint: state, offsets, and pending
//! transactions re-committed. The partition directory's lock admits one task at a time, so a new
//! owner waits for the old one to let go; a dead one lets go at once. The exactly-once sinks'
//! `transactional.id` is per partition, so a new owner also fences any producer the old one left.
//!
//! With checkpoints in object storage (`[pipeline.checkpoint.storage]`, no `shared_dir`), each
//! task keeps its checkpoints in its own local directory and uploads them under the name
//! `PIPELINE.TOPIC.PARTITION`; a new owner downloads the newest. No lock spans machines then:
//! the group revokes a partition before it assigns it elsewhere, the sinks' per-partition
//! `transactional.id` fences a previous owner's producer, and a checkpoint's metadata is
//! written with a conditional put where the store has one.
//!
//! The group member itself reads no records: its partitions stay paused, and it commits each
//! task's checkpointed offsets to the group so lag tools see progress. Keyed state is correct
//! when every record of a key is in one partition — what Kafka's default partitioner does with
//! record keys.

mod membership;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::connectors::SourceSpec;
use crate::connectors::kafka::kafka_error;
use crate::{Error, Pipeline};
use membership::{Membership, Tasks};

/// How long one poll of the group member waits.
const POLL: Duration = Duration::from_millis(200);
/// How often the member commits the offsets of new checkpoints to the group.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How to run a scaled-out pipeline.
#[derive(Default)]
pub struct ScaleOutOptions {
    /// Set to stop: every partition task stops with a final checkpoint, then the process leaves
    /// the group (its partitions move to the other members at once).
    pub stop: Arc<AtomicBool>,
    /// Where this process keeps the working state of the partitions it runs (a temporary
    /// directory when `None`). Checkpoints go to the pipeline's `shared_dir`, or are uploaded
    /// to its object store.
    pub data_dir: Option<PathBuf>,
    /// The live view the partition tasks share: the version each agent runs (a hot swap
    /// reaches every task at its next barrier), their metrics, checkpoints on demand.
    pub live: Option<Arc<crate::dataflow::Live>>,
    /// Told of every partition this process gains or loses.
    pub on_event: Option<OnEvent>,
    /// Counters every partition task adds to as it runs (the rows in and out of each node).
    pub stats: Option<Arc<crate::dataflow::RunStats>>,
}

/// A callback told of partition [`Event`]s.
pub type OnEvent = Arc<dyn Fn(&Event) + Send + Sync>;

/// Something that happened to a partition on this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The group assigned the partition here; its task starts.
    Assigned { topic: String, partition: i32 },
    /// The partition's directory is still locked by its previous owner; the task waits.
    Waiting { topic: String, partition: i32 },
    /// The task stopped because the partition moved away (or this process stops), after a final
    /// checkpoint when it could take one.
    Released {
        topic: String,
        partition: i32,
        final_checkpoint: Option<u64>,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Assigned { topic, partition } => {
                write!(f, "partition {topic}/{partition} assigned here")
            }
            Event::Waiting { topic, partition } => write!(
                f,
                "partition {topic}/{partition} waits for its previous owner to let go"
            ),
            Event::Released {
                topic,
                partition,
                final_checkpoint: Some(id),
            } => write!(
                f,
                "partition {topic}/{partition} released after checkpoint {id}"
            ),
            Event::Released {
                topic, partition, ..
            } => write!(f, "partition {topic}/{partition} released"),
        }
    }
}

/// The outcome of a scaled-out run that stopped without failing.
#[derive(Debug, Clone)]
pub struct ScaleOutSummary {
    pub pipeline: String,
    /// Rows read by all the partition tasks this process ran.
    pub events_in: u64,
    /// Rows their sinks accepted.
    pub events_out: u64,
    /// Partition tasks this process started (a partition that came back counts again).
    pub tasks: u64,
    pub elapsed: Duration,
}

/// Runs `pipeline` (which has `[pipeline.scale_out]`) as one member of its source's consumer
/// group until `options.stop` is set or a partition task fails.
pub fn run(pipeline: &Pipeline, options: ScaleOutOptions) -> Result<ScaleOutSummary, Error> {
    let spec = pipeline.spec();
    let Some(scale) = spec.scale_out.clone() else {
        return Err(Error::Internal(format!(
            "pipeline `{}` has no [pipeline.scale_out]",
            spec.name
        )));
    };
    let Some(SourceSpec::Kafka(source)) = spec.sources.get(&scale.source) else {
        return Err(Error::Internal(format!(
            "the scale-out source `{}` is not a Kafka source",
            scale.source
        )));
    };
    let _span = tracing::info_span!("scaleout.run", pipeline = %spec.name).entered();
    let started = Instant::now();
    // Where the partitions' checkpoints are: a shared directory, or the object store.
    let shared = match &scale.shared_dir {
        Some(dir) => {
            let shared = dir.join(&spec.name);
            std::fs::create_dir_all(&shared)
                .map_err(|e| crate::checkpoint::CheckpointError::io("create", &shared, e))?;
            Some(shared)
        }
        None if spec
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.storage.is_some()) =>
        {
            None
        }
        None => {
            return Err(Error::Usage(format!(
                "pipeline `{}`: [pipeline.scale_out] needs `shared_dir`, or checkpoints in object storage ([pipeline.checkpoint.storage]): a partition that moves resumes from checkpoints every process reaches",
                spec.name
            )));
        }
    };
    let (local, temporary) = match &options.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("sabot-{}-{}", spec.name, std::process::id())),
            true,
        ),
    };
    let group = source.group_of(&scale.source);
    let tasks = Arc::new(Tasks::new(
        pipeline.clone(),
        (scale.source.clone(), group.clone()),
        shared,
        local.join("partitions"),
        &options,
    ));

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.bootstrap)
        .set("group.id", &group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    for (k, v) in &source.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer<Membership> = config
        .create_with_context(Membership::new(tasks.clone()))
        .map_err(|e| kafka_error(&scale.source, "cannot create the group member", e))?;
    let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kafka_error(&scale.source, "cannot join the consumer group", e))?;
    tracing::info!(group = %group, topics = ?source.topics, "joined the consumer group");

    let mut last_commit = Instant::now();
    while !options.stop.load(Ordering::Relaxed) && !tasks.failed() {
        // The member's partitions are paused: a poll serves the group protocol, rebalances
        // (which start and stop tasks) and commits, and returns no records.
        if let Some(Err(e)) = consumer.poll(POLL) {
            tracing::warn!(group = %group, error = %e, "consumer group");
        }
        tasks.reap();
        if last_commit.elapsed() >= COMMIT_EVERY {
            membership::commit(&consumer, &tasks.new_offsets());
            last_commit = Instant::now();
        }
    }
    // Stop every task with a final checkpoint before leaving, so the partitions' next owners
    // resume from everything this process did.
    membership::commit(&consumer, &tasks.stop_all());
    consumer.unsubscribe();
    drop(consumer); // leaves the group
    if temporary {
        let _ = std::fs::remove_dir_all(&local);
    }
    if let Some(e) = tasks.take_failure() {
        return Err(e);
    }
    let (events_in, events_out, count) = tasks.totals();
    Ok(ScaleOutSummary {
        pipeline: spec.name.clone(),
        events_in,
        events_out,
        tasks: count,
        elapsed: started.elapsed(),
    })
}
