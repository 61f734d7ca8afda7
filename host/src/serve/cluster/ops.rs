//! The cluster's side of each API change: what it checks against the command log, and the
//! record it writes. The replica that took the request has checked what it can locally (the
//! definition builds, the module loads) before; every replica then applies the record.

use std::time::{Duration, Instant};

use super::log::{self, Change, Ended, PipelineRecord, Record, State, SwapRecord, VersionRecord};
use super::{Cluster, status};
use crate::serve::ApiError;
use crate::serve::modules::ModuleInfo;

/// How long a request waits for its change to be applied on the replica that took it.
const APPLY_WAIT: Duration = Duration::from_secs(20);
/// How long `stop?wait=true` waits for every replica to stop.
const STOP_WAIT: Duration = Duration::from_secs(60);

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("no pipeline `{name}` in the cluster"))
}

fn existing<'a>(state: &'a State, name: &str) -> Result<&'a PipelineRecord, ApiError> {
    log::pipeline(state, name).ok_or_else(|| not_found(name))
}

fn put(name: &str, record: PipelineRecord) -> Vec<Change> {
    vec![(log::pipeline_key(name), Some(Record::Pipeline(record)))]
}

impl Cluster {
    /// Defines a pipeline on every replica; refused when the cluster has one of that name.
    pub fn create(&self, text: &str) -> Result<(), ApiError> {
        let name = crate::serve::pipelines::name_of(text)?;
        self.submit(
            &mut |state| {
                if log::pipeline(state, &name).is_some() {
                    return Err(ApiError::conflict(format!(
                        "pipeline `{name}` exists in the cluster: stop and delete it first, or choose another name"
                    )));
                }
                Ok(put(
                    &name,
                    PipelineRecord {
                        text: text.to_owned(),
                        ..PipelineRecord::default()
                    },
                ))
            },
            APPLY_WAIT,
        )
    }

    /// The live replicas on which `name` still runs or stops.
    fn still_running(&self, name: &str) -> Vec<String> {
        self.board
            .pipeline(name)
            .into_iter()
            .filter(|(_, here)| matches!(here.status.as_str(), "running" | "stopping"))
            .map(|(replica, _)| replica)
            .collect()
    }

    /// Refuses while `name` runs or stops on a replica.
    fn stopped_everywhere(&self, name: &str, what: &str) -> Result<(), ApiError> {
        let running = self.still_running(name);
        if running.is_empty() {
            Ok(())
        } else {
            Err(ApiError::conflict(format!(
                "pipeline `{name}` is still stopping on replica {}: {what} once it stopped (GET /v1/cluster)",
                running.join(", ")
            )))
        }
    }

