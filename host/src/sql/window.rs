//! Aggregates: `GROUP BY [key,] TUMBLE|HOP|SESSION(time, …)` becomes a `builtin:window` agent,
//! and `GROUP BY key` without a window a `builtin:aggregate` agent, whose output is a changelog
//! (each group's new result as it changes); aggregate calls, `TUMBLE_START(…)` and the like in
//! the select list and `HAVING` are rewritten to the columns of its output.

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Select, SelectItem,
    Spanned, visit_expressions, visit_expressions_mut,
};
use sqlparser::tokenizer::Span;

use super::ddl::interval_ms;
use super::distinct::{Column, Distinct};
use super::error::SqlError;
use super::function::Declared;
use super::plan::{Grouped, Planner, Stream, Windowed, field_names};

impl Planner<'_> {
    /// `GROUP BY [key,] TUMBLE|HOP|SESSION(time, …)` with aggregates: a `builtin:window` agent;
    /// `GROUP BY [key]` without a window: a `builtin:aggregate` agent. The select list and
    /// `HAVING` are rewritten to read its output.
    pub(super) fn group_by(
        &mut self,
        select: &Select,
        items: &mut [SelectItem],
        having: &mut Option<Expr>,
        input: Stream,
        hint: &str,
    ) -> Result<Stream, SqlError> {
        let group_span = select.span();
        // Over an updating query, each changed row is taken back out of its group before its
        // new values are added: the changelog's key says which row a change replaces.
        let changelog_key = match (&input.updating, &input.grouped) {
            (false, _) => None,
            (true, Some(Grouped { key: Some(k), .. })) => Some(k.clone()),
            (true, _) => {
                return Err(self.error(
                    group_span,
                    "an aggregate over an updating query of one group (GROUP BY nothing) is not supported: group that query by a column",
                ));
            }
        };
        let GroupByExpr::Expressions(groups, modifiers) = &select.group_by else {
            return Err(self.error(
                group_span,
                "GROUP BY ALL is not supported: list the key and the window",
            ));
        };
        if !modifiers.is_empty() {
            return Err(self.error(
                group_span,
                "GROUP BY modifiers (ROLLUP, CUBE, …) are not supported",
            ));
        }
        let mut window: Option<(String, toml::Table, Span)> = None;
        let mut keys: Vec<String> = Vec::new();
        for g in groups {
            match g {
                Expr::Function(f) if window_kind(&f.name.to_string()).is_some() => {
                    if changelog_key.is_some() {
                        return Err(self.error(
                            g.span(),
                            "a window over an updating query (GROUP BY without a window) is not supported: its rows change after a window would close; window the rows it reads instead",
                        ));
                    }
                    if window.is_some() {
                        return Err(self.error(g.span(), "one window per GROUP BY"));
                    }
                    window = Some(self.window_config(f, &input)?);
                }
                Expr::Identifier(column) => {
                    if keys.contains(&column.value) {
                        return Err(
                            self.error(g.span(), format!("`{}` is grouped by twice", column.value))
                        );
                    }
                    keys.push(column.value.clone());
                }
                other => {
                    return Err(self.error(
                        other.span(),
                        "GROUP BY takes a column and TUMBLE(time, size), HOP(time, slide, size) or SESSION(time, gap); compute other keys in a view first",
                    ));
                }
            }
        }
        let input_schema = input.schema.clone();
        if let Some(schema) = &input_schema
            && let Some(missing) = keys.iter().find(|k| schema.field_with_name(k).is_err())
        {
            return Err(self.error(
                group_span,
                format!(
                    "no column `{missing}` to group by (columns: {})",
                    field_names(schema)
                ),
            ));
        }
        // Several key columns are grouped by one text key that encodes them all (computed
        // before the window), and come back as the window's `first` of each.
        let composite = keys.len() > 1;
        if composite && window.is_none() {
            return Err(self.error(
                group_span,
                "GROUP BY several columns needs a window (TUMBLE, HOP or SESSION): an updating query's changelog is keyed by one column; combine them into one (e.g. CONCAT(a, '/', b)) in a view first",
            ));
        }
        let key: Option<String> = match keys.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            _ => Some(COMPOSITE_KEY.to_owned()),
        };
        let mut key_columns: Vec<(String, Option<DataType>)> = Vec::new();
        if composite {
            for k in &keys {
                let ty = match &input_schema {
                    Some(schema) => {
                        let ty = schema.field_with_name(k).expect("checked").data_type();
                        Some(canonical(ty).ok_or_else(|| {
                            self.error(
                                group_span,
                                format!("GROUP BY `{k}` of type {ty} with other columns: group by integers, floats, text, booleans or timestamps"),
                            )
                        })?)
                    }
                    None => None,
                };
                key_columns.push((k.clone(), ty));
            }
        }

        // Aggregates become columns of the window's output.
        let mut aggregates: Vec<Aggregated> = Vec::new();
        // Arguments that are expressions, not columns: computed by a projection before it.
        let mut computed: Vec<String> = Vec::new();
        let mut rewrite = |e: &mut Expr, planner: &Planner<'_>| -> Result<(), SqlError> {
            let flow = visit_expressions_mut(e, |e| {
                match window_column(e) {
                    Some(column) => *e = Expr::Identifier(Ident::new(column)),
                    None => match planner.aggregate(e, input_schema.as_ref(), &mut computed) {
                        Ok(Some((spec, ty, udaf))) => {
                            let same = |a: &&Aggregated| {
                                a.spec == spec
                                    && a.udaf.as_ref().map(|d| &d.name)
                                        == udaf.as_ref().map(|d| &d.name)
                            };
                            let alias = match aggregates.iter().find(same) {
                                Some(a) => a.column.clone(),
                                None => {
                                    let column = format!("agg{}_", aggregates.len());
                                    aggregates.push(Aggregated {
                                        spec,
                                        column: column.clone(),
                                        ty,
                                        udaf,
                                    });
                                    column
                                }
                            };
                            *e = Expr::Identifier(Ident::new(alias));
                        }
                        Ok(None) => {}
                        Err(err) => return ControlFlow::Break(err),
                    },
                }
                ControlFlow::Continue(())
            });
            match flow {
                ControlFlow::Break(err) => Err(err),
                ControlFlow::Continue(()) => Ok(()),
            }
        };
        for item in items.iter_mut() {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = e.to_string();
                    let original = e.clone();
                    rewrite(e, self)?;
                    if *e != original && !matches!(&original, Expr::Identifier(_)) {
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::with_quote(
                                '"',
                                window_column(&original).unwrap_or(&name),
                            ),
                        };
                    }
                }
                SelectItem::ExprWithAlias { expr, .. } => rewrite(expr, self)?,
                SelectItem::Wildcard(_) => {
                    return Err(self.error(
                        item.span(),
                        "SELECT * with GROUP BY: list the key, window_start/window_end and the aggregates",
                    ));
                }
                _ => {}
            }
        }
        if let Some(h) = having {
            rewrite(h, self)?;
        }
        // No aggregate: the rows are the distinct groups of each window.
        let distinct = aggregates.is_empty();
        if aggregates.is_empty() {
            if window.is_none() {
                return Err(self.error(
                    group_span,
                    "GROUP BY without a window and without an aggregate: add COUNT(*), SUM(x), AVG(x), MIN(x) or MAX(x)",
                ));
            }
            // The distinct groups of each window: the operator counts their rows, unread.
            aggregates.push(Aggregated {
                spec: "count(*)".into(),
                column: "agg0_".into(),
                ty: DataType::Int64,
                udaf: None,
            });
        }

        // The rows a distinct query groups (their own description is not needed).
        let grouped_rows = distinct.then(|| Stream {
            distinct: None,
            ..input.clone()
        });
        let input = if computed.is_empty() && !composite {
            input
        } else {
            let items: Vec<String> = ["*".to_owned()]
                .into_iter()
                .chain(
                    computed
                        .iter()
                        .enumerate()
                        .map(|(i, text)| format!("{text} AS {}", computed_column(i))),
                )
                .chain(composite.then(|| format!("{} AS {COMPOSITE_KEY}", composite_key(&keys))))
                .collect();
            let agent = self.fresh(&format!("{hint}_inputs"));
            self.project(&agent, &input, &items, group_span)?
        };

        let aggregate_list = toml::Value::Array(
            aggregates
                .iter()
                .map(|a| format!("{} AS {}", a.spec, a.operator_column()).into())
                .chain(
                    key_columns
                        .iter()
                        .map(|(k, _)| format!("first({k}) AS {k}").into()),
                )
                .collect(),
        );
        let key_field = |schema: &SchemaRef| {
            if composite {
                return Some(Field::new(COMPOSITE_KEY, DataType::Utf8, false));
            }
            key.as_ref().and_then(|key| {
                let f = schema.field_with_name(key).ok()?;
                Some(Field::new(key, f.data_type().clone(), false))
            })
        };
        let aggregate_fields = aggregates
            .iter()
            .map(|a| Field::new(a.operator_column(), a.ty.clone(), true))
            .chain(
                key_columns
                    .iter()
                    .map(|(k, ty)| Field::new(k, ty.clone().unwrap_or(DataType::Utf8), true)),
            );

        // Without a window, an updating aggregate: a changelog of each group's result.
        if window.is_none()
            && let Some(udaf) = aggregates.iter().find_map(|a| a.udaf.as_ref())
        {
            return Err(self.error(
                group_span,
                format!("the user-defined aggregate `{}` needs a window: GROUP BY …, TUMBLE(time, size), HOP(…) or SESSION(…) (it folds each window's values when the window closes)", udaf.name),
            ));
        }
        if changelog_key.is_some()
            && let Some(a) = aggregates.iter().find(|a| {
                !["count(", "sum(", "mean("]
                    .iter()
                    .any(|f| a.spec.starts_with(f))
            })
        {
            return Err(self.error(
                group_span,
                format!("`{}` over an updating query: a changed row is taken back out of its group, which COUNT, SUM and AVG can do and MIN, MAX, FIRST_VALUE and LAST_VALUE cannot", a.spec),
            ));
        }
        let Some((time, mut config, _)) = window else {
            let mut config = toml::Table::new();
            if let Some(k) = &changelog_key {
                config.insert("changelog_key".into(), k.clone().into());
            }
            if let Some(key) = &key {
                config.insert("key".into(), key.clone().into());
            }
            if let Some(time) = &input.time {
                config.insert("time".into(), time.clone().into());
            }
            // GROUP BY the key of an interval join: the join folds each key's pairs.
            let specs: Vec<(String, String)> = aggregates
                .iter()
                .map(|a| (a.spec.clone(), a.operator_column()))
                .collect();
            let fused = (changelog_key.is_none() && computed.is_empty())
                .then(|| self.group_interval_join(&input, key.as_deref(), &specs, hint))
                .flatten();
            let (agent, final_rows) = match fused {
                Some(fused) => fused,
                None => {
                    config.insert("aggregates".into(), aggregate_list);
                    let agent = self.fresh(&format!("{hint}_aggregate"));
                    self.agent(&agent, "builtin:aggregate", config, key.as_deref(), &input);
                    (agent, false)
                }
            };
            let schema = input_schema.map(|schema| {
                let fields: Vec<Field> = key_field(&schema)
                    .into_iter()
                    .chain(aggregate_fields)
                    .collect();
                Arc::new(Schema::new(fields))
            });
            // A join grouped by a unique left key emits each key once, final: plain rows, one
            // per key.
            return Ok(Stream {
                nodes: vec![agent],
                schema,
                time: None,
                unique: key.clone().filter(|_| final_rows),
                grouped: Some(Grouped { key, window: false }),
                updating: !final_rows,
                windowed: None,
                distinct: None,
            });
        };
        let windowed = Windowed {
            start: Some("window_start".into()),
            end: Some("window_end".into()),
            size_ms: config.get("size_ms").and_then(toml::Value::as_integer),
            tumbling: config.get("kind").and_then(toml::Value::as_str) == Some("tumbling"),
        };
        config.insert("time".into(), time.clone().into());
        if let Some(key) = &key {
            config.insert("key".into(), key.clone().into());
        }
        config.insert("aggregates".into(), aggregate_list);
        let agent = self.fresh(&format!("{hint}_window"));
        self.agent(&agent, "builtin:window", config, key.as_deref(), &input);

        let schema = input_schema.map(|schema| {
            let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
            let fields: Vec<Field> = key_field(&schema)
                .into_iter()
                .chain([
                    Field::new("window_start", ts.clone(), false),
                    Field::new("window_end", ts, false),
                ])
                .chain(aggregate_fields)
                .collect();
            Arc::new(Schema::new(fields))
        });
        let mut stream = Stream {
            nodes: vec![agent.clone()],
            schema,
            time: None,
            grouped: Some(Grouped { key, window: true }),
            updating: false,
            distinct: None,
            windowed: Some(windowed),
            unique: None,
        };
        if let Some(grouped_rows) = grouped_rows
            && let Some(Windowed {
                tumbling: true,
                size_ms: Some(size_ms),
                ..
            }) = stream.windowed
        {
            let columns = keys
                .iter()
                .map(|k| (k.clone(), Column::Group(k.clone())))
                .chain([
                    ("window_start".to_owned(), Column::Start),
                    ("window_end".to_owned(), Column::End),
                ])
                .collect();
            stream.distinct = Some(Box::new(Distinct {
                output: agent.clone(),
                input: grouped_rows,
                time,
                size_ms,
                columns,
            }));
        }
        for a in &aggregates {
            if let Some(declared) = &a.udaf {
                let agent = self.fresh(&declared.name.to_ascii_lowercase());
                let args = vec![a.operator_column()];
                self.apply_function(declared, &agent, args, &a.column, &mut stream, group_span)?;
            }
        }
        Ok(stream)
    }

    /// `TUMBLE(time, size)`, `HOP(time, slide, size)`, `SESSION(time, gap)`: the time column and
    /// the window's settings.
    pub(super) fn window_config(
        &self,
        f: &sqlparser::ast::Function,
        input: &Stream,
    ) -> Result<(String, toml::Table, Span), SqlError> {
        let span = f.span();
        let name = f.name.to_string().to_ascii_uppercase();
        let kind = window_kind(&name).expect("a window function");
        let args = call_args(f);
        let usage = match kind {
            "tumbling" => "TUMBLE(time_column, INTERVAL '1' MINUTE)",
            "sliding" => {
                "HOP(time_column, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) (slide, then size)"
            }
            _ => "SESSION(time_column, INTERVAL '30' SECOND)",
        };
        let expected = if kind == "sliding" { 3 } else { 2 };
        if args.len() != expected {
            return Err(self.error(span, format!("expected {usage}")));
        }
        let time = match args[0] {
            Expr::Identifier(c) => c.value.clone(),
            other => return Err(self.error(other.span(), format!("expected a column: {usage}"))),
        };
        match &input.time {
            Some(t) if t.eq_ignore_ascii_case(&time) => {}
            Some(t) => {
                return Err(self.error(
                    args[0].span(),
                    format!("windows are on the event-time column, `{t}`, not `{time}`"),
                ));
            }
            None => {
                return Err(self.error(
                    args[0].span(),
                    format!("a window over `{time}` needs event time: declare WATERMARK FOR {time} AS {time} - INTERVAL '…' SECOND in the CREATE TABLE it reads"),
                ));
            }
        }
        let mut ms = Vec::new();
        for arg in &args[1..] {
            match arg {
                Expr::Interval(interval) => {
                    ms.push(interval_ms(self.source, interval, arg.span())?)
                }
                other => {
                    return Err(self.error(other.span(), format!("expected an interval: {usage}")));
                }
            }
        }
        let mut config = toml::Table::new();
        config.insert("kind".into(), kind.into());
        match kind {
            "tumbling" => {
                config.insert("size_ms".into(), ms[0].into());
            }
            "sliding" => {
                config.insert("slide_ms".into(), ms[0].into());
                config.insert("size_ms".into(), ms[1].into());
            }
            _ => {
                config.insert("gap_ms".into(), ms[0].into());
            }
        }
        Ok((time, config, span))
    }

    /// An aggregate call as the window operator's `function(column)` and its result type.
    /// An argument that is an expression is added to `computed` (once per distinct text) and
    /// read from the column [`computed_column`] names.
    fn aggregate(
        &self,
        e: &Expr,
        schema: Option<&SchemaRef>,
        computed: &mut Vec<String>,
    ) -> Result<Option<(String, DataType, Option<Declared>)>, SqlError> {
        let Expr::Function(f) = e else {
            return Ok(None);
        };
        let name = f.name.to_string().to_ascii_uppercase();
        let udaf = super::function::called(&self.functions, e)
            .filter(|d| d.aggregate)
            .cloned();
        let function = match name.as_str() {
            _ if udaf.is_some() => "collect",
            "COUNT" => "count",
            "SUM" => "sum",
            "AVG" => "mean",
            "MIN" => "min",
            "MAX" => "max",
            "FIRST_VALUE" => "first",
            "LAST_VALUE" => "last",
            _ => return Ok(None),
        };
        if let FunctionArguments::List(list) = &f.args
            && list.duplicate_treatment.is_some()
        {
            return Err(self.error(e.span(), format!("{name}(DISTINCT …) is not supported")));
        }
        let args = call_args(f);
        let wildcard = matches!(&f.args, FunctionArguments::List(l) if matches!(l.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]));
        if wildcard && function == "count" {
            return Ok(Some(("count(*)".into(), DataType::Int64, None)));
        }
        let column = match args.as_slice() {
            [Expr::Identifier(c)] => c.value.clone(),
            [argument] => {
                // Inner calls are rewritten first: a nested aggregate reads as its alias.
                let mut nested = (*argument).clone();
                let inner = visit_expressions_mut(&mut nested, |e| match e {
                    Expr::Identifier(i) if is_aggregate_alias(&i.value) => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                });
                if inner.is_break() {
                    return Err(self.error(
                        argument.span(),
                        format!("{name} of an aggregate: aggregate in a view first, then aggregate its rows"),
                    ));
                }
                let text = argument.to_string();
                let i = computed.iter().position(|t| *t == text).unwrap_or_else(|| {
                    computed.push(text.clone());
                    computed.len() - 1
                });
                let column = computed_column(i);
                let ty = match schema {
                    Some(schema) => Some(self.expression_type(&text, argument.span(), schema)?),
                    None => None,
                };
                let ty = self.collected(function, ty, e)?;
                return Ok(Some((
                    format!("{function}({column})"),
                    result_type(function, ty),
                    udaf,
                )));
            }
            _ => {
                return Err(self.error(e.span(), format!("{name} takes one argument")));
            }
        };
        let input = schema.and_then(|s| {
            s.field_with_name(&column)
                .ok()
                .map(|f| f.data_type().clone())
        });
        if let Some(schema) = schema
            && input.is_none()
        {
            return Err(self.error(
                e.span(),
                format!(
                    "unknown column `{column}` in `{e}` (columns: {})",
                    field_names(schema)
                ),
            ));
        }
        let input = self.collected(function, input, e)?;
        Ok(Some((
            format!("{function}({column})"),
            result_type(function, input),
            udaf,
        )))
    }

    /// For `collect` (a user-defined aggregate's values), the list of the values' canonical
    /// type, as the window operator builds it; other aggregates' input types as they are.
    fn collected(
        &self,
        function: &str,
        input: Option<DataType>,
        e: &Expr,
    ) -> Result<Option<DataType>, SqlError> {
        if function != "collect" {
            return Ok(input);
        }
        let Some(input) = input else { return Ok(None) };
        let element = canonical(&input).ok_or_else(|| {
            self.error(
                e.span(),
                format!("`{e}`: a user-defined aggregate takes integers, floats, text, booleans or timestamps, not {input}"),
            )
        })?;
        Ok(Some(DataType::List(Arc::new(Field::new_list_field(
            element, true,
        )))))
    }

    /// The type of expression `text` over rows of `schema`.
    fn expression_type(
        &self,
        text: &str,
        span: Span,
        schema: &SchemaRef,
    ) -> Result<DataType, SqlError> {
        let out = self.check_items(&[format!("{text} AS x")], span, schema)?;
        Ok(out.field(0).data_type().clone())
    }
}

