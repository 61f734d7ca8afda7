//! Where queries go: `INSERT INTO` a table (a sink, its columns naming the query's), `CREATE
//! MATERIALIZED VIEW` (a `builtin:view` agent), and the rule that an updating query goes only
//! where its upserts and deletes can be applied.

use sqlparser::ast::{Ident, Query, Spanned};
use sqlparser::tokenizer::Span;

use super::ddl::{Table, put_options};
use super::error::SqlError;
use super::plan::{Planner, Stream, field_names, quote};

/// Connectors that can be written.
const SINKS: &[&str] = &["file", "stdout", "blackhole", "kafka"];

impl Planner<'_> {
    /// `INSERT INTO target SELECT …`.
    pub(crate) fn insert(
        &mut self,
        target: &str,
        target_span: Span,
        columns: &[Ident],
        query: &Query,
    ) -> Result<(), SqlError> {
        let table = self.tables.get(target).cloned().ok_or_else(|| {
            self.error(
                target_span,
                format!(
                    "no table `{target}` to insert into (declare it with CREATE TABLE {target} WITH ('connector' = …); tables: {})",
                    self.table_names()
                ),
            )
        })?;
        if !SINKS.contains(&table.connector.as_str()) {
            return Err(self.error(
                target_span,
                format!(
                    "table `{target}` has connector '{}', which cannot be written (writable: {})",
                    table.connector,
                    SINKS.join(", ")
                ),
            ));
        }
        if let Some((key, span)) = &table.primary_key {
            return Err(self.error(
                *span,
                format!("table `{target}` is written: a primary key tells the planner which column no two rows of a table it reads share; a sink's rows are keyed by its 'key' option (e.g. 'key' = '{key}')"),
            ));
        }
        let stream = self.query(query, target)?;
        if stream.updating {
            self.check_changelog_sink(&table, &stream, target_span)?;
        }
        if self.read_tables.contains_key(target) {
            return Err(self.error(
                target_span,
                format!("table `{target}` is read by this pipeline, so it cannot also be written"),
            ));
        }
        // The sink's declared columns (or the INSERT's list) name the query's columns in order.
        let names: Vec<String> = if columns.is_empty() {
            table.columns.iter().map(|(c, _, _)| c.clone()).collect()
        } else {
            columns.iter().map(|c| c.value.clone()).collect()
        };
        let stream = match (&stream.schema, names.is_empty()) {
            (_, true) | (None, _) => stream,
            (Some(schema), false) => {
                if schema.fields().len() != names.len() {
                    return Err(self.error(
                        target_span,
                        format!(
                            "table `{target}` takes {} columns ({}), the query gives {} ({})",
                            names.len(),
                            names.join(", "),
                            schema.fields().len(),
                            field_names(schema)
                        ),
                    ));
                }
                if schema
                    .fields()
                    .iter()
                    .zip(&names)
                    .all(|(f, n)| f.name() == n)
                {
                    stream
                } else {
                    let items: Vec<String> = schema
                        .fields()
                        .iter()
                        .zip(&names)
                        .map(|(f, n)| format!("{} AS {}", quote(f.name()), quote(n)))
                        .collect();
                    let agent = self.fresh(&format!("{target}_columns"));
                    self.project(&agent, &stream, &items, target_span)?
                }
            }
        };
        if !self.sinks.contains_key(target) {
            let mut sink = toml::Table::new();
            sink.insert("type".into(), table.connector.clone().into());
            put_options(&mut sink, &table);
            self.sinks.insert(target.to_owned(), sink.into());
            self.names.insert(target.to_owned());
        }
        for node in &stream.nodes {
            self.edges.push(format!("{node} -> {target}"));
        }
        Ok(())
    }

    /// Keeps `names` free: the names of the materialized views, which name their agents (and
    /// which later queries may read once they are planned).
    pub(crate) fn reserve(&mut self, names: impl IntoIterator<Item = String>) {
        for name in names {
            self.names.insert(name.clone());
            self.materialized.insert(name);
        }
    }

    /// `CREATE MATERIALIZED VIEW name AS SELECT …`: a `builtin:view` agent named `name`, keeping
    /// the current row of each key of the query's results where `GET /v1/views/name` reads it.
    pub(crate) fn materialize(
        &mut self,
        name: &str,
        span: Span,
        query: &Query,
    ) -> Result<(), SqlError> {
        if self.tables.contains_key(name) || self.views.contains_key(name) {
            return Err(self.error(span, format!("`{name}` is declared twice")));
        }
        self.planning.push(name.to_owned());
        let stream = self.query(query, name);
        self.planning.pop();
        let stream = stream?;
        let Some(grouped) = stream.grouped.clone() else {
            return Err(self.error(
                query.span(),
                format!("materialized view `{name}` keeps one row per key, so its query needs GROUP BY: one key column, a window, or both (combine several columns into one, e.g. CONCAT(a, '/', b), in a view first)"),
            ));
        };
        let mut config = toml::Table::new();
        if let Some(key) = &grouped.key {
            config.insert("key".into(), key.clone().into());
        }
        if grouped.window {
            config.insert("sub_key".into(), "window_start".into());
        }
        self.agent(
            name,
            "builtin:view",
            config,
            grouped.key.as_deref(),
            &stream,
        );
        // Another query may read the view: the rows it keeps, as they change.
        self.planned_views.insert(name.to_owned(), stream);
        Ok(())
    }

    /// An updating query goes only where its upserts and deletes can be applied.
    fn check_changelog_sink(
        &self,
        table: &Table,
        stream: &Stream,
        span: Span,
    ) -> Result<(), SqlError> {
        let group = stream
            .grouped
            .as_ref()
            .and_then(|g| g.key.clone())
            .unwrap_or_default();
        let why = "the query is updating: GROUP BY without a window emits a group's new result each time it changes, and deletes";
        match table.connector.as_str() {
            "kafka" => {
                let key = table
                    .options
                    .iter()
                    .find(|o| o.key == "key")
                    .and_then(|o| o.value.as_str());
                match key {
                    Some(k) if k == group => Ok(()),
                    Some(k) => Err(self.error(
                        span,
                        format!("table `{}` is keyed by `{k}`, and {why} by `{group}`: set 'key' = '{group}', so that each record replaces its key's earlier one", table.name),
                    )),
                    None if group.is_empty() => Err(self.error(
                        span,
                        format!("table `{}`: {why}, over one group with no key column, which Kafka cannot compact: GROUP BY a column, or write it to a CREATE MATERIALIZED VIEW", table.name),
                    )),
                    None => Err(self.error(
                        span,
                        format!("table `{}` needs 'key' = '{group}': {why}, and each record must replace its key's earlier one (a delete is a tombstone)", table.name),
                    )),
                }
            }
            "stdout" | "blackhole" => Ok(()),
            other => Err(self.error(
                span,
                format!("table `{}` (connector '{other}') can only append, and {why}; write it to a Kafka table with 'key' = '{group}' (upserts and tombstones), a CREATE MATERIALIZED VIEW, or stdout — or aggregate over a window (TUMBLE, HOP, SESSION), whose results are final", table.name),
            )),
        }
    }
}
