//! Aggregates over a window of rows: `OVER (PARTITION BY … ORDER BY … frame)` becomes a
//! `builtin:over` agent.
//!
//! ```sql
//! SELECT card_id, amount,
//!        AVG(amount) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS recent,
//!        LAG(country) OVER (PARTITION BY card_id ORDER BY ts) AS country_before
//! FROM transactions;
//! ```
//!
//! `COUNT`, `SUM`, `AVG`, `MIN`, `MAX`, `FIRST_VALUE`, `LAST_VALUE` of a column (or
//! `COUNT(*)`) and `LAG(column [, k])`, anywhere in the select list, all with one window: at
//! most one `PARTITION BY` column, `ORDER BY` the event-time column, and a frame ending at the
//! current row — `ROWS BETWEEN n PRECEDING AND CURRENT ROW`, `RANGE BETWEEN INTERVAL … PRECEDING
//! AND CURRENT ROW`, `ROWS`/`RANGE UNBOUNDED PRECEDING`, or none (`RANGE UNBOUNDED PRECEDING`).
//! Over an append-only stream each row is emitted once, when the watermark passes its time.
//! Over an updating query (a changelog) the frame is `ROWS BETWEEN n PRECEDING AND CURRENT ROW`,
//! ordered by any time column, and the result is a changelog with the same key (Nexmark q6).

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, OrderBySort, SelectItem, Spanned,
    WindowFrameBound, WindowFrameUnits, WindowSpec, WindowType, visit_expressions_mut,
};

use super::error::SqlError;
use super::plan::{Planner, Stream, field_names};
use super::window::canonical;

/// The most rows a frame reads (`sabot_operators::over::MAX_FRAME_ROWS`).
const MAX_FRAME_ROWS: u64 = 10_000;

/// The operator's name of an aggregate of SQL's `name` computed over a window of rows.
fn over_function(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_uppercase().as_str() {
        "COUNT" => "count",
        "SUM" => "sum",
        "AVG" => "avg",
        "MIN" => "min",
        "MAX" => "max",
        "FIRST_VALUE" => "first",
        "LAST_VALUE" => "last",
        "LAG" => "lag",
        _ => return None,
    })
}

/// Whether `e` is a call computed over a window of rows (not a ranking).
fn is_over_call(e: &Expr) -> bool {
    matches!(e, Expr::Function(f) if f.over.is_some() && over_function(&f.name.to_string()).is_some())
}

/// Whether a select list computes anything over a window of rows.
pub(super) fn computes_over(items: &[SelectItem]) -> bool {
    items.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            let mut found = false;
            let mut e = e.clone();
            let _ = visit_expressions_mut(&mut e, |e| {
                found |= is_over_call(e);
                ControlFlow::<()>::Continue(())
            });
            found
        }
        _ => false,
    })
}

/// One call of the select list: the operator's function and the column it becomes.
struct Call {
    function: String,
    column: String,
    /// The column it reads (`None`: `COUNT(*)`).
    input: Option<String>,
    kind: &'static str,
}