/// An aggregate of a `GROUP BY`, as a column of the window's output.
struct Aggregated {
    /// What the window operator computes: `sum(amount)`, `collect(aggin0_)`…
    spec: String,
    /// The column the query reads: `agg0_`, …
    column: String,
    /// The type of the operator's column.
    ty: DataType,
    /// The user-defined aggregate that folds the operator's list into `column`, if any.
    udaf: Option<Declared>,
}

impl Aggregated {
    /// The window operator's column: the result itself, or (for a user-defined aggregate) the
    /// values collected as `aggN_list`, folded after the window into `aggN_`.
    fn operator_column(&self) -> String {
        match self.udaf {
            Some(_) => format!("{}list", self.column),
            None => self.column.clone(),
        }
    }
}

/// The key column a window groups by when a query groups by several columns.
pub(super) const COMPOSITE_KEY: &str = "group_key_";

/// One text value per distinct combination of `columns`' values (NULL included): `GROUP_KEY`,
/// each value as its length and its text, `-` for NULL, joined by commas.
pub(super) fn composite_key(columns: &[String]) -> String {
    let columns: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    format!("GROUP_KEY({})", columns.join(", "))
}

/// The type the window operator reads values of `ty` as (what `first` and `collect` return).
pub(super) fn canonical(ty: &DataType) -> Option<DataType> {
    Some(match ty {
        t if t.is_integer() && *t != DataType::UInt64 => DataType::Int64,
        DataType::Float32 | DataType::Float64 => DataType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Boolean => DataType::Boolean,
        DataType::Timestamp(..) => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => return None,
    })
}

