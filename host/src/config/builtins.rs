//! The configs of the built-in `filter` and `project` operators, checked when a pipeline is
//! validated rather than when its first batch reaches them: the settings have the operator's
//! shape, the expressions parse, and where the agent's input schema is known from the sources
//! that feed it (a generator, Nexmark, a file or Kafka source with a declared schema), the
//! expressions name columns it has and have types that fit — a filter must be boolean. The other
//! built-ins check their config in `init`, which `Pipeline::new` calls once for each before the
//! run (`dataflow::check_builtin_configs`).
//!
//! The operators parse with the same library ([`sabot_expr`]), so what passes here is what
//! they accept; types are checked by evaluating the expressions over an empty batch of the
//! input schema.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sabot_expr::{Predicate, Projection};

use super::{Edge, PipelineSpec};
use crate::connectors::{SourceSpec, kafka, nexmark};
use crate::wasm::ModuleSource;

/// A built-in operator's config, as the operator reads it.
enum Checked {
    Filter(Box<Predicate>),
    Project(Projection),
}

/// Checks every built-in operator's config in `spec`; `Err((location, message))` names the
/// agent and field.
pub(super) fn check(spec: &PipelineSpec) -> Result<(), (String, String)> {
    for (name, agent) in &spec.agents {
        let ModuleSource::Builtin(op) = &agent.module else {
            continue;
        };
        let at = |field: &str| format!("[agents.{name}] field `config.{field}`");
        let checked = match op.as_str() {
            "filter" => Checked::Filter(Box::new(
                filter(&agent.config).map_err(|m| (at("where"), m))?,
            )),
            "project" => Checked::Project(project(&agent.config).map_err(|m| (at("select"), m))?),
            _ => continue,
        };
        for (from, schema) in input_schemas(spec, name) {
            let empty = RecordBatch::new_empty(schema);
            let (field, result) = match &checked {
                Checked::Filter(p) => ("where", p.evaluate(&empty).map(drop)),
                Checked::Project(p) => ("select", p.clone().apply(&empty).map(drop)),
            };
            result.map_err(|e| {
                (
                    at(field),
                    format!("{e}; checked against the columns of source `{from}`"),
                )
            })?;
        }
    }
    Ok(())
}

/// `{ where = "…" }`: the predicate.
fn filter(config: &str) -> Result<Predicate, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(rename = "where")]
        predicate: String,
        #[serde(rename = "key")]
        _key: Option<String>,
    }
    let settings: Settings = serde_json::from_str(config).map_err(|e| {
        format!("expected config = {{ where = \"EXPRESSION\" }}, a SQL boolean expression (and, on a changelog, `key`): {e}")
    })?;
    Predicate::parse(&settings.predicate).map_err(|e| e.to_string())
}

/// `{ select = [...] }` or `{ select = "a, b" }`: the projection.
fn project(config: &str) -> Result<Projection, String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Select {
        One(String),
        Many(Vec<String>),
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        select: Select,
    }
    let settings: Settings = serde_json::from_str(config).map_err(|e| {
        format!("expected config = {{ select = [\"COLUMN or EXPRESSION [AS NAME]\", …] }}: {e}")
    })?;
    match &settings.select {
        Select::One(text) => Projection::parse(text),
        Select::Many(items) if items.is_empty() => {
            return Err("is empty (expected at least one column or expression)".into());
        }
        Select::Many(items) => Projection::parse_items(items),
    }
    .map_err(|e| e.to_string())
}

/// The schemas of `agent`'s inputs that come straight from a source whose schema is known
/// before it runs, with the source's name.
fn input_schemas<'a>(spec: &'a PipelineSpec, agent: &str) -> Vec<(&'a str, SchemaRef)> {
    spec.edges
        .iter()
        .filter(|e| e.to == agent)
        .filter_map(|e: &Edge| {
            let schema = source_schema(spec.sources.get(&e.from)?, e.from_port)?;
            Some((e.from.as_str(), schema))
        })
        .collect()
}

/// The columns of output `port` of a source, when they are known before it runs.
pub(super) fn source_schema(source: &SourceSpec, port: u32) -> Option<SchemaRef> {
    Some(match source {
        SourceSpec::Generator(_) => crate::connectors::generator::GeneratorSpec::schema(),
        SourceSpec::Nexmark(_) => nexmark::schema(port),
        SourceSpec::File(f) => Arc::new(f.declared_schema().ok()??),
        SourceSpec::Kafka(k) => kafka::format::schema_of(k).ok()??,
    })
}

