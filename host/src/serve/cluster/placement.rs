//! Where a started pipeline runs in the cluster, chosen by Kafka's consumer groups.
//!
//! - With `[pipeline.scale_out]`: every replica is a member of the source's consumer group
//!   and runs a task for each partition the group gives it ([`crate::scaleout`]); their
//!   checkpoints are in the object store under `PIPELINE.TOPIC.PARTITION`.
//! - Otherwise the pipeline is a *singleton*: every replica joins the group
//!   `_sabot-CLUSTER-PIPELINE` on the one-partition topic `_sabot-CLUSTER-placement`, and the
//!   replica the group gives that partition runs the whole pipeline. When it dies, the group
//!   gives the partition to another after `session_timeout_ms`, which resumes from the newest
//!   checkpoint in the object store. A replica that loses the partition in a rebalance stops
//!   its run (with a final checkpoint) before the group hands the partition on.
//!
//! The placement topic carries no records: members keep their partition paused.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

use super::{Cluster, log};
use crate::connectors::SourceSpec;
use crate::connectors::kafka::client::Diagnosis;
use crate::dataflow::RunStats;
use crate::{Error, Pipeline, RunOptions, RunSummary};

/// What a replica runs of a pipeline: `whole`, or `TOPIC/PARTITION` for each partition task.
pub type Placed = Arc<Mutex<BTreeSet<String>>>;

/// The task name of a singleton's run.
pub const WHOLE: &str = "whole";

/// Runs `pipeline` where the cluster places it, until `options.stop` is set (`interrupted`),
/// its input ends here (not interrupted), or it fails.
pub fn run(
    cluster: &Cluster,
    pipeline: &Pipeline,
    options: RunOptions,
    placed: &Placed,
) -> Result<RunSummary, Error> {
    let session = cluster.spec.session_timeout_ms.to_string();
    match pipeline.spec().scale_out.clone() {
        Some(scale) => {
            // The source's group expires a dead replica as fast as the cluster's groups.
            let pipeline = pipeline.with_spec(|spec| {
                if let Some(SourceSpec::Kafka(k)) = spec.sources.get_mut(&scale.source) {
                    k.properties
                        .entry("session.timeout.ms".into())
                        .or_insert(session);
                }
            });
            let started = Instant::now();
            let on_event = {
                let placed = placed.clone();
                Arc::new(move |event: &crate::scaleout::Event| {
                    let mut placed = placed.lock().unwrap_or_else(|p| p.into_inner());
                    match event {
                        crate::scaleout::Event::Assigned { topic, partition } => {
                            placed.insert(format!("{topic}/{partition}"));
                        }
                        crate::scaleout::Event::Released {
                            topic, partition, ..
                        } => {
                            placed.remove(&format!("{topic}/{partition}"));
                        }
                        crate::scaleout::Event::Waiting { .. } => {}
                    }
                })
            };
            let stats = options.stats.clone();
            let summary = crate::scaleout::run(
                &pipeline,
                crate::scaleout::ScaleOutOptions {
                    stop: options.stop.clone(),
                    data_dir: options.data_dir.clone(),
                    on_event: Some(on_event),
                    live: options.live.clone(),
                    stats: stats.clone(),
                },
            );
            placed.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let summary = summary?;
            Ok(stopped(
                &pipeline,
                stats,
                summary.events_in,
                summary.events_out,
                started,
            ))
        }
        None => singleton(cluster, pipeline, options, placed, &session),
    }
}

/// The summary of a run that was asked to stop.
fn stopped(
    pipeline: &Pipeline,
    stats: Option<Arc<RunStats>>,
    events_in: u64,
    events_out: u64,
    started: Instant,
) -> RunSummary {
    RunSummary {
        pipeline: pipeline.spec().name.clone(),
        events_in,
        events_out,
        elapsed: started.elapsed(),
        failed_batches: 0,
        dead_letters: 0,
        interrupted: true,
        stats: stats.unwrap_or_else(|| Arc::new(RunStats::for_pipeline(pipeline.spec()))),
        agent_metrics: Default::default(),
        restored_from: None,
        checkpoints: 0,
        final_checkpoint: None,
    }
}

/// The run of a singleton on this replica, while it owns the placement partition.
struct Owned {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<RunSummary, Error>>,
}

