//! The supervisor: the thread that runs one pipeline of the server, and runs it again from its
//! newest checkpoint when a version on probation failed it.

use std::sync::Arc;

use super::swap::roll_back;
use super::{Entry, Status, SwapState};
use crate::dataflow::RunStats;
use crate::serve::cluster::log::Ended;
use crate::serve::cluster::{Cluster, placement};
use crate::serve::logs::GuestLogs;
use crate::{Error, Pipeline, RunOptions};

/// Runs one pipeline; restarts it (from the newest checkpoint) when it failed because of a
/// version on probation, after putting the old version back.
pub(super) struct Supervisor {
    pub(super) entry: Arc<Entry>,
    /// What runs: the entry's pipeline, or the same definition with its secrets resolved anew.
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) logs: Arc<GuestLogs>,
    /// In a cluster, the run is placed by it, and how it ends is told to it.
    pub(super) cluster: Option<Arc<Cluster>>,
}

impl Supervisor {
    pub(super) fn run(self, fresh: bool) {
        let entry = &self.entry;
        let _span = tracing::info_span!("pipeline.supervise", pipeline = %entry.name).entered();
        let _ = &self.logs;
        let mut fresh = fresh;
        loop {
            let (stop, stats) = {
                let mut inner = entry.inner();
                inner.stats = Arc::new(RunStats::for_pipeline(entry.spec()));
                inner.runs += 1;
                (inner.stop.clone(), inner.stats.clone())
            };
            let options = RunOptions {
                stop: stop.clone(),
                stats: Some(stats),
                data_dir: Some(entry.dir.join("run")),
                fresh,
                live: Some(entry.live.clone()),
                work_dir: None,
            };
            let result = match &self.cluster {
                Some(cluster) => placement::run(cluster, &self.pipeline, options, &entry.placed),
                None => self.pipeline.run(options),
            };
            fresh = false;
            let mut inner = entry.inner();
            match result {
                Ok(summary) => {
                    inner.status = if summary.interrupted {
                        Status::Stopped
                    } else {
                        Status::Finished
                    };
                    if inner.status == Status::Finished {
                        inner.control.running = false;
                        entry.save_control(&inner.control);
                    }
                    for s in inner
                        .swaps
                        .iter_mut()
                        .filter(|s| s.state == SwapState::Probation)
                    {
                        // The input ended within the window without a trap.
                        s.state = SwapState::Active;
                    }
                    for s in inner
                        .swaps
                        .iter_mut()
                        .filter(|s| s.state == SwapState::Pending)
                    {
                        if let Some(cell) = entry.live.version(&s.agent) {
                            roll_back(&entry.name, s, cell, "the pipeline stopped before a checkpoint barrier reached every instance".into());
                        }
                    }
                    tracing::info!(
                        events_in = summary.events_in,
                        events_out = summary.events_out,
                        "pipeline ended"
                    );
                    let finished = inner.status == Status::Finished;
                    drop(inner);
                    if finished && let Some(cluster) = &self.cluster {
                        // Its input ended here: every replica stops it.
                        cluster.ended(
                            &entry.name,
                            Ended::Finished {
                                replica: cluster.replica.clone(),
                            },
                        );
                    }
                    return;
                }
                Err(error) => {
                    // Whatever the error quotes, the values of secrets are not shown or logged.
                    let shown = self.pipeline.spec().secrets.redact(&error.to_string());
                    let failed_agent = match &error {
                        Error::Agent { agent, .. } => Some(agent.clone()),
                        _ => None,
                    };
                    let wanted = inner.control.running;
                    let on_trial = failed_agent.as_ref().and_then(|agent| {
                        inner.swaps.iter_mut().find(|s| {
                            &s.agent == agent
                                && matches!(s.state, SwapState::Pending | SwapState::Probation)
                        })
                    });
                    match on_trial {
                        Some(swap) if wanted => {
                            let reason = format!("{} failed the pipeline: {shown}", swap.to);
                            if let Some(cell) = entry.live.version(&swap.agent) {
                                roll_back(&entry.name, swap, cell, reason);
                            }
                            inner.restarts += 1;
                            tracing::warn!(
                                "restarting the pipeline from its newest checkpoint with the old version"
                            );
                            // The failed run set its stop flag; the next run gets a new one.
                            inner.stop = Arc::default();
                            continue;
                        }
                        _ => {
                            inner.status = Status::Failed;
                            tracing::error!(error = %shown, "pipeline failed");
                            inner.error = Some(shown.clone());
                            drop(inner);
                            if wanted && let Some(cluster) = &self.cluster {
                                cluster.ended(
                                    &entry.name,
                                    Ended::Failed {
                                        replica: cluster.replica.clone(),
                                        error: shown,
                                    },
                                );
                            }
                            return;
                        }
                    }
                }
            }
        }
    }
}
