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

/// The most ranks `builtin:top` keeps per window (`sabot_operators::top::MAX_LIMIT`).
const MAX_RANKS: u64 = 10_000;

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
            return Err(self.error(
                span,
                "a named window (OVER w) is not supported: write OVER (PARTITION BY … ORDER BY …)",
            ));
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
        if kept.limit > MAX_RANKS {
            return Err(self.error(
                span,
                format!(
                    "`{alias}` keeps {} ranks; a ranking keeps at most {MAX_RANKS} per window",
                    kept.limit
                ),
            ));
        }
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
                None => {
                    "the rows are not a windowed aggregate's, so rank per TUMBLE(time, size)".into()
                }
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
                            format!(
                                "no column `{c}` to rank by (columns: {})",
                                super::plan::field_names(schema)
                            ),
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
            distinct: None,
            // A ranking keeps some of its input's rows, with their columns.
            unique: input.unique,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{agent_running, err, ok, strings};

    const PER_CARD: &str = "CREATE VIEW per_card AS
        SELECT card_id, COUNT(*) AS n, TUMBLE_END(ts, INTERVAL '1' MINUTE) AS minute
        FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE);\n";

    #[test]
    fn a_ranking_per_window_of_an_aggregate_becomes_a_top_agent_that_keeps_what_is_read() {
        let doc = ok(&format!(
            "{PER_CARD}
            INSERT INTO out SELECT minute, card_id, n FROM (
                SELECT *, ROW_NUMBER() OVER (PARTITION BY minute ORDER BY n DESC) AS r FROM per_card
            ) WHERE r <= 3 AND n > 1;"
        ));
        let top = agent_running(&doc, "builtin:top");
        let config = &top["config"];
        assert_eq!(config["window"].as_str(), Some("minute"), "{doc}");
        assert_eq!(config["close_offset_ms"].as_integer(), Some(-1));
        assert_eq!(config["limit"].as_integer(), Some(3));
        assert_eq!(config["ranking"].as_str(), Some("row_number"));
        assert_eq!(config["order"].as_str(), Some("n"));
        assert_eq!(config["descending"].as_bool(), Some(true));
        // The ranks kept need no filter; the rest of the condition stays.
        let filter = agent_running(&doc, "builtin:filter");
        assert_eq!(filter["config"]["where"].as_str(), Some("n > 1"));

        // `r < 3` keeps two ranks; a window's start closes it `size - 1` after.
        let doc = ok(&format!(
            "{PER_CARD}
            CREATE VIEW ranked AS SELECT card_id, n, minute,
                DENSE_RANK() OVER (PARTITION BY minute ORDER BY n) AS r FROM per_card;
            INSERT INTO out SELECT card_id, r FROM ranked WHERE r < 3;"
        ));
        let config = &agent_running(&doc, "builtin:top")["config"];
        assert_eq!(config["limit"].as_integer(), Some(2));
        assert_eq!(config["ranking"].as_str(), Some("dense_rank"));
        assert_eq!(config["descending"].as_bool(), Some(false));
    }

    #[test]
    fn a_ranking_of_raw_rows_per_tumbling_window_reads_the_window_it_assigns() {
        let doc = ok("INSERT INTO out SELECT window_end, card_id, amount FROM (
                SELECT card_id, amount, TUMBLE_END(ts, INTERVAL '10' SECOND) AS window_end,
                    RANK() OVER (PARTITION BY TUMBLE(ts, INTERVAL '10' SECOND), country ORDER BY amount DESC) AS r
                FROM transactions
            ) WHERE r = 1;");
        let top = agent_running(&doc, "builtin:top");
        assert_eq!(top["key"].as_str(), Some("country"), "per key: {doc}");
        let config = &top["config"];
        assert_eq!(config["time"].as_str(), Some("ts"));
        assert_eq!(config["size_ms"].as_integer(), Some(10_000));
        assert_eq!(config["limit"].as_integer(), Some(1));
        assert_eq!(config["rank_column"].as_str(), Some("r"));
        let select = doc["agents"]
            .as_table()
            .unwrap()
            .values()
            .find(|a| a["module"].as_str() == Some("builtin:project"))
            .unwrap();
        assert!(
            strings(&select["config"]["select"]).contains(&"window_end"),
            "{select}"
        );
    }

    #[test]
    fn ranking_mistakes_name_what_a_streaming_ranking_needs() {
        let ranked = |over: &str, outer: &str| {
            format!(
                "{PER_CARD}INSERT INTO out SELECT card_id FROM (
                SELECT *, {over} AS r FROM per_card) {outer};"
            )
        };
        let cases = [
            (
                ranked("RANK() OVER (PARTITION BY minute ORDER BY n)", ""),
                "read it from a query that filters on it",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY minute ORDER BY n)",
                    "WHERE r > 3",
                ),
                "read it from a query that filters on it",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY card_id ORDER BY n)",
                    "WHERE r = 1",
                ),
                "a streaming ranking is per window",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY minute ORDER BY n, card_id)",
                    "WHERE r = 1",
                ),
                "exactly one column",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY minute ORDER BY n DESC NULLS FIRST)",
                    "WHERE r = 1",
                ),
                "NULLS FIRST",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY minute, card_id, n ORDER BY n)",
                    "WHERE r = 1",
                ),
                "at most one key column",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY minute ORDER BY nope)",
                    "WHERE r = 1",
                ),
                "no column `nope`",
            ),
            (
                ranked(
                    "RANK() OVER (PARTITION BY minute ORDER BY n)",
                    "WHERE r <= 1000000",
                ),
                "at most 10000 per window",
            ),
        ];
        for (sql, expected) in cases {
            let e = err(&sql);
            assert!(e.message.contains(expected), "{sql}\n{e}");
        }
        let e = err("INSERT INTO out SELECT card_id FROM (
            SELECT *, RANK() OVER (PARTITION BY HOP(ts, INTERVAL '1' SECOND, INTERVAL '5' SECOND) ORDER BY amount) AS r
            FROM transactions) WHERE r = 1;");
        assert!(e.message.contains("TUMBLE(time, size) windows"), "{e}");
        let e = err("INSERT INTO out SELECT card_id FROM (
            SELECT card_id, RANK() OVER (PARTITION BY TUMBLE(ts, INTERVAL '1' SECOND) ORDER BY amount)
            FROM transactions) AS x;");
        assert!(e.message.contains("name the ranking"), "{e}");
    }

    #[test]
    fn windows_of_one_size_join_on_their_key_and_window() {
        let sides = "CREATE VIEW a AS SELECT card_id, COUNT(*) AS n,
                TUMBLE_START(ts, INTERVAL '10' SECOND) AS s FROM transactions
                GROUP BY card_id, TUMBLE(ts, INTERVAL '10' SECOND);
            CREATE VIEW b AS SELECT card_id, MAX(amount) AS top,
                TUMBLE_START(ts, INTERVAL '10' SECOND) AS s, TUMBLE_END(ts, INTERVAL '10' SECOND) AS e
                FROM transactions GROUP BY card_id, TUMBLE(ts, INTERVAL '10' SECOND);
            CREATE VIEW h AS SELECT card_id, COUNT(*) AS n,
                HOP_START(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS s FROM transactions
                GROUP BY card_id, HOP(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND);\n";
        let doc = ok(&format!(
            "{sides}
            INSERT INTO out SELECT a.card_id, a.n, b.top, a.s
            FROM a JOIN b ON a.card_id = b.card_id AND a.s = b.s;"
        ));
        let join = agent_running(&doc, "builtin:join");
        assert_eq!(join["config"]["kind"].as_str(), Some("window"), "{doc}");
        assert_eq!(join["config"]["size_ms"].as_integer(), Some(10_000));
        assert_eq!(join["config"]["time"].as_str(), Some("s"));

        let e = err(&format!(
            "{sides}
            INSERT INTO out SELECT a.card_id FROM a JOIN h ON a.card_id = h.card_id AND a.s = h.s;"
        ));
        assert!(e.message.contains("tumbling windows of one size"), "{e}");
        let e = err(&format!(
            "{sides}
            INSERT INTO out SELECT a.card_id FROM a JOIN b ON a.card_id = b.card_id AND a.s = b.e;"
        ));
        assert!(e.message.contains("starts with starts"), "{e}");
    }

    #[test]
    fn set_parallelism_runs_keyed_agents_as_that_many_instances() {
        let doc = ok(&format!(
            "SET parallelism = 3;\n{PER_CARD}
            INSERT INTO out SELECT card_id, n FROM per_card WHERE n > 2;"
        ));
        let window = agent_running(&doc, "builtin:window");
        assert_eq!(window["parallelism"].as_integer(), Some(3), "{doc}");
        let filter = agent_running(&doc, "builtin:filter");
        assert!(filter.get("parallelism").is_none(), "unkeyed: {doc}");
        for bad in ["0", "257", "'two'"] {
            let e = err(&format!(
                "SET parallelism = {bad};\n{PER_CARD}
                INSERT INTO out SELECT card_id FROM per_card;"
            ));
            assert!(e.message.contains("from 1 to 256"), "{bad}: {e}");
        }
    }
}
