//! Queries to operators: each `INSERT INTO sink SELECT …` becomes a chain of built-in agents
//! (`filter` for `WHERE`, `window` for `GROUP BY TUMBLE/HOP/SESSION`, `filter` for `HAVING`,
//! `project` for the select list) between a source and a sink; a view is planned once and
//! shared by every query that reads it. Expressions are checked against the columns known at
//! each step, so a mistake is reported where it is written.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use indexmap::IndexMap;
use sabot_expr::{Predicate, Projection};
use sqlparser::ast::{
    Expr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr, SetOperator, SetQuantifier,
    Spanned, TableFactor, visit_expressions_mut,
};
use sqlparser::tokenizer::Span;

use super::ddl::Table;
use super::distinct::Distinct;
use super::error::{Source, SqlError};
use super::function;

/// What a query produces: the nodes that emit it (several after `UNION ALL`) and what is known
/// of its rows.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    pub(super) nodes: Vec<String>,
    pub(super) schema: Option<SchemaRef>,
    /// The event-time column, when the rows carry watermarks.
    pub(super) time: Option<String>,
    /// What identifies a row, when the rows are an aggregate's results.
    pub(super) grouped: Option<Grouped>,
    /// Whether the rows are a changelog: an updating aggregate's upserts and deletes, by the
    /// key of `grouped`.
    pub(super) updating: bool,
    /// The columns that tell each row's window, when the rows are a windowed aggregate's
    /// results: what a ranking per window or a join of windows closes them by.
    pub(super) windowed: Option<Windowed>,
    /// When the rows are the distinct groups of tumbling windows: how to compute them from the
    /// rows before the window (see [`super::distinct`]).
    pub(super) distinct: Option<Box<Distinct>>,
    /// A column no two rows share, as the table read declares it (`PRIMARY KEY … NOT
    /// ENFORCED`), under its name here: kept through filters and projections that keep it.
    pub(super) unique: Option<String>,
}

/// The columns of a windowed aggregate's results that tell each row's window.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Windowed {
    /// The window's start, under the name the query gives it (`None`: not selected).
    pub(super) start: Option<String>,
    /// The window's end (exclusive).
    pub(super) end: Option<String>,
    /// The windows' size, for tumbling and hopping windows (a session's varies).
    pub(super) size_ms: Option<i64>,
    /// Whether the windows tumble (each row's time is in exactly one).
    pub(super) tumbling: bool,
}

impl Windowed {
    /// The column telling a row's window, and the offset from its value at which the window is
    /// complete (the watermark has passed its last millisecond).
    pub(super) fn closing(&self, column: &str) -> Option<i64> {
        if self.end.as_deref() == Some(column) {
            Some(-1)
        } else if self.start.as_deref() == Some(column) {
            self.size_ms.map(|s| s - 1)
        } else {
            None
        }
    }
}

/// What identifies a row of an aggregate's results.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Grouped {
    /// The group column (`None`: one group for everything).
    pub(super) key: Option<String>,
    /// Whether `window_start` is part of the identity (one row per window of a key).
    pub(super) window: bool,
}

impl Stream {
    /// The rows of `nodes`, of a source or a join: append-only, not grouped.
    pub(super) fn rows(
        nodes: Vec<String>,
        schema: Option<SchemaRef>,
        time: Option<String>,
    ) -> Self {
        Stream {
            nodes,
            schema,
            time,
            grouped: None,
            updating: false,
            windowed: None,
            distinct: None,
            unique: None,
        }
    }
}

/// A relation of `FROM` as expressions see it: the names that qualify its columns, and what
/// its columns are called downstream (after a join, a right column may be `right_NAME`).
#[derive(Debug, Clone, Default)]
pub(super) struct Side {
    pub(super) qualifiers: Vec<String>,
    pub(super) renames: HashMap<String, String>,
}

