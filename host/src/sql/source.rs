//! Reading a table or a view: a source added once (Nexmark tables of one event sequence share
//! one generator, on its ports), its declared columns checked against the connector's, or a
//! view planned once and shared (a ranking, planned for each reader).

use sqlparser::tokenizer::Span;

use super::ddl::source_document;
use super::error::SqlError;
use super::plan::{Planner, Stream, field_names};

/// Connectors that can be read.
const SOURCES: &[&str] = &["file", "generator", "kafka", "nexmark"];

/// The most views a view may be read through (`v3` reads `v2` reads `v1`): each is planned inside
/// the one reading it, so an unbounded chain would exhaust the planning thread's stack.
pub const MAX_VIEW_DEPTH: usize = 64;

impl Planner<'_> {
    /// Reads a table (as a source) or a view.
    pub(super) fn read(&mut self, name: &str, span: Span) -> Result<Stream, SqlError> {
        if let Some(stream) = self.planned_views.get(name) {
            return Ok(stream.clone());
        }
        if self.planning.iter().any(|v| v == name) {
            return Err(self.error(span, format!("view `{name}` reads itself")));
        }
        if self.materialized.contains(name) {
            return Err(self.error(
                span,
                format!("materialized view `{name}` is read before it is declared: declare it before the materialized view that reads it"),
            ));
        }
        if let Some((query, _)) = self.views.get(name).cloned() {
            if self.planning.len() >= MAX_VIEW_DEPTH {
                return Err(self.error(
                    span,
                    format!("view `{name}` is read through more than {MAX_VIEW_DEPTH} views: read a table, or fewer views, at the bottom of the chain"),
                ));
            }
            self.planning.push(name.to_owned());
            let stream = self.query(&query, name);
            self.planning.pop();
            let stream = stream?;
            // A ranking keeps as many ranks as its reader says: planned for each reader.
            if super::rank::ranking_alias(&query).is_none() {
                self.planned_views.insert(name.to_owned(), stream.clone());
            }
            return Ok(stream);
        }
        let table = self.tables.get(name).cloned().ok_or_else(|| {
            self.error(
                span,
                format!(
                    "no table or view `{name}` (tables and views: {})",
                    self.table_names()
                ),
            )
        })?;
        if self.sinks.contains_key(name) {
            return Err(self.error(
                span,
                format!("table `{name}` is written by this pipeline, so it cannot also be read"),
            ));
        }
        if !SOURCES.contains(&table.connector.as_str()) {
            return Err(self.error(
                span,
                format!(
                    "table `{name}` has connector '{}', which cannot be read (readable: {})",
                    table.connector,
                    SOURCES.join(", ")
                ),
            ));
        }
        if let Some(stream) = self.read_tables.get(name) {
            return Ok(stream.clone());
        }
        let mut document = source_document(&table);
        // Nexmark's people, auctions and bids are the ports of one generator, so that tables of
        // one event sequence (same options) share it.
        let port = if table.connector == "nexmark" {
            let kind = document
                .as_table_mut()
                .and_then(|t| t.remove("kind"))
                .and_then(|k| k.as_str().map(str::to_ascii_lowercase));
            match kind.as_deref() {
                Some("person") => 0,
                Some("auction") => 1,
                Some("bid") => 2,
                _ => {
                    return Err(self.error(
                        table.span,
                        format!("table `{name}`: a nexmark table needs 'kind' = 'person' | 'auction' | 'bid'"),
                    ));
                }
            }
        } else {
            0
        };
        let schema = (self.catalog.schema_of)(&document, port);
        if let Some(schema) = &schema {
            for (column, _, span) in &table.columns {
                if schema.field_with_name(column).is_err() {
                    return Err(self.error(
                        *span,
                        format!(
                            "table `{name}`: the {} connector has no column `{column}` (it gives: {})",
                            table.connector,
                            field_names(schema)
                        ),
                    ));
                }
            }
            if let Some((key, span)) = &table.primary_key
                && schema.field_with_name(key).is_err()
            {
                return Err(self.error(
                    *span,
                    format!(
                        "table `{name}`: no column `{key}` for the primary key (columns: {})",
                        field_names(schema)
                    ),
                ));
            }
            if let Some(w) = &table.watermark
                && schema.field_with_name(&w.column).is_err()
            {
                return Err(self.error(
                    w.span,
                    format!(
                        "table `{name}`: no column `{}` for the watermark (columns: {})",
                        w.column,
                        field_names(schema)
                    ),
                ));
            }
        }
        let node = if table.connector == "nexmark" {
            let shared = self
                .sources
                .iter()
                .find(|(_, d)| **d == document)
                .map(|(n, _)| n.clone());
            let source = match shared {
                Some(source) => source,
                None => {
                    let source = self.fresh("nexmark");
                    self.sources.insert(source.clone(), document);
                    source
                }
            };
            format!("{source}:{port}")
        } else {
            self.sources.insert(name.to_owned(), document);
            self.names.insert(name.to_owned());
            name.to_owned()
        };
        let mut stream = Stream::rows(
            vec![node],
            schema,
            table.watermark.as_ref().map(|w| w.column.clone()),
        );
        stream.unique = table.primary_key.as_ref().map(|(k, _)| k.clone());
        self.read_tables.insert(name.to_owned(), stream.clone());
        Ok(stream)
    }
}