impl Planner<'_> {
    /// The calls over windows of rows in `items` as one `builtin:over` agent over `input`;
    /// `items` is rewritten to read the columns it adds.
    pub(super) fn over(
        &mut self,
        items: &mut [SelectItem],
        input: Stream,
        hint: &str,
    ) -> Result<Stream, SqlError> {
        let wildcard = items.iter().any(|i| matches!(i, SelectItem::Wildcard(_)));
        let mut calls: Vec<Call> = Vec::new();
        let mut spec: Option<(WindowSpec, String)> = None;
        let mut failed: Option<SqlError> = None;
        for item in items.iter_mut() {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                _ => continue,
            };
            // An item that is a single call names its column after its alias.
            let whole = is_over_call(e);
            let original = e.to_string();
            if whole && alias.is_none() && wildcard {
                return Err(self.error(
                    e.span(),
                    format!("name it: `{e} AS name` (beside SELECT *, each column needs a name)"),
                ));
            }
            let _ = visit_expressions_mut(e, |e| {
                if failed.is_some() || !is_over_call(e) {
                    return ControlFlow::Continue(());
                }
                let column = match (&alias, whole) {
                    (Some(a), true) => a.clone(),
                    _ => format!("_over{}", calls.len()),
                };
                match self.over_call(e, &column, &mut spec) {
                    Ok(call) => {
                        calls.push(call);
                        *e = Expr::Identifier(Ident::new(&column));
                    }
                    Err(err) => failed = Some(err),
                }
                ControlFlow::<()>::Continue(())
            });
            if let Some(err) = failed.take() {
                return Err(err);
            }
            // `AVG(x) OVER (…)` without an alias is still called so downstream.
            if whole
                && alias.is_none()
                && let SelectItem::UnnamedExpr(e) = item
            {
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: Ident::with_quote('"', original),
                };
            }
        }
        let (spec, text) = spec.expect("the caller saw a call");
        let span = calls_span(&spec);

        // PARTITION BY at most one column.
        let partition = match spec.partition_by.as_slice() {
            [] => None,
            [Expr::Identifier(c)] => Some(c.value.clone()),
            [other] => {
                return Err(self.error(
                    other.span(),
                    "PARTITION BY a column: compute the expression in a view first",
                ));
            }
            [_, second, ..] => {
                return Err(self.error(
                    second.span(),
                    "PARTITION BY one column: combine several into one in a view first",
                ));
            }
        };
        // ORDER BY time.
        let [order] = spec.order_by.as_slice() else {
            return Err(self.error(
                span,
                format!(
                    "OVER ({text}) needs ORDER BY one time column: rows are taken in time order"
                ),
            ));
        };
        let Expr::Identifier(order_column) = &order.expr else {
            return Err(self.error(order.expr.span(), "ORDER BY a time column"));
        };
        if matches!(order.options.sort, Some(OrderBySort::Desc)) {
            return Err(self.error(
                order.expr.span(),
                "ORDER BY … DESC: a streaming window of rows reads the rows before each row, in ascending time",
            ));
        }
        let order_column = order_column.value.clone();

        let mut config = toml::Table::new();
        if let Some(p) = &partition {
            config.insert("partition".into(), p.clone().into());
        }
        config.insert("order".into(), order_column.clone().into());
        let key = if input.updating {
            let Some(key) = input.grouped.as_ref().and_then(|g| g.key.clone()) else {
                return Err(self.error(
                    span,
                    "OVER of an updating query needs its group column (GROUP BY one column)",
                ));
            };
            config.insert("changelog_key".into(), key.into());
            None
        } else {
            match &input.time {
                Some(t) if t.eq_ignore_ascii_case(&order_column) => {}
                Some(t) => {
                    return Err(self.error(
                        order.expr.span(),
                        format!("ORDER BY the event-time column, `{t}`, not `{order_column}`: rows are emitted as the watermark passes them"),
                    ));
                }
                None => {
                    return Err(self.error(
                        order.expr.span(),
                        format!("OVER (ORDER BY {order_column}) needs event time: declare WATERMARK FOR {order_column} AS {order_column} - INTERVAL '…' SECOND in the CREATE TABLE it reads"),
                    ));
                }
            }
            partition.clone()
        };
        self.frame(&spec, &text, input.updating, span, &mut config)?;
        config.insert(
            "functions".into(),
            toml::Value::Array(calls.iter().map(|c| c.function.clone().into()).collect()),
        );

        let schema = match &input.schema {
            Some(schema) => {
                Some(self.over_schema(schema, &calls, partition.as_deref(), &order_column, span)?)
            }
            None => None,
        };
        let agent = self.fresh(&format!("{hint}_over"));
        self.agent(&agent, "builtin:over", config, key.as_deref(), &input);
        Ok(Stream {
            nodes: vec![agent],
            schema,
            distinct: None,
            ..input
        })
    }

    /// One call: checked, its window compared with the others'.
    fn over_call(
        &self,
        e: &Expr,
        column: &str,
        spec: &mut Option<(WindowSpec, String)>,
    ) -> Result<Call, SqlError> {
        let Expr::Function(f) = e else {
            unreachable!("an over call")
        };
        let kind = over_function(&f.name.to_string()).expect("an over call");
        let Some(WindowType::WindowSpec(this)) = &f.over else {
            return Err(self.error(
                e.span(),
                "a named window (OVER w) is not supported: write OVER (PARTITION BY … ORDER BY … ROWS …)",
            ));
        };
        if this.window_name.is_some() {
            return Err(self.error(e.span(), "OVER (w …) naming a window is not supported"));
        }
        let text = this.to_string();
        match spec {
            Some((_, first)) if *first != text => {
                return Err(self.error(
                    e.span(),
                    format!("every OVER of a query is the same window: ({first}), not ({text}); compute the other in a view"),
                ));
            }
            Some(_) => {}
            None => *spec = Some((this.clone(), text)),
        }
        let usage = match kind {
            "lag" => "LAG(column [, offset])",
            "count" => "COUNT(*) or COUNT(column)",
            _ => "a column",
        };
        let list = match &f.args {
            FunctionArguments::List(l)
                if l.duplicate_treatment.is_none() && l.clauses.is_empty() =>
            {
                &l.args
            }
            FunctionArguments::None => {
                return Err(self.error(e.span(), format!("{} takes {usage}", f.name)));
            }
            _ => {
                return Err(self.error(
                    e.span(),
                    format!("{}: DISTINCT and clauses inside the call are not supported over a window of rows", f.name),
                ));
            }
        };
        if f.filter.is_some() || f.null_treatment.is_some() || !f.within_group.is_empty() {
            return Err(self.error(
                e.span(),
                "FILTER, IGNORE NULLS and WITHIN GROUP are not supported over a window of rows",
            ));
        }
        let bad = |at: &Expr| {
            self.error(
                at.span(),
                format!("{} over a window of rows takes {usage}: compute the expression in a view first", f.name),
            )
        };
        let (input, function) = match (kind, list.as_slice()) {
            ("count", [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]) => {
                (None, format!("count(*) AS {column}"))
            }
            (_, [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c)))]) => (
                Some(c.value.clone()),
                format!("{kind}({}) AS {column}", c.value),
            ),
            (
                "lag",
                [
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c))),
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(k)),
                ],
            ) => {
                let offset = match k {
                    Expr::Value(v) => match &v.value {
                        sqlparser::ast::Value::Number(n, _) => n.parse::<u64>().ok(),
                        _ => None,
                    },
                    _ => None,
                }
                .filter(|k| (1..=MAX_FRAME_ROWS).contains(k))
                .ok_or_else(|| {
                    self.error(
                        k.span(),
                        format!("LAG's offset is a number from 1 to {MAX_FRAME_ROWS}"),
                    )
                })?;
                (
                    Some(c.value.clone()),
                    format!("lag({}, {offset}) AS {column}", c.value),
                )
            }
            (_, [FunctionArg::Unnamed(FunctionArgExpr::Expr(other)), ..]) => {
                return Err(bad(other));
            }
            _ => return Err(bad(e)),
        };
        Ok(Call {
            function,
            column: column.to_owned(),
            input,
            kind,
        })
    }

    /// The frame of `spec` as the operator's `preceding`, `range_ms` or `unbounded`.
    fn frame(
        &self,
        spec: &WindowSpec,
        text: &str,
        updating: bool,
        span: sqlparser::tokenizer::Span,
        config: &mut toml::Table,
    ) -> Result<(), SqlError> {
        let changelog_usage = "over an updating query, a frame is ROWS BETWEEN n PRECEDING AND CURRENT ROW: a change re-emits the n rows after it";
        let Some(frame) = &spec.window_frame else {
            if updating {
                return Err(self.error(span, format!("OVER ({text}): {changelog_usage}")));
            }
            config.insert("unbounded".into(), "range".into());
            return Ok(());
        };
        if !matches!(frame.end_bound, None | Some(WindowFrameBound::CurrentRow)) {
            return Err(self.error(
                span,
                format!("OVER ({text}): a streaming frame ends at the CURRENT ROW (a row is emitted before the rows after it arrive)"),
            ));
        }
        match (&frame.units, &frame.start_bound) {
            (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow) => {
                config.insert("preceding".into(), 0.into());
            }
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(Some(n))) => {
                let rows = match n.as_ref() {
                    Expr::Value(v) => match &v.value {
                        sqlparser::ast::Value::Number(n, _) => n.parse::<u64>().ok(),
                        _ => None,
                    },
                    _ => None,
                }
                .filter(|n| *n <= MAX_FRAME_ROWS)
                .ok_or_else(|| {
                    self.error(
                        n.span(),
                        format!("`{n}`: ROWS BETWEEN n PRECEDING takes a number from 0 to {MAX_FRAME_ROWS}"),
                    )
                })?;
                config.insert("preceding".into(), i64::try_from(rows).unwrap_or(0).into());
            }
            (_, _) if updating => {
                return Err(self.error(span, format!("OVER ({text}): {changelog_usage}")));
            }
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(None)) => {
                config.insert("unbounded".into(), "rows".into());
            }
            (WindowFrameUnits::Range, WindowFrameBound::Preceding(None)) => {
                config.insert("unbounded".into(), "range".into());
            }
            (WindowFrameUnits::Range, WindowFrameBound::CurrentRow) => {
                config.insert("range_ms".into(), 0.into());
            }
            (WindowFrameUnits::Range, WindowFrameBound::Preceding(Some(d))) => {
                let Expr::Interval(interval) = d.as_ref() else {
                    return Err(self.error(
                        d.span(),
                        "RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW: the range is an interval of time",
                    ));
                };
                let ms = super::ddl::interval_ms(self.source, interval, d.span())?;
                config.insert("range_ms".into(), ms.into());
            }
            (WindowFrameUnits::Groups, _) => {
                return Err(self.error(span, "GROUPS frames are not supported: use ROWS or RANGE"));
            }
            (_, WindowFrameBound::Following(_)) => {
                return Err(self.error(
                    span,
                    format!(
                        "OVER ({text}): a streaming frame starts before the current row (PRECEDING)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The operator's output: the input's columns (canonical types) and one per call.
    fn over_schema(
        &self,
        schema: &arrow_schema::SchemaRef,
        calls: &[Call],
        partition: Option<&str>,
        order: &str,
        span: sqlparser::tokenizer::Span,
    ) -> Result<arrow_schema::SchemaRef, SqlError> {
        let missing = |c: &str| {
            self.error(
                span,
                format!("no column `{c}` (columns: {})", field_names(schema)),
            )
        };
        for c in [partition, Some(order)].into_iter().flatten() {
            schema.field_with_name(c).map_err(|_| missing(c))?;
        }
        let order_type = schema.field_with_name(order).map(|f| f.data_type().clone());
        if !matches!(order_type, Ok(DataType::Int64 | DataType::Timestamp(..))) {
            return Err(self.error(
                span,
                format!("ORDER BY `{order}`: expected a timestamp or int64 milliseconds"),
            ));
        }
        let mut fields = Vec::new();
        for f in schema.fields() {
            let ty = canonical(f.data_type()).ok_or_else(|| {
                self.error(
                    span,
                    format!("OVER carries integers, floats, text, booleans and timestamps, not `{}` of type {}: select the columns first", f.name(), f.data_type()),
                )
            })?;
            fields.push(Field::new(f.name(), ty, true));
        }
        for call in calls {
            let input = match &call.input {
                Some(c) => Some(
                    schema
                        .field_with_name(c)
                        .map_err(|_| missing(c))
                        .map(|f| canonical(f.data_type()).unwrap_or(DataType::Float64))?,
                ),
                None => None,
            };
            let ty = match (call.kind, input) {
                ("count", _) => DataType::Int64,
                ("avg", _) => DataType::Float64,
                ("sum", Some(t)) if t != DataType::Int64 && t != DataType::Float64 => {
                    return Err(self.error(
                        span,
                        format!("{}: SUM needs a numeric column", call.function),
                    ));
                }
                (_, Some(t)) => t,
                (_, None) => DataType::Int64,
            };
            fields.push(Field::new(&call.column, ty, true));
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// Where errors about the window as a whole point: its first `PARTITION BY` or `ORDER BY`.
fn calls_span(spec: &WindowSpec) -> sqlparser::tokenizer::Span {
    spec.partition_by
        .first()
        .map(Spanned::span)
        .or_else(|| spec.order_by.first().map(|o| o.expr.span()))
        .unwrap_or(sqlparser::tokenizer::Span::empty())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{agent_running, err, ok, strings};

    #[test]
    fn calls_over_one_window_become_one_over_agent_keyed_by_the_partition() {
        let doc = ok("INSERT INTO out SELECT card_id, amount,
                AVG(amount) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS recent,
                amount - LAG(amount, 2) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS jump,
                COUNT(*) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)
            FROM transactions WHERE amount > 0;");
        let over = agent_running(&doc, "builtin:over");
        assert_eq!(over["key"].as_str(), Some("card_id"), "{doc}");
        let config = &over["config"];
        assert_eq!(config["partition"].as_str(), Some("card_id"));
        assert_eq!(config["order"].as_str(), Some("ts"));
        assert_eq!(config["preceding"].as_integer(), Some(9));
        assert_eq!(
            strings(&config["functions"]),
            [
                "avg(amount) AS recent",
                "lag(amount, 2) AS _over1",
                "count(*) AS _over2"
            ]
        );
        let select =
            strings(&agent_running(&doc, "builtin:project")["config"]["select"]).join("; ");
        assert!(select.contains("recent AS recent"), "{select}");
        assert!(select.contains("amount - _over1 AS jump"), "{select}");
        assert!(select.contains("_over2 AS \"COUNT(*) OVER ("), "{select}");
        // The filter runs before the window: WHERE chooses the rows it reads.
        let edges = strings(&doc["edges"]).join("; ");
        assert!(edges.contains("_where -> out_over"), "{edges}");
    }

    #[test]
    fn frames_become_rows_ranges_or_unbounded() {
        for (frame, key, value) in [
            ("ROWS 3 PRECEDING", "preceding", toml::Value::from(3)),
            (
                "ROWS BETWEEN CURRENT ROW AND CURRENT ROW",
                "preceding",
                0.into(),
            ),
            ("ROWS UNBOUNDED PRECEDING", "unbounded", "rows".into()),
            ("", "unbounded", "range".into()),
            (
                "RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW",
                "range_ms",
                60_000.into(),
            ),
        ] {
            let doc = ok(&format!(
                "INSERT INTO out SELECT SUM(amount) OVER (ORDER BY ts {frame}) AS s FROM transactions;"
            ));
            let over = agent_running(&doc, "builtin:over");
            assert_eq!(over["config"][key], value, "{frame}: {doc}");
            assert!(over.get("key").is_none(), "one partition, one instance");
        }
    }

    #[test]
    fn over_mistakes_name_what_a_streaming_window_of_rows_needs() {
        let cases = [
            (
                "SUM(amount) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)",
                "ends at the CURRENT ROW",
            ),
            (
                "SUM(amount) OVER (PARTITION BY card_id)",
                "needs ORDER BY one time column",
            ),
            (
                "SUM(amount) OVER (ORDER BY amount)",
                "ORDER BY the event-time column, `ts`",
            ),
            ("SUM(amount) OVER (ORDER BY ts DESC)", "ascending time"),
            (
                "SUM(amount * 2) OVER (ORDER BY ts)",
                "compute the expression in a view",
            ),
            (
                "SUM(amount) OVER (PARTITION BY card_id, country ORDER BY ts)",
                "PARTITION BY one column",
            ),
            (
                "SUM(amount) OVER (ORDER BY ts ROWS 10001 PRECEDING)",
                "from 0 to 10000",
            ),
            (
                "LAG(amount, 0) OVER (ORDER BY ts)",
                "offset is a number from 1",
            ),
            (
                "SUM(amount) OVER (ORDER BY ts GROUPS 2 PRECEDING)",
                "GROUPS frames",
            ),
            (
                "SUM(amount) OVER (ORDER BY ts), COUNT(*) OVER (ORDER BY ts ROWS 2 PRECEDING)",
                "every OVER of a query is the same window",
            ),
            (
                "SUM(country) OVER (ORDER BY ts)",
                "SUM needs a numeric column",
            ),
        ];
        for (call, expected) in cases {
            let e = err(&format!(
                "INSERT INTO out SELECT {call} AS x FROM transactions;"
            ));
            assert!(e.to_string().contains(expected), "{call}: {e}");
        }
        let e = err(
            "INSERT INTO out SELECT card_id, SUM(amount) OVER (ORDER BY ts) FROM transactions GROUP BY card_id;",
        );
        assert!(e.to_string().contains("OVER and GROUP BY"), "{e}");
        let e = err("INSERT INTO out SELECT *, SUM(amount) OVER (ORDER BY ts) FROM transactions;");
        assert!(e.to_string().contains("name it"), "{e}");
    }

    #[test]
    fn over_an_updating_query_reads_its_changelog_by_rows() {
        let updating = "CREATE VIEW totals AS SELECT card_id, SUM(amount) AS total, MAX(ts) AS latest FROM transactions GROUP BY card_id;\n";
        let doc = ok(&format!(
            "{updating}CREATE MATERIALIZED VIEW ranked AS SELECT card_id,
                AVG(total) OVER (ORDER BY latest ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS nearby
             FROM totals;"
        ));
        let over = agent_running(&doc, "builtin:over");
        assert_eq!(
            over["config"]["changelog_key"].as_str(),
            Some("card_id"),
            "{doc}"
        );
        assert!(over.get("key").is_none(), "one instance: {doc}");
        let e = err(&format!(
            "{updating}CREATE MATERIALIZED VIEW ranked AS SELECT card_id,
                AVG(total) OVER (ORDER BY latest) AS nearby FROM totals;"
        ));
        assert!(
            e.to_string()
                .contains("ROWS BETWEEN n PRECEDING AND CURRENT ROW"),
            "{e}"
        );
    }
}
