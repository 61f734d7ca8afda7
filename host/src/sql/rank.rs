//! Top-N per window: a ranking read through a filter on it becomes a `builtin:top` agent.
//!
//! ```sql
//! SELECT auction, bids, window_end FROM (
//!     SELECT *, RANK() OVER (PARTITION BY window_end ORDER BY bids DESC) AS r FROM counts
//! ) WHERE r <= 3;
//! ```
//!
//! `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()` `OVER (PARTITION BY w [, key] ORDER BY column
//! [ASC | DESC])`, where `w` is the window of the rows — the `window_end` or `window_start` of
//! a windowed aggregate (under any name the query gives it), or `TUMBLE(time, size)` over the
//! event time (then `TUMBLE_START`/`TUMBLE_END` in the same select list read the row's window) —
//! and the query that reads the ranking keeps `r <= N`, `r < N` or `r = 1`. Each window's kept
//! rows are emitted once, when the watermark closes it: the result is append-only.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, Ident, OrderBySort, Query, SelectItem,
    SetExpr, Spanned, TableFactor, Value, WindowType,
};

use super::error::SqlError;
use super::join::split_and;
use super::plan::{Planner, Stream};
use super::window::{canonical, window_column, window_kind};

/// A ranking's alias and how many ranks the query reading it keeps.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Kept {
    alias: String,
    limit: u64,
    /// The condition that says so.
    conjunct: Expr,
}

impl Kept {
    /// `filter` without the condition on the ranks (`None` when nothing else remains).
    pub(super) fn without(&self, filter: &Expr) -> Option<Expr> {
        let mut conjuncts = Vec::new();
        split_and(filter, &mut conjuncts);
        conjuncts
            .into_iter()
            .filter(|c| **c != self.conjunct)
            .cloned()
            .reduce(|a, b| Expr::BinaryOp {
                left: Box::new(a),
                op: BinaryOperator::And,
                right: Box::new(b),
            })
    }
}

/// `ROW_NUMBER()`, `RANK()`, `DENSE_RANK()` with `OVER (…)`: the operator's ranking.
fn ranking(e: &Expr) -> Option<(&'static str, &Function)> {
    let Expr::Function(f) = e else { return None };
    f.over.as_ref()?;
    let kind = match f.name.to_string().to_ascii_uppercase().as_str() {
        "ROW_NUMBER" => "row_number",
        "RANK" => "rank",
        "DENSE_RANK" => "dense_rank",
        _ => return None,
    };
    Some((kind, f))
}

/// Whether a select list ranks its rows.
pub(super) fn ranks(items: &[SelectItem]) -> bool {
    items.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            ranking(e).is_some()
        }
        _ => false,
    })
}

/// The alias of the ranking a query's select list computes, if it does.
pub(super) fn ranking_alias(query: &Query) -> Option<String> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    select.projection.iter().find_map(|item| match item {
        SelectItem::ExprWithAlias { expr, alias } if ranking(expr).is_some() => {
            Some(alias.value.clone())
        }
        _ => None,
    })
}

