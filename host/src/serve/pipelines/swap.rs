//! Hot swaps on a server: asked by [`Pipelines::swap`], watched by the swap monitor (a thread
//! that looks at every swap under way each [`MONITOR_TICK`]), which moves each through
//! pending → probation → active, or rolls it back.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Entry, Inner, Pipelines, Status, SwappedVersion, cluster_log};
use crate::dataflow::{SwapOutcome, Version};
use crate::serve::cluster::log::VersionRecord;
use crate::serve::{ApiError, now_unix_ms};

/// How long a swap may wait for its barrier before it is given up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the monitor looks at swaps.
pub(super) const MONITOR_TICK: Duration = Duration::from_millis(10);

/// Where a swap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapState {
    /// Waiting for the instances to reach a barrier.
    Pending,
    /// Every instance runs the new version; a trap now rolls back.
    Probation,
    /// Done: the new version stays.
    Active,
    /// The old version is back; `reason` says why.
    RolledBack,
}

/// A swap, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub id: u64,
    pub agent: String,
    pub from: String,
    pub to: String,
    pub state: SwapState,
    pub reason: Option<String>,
    pub requested_unix_ms: u64,
    /// The checkpoint barrier at which the instances switched.
    pub checkpoint: Option<u64>,
    /// The longest pause an instance's switch caused in its data path, microseconds.
    pub pause_us: Option<u64>,
    /// From the request to every instance running the new version, microseconds.
    pub switch_us: Option<u64>,
    #[serde(skip)]
    generation: u64,
    #[serde(skip)]
    old: Version,
    #[serde(skip)]
    new: Version,
    #[serde(skip)]
    requested: Instant,
    #[serde(skip)]
    probation_since: Option<Instant>,
    #[serde(skip)]
    traps_before: u64,
    #[serde(skip)]
    started: usize,
    /// Whether the cluster was told of its rollback (or told this replica of it).
    #[serde(skip)]
    reported: bool,
}

