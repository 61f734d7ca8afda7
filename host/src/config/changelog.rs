//! Changelogs in a pipeline: which edges carry one, and whether what receives it can apply it.
//!
//! A `builtin:aggregate` (a `GROUP BY` without a window) emits a changelog — each group's new
//! result whenever it changes, with an `_op` column saying `upsert` or `delete` (see
//! `sabot_sdk::changelog`), and so does a `builtin:join` with `aggregates` (an interval join
//! grouped by its key, emitting each key's result when its intervals end) unless its config
//! says `left_unique` (each key's result is then emitted once, final). The built-in
//! filter and project keep a changelog a changelog; a window, join or top-N cannot read one,
//! except a lookup join's right side whose `op` is `_op`;
//! an aggregate or an over-aggregate reads one when its config names the changelog's key
//! (`changelog_key`), and an over-aggregate of a changelog emits one itself; a
//! `builtin:view` applies it; user agents receive it as it is.
//! Of the sinks, a Kafka sink with a `key` applies it (upserts as records, deletes as
//! tombstones), stdout prints it and the blackhole drops it; a file can only append, so a
//! changelog reaching one is refused here, before anything runs.

use std::collections::BTreeSet;

use super::PipelineSpec;
use crate::connectors::SinkSpec;
use crate::connectors::kafka::KafkaFormat;
use crate::wasm::ModuleSource;

/// The built-in operator `agent` runs, if it is one.
fn builtin<'a>(spec: &'a PipelineSpec, agent: &str) -> Option<&'a str> {
    match &spec.agents.get(agent)?.module {
        ModuleSource::Builtin(op) => Some(op.as_str()),
        _ => None,
    }
}

/// Whether `agent` is a lookup join whose right side (port 1) applies a changelog: its `op`
/// column is the changelog's.
fn applies_changes(spec: &PipelineSpec, agent: &str) -> bool {
    if builtin(spec, agent) != Some("join") {
        return false;
    }
    let config = config_of(spec, agent);
    config["kind"] == "lookup" && config["op"] == sabot_sdk::changelog::OP_COLUMN
}

/// The config of `agent`, as JSON (null when it is not an object).
fn config_of(spec: &PipelineSpec, agent: &str) -> serde_json::Value {
    serde_json::from_str(&spec.agents[agent].config).unwrap_or_default()
}

/// Whether `agent` is a join that groups its pairs by its key (its config names
/// `aggregates`), whose output is a changelog like an updating aggregate's — unless its left
/// keys are unique (`left_unique`), when each key's result is emitted once, final.
fn groups_pairs(spec: &PipelineSpec, agent: &str) -> bool {
    let config = config_of(spec, agent);
    config["aggregates"].is_array() && config["left_unique"] != serde_json::Value::Bool(true)
}

/// Whether `agent` is an aggregate that reads a changelog (its config names the changelog's
/// key).
fn reads_changes(spec: &PipelineSpec, agent: &str) -> bool {
    config_of(spec, agent)["changelog_key"].is_string()
}

/// The agents whose output is a changelog, with the aggregate (or over-aggregate of a
/// changelog) each one comes from.
fn changelog_agents(spec: &PipelineSpec) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = spec
        .agents
        .keys()
        .filter(|a| match builtin(spec, a) {
            Some("aggregate") => true,
            Some("over") => reads_changes(spec, a),
            Some("join") => groups_pairs(spec, a),
            _ => false,
        })
        .map(|a| (a.clone(), a.clone()))
        .collect();
    let mut seen: BTreeSet<String> = found.iter().map(|(a, _)| a.clone()).collect();
    let mut i = 0;
    while i < found.len() {
        let (from, origin) = found[i].clone();
        for e in spec
            .edges
            .iter()
            .filter(|e| e.from == from && e.from_port == 0)
        {
            if matches!(builtin(spec, &e.to), Some("filter" | "project"))
                && seen.insert(e.to.clone())
            {
                found.push((e.to.clone(), origin.clone()));
            }
        }
        i += 1;
    }
    found
}

/// Refuses a changelog sent where it cannot be applied; `Err((location, message))`.
pub(super) fn check(spec: &PipelineSpec) -> Result<(), (String, String)> {
    for (from, origin) in changelog_agents(spec) {
        let op = builtin(spec, &origin).unwrap_or("aggregate");
        let what = if from == origin {
            format!("agent `{from}` (builtin:{op}) sends it a changelog")
        } else {
            format!("agent `{from}` passes it the changelog of agent `{origin}` (builtin:{op})")
        };
        let why = if op == "over" {
            "an over-aggregate of a changelog re-emits each row whose frame a change reached, \
             and deletes"
        } else if op == "join" {
            "an interval join with aggregates emits each key's result when its intervals end, \
             and again when a later row of the key reopens it"
        } else {
            "an updating aggregate — GROUP BY without a window — emits a group's new result each \
             time it changes, and deletes"
        };
        // The changelog is an agent's main output (port 0); others carry its late rows.
        for e in spec
            .edges
            .iter()
            .filter(|e| e.from == from && e.from_port == 0)
        {
            if e.to_port == 1 && applies_changes(spec, &e.to) {
                continue;
            }
            if let Some(op @ ("aggregate" | "over")) = builtin(spec, &e.to)
                && !reads_changes(spec, &e.to)
            {
                return Err((
                    format!("[agents.{}] field `config`", e.to),
                    format!(
                        "has no `changelog_key`, and {what} ({why}): set changelog_key to the \
                         column that changelog is keyed by, so that each change replaces the \
                         row it changes (builtin:{op})"
                    ),
                ));
            }
            if let Some(op @ ("window" | "join" | "top")) = builtin(spec, &e.to) {
                return Err((
                    format!("[agents.{}]", e.to),
                    format!(
                        "builtin:{op} reads append-only streams, and {what} ({why}); window or \
                         join its input instead, before the aggregate"
                    ),
                ));
            }
            let Some(sink) = spec.sinks.get(&e.to) else {
                continue;
            };
            let at = format!("[sinks.{}]", e.to);
            match sink {
                SinkSpec::File(_) => {
                    return Err((
                        at,
                        format!(
                            "a file sink can only append, and {what} ({why}); send it to a Kafka \
                             sink with `key` set to the group column (upserts and tombstones), \
                             to a builtin:view, or to stdout"
                        ),
                    ));
                }
                SinkSpec::Kafka(k) if k.key.is_none() => {
                    return Err((
                        at + " field `key`",
                        format!(
                            "is missing, and {what} ({why}): set `key` to the group column, so \
                             that each upsert replaces its key's earlier record and a delete \
                             writes its tombstone"
                        ),
                    ));
                }
                SinkSpec::Kafka(k) if k.format == KafkaFormat::Arrow => {
                    return Err((
                        at + " field `format`",
                        format!(
                            "\"arrow\" writes one record per batch and cannot carry a changelog's \
                             deletes, and {what}; use json, msgpack, avro or raw"
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