    /// Removes the checkpoints of `name` (and of its partition tasks) from the object store.
    fn clear_checkpoints(&self, name: &str) -> Result<(), ApiError> {
        let unavailable =
            |e: crate::checkpoint::CheckpointError| ApiError::unavailable(e.to_string());
        let root = crate::checkpoint::Remote::open(&self.storage, "").map_err(unavailable)?;
        let partitions = format!("{name}.");
        for under in root.names().map_err(unavailable)? {
            if under == name || under.starts_with(&partitions) {
                root.clear_name(&under).map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// Starts `name` on every replica (each runs what the cluster places on it).
    pub fn start(&self, name: &str, fresh: bool) -> Result<(), ApiError> {
        self.submit(
            &mut |state| {
                let record = existing(state, name)?;
                if record.running {
                    return Err(ApiError::conflict(format!(
                        "pipeline `{name}` is running in the cluster"
                    )));
                }
                if fresh {
                    self.stopped_everywhere(name, "start it from scratch")?;
                    self.clear_checkpoints(name)?;
                }
                let mut record = record.clone();
                record.running = true;
                record.starts += 1;
                record.ended = None;
                Ok(put(name, record))
            },
            APPLY_WAIT,
        )
    }

    /// Stops `name` on every replica; with `wait`, until none runs it.
    pub fn stop(&self, name: &str, wait: bool) -> Result<(), ApiError> {
        self.submit(
            &mut |state| {
                let record = existing(state, name)?;
                if !record.running {
                    return Ok(Vec::new());
                }
                let mut record = record.clone();
                record.running = false;
                Ok(put(name, record))
            },
            APPLY_WAIT,
        )?;
        if wait {
            // Each replica says it stopped in its next heartbeat after its final checkpoint.
            let started = Instant::now();
            std::thread::sleep(status::HEARTBEAT);
            while !self.still_running(name).is_empty() {
                if started.elapsed() > STOP_WAIT {
                    return Err(ApiError::unavailable(format!(
                        "pipeline `{name}` still stops on replica {} after {} s",
                        self.still_running(name).join(", "),
                        STOP_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// Deletes `name` from every replica, with its checkpoints in the object store.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.submit(
            &mut |state| {
                let record = existing(state, name)?;
                if record.running {
                    return Err(ApiError::conflict(format!(
                        "pipeline `{name}` is running: stop it first (POST /v1/pipelines/{name}/stop)"
                    )));
                }
                self.stopped_everywhere(name, "delete it")?;
                self.clear_checkpoints(name)?;
                Ok(vec![(log::pipeline_key(name), None)])
            },
            APPLY_WAIT,
        )
    }

    /// Asks every replica to swap `agent` of `pipeline` from `from` to `to`; returns the swap's
    /// id.
    pub fn swap(
        &self,
        pipeline: &str,
        agent: &str,
        from: VersionRecord,
        to: VersionRecord,
    ) -> Result<u64, ApiError> {
        let id = self.next_swap_id();
        self.submit(
            &mut |state| {
                let record = existing(state, pipeline)?;
                if !record.running {
                    return Err(ApiError::conflict(format!(
                        "pipeline `{pipeline}` is not running: a swap happens at a checkpoint barrier of a running pipeline (start it first)"
                    )));
                }
                if !state.contains_key(&log::module_key(&to.module)) {
                    return Err(ApiError::not_found(format!(
                        "no module {} in the cluster (upload it with POST /v1/modules/NAME/VERSION)",
                        to.module
                    )));
                }
                let mut record = record.clone();
                record.versions.insert(agent.to_owned(), to.clone());
                record.swaps.push(SwapRecord {
                    id,
                    agent: agent.to_owned(),
                    from: from.clone(),
                    to: to.clone(),
                    requested_unix_ms: crate::serve::now_unix_ms(),
                    rolled_back: None,
                });
                let excess = record.swaps.len().saturating_sub(log::KEPT_SWAPS);
                record.swaps.drain(..excess);
                Ok(put(pipeline, record))
            },
            APPLY_WAIT,
        )?;
        Ok(id)
    }

    /// Tells every replica that swap `id` of `pipeline` was rolled back here: they roll it back
    /// too, and its old version is the agent's again.
    pub fn rolled_back(&self, pipeline: &str, id: u64, reason: &str) -> Result<(), ApiError> {
        self.submit(
            &mut |state| {
                let Some(record) = log::pipeline(state, pipeline) else {
                    return Ok(Vec::new());
                };
                let mut record = record.clone();
                let Some(swap) = record.swaps.iter_mut().find(|s| s.id == id) else {
                    return Ok(Vec::new());
                };
                if swap.rolled_back.is_some() {
                    return Ok(Vec::new());
                }
                swap.rolled_back = Some(format!("on replica `{}`: {reason}", self.replica));
                let (agent, from) = (swap.agent.clone(), swap.from.clone());
                // The newest swap of the agent decides its version.
                if record
                    .swaps
                    .iter()
                    .rev()
                    .find(|s| s.agent == agent)
                    .map(|s| s.id)
                    == Some(id)
                {
                    record.versions.insert(agent, from);
                }
                Ok(put(pipeline, record))
            },
            APPLY_WAIT,
        )
    }

    /// Tells every replica how `pipeline` ended here; they stop it.
    pub fn ended(&self, pipeline: &str, ended: Ended) {
        let result = self.submit(
            &mut |state| {
                let Some(record) = log::pipeline(state, pipeline) else {
                    return Ok(Vec::new());
                };
                if !record.running {
                    return Ok(Vec::new());
                }
                let mut record = record.clone();
                record.running = false;
                record.ended = Some(ended.clone());
                Ok(put(pipeline, record))
            },
            APPLY_WAIT,
        );
        if let Err(e) = result {
            tracing::error!(%pipeline, error = %e.message, "cannot tell the cluster how a pipeline ended");
        }
    }

    /// Puts a module uploaded here in the object store and its tag in the command log.
    pub fn publish_module(&self, info: &ModuleInfo, bytes: Vec<u8>) -> Result<(), ApiError> {
        self.put_module(&info.sha256, bytes)?;
        let reference = info.reference();
        self.submit(
            &mut |state| match state.get(&log::module_key(&reference)) {
                Some(Record::Module(m)) if m.sha256 == info.sha256 => Ok(Vec::new()),
                Some(Record::Module(m)) => Err(ApiError::conflict(format!(
                    "module {reference} exists in the cluster with other content (sha256 {}): versions are immutable; upload as a new version",
                    m.sha256
                ))),
                _ => Ok(vec![(
                    log::module_key(&reference),
                    Some(Record::Module(info.clone())),
                )]),
            },
            APPLY_WAIT,
        )
    }

    /// Deletes the tag `name@version` from every replica; refused while a pipeline of the
    /// cluster refers to it.
    pub fn delete_module(&self, name: &str, version: &str) -> Result<(), ApiError> {
        let reference = format!("{name}@{version}");
        self.submit(
            &mut |state| {
                if !state.contains_key(&log::module_key(&reference)) {
                    return Err(ApiError::not_found(format!(
                        "no module {reference} in the cluster"
                    )));
                }
                let user = state.iter().find_map(|(key, r)| match r {
                    Record::Pipeline(p)
                        if crate::serve::pipelines::module_references(&p.text)
                            .is_ok_and(|refs| refs.values().any(|m| *m == reference))
                            || p.versions.values().any(|v| v.module == reference) =>
                    {
                        key.strip_prefix("pipeline/").map(str::to_owned)
                    }
                    _ => None,
                });
                if let Some(p) = user {
                    return Err(ApiError::conflict(format!(
                        "module {reference} is in use by pipeline `{p}`: swap it out or delete the pipeline first"
                    )));
                }
                Ok(vec![(log::module_key(&reference), None)])
            },
            APPLY_WAIT,
        )
    }
}