pub(crate) struct Planner<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) catalog: super::Catalog<'a>,
    /// Functions declared with `CREATE FUNCTION`, by lower-case name.
    pub(crate) functions: HashMap<String, function::Declared>,
    pub(crate) tables: IndexMap<String, Table>,
    pub(crate) views: IndexMap<String, (Query, Span)>,
    pub(super) planned_views: HashMap<String, Stream>,
    /// The tables read so far, as the streams they are.
    pub(super) read_tables: HashMap<String, Stream>,
    /// `FOR SYSTEM_TIME AS OF` clauses, by the start of the table name they follow.
    pub(crate) versions: Vec<super::ddl::Version>,
    /// Views being planned, to refuse a view that reads itself.
    pub(super) planning: Vec<String>,
    /// The materialized views (planned, in order, before the inserts).
    pub(super) materialized: HashSet<String>,
    /// The ranks the query being planned keeps of the ranking it reads, for that ranking.
    pub(super) pending_ranks: Option<super::rank::Kept>,
    pub(crate) sources: toml::Table,
    pub(crate) agents: toml::Table,
    pub(crate) sinks: toml::Table,
    pub(crate) edges: Vec<String>,
    pub(super) names: HashSet<String>,
    /// Nodes a rewrite stopped reading, removed after planning if nothing else reads them.
    pub(super) abandoned: Vec<String>,
    /// The interval joins planned, by agent (see [`Planner::group_interval_join`]).
    pub(super) interval_joins: HashMap<String, super::join::IntervalJoin>,
    /// The projections that only drop columns a join does not need, with the nodes they read.
    pub(super) pruned: HashMap<String, Vec<String>>,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(source: Source<'a>, catalog: super::Catalog<'a>) -> Self {
        Planner {
            source,
            catalog,
            functions: HashMap::new(),
            tables: IndexMap::new(),
            views: IndexMap::new(),
            planned_views: HashMap::new(),
            read_tables: HashMap::new(),
            planning: Vec::new(),
            materialized: HashSet::new(),
            pending_ranks: None,
            versions: Vec::new(),
            sources: toml::Table::new(),
            agents: toml::Table::new(),
            sinks: toml::Table::new(),
            edges: Vec::new(),
            names: HashSet::new(),
            abandoned: Vec::new(),
            interval_joins: HashMap::new(),
            pruned: HashMap::new(),
        }
    }

    pub(super) fn error(&self, span: Span, message: impl Into<String>) -> SqlError {
        self.source.error(span, message)
    }

    /// A node name not used yet, from `base`.
    pub(super) fn fresh(&mut self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while self.names.contains(&name) || self.tables.contains_key(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    pub(super) fn table_names(&self) -> String {
        let names: Vec<&str> = self
            .tables
            .keys()
            .chain(self.views.keys())
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    pub(super) fn query(&mut self, query: &Query, hint: &str) -> Result<Stream, SqlError> {
        let span = query.span();
        if query.with.is_some() {
            return Err(self.error(
                span,
                "WITH (common table expressions) is not supported: declare each part with CREATE VIEW",
            ));
        }
        if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
            return Err(self.error(
                span,
                "ORDER BY, LIMIT and FETCH do not apply to an unbounded stream: remove them",
            ));
        }
        self.set_expr(&query.body, hint)
    }

    fn set_expr(&mut self, body: &SetExpr, hint: &str) -> Result<Stream, SqlError> {
        match body {
            SetExpr::Select(select) => self.select(select, hint),
            SetExpr::Query(inner) => self.query(inner, hint),
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier: SetQuantifier::All,
                left,
                right,
            } => {
                let l = self.set_expr(left, hint)?;
                let r = self.set_expr(right, hint)?;
                if l.updating || r.updating {
                    return Err(self.error(
                        body.span(),
                        "UNION ALL of an updating query (GROUP BY without a window): its upserts and deletes would mix with the other side's rows; unite the inputs before aggregating",
                    ));
                }
                if let (Some(ls), Some(rs)) = (&l.schema, &r.schema) {
                    let shape = |s: &SchemaRef| -> Vec<(String, DataType)> {
                        s.fields()
                            .iter()
                            .map(|f| (f.name().clone(), f.data_type().clone()))
                            .collect()
                    };
                    if shape(ls) != shape(rs) {
                        return Err(self.error(
                            right.span(),
                            format!(
                                "the sides of UNION ALL differ: ({}) and ({}); give both the same columns, in the same order, of the same types",
                                typed_names(ls),
                                typed_names(rs)
                            ),
                        ));
                    }
                }
                let mut nodes = l.nodes;
                nodes.extend(r.nodes);
                Ok(Stream::rows(
                    nodes,
                    l.schema.or(r.schema),
                    l.time.filter(|t| r.time.as_ref() == Some(t)),
                ))
            }
            SetExpr::SetOperation { op, .. } => Err(self.error(
                body.span(),
                format!("{op} without ALL is an updating query and is not supported: use UNION ALL"),
            )),
            other => Err(self.error(
                other.span(),
                format!(
                    "unsupported query `{}`: a pipeline query is a SELECT or a UNION ALL of them (VALUES is not supported)",
                    shorten(&other.to_string())
                ),
            )),
        }
    }

    /// The stream a `FROM` item names: a source table (added once), a view, or a sub-query.
    pub(super) fn relation(
        &mut self,
        factor: &TableFactor,
        hint: &str,
    ) -> Result<(Stream, Side), SqlError> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                with_hints,
                version: None,
                ..
            } if with_hints.is_empty() => {
                let table = super::ddl::object_name(self.source, name)?;
                let mut qualifiers = vec![table.clone()];
                qualifiers.extend(alias.as_ref().map(|a| a.name.value.clone()));
                let side = Side {
                    qualifiers,
                    renames: HashMap::new(),
                };
                Ok((self.read(&table, name.span())?, side))
            }
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                with_hints,
                version: None,
                ..
            } if with_hints.is_empty() => self.table_function(name, args, alias.as_ref()),
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let stream = self.query(subquery, hint)?;
                let side = Side {
                    qualifiers: alias.iter().map(|a| a.name.value.clone()).collect(),
                    renames: HashMap::new(),
                };
                Ok((stream, side))
            }
            other => Err(self.error(
                other.span(),
                format!(
                    "unsupported FROM item `{}`: name a table, a view, a sub-query or a table function (name(TABLE t, …))",
                    shorten(&other.to_string())
                ),
            )),
        }
    }

    fn select(&mut self, select: &Select, hint: &str) -> Result<Stream, SqlError> {
        let span = select.span();
        if select.distinct.is_some() {
            return Err(self.error(
                span,
                "SELECT DISTINCT is not supported yet (it is an updating query)",
            ));
        }
        if select.qualify.is_some() || !select.named_window.is_empty() || !select.sort_by.is_empty()
        {
            return Err(self.error(span, "QUALIFY, WINDOW and SORT BY are not supported"));
        }
        let from = match select.from.as_slice() {
            [one] => one,
            [] => return Err(self.error(span, "a SELECT needs FROM: name a table or a view")),
            [_, second, ..] => {
                return Err(self.error(
                    second.span(),
                    "several FROM items (an implicit join) are not supported yet",
                ));
            }
        };
        // A ranking it reads (a sub-query or a view) needs to know how many ranks it keeps.
        let kept = self.kept_ranks(&from.relation, select.selection.as_ref());
        let outer = std::mem::replace(&mut self.pending_ranks, kept.clone());
        let planned = self.relation(&from.relation, hint);
        self.pending_ranks = outer;
        let (mut stream, side) = planned?;
        // The ranking kept only those ranks: the condition on them holds for every row.
        let selection = match (&kept, &select.selection) {
            (Some(kept), Some(s)) => kept.without(s),
            _ => select.selection.clone(),
        };
        let mut qualifiers = vec![side];
        // Only the columns the query names cross a join (and are kept in its state).
        let used = if from.joins.is_empty() {
            None
        } else {
            used_columns(select)
        };
        for join in &from.joins {
            stream = self.join(stream, &mut qualifiers, join, hint, used.as_ref())?;
        }

        // The columns a `SELECT *` returns, before any function's result joins them.
        let columns = stream.schema.clone();
        let mut called_in_where = false;
        let mut made = HashMap::new();
        if let Some(selection) = &selection {
            let mut condition = selection.clone();
            self.unqualify(&mut condition, &qualifiers)?;
            if function::calls_any(&self.functions, &condition) {
                stream = self.call_functions(&mut [&mut condition], stream, &mut made, hint)?;
                called_in_where = true;
            }
            self.check_predicate(&condition, selection.span(), &stream)?;
            let agent = self.fresh(&format!("{hint}_where"));
            let mut config = toml::Table::new();
            config.insert("where".into(), condition.to_string().into());
            self.agent(&agent, "builtin:filter", config, None, &stream);
            stream.nodes = vec![agent];
        }

        let aggregated = item_exprs(&select.projection).any(|e| {
            super::window::contains_aggregate(e) || function::calls_aggregate(&self.functions, e)
        }) || select.having.is_some()
            || !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
        let mut items = select.projection.clone();
        let mut having = select.having.clone();
        for item in &mut items {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    self.unqualify(e, &qualifiers)?;
                }
                _ => {}
            }
        }
        if let Some(h) = &mut having {
            self.unqualify(h, &qualifiers)?;
            if function::calls_any(&self.functions, h) {
                return Err(self.error(
                    h.span(),
                    "a user-defined function in HAVING is not supported: select the aggregate in a view, then filter on the function of its column",
                ));
            }
        }
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by
            && let Some(e) = exprs
                .iter()
                .find(|e| function::calls_any(&self.functions, e))
        {
            return Err(self.error(
                e.span(),
                "GROUP BY a user-defined function's result: compute it in a view, then group by its column",
            ));
        }
        if item_exprs(&items).any(|e| function::calls_any(&self.functions, e)) {
            stream = self.call_items(&mut items, stream, &mut made, hint)?;
        }
        if super::rank::ranks(&items) {
            if aggregated {
                return Err(self.error(
                    span,
                    "a ranking and GROUP BY in one query: aggregate in a view, then rank its rows",
                ));
            }
            stream = self.rank(&mut items, stream, hint)?;
        }
        if super::over::computes_over(&items) {
            if aggregated {
                return Err(self.error(
                    span,
                    "OVER and GROUP BY in one query: aggregate in a view, then compute over its rows",
                ));
            }
            stream = self.over(&mut items, stream, hint)?;
        }
        if aggregated {
            // `GROUP BY a.auction` groups by the column `a.auction` is downstream.
            let mut unqualified = select.clone();
            if let GroupByExpr::Expressions(exprs, _) = &mut unqualified.group_by {
                for e in exprs {
                    self.unqualify(e, &qualifiers)?;
                }
            }
            stream = self.group_by(&unqualified, &mut items, &mut having, stream, hint)?;
        }
        if let (Some(condition), Some(original)) = (&having, &select.having) {
            self.check_predicate(condition, original.span(), &stream)?;
            let agent = self.fresh(&format!("{hint}_having"));
            let mut config = toml::Table::new();
            config.insert("where".into(), condition.to_string().into());
            // On a changelog, the filter remembers which keys it let through, so that a key
            // that stops qualifying is deleted (and one that never did is not).
            let key = match &stream.grouped {
                Some(Grouped { key: Some(key), .. }) if stream.updating => {
                    config.insert("key".into(), key.clone().into());
                    Some(key.clone())
                }
                _ => None,
            };
            self.agent(&agent, "builtin:filter", config, key.as_deref(), &stream);
            stream.nodes = vec![agent];
        }

        if let [SelectItem::Wildcard(wildcard)] = items.as_slice() {
            if !called_in_where {
                return Ok(stream);
            }
            // The functions' results were for the filter: keep the columns `*` names.
            let Some(columns) = columns else {
                return Err(self.error(
                    wildcard.span(),
                    "SELECT * with a user-defined function in WHERE over a table whose columns are not known before it runs: list the columns",
                ));
            };
            let items: Vec<String> = columns.fields().iter().map(|f| quote(f.name())).collect();
            let agent = self.fresh(&format!("{hint}_select"));
            return self.project(&agent, &stream, &items, span);
        }
        let mut texts = Vec::with_capacity(items.len());
        for item in &items {
            texts.push(match item {
                SelectItem::Wildcard(_) => "*".to_owned(),
                SelectItem::UnnamedExpr(e) => e.to_string(),
                SelectItem::ExprWithAlias { expr, alias } => format!("{expr} AS {alias}"),
                other => {
                    return Err(
                        self.error(other.span(), format!("unsupported select item `{other}`"))
                    );
                }
            });
        }
        let agent = self.fresh(&format!("{hint}_select"));
        // Each item is checked alone, so an error points at it.
        if let Some(schema) = &stream.schema {
            for (text, original) in texts.iter().zip(&select.projection) {
                self.check_items(std::slice::from_ref(text), original.span(), schema)?;
            }
        }
        let mut out = self.project(&agent, &stream, &texts, span)?;
        // Distinct groups selected as plain columns stay distinct groups.
        out.distinct = super::distinct::of(&stream)
            .filter(|_| having.is_none())
            .zip(renamed_columns(&items))
            .and_then(|(d, columns)| d.select(&columns, &agent))
            .map(Box::new);
        Ok(out)
    }

    /// Runs the function calls of the select list before it, naming an item that calls one
    /// after its text (as a column it would be named if computed in place).
    fn call_items(
        &mut self,
        items: &mut [SelectItem],
        stream: Stream,
        made: &mut HashMap<String, String>,
        hint: &str,
    ) -> Result<Stream, SqlError> {
        for item in items.iter_mut() {
            if let SelectItem::UnnamedExpr(e) = item
                && function::calls_any(&self.functions, e)
            {
                let alias = Ident::with_quote('"', e.to_string());
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias,
                };
            }
        }
        let mut exprs: Vec<&mut Expr> = items
            .iter_mut()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { expr, .. } => Some(expr),
                _ => None,
            })
            .collect();
        self.call_functions(&mut exprs, stream, made, hint)
    }

    /// Adds a `builtin:project` agent computing `items` from `stream`.
    pub(super) fn project(
        &mut self,
        agent: &str,
        stream: &Stream,
        items: &[String],
        span: Span,
    ) -> Result<Stream, SqlError> {
        let schema = match &stream.schema {
            Some(schema) => Some(self.check_items(items, span, schema)?),
            None => None,
        };
        let mut config = toml::Table::new();
        config.insert(
            "select".into(),
            toml::Value::Array(items.iter().map(|i| i.clone().into()).collect()),
        );
        self.agent(agent, "builtin:project", config, None, stream);
        // The event-time column survives a projection that keeps it under its name.
        let kept = |c: &str| schema.as_ref().is_none_or(|s| s.field_with_name(c).is_ok());
        let time = stream.time.clone().filter(|t| kept(t));
        // A result row keeps its identity when the projection keeps its key (and window start).
        let grouped = stream
            .grouped
            .clone()
            .filter(|g| g.key.as_deref().is_none_or(kept) && (!g.window || kept("window_start")));
        if stream.updating
            && grouped.is_none()
            && let Some(g) = &stream.grouped
        {
            return Err(self.error(
                span,
                format!(
                    "an updating query (GROUP BY without a window) must select its group column `{}` under its own name: each row it emits replaces the earlier row of that key",
                    g.key.as_deref().unwrap_or_default()
                ),
            ));
        }
        // The window's columns, under the names the projection gives them.
        let windowed = stream.windowed.as_ref().and_then(|w| {
            let start = w.start.as_deref().and_then(|c| kept_as(items, c));
            let end = w.end.as_deref().and_then(|c| kept_as(items, c));
            (start.is_some() || end.is_some()).then(|| Windowed {
                start,
                end,
                ..w.clone()
            })
        });
        let unique = stream.unique.as_deref().and_then(|c| kept_as(items, c));
        Ok(Stream {
            nodes: vec![agent.to_owned()],
            schema,
            time,
            grouped,
            updating: stream.updating,
            windowed,
            distinct: None,
            unique,
        })
    }

    pub(super) fn agent(
        &mut self,
        name: &str,
        module: &str,
        config: toml::Table,
        key: Option<&str>,
        input: &Stream,
    ) {
        let mut agent = toml::Table::new();
        agent.insert("module".into(), module.into());
        if let Some(key) = key {
            agent.insert("key".into(), key.into());
        }
        agent.insert("config".into(), config.into());
        self.agents.insert(name.to_owned(), agent.into());
        for node in &input.nodes {
            self.edges.push(format!("{node} -> {name}"));
        }
    }

    fn check_predicate(
        &self,
        condition: &Expr,
        span: Span,
        stream: &Stream,
    ) -> Result<(), SqlError> {
        let text = condition.to_string();
        let predicate = Predicate::parse(&text).map_err(|e| self.error(span, e.to_string()))?;
        if let Some(schema) = &stream.schema {
            predicate
                .evaluate(&RecordBatch::new_empty(schema.clone()))
                .map_err(|e| self.error(span, self.explain_unknown(e.to_string(), schema)))?;
        }
        Ok(())
    }

    pub(super) fn check_items(
        &self,
        items: &[String],
        span: Span,
        schema: &SchemaRef,
    ) -> Result<SchemaRef, SqlError> {
        let mut projection =
            Projection::parse_items(items).map_err(|e| self.error(span, e.to_string()))?;
        let out = projection
            .apply(&RecordBatch::new_empty(schema.clone()))
            .map_err(|e| self.error(span, self.explain_unknown(e.to_string(), schema)))?;
        Ok(out.schema())
    }

    /// After a window, a column of the input that is neither grouped nor aggregated is gone:
    /// say so instead of "unknown column".
    fn explain_unknown(&self, message: String, schema: &SchemaRef) -> String {
        if schema.field_with_name("window_start").is_ok() && message.starts_with("unknown column") {
            format!("{message}; after GROUP BY a column must be grouped or inside an aggregate")
        } else {
            message
        }
    }

    /// Resolves `t.amount` to the column it is downstream (`amount`, or `right_amount` for a
    /// right side's column renamed by a join).
    pub(super) fn unqualify(&self, expr: &mut Expr, scope: &[Side]) -> Result<(), SqlError> {
        let result = visit_expressions_mut(expr, |e| {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() == 2
            {
                let side = scope.iter().find(|side| {
                    side.qualifiers
                        .iter()
                        .any(|q| q.eq_ignore_ascii_case(&parts[0].value))
                });
                match side {
                    Some(side) => {
                        let mut column = parts[1].clone();
                        if let Some(renamed) = side.renames.get(&column.value) {
                            column = Ident::new(renamed);
                        }
                        *e = Expr::Identifier(column);
                    }
                    None => {
                        let known: Vec<&str> = scope
                            .iter()
                            .flat_map(|s| s.qualifiers.iter().map(String::as_str))
                            .collect();
                        return ControlFlow::Break(self.error(
                            parts[0].span,
                            format!(
                                "unknown table `{}` in `{}.{}` (this query reads {})",
                                parts[0].value,
                                parts[0],
                                parts[1],
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            ControlFlow::Continue(())
        });
        match result {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

/// The select list as (column, name) pairs, when each item only selects or renames a column.
fn renamed_columns(items: &[SelectItem]) -> Option<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Identifier(c)) => {
                Some((c.value.clone(), c.value.clone()))
            }
            SelectItem::ExprWithAlias {
                expr: Expr::Identifier(c),
                alias,
            } => Some((c.value.clone(), alias.value.clone())),
            _ => None,
        })
        .collect()
}

/// Every column name a query mentions (qualified or not), or `None` when it selects `*`.
fn used_columns(select: &Select) -> Option<HashSet<String>> {
    if select.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    }) {
        return None;
    }
    let mut used = HashSet::new();
    let _ = sqlparser::ast::visit_expressions(select, |e| {
        match e {
            Expr::Identifier(c) => {
                used.insert(c.value.clone());
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(c) = parts.last() {
                    used.insert(c.value.clone());
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    Some(used)
}

/// The name column `column` has after a projection of `items` (`None`: dropped).
fn kept_as(items: &[String], column: &str) -> Option<String> {
    items.iter().rev().find_map(|item| {
        let parsed = sqlparser::parser::Parser::new(&sqlparser::dialect::GenericDialect {})
            .try_with_sql(item)
            .ok()?
            .parse_select_item()
            .ok()?;
        let is_column = |e: &Expr| matches!(e, Expr::Identifier(c) if c.value == column);
        match parsed {
            SelectItem::Wildcard(_) => Some(column.to_owned()),
            SelectItem::UnnamedExpr(e) if is_column(&e) => Some(column.to_owned()),
            SelectItem::ExprWithAlias { expr, alias } if is_column(&expr) => Some(alias.value),
            _ => None,
        }
    })
}

/// The expressions of a select list (not its wildcards).
fn item_exprs(items: &[SelectItem]) -> impl Iterator<Item = &Expr> {
    items.iter().filter_map(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    })
}

pub(super) fn typed_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn field_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column name as a SQL identifier.
pub(super) fn quote(name: &str) -> String {
    if !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text.to_owned()
    }
}