#[cfg(test)]
mod tests {
    use crate::PipelineSpec;

    /// Validates `text` as a file in a directory holding an empty `in.jsonl`.
    fn check(text: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), "").unwrap();
        PipelineSpec::parse(text, &dir.path().join("p.toml"))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn nexmark(edges: &str, filter: &str) -> String {
        format!(
            "edges = [{edges}]\n[sources.nexmark]\ntype = \"nexmark\"\ncount = 10\n\
             [agents.f]\nmodule = \"builtin:filter\"\nconfig = {{ where = \"{filter}\" }}\n\
             [sinks.out]\ntype = \"blackhole\"\n"
        )
    }

    #[test]
    fn each_nexmark_port_is_checked_against_its_own_columns() {
        check(&nexmark("\"nexmark:2 -> f -> out\"", "auction % 123 = 0")).unwrap();
        let err = check(&nexmark("\"nexmark:0 -> f -> out\"", "auction % 123 = 0")).unwrap_err();
        assert!(
            err.contains("unknown column `auction`") && err.contains("source `nexmark`"),
            "{err}"
        );
    }

    #[test]
    fn kafka_and_file_sources_are_checked_against_their_declared_schema() {
        let kafka = "edges = [\"k -> f -> out\"]\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopics = [\"in\"]\nschema = { amount = \"float64\", country = \"string\" }\n[agents.f]\nmodule = \"builtin:filter\"\nconfig = { where = \"WHERE\" }\n[sinks.out]\ntype = \"blackhole\"\n";
        check(&kafka.replace("WHERE", "amount > 3 AND country = 'FR'")).unwrap();
        let err = check(&kafka.replace("WHERE", "card_id = 3")).unwrap_err();
        assert!(err.contains("unknown column `card_id`"), "{err}");
        // Raw records have fixed columns.
        let raw = kafka
            .replace(
                "schema = { amount = \"float64\", country = \"string\" }",
                "format = \"raw\"",
            )
            .replace("WHERE", "value IS NOT NULL AND partition = 0");
        check(&raw).unwrap();

        let file = "edges = [\"in -> f -> out\"]\n[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\nschema = { n = \"int64\" }\n[agents.f]\nmodule = \"builtin:project\"\nconfig = { select = \"n * 2 AS twice, m\" }\n[sinks.out]\ntype = \"blackhole\"\n";
        let err = check(file).unwrap_err();
        assert!(err.contains("unknown column `m`"), "{err}");
    }

    #[test]
    fn after_another_agent_or_an_undeclared_schema_only_the_syntax_is_checked() {
        // The filter's input is the project's output: its columns are not known before the run.
        let chained = "edges = [\"gen -> p -> f -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 1\n[agents.p]\nmodule = \"builtin:project\"\nconfig = { select = [\"amount * 2 AS double\"] }\n[agents.f]\nmodule = \"builtin:filter\"\nconfig = { where = \"WHERE\" }\n[sinks.out]\ntype = \"blackhole\"\n";
        check(&chained.replace("WHERE", "double > 3")).unwrap();
        let err = check(&chained.replace("WHERE", "double >")).unwrap_err();
        assert!(
            err.contains("[agents.f] field `config.where`: cannot parse expression `double >`"),
            "{err}"
        );
        // A file whose schema is inferred when it runs.
        let inferred = "edges = [\"in -> f -> out\"]\n[sources.in]\ntype = \"file\"\npath = \"in.jsonl\"\n[agents.f]\nmodule = \"builtin:filter\"\nconfig = { where = \"anything > 1\" }\n[sinks.out]\ntype = \"blackhole\"\n";
        check(inferred).unwrap();
    }

    #[test]
    fn a_config_given_as_a_json_string_is_read_like_a_table() {
        let text = "edges = [\"gen -> f -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 1\n[agents.f]\nmodule = \"builtin:filter\"\nconfig = 'CONFIG'\n[sinks.out]\ntype = \"blackhole\"\n";
        check(&text.replace("CONFIG", r#"{"where": "amount > 1"}"#)).unwrap();
        let err = check(&text.replace("CONFIG", "where amount > 1")).unwrap_err();
        assert!(err.contains("expected config = { where"), "{err}");
    }
}