/// Whether `name` is the column of an aggregate's result (`agg0_`, `agg1_`, …).
fn is_aggregate_alias(name: &str) -> bool {
    name.strip_prefix("agg")
        .and_then(|r| r.strip_suffix('_'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The column a projection computes an aggregate's `i`th expression argument into.
fn computed_column(i: usize) -> String {
    format!("aggin{i}_")
}

/// The type of `function`'s result over values of type `input` (`None`: not known here).
fn result_type(function: &str, input: Option<DataType>) -> DataType {
    match (function, input) {
        ("collect", Some(t)) => t,
        ("count", _) => DataType::Int64,
        ("mean", _) => DataType::Float64,
        ("sum", Some(t)) if t.is_integer() => DataType::Int64,
        ("sum", _) => DataType::Float64,
        (_, Some(t)) => t,
        (_, None) => DataType::Float64,
    }
}

pub(super) fn window_kind(name: &str) -> Option<&'static str> {
    match name.to_ascii_uppercase().as_str() {
        "TUMBLE" => Some("tumbling"),
        "HOP" => Some("sliding"),
        "SESSION" => Some("session"),
        _ => None,
    }
}

/// `TUMBLE_START(…)`, `HOP_END(…)`, … as the window operator's column.
pub(super) fn window_column(e: &Expr) -> Option<&'static str> {
    let Expr::Function(f) = e else {
        return None;
    };
    match f.name.to_string().to_ascii_uppercase().as_str() {
        "TUMBLE_START" | "HOP_START" | "SESSION_START" => Some("window_start"),
        "TUMBLE_END" | "HOP_END" | "SESSION_END" => Some("window_end"),
        _ => None,
    }
}

pub(super) fn call_args(f: &sqlparser::ast::Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `expr` holds an aggregate call anywhere.
pub(super) fn contains_aggregate(expr: &Expr) -> bool {
    visit_expressions(expr, |e| {
        if let Expr::Function(f) = e
            && f.over.is_none()
            && matches!(
                f.name.to_string().to_ascii_uppercase().as_str(),
                "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" | "FIRST_VALUE" | "LAST_VALUE"
            )
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .is_break()
}
