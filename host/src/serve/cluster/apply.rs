//! The applier: one thread per replica that reads the command log from the beginning and makes
//! the replica's modules and pipelines match it.
//!
//! Applying is idempotent — each record says what a thing should be, not what to do — so the
//! log read again after a reconnect, or a replica that was down while records came and went,
//! ends in the same place. Once the log was read to its end the first time, everything local
//! that the log does not have is removed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use super::Cluster;
use super::log::{self, PipelineRecord, Record, State};
use crate::serve::pipelines::{Pipelines, Status};

/// How long the applier waits before it reads the log again after losing it.
const RECONNECT: Duration = Duration::from_secs(1);

/// Starts the applier of `cluster` for `pipelines`; it ends with them.
pub(super) fn spawn(cluster: Arc<Cluster>, pipelines: Weak<Pipelines>) {
    let spawned = std::thread::Builder::new()
        .name("cluster-apply".into())
        .spawn(move || {
            let _span = tracing::info_span!("cluster.apply", replica = %cluster.replica).entered();
            while pipelines.strong_count() > 0 {
                if let Err(e) = read(&cluster, &pipelines) {
                    tracing::warn!(error = %e.message, "lost the command log; reading it again");
                    std::thread::sleep(RECONNECT);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the cluster's applier");
    }
}

/// Reads the log until the pipelines are gone (`Ok`) or the log is lost.
fn read(cluster: &Cluster, pipelines: &Weak<Pipelines>) -> Result<(), crate::serve::ApiError> {
    let consumer = log::reader(&cluster.spec, &cluster.spec.commands_topic())?;
    let mut state = State::new();
    let mut caught_up = false;
    let mut next = 0;
    loop {
        let Some(p) = pipelines.upgrade() else {
            return Ok(());
        };
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                next = m.offset() + 1;
                if let Some((key, record)) = log::decode(m.key(), m.payload()) {
                    match &record {
                        Some(r) => state.insert(key.clone(), r.clone()),
                        None => state.remove(&key),
                    };
                    if caught_up && !cluster.is_leaving() {
                        reconcile(cluster, &p, &key, record.as_ref());
                    }
                }
                if caught_up {
                    cluster.set_applied(next);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                if !caught_up {
                    caught_up = true;
                    reconcile_all(cluster, &p, &state);
                    tracing::info!(records = state.len(), "read the command log to its end");
                }
                cluster.set_applied(next);
            }
            Some(Err(e)) if crate::connectors::kafka::client::gives_up(&e) => {
                return Err(log::unavailable(
                    &cluster.spec,
                    "cannot read the command log",
                    e,
                ));
            }
            Some(Err(e)) => tracing::debug!(error = %e, "reading the command log"),
        }
    }
}

/// Makes everything local match `state`: what it has is applied, what it lacks is removed.
fn reconcile_all(cluster: &Cluster, pipelines: &Arc<Pipelines>, state: &State) {
    // Modules first: the pipelines load them.
    for (key, record) in state.iter().filter(|(_, r)| matches!(r, Record::Module(_))) {
        reconcile(cluster, pipelines, key, Some(record));
    }
    for (key, record) in state
        .iter()
        .filter(|(_, r)| matches!(r, Record::Pipeline(_)))
    {
        reconcile(cluster, pipelines, key, Some(record));
    }
    for entry in pipelines.list() {
        if !state.contains_key(&log::pipeline_key(&entry.name)) {
            reconcile(cluster, pipelines, &log::pipeline_key(&entry.name), None);
        }
    }
    for info in pipelines.modules().list() {
        let reference = info.reference();
        if !state.contains_key(&log::module_key(&reference)) {
            reconcile(cluster, pipelines, &log::module_key(&reference), None);
        }
    }
}

/// Makes the thing `key` names match `record` (`None`: removed).
fn reconcile(cluster: &Cluster, pipelines: &Arc<Pipelines>, key: &str, record: Option<&Record>) {
    if let Some(reference) = key.strip_prefix("module/") {
        module(cluster, pipelines, reference, record);
    } else if let Some(name) = key.strip_prefix("pipeline/") {
        match record {
            Some(Record::Pipeline(p)) => pipeline(pipelines, name, p),
            _ => remove_pipeline(pipelines, name),
        }
    } else {
        tracing::warn!(%key, "a command-log key this version does not know; skipped");
    }
}

fn module(cluster: &Cluster, pipelines: &Pipelines, reference: &str, record: Option<&Record>) {
    let store = pipelines.modules();
    let Some((name, version)) = reference.split_once('@') else {
        return;
    };
    match record {
        Some(Record::Module(info)) => {
            if store
                .get(name, version)
                .is_ok_and(|local| local.sha256 == info.sha256)
            {
                return;
            }
            let stored = cluster
                .get_module(&info.sha256)
                .and_then(|bytes| store.put_trusted(info, &bytes).map_err(|e| e.message));
            match stored {
                Ok(()) => {
                    tracing::info!(module = %reference, sha256 = %info.sha256, "module fetched")
                }
                Err(e) => {
                    tracing::error!(module = %reference, error = %e, "cannot fetch a module of the cluster")
                }
            }
        }
        _ => {
            if store.get(name, version).is_ok() {
                let _ = store.delete(name, version);
            }
        }
    }
}

fn remove_pipeline(pipelines: &Pipelines, name: &str) {
    if pipelines.get(name).is_err() {
        return;
    }
    // The log deletes stopped pipelines only; this replica may still be writing its final
    // checkpoint.
    let _ = pipelines.stop_local(name, true);
    match pipelines.delete_local(name) {
        Ok(()) => tracing::info!(pipeline = %name, "pipeline deleted"),
        Err(e) => tracing::error!(pipeline = %name, error = %e.message, "cannot delete a pipeline"),
    }
}

fn pipeline(pipelines: &Arc<Pipelines>, name: &str, record: &PipelineRecord) {
    let defined = pipelines
        .get(name)
        .is_ok_and(|entry| entry.text == record.text);
    if !defined {
        if pipelines.get(name).is_ok() {
            remove_pipeline(pipelines, name);
        }
        if let Err(e) = pipelines.define(&record.text, record) {
            tracing::error!(pipeline = %name, error = %e.message, "cannot define a pipeline of the cluster");
            return;
        }
    }
    if let Err(e) = pipelines.apply_versions(name, record) {
        tracing::error!(pipeline = %name, error = %e.message, "cannot apply a swap of the cluster");
    }
    let Ok(entry) = pipelines.get(name) else {
        return;
    };
    let (status, _) = entry.status();
    let active = matches!(status, Status::Running | Status::Stopping);
    if record.running && !active {
        if let Err(e) = pipelines.start_local(name, false) {
            tracing::error!(pipeline = %name, error = %e.message, "cannot start a pipeline of the cluster");
        }
    } else if !record.running && active {
        let _ = pipelines.stop_local(name, false);
    }
    if !record.running
        && let Some(ended) = &record.ended
    {
        pipelines.mark_ended(name, ended);
    }
}