impl Pipelines {
    /// Swaps `agent` of `pipeline` to the module `reference` (with `config`, else the config it
    /// runs with) at the next checkpoint barrier; in a cluster, on every replica.
    pub fn swap(
        &self,
        pipeline: &str,
        agent: &str,
        reference: &str,
        config: Option<String>,
    ) -> Result<Swap, ApiError> {
        let entry = self.get(pipeline)?;
        let cell = entry.live.version(agent).cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "pipeline `{pipeline}` has no agent `{agent}` (agents: {})",
                entry
                    .spec()
                    .agents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let (_, module) = self.modules.load(&self.runtime, reference)?;
        {
            let inner = entry.inner();
            if inner.status != Status::Running {
                return Err(ApiError::conflict(format!(
                    "pipeline `{pipeline}` is not running: a swap happens at a checkpoint barrier of a running pipeline (start it first)"
                )));
            }
            if let Some(s) = inner.swaps.iter().find(|s| {
                s.agent == agent && matches!(s.state, SwapState::Pending | SwapState::Probation)
            }) {
                return Err(ApiError::conflict(format!(
                    "agent `{agent}` is already being swapped to {} (swap {}, {:?}): wait for it to end",
                    s.to, s.id, s.state
                )));
            }
        }
        let (_, old) = cell.current();
        let config = config.unwrap_or_else(|| old.config.clone());
        if let Some(cluster) = &self.settings.cluster {
            let from = VersionRecord {
                module: old.label.clone(),
                config: old.config.clone(),
            };
            let to = VersionRecord {
                module: reference.to_owned(),
                config,
            };
            let id = cluster.swap(pipeline, agent, from, to)?;
            return entry
                .swaps()
                .into_iter()
                .find(|s| s.id == id)
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "swap {id} was written to the command log but not applied here"
                    ))
                });
        }
        let new = Version {
            module,
            config,
            label: reference.to_owned(),
        };
        let id = self.next_swap.fetch_add(1, Ordering::Relaxed);
        Ok(self.swap_local(&entry, agent, new, id))
    }

    /// Makes `version` current for `agent` as swap `id`, watched by the monitor.
    fn swap_local(&self, entry: &Entry, agent: &str, new: Version, id: u64) -> Swap {
        let cell = entry.live.version(agent).expect("checked by the caller");
        let (_, old) = cell.current();
        cell.take_reports();
        let generation = cell.set(new.clone());
        let swap = Swap {
            id,
            agent: agent.to_owned(),
            from: old.label.clone(),
            to: new.label.clone(),
            state: SwapState::Pending,
            reason: None,
            requested_unix_ms: now_unix_ms(),
            checkpoint: None,
            pause_us: None,
            switch_us: None,
            generation,
            old: (*old).clone(),
            new,
            requested: Instant::now(),
            probation_since: None,
            traps_before: 0,
            started: 0,
            reported: false,
        };
        entry.inner().swaps.push(swap.clone());
        entry.live.checkpoint_now();
        tracing::info!(pipeline = %entry.name, agent, id, from = %swap.from, to = %swap.to, "swap requested");
        swap
    }

    /// The version `v` names for `agent` of `entry`: its definition's module, or an uploaded one.
    fn version_of(
        &self,
        entry: &Entry,
        agent: &str,
        v: &VersionRecord,
    ) -> Result<Version, ApiError> {
        let defined = super::module_references(&entry.text)?;
        let mut version = if defined.get(agent) == Some(&v.module) {
            entry.pipeline.version(agent)
        } else {
            let (_, module) = self.modules.load(&self.runtime, &v.module)?;
            Version {
                module,
                config: String::new(),
                label: String::new(),
            }
        };
        version.config = v.config.clone();
        version.label = v.module.clone();
        Ok(version)
    }

    /// Makes the agents of `name` run the versions its cluster record says, as the swaps it
    /// lists: a new version as that swap (watched here like any), a rolled-back one by rolling
    /// the local swap back.
    pub fn apply_versions(
        &self,
        name: &str,
        record: &cluster_log::PipelineRecord,
    ) -> Result<(), ApiError> {
        let entry = self.get(name)?;
        // Swaps another replica rolled back roll back here too.
        for r in record.swaps.iter().filter(|r| r.rolled_back.is_some()) {
            let mut inner = entry.inner();
            if let Some(local) = inner.swaps.iter_mut().find(|s| {
                s.id == r.id && matches!(s.state, SwapState::Pending | SwapState::Probation)
            }) && let Some(cell) = entry.live.version(&local.agent)
            {
                let reason = r.rolled_back.clone().unwrap_or_default();
                roll_back(&entry.name, local, cell, reason);
                local.reported = true;
            }
        }
        let defined = super::module_references(&entry.text)?;
        for (agent, cell) in entry.live.versions() {
            let desired = match record.versions.get(agent) {
                Some(v) => v.clone(),
                None => VersionRecord {
                    module: defined.get(agent).cloned().unwrap_or_default(),
                    config: entry.pipeline.version(agent).config,
                },
            };
            let (_, current) = cell.current();
            if current.label == desired.module && current.config == desired.config {
                continue;
            }
            let version = self.version_of(&entry, agent, &desired)?;
            let swap = record
                .swaps
                .iter()
                .rev()
                .find(|s| &s.agent == agent && s.to == desired && s.rolled_back.is_none());
            match swap {
                Some(s) if !entry.swaps().iter().any(|l| l.id == s.id) => {
                    self.swap_local(&entry, agent, version, s.id);
                }
                _ => {
                    cell.set(version);
                    entry.live.checkpoint_now();
                }
            }
        }
        Ok(())
    }

    /// One look at every swap under way.
    pub(super) fn watch_swaps(&self) {
        let mut rolled_back = Vec::new();
        for entry in self.list() {
            let mut inner = entry.inner();
            let probation = self.settings.probation;
            let mut save = false;
            let Inner { swaps, control, .. } = &mut *inner;
            for swap in swaps
                .iter_mut()
                .filter(|s| matches!(s.state, SwapState::Pending | SwapState::Probation))
            {
                let Some(cell) = entry.live.version(&swap.agent) else {
                    continue;
                };
                if self.settings.cluster.is_some()
                    && swap.state == SwapState::Pending
                    && entry.live.runs() == 0
                {
                    // Nothing of the pipeline runs on this replica: there is nothing to switch
                    // here (a run that starts later starts with the new version).
                    swap.state = SwapState::Active;
                    continue;
                }

                // Every instance of every run (a scaled-out pipeline runs one per partition
                // here) switches.
                let instances =
                    entry.spec().agents[&swap.agent].parallelism * entry.live.runs().max(1);
                let traps = || entry.live.traps(&swap.agent);
                let mut failed = None;
                for r in cell.take_reports() {
                    if r.generation != swap.generation {
                        continue;
                    }
                    swap.checkpoint = Some(r.checkpoint);
                    match r.outcome {
                        SwapOutcome::Started { pause } => {
                            swap.started += 1;
                            swap.pause_us =
                                Some(swap.pause_us.unwrap_or(0).max(pause.as_micros() as u64));
                        }
                        SwapOutcome::Failed { reason } => {
                            failed = Some(format!(
                                "instance {} could not start {}: {reason}",
                                r.instance, swap.to
                            ))
                        }
                    }
                }
                if let Some(reason) = failed {
                    roll_back(&entry.name, swap, cell, reason);
                    entry.live.checkpoint_now();
                    continue;
                }
                match swap.state {
                    SwapState::Pending if swap.started >= instances => {
                        swap.state = SwapState::Probation;
                        swap.probation_since = Some(Instant::now());
                        swap.switch_us = Some(swap.requested.elapsed().as_micros() as u64);
                        swap.traps_before = traps().0;
                        tracing::info!(pipeline = %entry.name, agent = %swap.agent, version = %swap.to, pause_us = swap.pause_us, "every instance runs the new version; on probation");
                    }
                    SwapState::Pending if swap.requested.elapsed() > SWAP_TIMEOUT => {
                        roll_back(
                            &entry.name,
                            swap,
                            cell,
                            format!(
                                "no checkpoint barrier reached every instance within {} s",
                                SWAP_TIMEOUT.as_secs()
                            ),
                        );
                    }
                    SwapState::Probation => {
                        let (now, last) = traps();
                        // Under `on_error = fail` a trap fails the run, and the supervisor rolls
                        // back and restarts it; otherwise the trap was skipped or dead-lettered,
                        // and rolling back at the next barrier is enough.
                        let fails_run = entry.spec().agents[&swap.agent].on_error
                            == crate::connectors::OnError::Fail;
                        if now > swap.traps_before && !fails_run {
                            let reason = format!(
                                "{} trapped within its probation of {} ms: {}",
                                swap.to,
                                probation.as_millis(),
                                last.unwrap_or_default()
                            );
                            roll_back(&entry.name, swap, cell, reason);
                            entry.live.checkpoint_now();
                        } else if swap
                            .probation_since
                            .is_some_and(|t| t.elapsed() >= probation)
                        {
                            swap.state = SwapState::Active;
                            control.versions.insert(
                                swap.agent.clone(),
                                SwappedVersion {
                                    module: swap.to.clone(),
                                    config: swap.new.config.clone(),
                                },
                            );
                            save = true;
                            tracing::info!(pipeline = %entry.name, agent = %swap.agent, version = %swap.to, "swap active");
                        }
                    }
                    _ => {}
                }
            }
            if save {
                entry.save_control(control);
            }
            if self.settings.cluster.is_some() {
                for swap in swaps
                    .iter_mut()
                    .filter(|s| s.state == SwapState::RolledBack && !s.reported)
                {
                    swap.reported = true;
                    rolled_back.push((
                        entry.name.clone(),
                        swap.id,
                        swap.reason.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        // Every replica rolls back: the cluster is told, off the monitor's thread.
        if let Some(cluster) = &self.settings.cluster {
            for (pipeline, id, reason) in rolled_back {
                let cluster = cluster.clone();
                let _ = std::thread::Builder::new()
                    .name("swap-rollback".into())
                    .spawn(move || {
                        if let Err(e) = cluster.rolled_back(&pipeline, id, &reason) {
                            tracing::error!(%pipeline, swap = id, error = %e.message, "cannot tell the cluster of a rollback");
                        }
                    });
            }
        }
    }
}

/// Puts the old version back.
pub(super) fn roll_back(
    pipeline: &str,
    swap: &mut Swap,
    cell: &crate::dataflow::AgentVersion,
    reason: String,
) {
    tracing::warn!(pipeline, agent = %swap.agent, from = %swap.to, to = %swap.from, %reason, "rolling back a swap");
    cell.set(swap.old.clone());
    swap.state = SwapState::RolledBack;
    swap.reason = Some(reason);
}
