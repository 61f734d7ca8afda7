//! `sabot explain`: the operator graph of a pipeline (TOML or SQL) — its sources with their
//! columns and event time, the agents with their modules and settings, the sinks and the edges —
//! as text, or as JSON for tools.

use serde_json::{Value, json};

use crate::PipelineSpec;
use crate::connectors::{SinkSpec, SourceSpec};

fn source_type(s: &SourceSpec) -> &'static str {
    match s {
        SourceSpec::Generator(_) => "generator",
        SourceSpec::File(_) => "file",
        SourceSpec::Nexmark(_) => "nexmark",
        SourceSpec::Kafka(_) => "kafka",
    }
}

fn sink_type(s: &SinkSpec) -> &'static str {
    match s {
        SinkSpec::Stdout(_) => "stdout",
        SinkSpec::File(_) => "file",
        SinkSpec::Blackhole(_) => "blackhole",
        SinkSpec::Kafka(_) => "kafka",
    }
}

/// The graph as JSON: `{name, sources, agents, sinks, edges}`.
pub fn graph(spec: &PipelineSpec) -> Value {
    let sources: Vec<Value> = spec
        .sources
        .iter()
        .map(|(name, source)| {
            let columns: Vec<Value> = spec
                .source_schema(name, 0)
                .map(|schema| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": name,
                "type": source_type(source),
                "columns": columns,
                "event_time": source.event_time().map(|e| json!({
                    "column": e.column,
                    "max_out_of_orderness_ms": e.max_out_of_orderness_ms,
                })),
            })
        })
        .collect();
    let agents: Vec<Value> = spec
        .agents
        .iter()
        .map(|(name, agent)| {
            let config = serde_json::from_str::<Value>(&agent.config)
                .unwrap_or_else(|_| Value::String(agent.config.clone()));
            json!({
                "name": name,
                "module": agent.module.to_string(),
                "parallelism": agent.parallelism,
                "key": agent.key,
                "config": config,
            })
        })
        .collect();
    let sinks: Vec<Value> = spec
        .sinks
        .iter()
        .map(|(name, sink)| json!({"name": name, "type": sink_type(sink)}))
        .collect();
    let edges: Vec<Value> = spec
        .edges
        .iter()
        .map(
            |e| json!({"from": e.from, "from_port": e.from_port, "to": e.to, "to_port": e.to_port}),
        )
        .collect();
    json!({
        "name": spec.name,
        "sources": sources,
        "agents": agents,
        "sinks": sinks,
        "edges": edges,
    })
}

/// The graph as text, one node per line, then the edges.
pub fn text(spec: &PipelineSpec) -> String {
    let g = graph(spec);
    let mut out = format!("pipeline `{}`\n", spec.name);
    let width = spec
        .sources
        .keys()
        .chain(spec.agents.keys())
        .chain(spec.sinks.keys())
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0);
    out.push_str("\nsources\n");
    for s in g["sources"].as_array().into_iter().flatten() {
        let columns: Vec<String> = s["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {}",
                    c["name"].as_str().unwrap_or(""),
                    c["type"].as_str().unwrap_or("")
                )
            })
            .collect();
        let mut line = format!(
            "  {:width$}  {}",
            s["name"].as_str().unwrap_or(""),
            s["type"].as_str().unwrap_or("")
        );
        if !columns.is_empty() {
            line.push_str(&format!("  ({})", columns.join(", ")));
        }
        if let Some(e) = s["event_time"].as_object() {
            line.push_str(&format!(
                "  event time `{}`, {} ms out of order",
                e["column"].as_str().unwrap_or(""),
                e["max_out_of_orderness_ms"]
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !spec.agents.is_empty() {
        out.push_str("\nagents\n");
        for a in g["agents"].as_array().into_iter().flatten() {
            let mut line = format!(
                "  {:width$}  {}",
                a["name"].as_str().unwrap_or(""),
                a["module"].as_str().unwrap_or("")
            );
            if let Some(key) = a["key"].as_str() {
                line.push_str(&format!("  key `{key}`"));
            }
            if a["parallelism"].as_u64().is_some_and(|p| p > 1) {
                line.push_str(&format!("  ×{}", a["parallelism"]));
            }
            match &a["config"] {
                Value::Null => {}
                Value::Object(o) if o.is_empty() => {}
                config => line.push_str(&format!("  {config}")),
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str("\nsinks\n");
    for s in g["sinks"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:width$}  {}\n",
            s["name"].as_str().unwrap_or(""),
            s["type"].as_str().unwrap_or("")
        ));
    }
    out.push_str("\nedges\n");
    for e in &spec.edges {
        let from = if e.from_port == 0 {
            e.from.clone()
        } else {
            format!("{}:{}", e.from, e.from_port)
        };
        let to = if e.to_port == 0 {
            e.to.clone()
        } else {
            format!("{} (input {})", e.to, e.to_port)
        };
        out.push_str(&format!("  {from} -> {to}\n"));
    }
    out
}