impl Planner<'_> {
    /// What a query keeps of the ranking the item it reads computes: the `WHERE` conjunct
    /// `alias <= N` (or `< N`, `= 1`) over the alias of the ranking of `relation` (a sub-query
    /// or a view).
    pub(super) fn kept_ranks(&self, relation: &TableFactor, filter: Option<&Expr>) -> Option<Kept> {
        let alias = match relation {
            TableFactor::Derived { subquery, .. } => ranking_alias(subquery)?,
            TableFactor::Table { name, .. } => {
                let (query, _) = self.views.get(&name.to_string())?;
                ranking_alias(query)?
            }
            _ => return None,
        };
        let mut conjuncts = Vec::new();
        split_and(filter?, &mut conjuncts);
        let is_alias = |e: &Expr| match e {
            Expr::Identifier(c) => c.value.eq_ignore_ascii_case(&alias),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .is_some_and(|c| c.value.eq_ignore_ascii_case(&alias)),
            _ => false,
        };
        let number = |e: &Expr| match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<u64>().ok(),
                _ => None,
            },
            _ => None,
        };
        conjuncts.into_iter().find_map(|c| {
            let Expr::BinaryOp { left, op, right } = c else {
                return None;
            };
            let limit = match (op, is_alias(left), is_alias(right)) {
                (BinaryOperator::LtEq, true, _) | (BinaryOperator::GtEq, _, true) => {
                    number(if is_alias(left) { right } else { left })?
                }
                (BinaryOperator::Lt, true, _) | (BinaryOperator::Gt, _, true) => {
                    number(if is_alias(left) { right } else { left })?.checked_sub(1)?
                }
                (BinaryOperator::Eq, true, _) | (BinaryOperator::Eq, _, true)
                    if number(if is_alias(left) { right } else { left }) == Some(1) =>
                {
                    1
                }
                _ => return None,
            };
            (limit > 0).then(|| Kept {
                alias: alias.clone(),
                limit,
                conjunct: c.clone(),
            })
        })
    }

    /// The ranking of `items` as a `builtin:top` agent over `input`; `items` is rewritten to
    /// read its output (the rank as a column, `TUMBLE_START`/`TUMBLE_END` as the window's).
    pub(super) fn rank(
        &mut self,
        items: &mut Vec<SelectItem>,
        input: Stream,
        hint: &str,
    ) -> Result<Stream, SqlError> {
        let at = items
            .iter()
            .position(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    ranking(e).is_some()
                }
                _ => false,
            })
            .expect("the caller saw a ranking");
        let (expr, alias) = match &items[at] {
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), alias.value.clone()),
            other => {
                return Err(self.error(
                    other.span(),
                    format!("name the ranking: `{other} AS r`, and keep its first ranks where it is read (WHERE r <= 3)"),
                ));
            }
        };
        let span = expr.span();
        if let Some(extra) = items.iter().skip(at + 1).find(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                ranking(e).is_some()
            }
            _ => false,
        }) {
            return Err(self.error(extra.span(), "one ranking per query"));
        }
        let (kind, f) = ranking(&expr).expect("a ranking");
        if !matches!(&f.args, FunctionArguments::None)
            && !matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty())
        {
            return Err(self.error(span, format!("{}() takes no arguments", f.name)));
        }
        let Some(WindowType::WindowSpec(spec)) = &f.over else {
            return Err(self.error(span, "a named window (OVER w) is not supported: write OVER (PARTITION BY … ORDER BY …)"));
        };
        if spec.window_frame.is_some() {
            return Err(self.error(span, "a ranking takes no frame (ROWS/RANGE …)"));
        }
        let kept = match self.pending_ranks.take() {
            Some(k) if k.alias.eq_ignore_ascii_case(&alias) => k,
            _ => {
                return Err(self.error(
                    span,
                    format!("a ranking keeps only a window's first rows: read it from a query that filters on it, e.g. SELECT … FROM (SELECT …, {expr} AS {alias} FROM …) WHERE {alias} <= 3"),
                ));
            }
        };
        if input.updating {
            return Err(self.error(
                span,
                "a ranking of an updating query (GROUP BY without a window) is not supported: rank per window",
            ));
        }

        // PARTITION BY: the window, and at most one key column.
        let mut config = toml::Table::new();
        let mut tumbling: Option<i64> = None;
        let mut window: Option<String> = None;
        let mut key: Option<String> = None;
        let usage = "PARTITION BY the window (a windowed aggregate's window_end or window_start, or TUMBLE(time, size)) and at most one key column";
        for p in &spec.partition_by {
            match p {
                Expr::Function(w) if window_kind(&w.name.to_string()) == Some("tumbling") => {
                    if window.is_some() || tumbling.is_some() {
                        return Err(self.error(p.span(), "one window per ranking"));
                    }
                    let (time, settings, _) = self.window_config(w, &input)?;
                    let size = settings
                        .get("size_ms")
                        .and_then(toml::Value::as_integer)
                        .expect("a tumbling window's size");
                    config.insert("time".into(), time.into());
                    config.insert("size_ms".into(), size.into());
                    tumbling = Some(size);
                }
                Expr::Function(w) if window_kind(&w.name.to_string()).is_some() => {
                    return Err(self.error(
                        p.span(),
                        "a ranking over raw rows takes TUMBLE(time, size) windows; for HOP or SESSION windows, aggregate first (GROUP BY …, HOP(…)) and rank by its window_end",
                    ));
                }
                Expr::Identifier(c) => {
                    let closing = input.windowed.as_ref().and_then(|w| w.closing(&c.value));
                    match closing {
                        Some(offset) if window.is_none() && tumbling.is_none() => {
                            config.insert("window".into(), c.value.clone().into());
                            config.insert("close_offset_ms".into(), offset.into());
                            window = Some(c.value.clone());
                        }
                        Some(_) => return Err(self.error(p.span(), "one window per ranking")),
                        None if key.is_none() => key = Some(c.value.clone()),
                        None => {
                            return Err(self.error(
                                p.span(),
                                format!("`{}`: {usage}; combine several key columns into one in a view first", c.value),
                            ));
                        }
                    }
                }
                other => return Err(self.error(other.span(), format!("`{other}`: {usage}"))),
            }
        }
        if window.is_none() && tumbling.is_none() {
            let hint = match &input.windowed {
                Some(w) => format!(
                    "the rows' window is {}",
                    [w.end.as_deref(), w.start.as_deref()]
                        .into_iter()
                        .flatten()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                None => "the rows are not a windowed aggregate's, so rank per TUMBLE(time, size)".into(),
            };
            return Err(self.error(
                span,
                format!("a streaming ranking is per window, so that each window's first rows are final when it closes: {usage} ({hint})"),
            ));
        }
        if let Some(k) = &key {
            config.insert("key".into(), k.clone().into());
        }

        // ORDER BY one column.
        let [order] = spec.order_by.as_slice() else {
            return Err(self.error(
                span,
                "a ranking orders by exactly one column: ORDER BY column [ASC | DESC] (compute a combined one in a view first)",
            ));
        };
        let Expr::Identifier(column) = &order.expr else {
            return Err(self.error(
                order.expr.span(),
                "ORDER BY a column: compute the expression in a view first",
            ));
        };
        if order.options.nulls_first == Some(true) {
            return Err(self.error(
                order.expr.span(),
                "NULLS FIRST is not supported: rows whose value is null rank last",
            ));
        }
        let descending = match &order.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(_) => {
                return Err(self.error(order.expr.span(), "ORDER BY … USING: expected ASC or DESC"));
            }
        };
        config.insert("order".into(), column.value.clone().into());
        config.insert("descending".into(), descending.into());
        config.insert(
            "limit".into(),
            i64::try_from(kept.limit).unwrap_or(i64::MAX).into(),
        );
        config.insert("ranking".into(), kind.into());
        config.insert("rank_column".into(), alias.clone().into());

        // The output: the input's columns (canonical types), the window's, the rank.
        let schema = match &input.schema {
            Some(schema) => {
                for c in [Some(&column.value), key.as_ref(), window.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if schema.field_with_name(c).is_err() {
                        return Err(self.error(
                            span,
                            format!("no column `{c}` to rank by (columns: {})", super::plan::field_names(schema)),
                        ));
                    }
                }
                let mut fields = Vec::new();
                for f in schema.fields() {
                    let ty = canonical(f.data_type()).ok_or_else(|| {
                        self.error(
                            span,
                            format!("a ranking carries integers, floats, text, booleans and timestamps, not `{}` of type {}: select the columns to rank", f.name(), f.data_type()),
                        )
                    })?;
                    fields.push(Field::new(f.name(), ty, true));
                }
                if tumbling.is_some() {
                    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
                    fields.push(Field::new("window_start", ts.clone(), false));
                    fields.push(Field::new("window_end", ts, false));
                }
                fields.push(Field::new(&alias, DataType::Int64, false));
                Some(Arc::new(Schema::new(fields)))
            }
            None => None,
        };
        let agent = self.fresh(&format!("{hint}_top"));
        self.agent(&agent, "builtin:top", config, key.as_deref(), &input);

        // The select list reads the operator's columns.
        let wildcard = items.iter().any(|i| matches!(i, SelectItem::Wildcard(_)));
        if wildcard {
            items.remove(at);
        } else {
            items[at] = SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(&alias)));
        }
        if tumbling.is_some() {
            for item in items.iter_mut() {
                let e = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => continue,
                };
                if let Some(column) = window_column(e) {
                    let name = e.to_string();
                    let renamed = Expr::Identifier(Ident::new(column));
                    *item = match item {
                        SelectItem::ExprWithAlias { alias, .. } => SelectItem::ExprWithAlias {
                            expr: renamed,
                            alias: alias.clone(),
                        },
                        _ => SelectItem::ExprWithAlias {
                            expr: renamed,
                            alias: Ident::with_quote('"', name),
                        },
                    };
                }
            }
        }
        let windowed = tumbling.map(|size| super::plan::Windowed {
            start: Some("window_start".into()),
            end: Some("window_end".into()),
            size_ms: Some(size),
            tumbling: true,
        });
        Ok(Stream {
            nodes: vec![agent],
            schema,
            time: None,
            grouped: None,
            updating: false,
            windowed: windowed.or(input.windowed),
        })
    }
}