/// The group member's context: losing the partition stops the run first.
struct Member {
    diagnosis: Diagnosis,
    owner: Mutex<bool>,
    run: Mutex<Option<Owned>>,
    /// The outcome of a run stopped by a rebalance, when it failed.
    failed: Mutex<Option<Error>>,
}

impl ClientContext for Member {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.diagnosis.log(level, fac, message);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.diagnosis.error(error, reason);
    }
}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance
            && tpl.count() > 0
        {
            *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = false;
            self.stop_run();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && tpl.count() > 0
        {
            let _ = consumer.pause(tpl);
            *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
    }
}

impl Member {
    /// Stops the run, if one goes, and waits for its final checkpoint.
    fn stop_run(&self) {
        let owned = self.run.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(owned) = owned {
            owned.stop.store(true, Ordering::SeqCst);
            match owned.thread.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
                Err(_) => {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Error::Internal("a pipeline's run panicked".into()));
                }
            }
        }
    }
}

fn singleton(
    cluster: &Cluster,
    pipeline: &Pipeline,
    options: RunOptions,
    placed: &Placed,
    session: &str,
) -> Result<RunSummary, Error> {
    let name = &pipeline.spec().name;
    let started = Instant::now();
    let group = format!("_sabot-{}-{name}", cluster.spec.name);
    let mut config = log::client_config(&cluster.spec);
    config
        .set("group.id", &group)
        .set("session.timeout.ms", session)
        .set("heartbeat.interval.ms", "1000")
        .set("enable.auto.commit", "false")
        // Sticky: a replica joining or leaving does not move a singleton that runs.
        .set("partition.assignment.strategy", "cooperative-sticky");
    let member = Member {
        diagnosis: Diagnosis::default(),
        owner: Mutex::new(false),
        run: Mutex::new(None),
        failed: Mutex::new(None),
    };
    let consumer: BaseConsumer<Member> = config
        .create_with_context(member)
        .map_err(|e| Error::Usage(format!("cannot join the cluster's group `{group}`: {e}")))?;
    consumer
        .subscribe(&[&cluster.spec.placement_topic()])
        .map_err(|e| Error::Usage(format!("cannot join the cluster's group `{group}`: {e}")))?;
    let set_placed = |whole: bool| {
        let mut p = placed.lock().unwrap_or_else(|p| p.into_inner());
        p.clear();
        if whole {
            p.insert(WHOLE.to_owned());
        }
    };
    let outcome = loop {
        if options.stop.load(Ordering::Relaxed) {
            break None;
        }
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(200)) {
            tracing::debug!(group = %group, error = %e, "placement group");
        }
        let member = consumer.context();
        if let Some(e) = member
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            break Some(Err(e));
        }
        let owner = *member.owner.lock().unwrap_or_else(|p| p.into_inner());
        let mut run = member.run.lock().unwrap_or_else(|p| p.into_inner());
        match run.take() {
            Some(owned) if owned.thread.is_finished() => {
                let result = owned
                    .thread
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("a pipeline's run panicked".into())));
                set_placed(false);
                match result {
                    // Asked to stop by a rebalance: the partition went elsewhere.
                    Ok(summary) if summary.interrupted => {}
                    other => break Some(other),
                }
            }
            Some(owned) => *run = Some(owned),
            None if owner => {
                let stop = Arc::new(AtomicBool::new(false));
                let options = RunOptions {
                    stop: stop.clone(),
                    ..options.clone()
                };
                let copy = pipeline.clone();
                tracing::info!(pipeline = %name, replica = %cluster.replica, "placed here; running");
                let thread = std::thread::Builder::new()
                    .name(format!("run-{name}"))
                    .spawn(move || copy.run(options))
                    .map_err(|e| Error::Internal(format!("cannot start a run thread: {e}")))?;
                *run = Some(Owned { stop, thread });
                set_placed(true);
            }
            None => {}
        }
    };
    consumer.context().stop_run();
    set_placed(false);
    // Leaving the group hands the partition on at once.
    consumer.unsubscribe();
    drop(consumer);
    match outcome {
        Some(result) => result,
        None => Ok(stopped(pipeline, options.stats.clone(), 0, 0, started)),
    }
}
