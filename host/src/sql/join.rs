//! Joins: each `JOIN` of a `FROM` becomes a `builtin:join` agent.
//!
//! - temporal: `JOIN quotes FOR SYSTEM_TIME AS OF t.ts AS q ON t.symbol = q.symbol` joins each
//!   left row with the right row of its key as of the left row's event time;
//! - lookup: `JOIN limits FOR SYSTEM_TIME AS OF PROCTIME() AS l ON t.card_id = l.card_id` joins
//!   each left row with the right row of its key as the right side stands when the left row
//!   arrives (an updating query on the right is a table: its deletes remove keys);
//! - interval: `JOIN clicks AS c ON v.user = c.user AND c.ts BETWEEN v.ts - INTERVAL '5' SECOND
//!   AND v.ts + INTERVAL '1' MINUTE` joins each left row with every right row of its key whose
//!   event time is within the bounds; the upper bound may instead be another time column of the
//!   left row (`b.ts BETWEEN a.ts AND a.expires`).
//!
//! Joins are inner. The output has the left columns, then the right ones except the key,
//! renamed `right_NAME` where a left column has the same name; `q.price` in the query resolves
//! to whichever name it has.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sqlparser::ast::{
    BinaryOperator, Expr, Join, JoinConstraint, JoinOperator, Spanned, TableFactor,
};
use sqlparser::tokenizer::Span;

use super::ddl::interval_ms;
use super::distinct::WindowJoin;
use super::error::SqlError;
use super::plan::{Planner, Side, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Of {
    Left,
    Right,
}

/// An interval join as planned, so that a `GROUP BY` of its key can fold its pairs in it.
#[derive(Debug, Clone)]
pub(super) struct IntervalJoin {
    /// Its config (kind, key, times and bounds).
    config: toml::Table,
    key: String,
    /// The nodes its left input reads (port 0), and its right input (port 1).
    left_nodes: Vec<String>,
    right_node: String,
    /// The left input's columns: the output's first columns, by the same names.
    left_columns: Vec<String>,
    /// The right input's columns but the key, by their names in the output (`right_NAME`
    /// where a left column has the name).
    right_columns: HashMap<String, String>,
    /// Whether no two left rows share the key (the left table's `PRIMARY KEY … NOT
    /// ENFORCED`): grouped by it, each key's result is final when its left row's interval ends.
    left_unique: bool,
}

impl Planner<'_> {
    /// Joins `left` (whose relations are `scope`) with the relation of `join`; adds the right
    /// relation to `scope`.
    pub(super) fn join(
        &mut self,
        left: Stream,
        scope: &mut Vec<Side>,
        join: &Join,
        hint: &str,
        used: Option<&HashSet<String>>,
    ) -> Result<Stream, SqlError> {
        let span = join.relation.span();
        let constraint = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => c,
            _ => {
                return Err(self.error(
                    span,
                    "only inner joins ([INNER] JOIN … ON …) are supported: an outer join would emit updates",
                ));
            }
        };
        let JoinConstraint::On(on) = constraint else {
            return Err(self.error(span, "a join needs ON left.key = right.key"));
        };
        let version = match &join.relation {
            TableFactor::Table { name, .. } => self
                .versions
                .iter()
                .position(|v| v.table_at == name.span().start)
                .map(|i| self.versions.remove(i)),
            _ => None,
        };
        let (right, right_side) = self.relation(&join.relation, hint)?;
        let distinct = (super::distinct::of(&left), super::distinct::of(&right));
        let left = self.prune(left, used, hint, span)?;
        let right = self.prune(right, used, hint, span)?;
        // `AS OF PROCTIME()`: the right side as it stands when a left row arrives.
        let lookup = version.as_ref().is_some_and(|v| {
            matches!(&v.column, Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("PROCTIME"))
        });
        if left.updating || (right.updating && !lookup) {
            return Err(self.error(
                span,
                "a join of an updating query (GROUP BY without a window) is not supported, except as the right side of a lookup join (FOR SYSTEM_TIME AS OF PROCTIME()): join the inputs, then aggregate",
            ));
        }
        if left.nodes.len() != 1 || right.nodes.len() != 1 {
            return Err(self.error(
                span,
                "a UNION ALL cannot be joined: join each side, then unite",
            ));
        }
        let resolve = |e: &Expr| -> Option<(Of, String)> {
            let mut e = e;
            while let Expr::Nested(inner) = e {
                e = inner;
            }
            match e {
                Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                    let q = &parts[0].value;
                    if right_side
                        .qualifiers
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(q))
                    {
                        return Some((Of::Right, parts[1].value.clone()));
                    }
                    scope
                        .iter()
                        .find(|s| s.qualifiers.iter().any(|l| l.eq_ignore_ascii_case(q)))
                        .map(|s| {
                            let c = &parts[1].value;
                            (
                                Of::Left,
                                s.renames.get(c).cloned().unwrap_or_else(|| c.clone()),
                            )
                        })
                }
                Expr::Identifier(c) => {
                    let has = |s: &Option<SchemaRef>| {
                        s.as_ref()
                            .is_some_and(|s| s.field_with_name(&c.value).is_ok())
                    };
                    if has(&left.schema) || (!has(&right.schema) && left.schema.is_none()) {
                        Some((Of::Left, c.value.clone()))
                    } else if has(&right.schema) {
                        Some((Of::Right, c.value.clone()))
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };

        let mut conjuncts = Vec::new();
        split_and(on, &mut conjuncts);
        let mut key: Option<String> = None;
        let mut bounds: Option<(i64, i64)> = None;
        let mut upper_column: Option<String> = None;
        // `l.window_start = r.window_start` (or the ends): the same window of both sides.
        let mut same_window: Vec<(Bound, String, String)> = Vec::new();
        for c in &conjuncts {
            match c {
                Expr::BinaryOp {
                    left: a,
                    op: BinaryOperator::Eq,
                    right: b,
                } => {
                    let (Some(x), Some(y)) = (resolve(a), resolve(b)) else {
                        return Err(self.error(
                            c.span(),
                            format!("`{c}`: expected left.column = right.column"),
                        ));
                    };
                    let (l, r) = match (x.0, y.0) {
                        (Of::Left, Of::Right) => (x.1, y.1),
                        (Of::Right, Of::Left) => (y.1, x.1),
                        _ => {
                            return Err(self.error(
                                c.span(),
                                format!("`{c}`: a join key compares a column of each side"),
                            ));
                        }
                    };
                    match (bound_of(&left, &l), bound_of(&right, &r)) {
                        (Some(lb), Some(rb)) if lb == rb => {
                            same_window.push((lb, l, r));
                            continue;
                        }
                        (Some(_), Some(_)) => {
                            return Err(self.error(
                                c.span(),
                                format!("`{c}` compares a window's start with a window's end: compare starts with starts, ends with ends"),
                            ));
                        }
                        _ => {}
                    }
                    if l != r {
                        return Err(self.error(
                            c.span(),
                            format!("`{c}`: the key must have one name on both sides (`{l}` and `{r}`): rename one in a view"),
                        ));
                    }
                    if key.replace(l).is_some() {
                        return Err(self.error(
                            c.span(),
                            "one key column per join: combine several into one in a view first",
                        ));
                    }
                }
                Expr::Between {
                    expr,
                    negated: false,
                    low,
                    high,
                } => {
                    let right_time = right.time.clone().ok_or_else(|| {
                        self.error(c.span(), "the right side of an interval join needs event time: declare its WATERMARK")
                    })?;
                    let left_time = left.time.clone().ok_or_else(|| {
                        self.error(c.span(), "the left side of an interval join needs event time: declare its WATERMARK")
                    })?;
                    match resolve(expr) {
                        Some((Of::Right, t)) if t == right_time => {}
                        _ => {
                            return Err(self.error(
                                expr.span(),
                                format!("expected the right side's event-time column `{right_time}` BETWEEN bounds on `{left_time}`"),
                            ));
                        }
                    }
                    let lower = self.offset(low, &left_time, &resolve)?;
                    // The upper bound may be another time of the left row (an expiry).
                    let upper = match resolve(high) {
                        Some((Of::Left, c)) if c != left_time => {
                            if let Some(schema) = &left.schema {
                                let ty = schema.field_with_name(&c).map(|f| f.data_type().clone());
                                if !matches!(ty, Ok(DataType::Int64 | DataType::Timestamp(..))) {
                                    return Err(self.error(
                                        high.span(),
                                        format!("`{c}` bounds the right side's time, so it is a timestamp or int64 milliseconds, not {}", ty.map_or("a column of the left side".to_owned(), |t| t.to_string())),
                                    ));
                                }
                            }
                            upper_column = Some(c);
                            i64::MAX
                        }
                        _ => self.offset(high, &left_time, &resolve)?,
                    };
                    if lower > upper {
                        return Err(self.error(
                            c.span(),
                            format!("the interval is empty: {lower} ms to {upper} ms"),
                        ));
                    }
                    bounds = Some((lower, upper));
                }
                other => {
                    return Err(self.error(
                        other.span(),
                        format!("unsupported join condition `{other}`: expected left.key = right.key, and for two streams right.time BETWEEN left.time - INTERVAL … AND left.time + INTERVAL …"),
                    ));
                }
            }
        }
        let key = key
            .ok_or_else(|| self.error(on.span(), "a join needs a key: ON left.key = right.key"))?;
        let mut time = left.time.clone();
        let mut right_time = right.time.clone();
        let mut config = toml::Table::new();
        if !same_window.is_empty() {
            let (l, r) = (left.windowed.as_ref(), right.windowed.as_ref());
            let size = match (l, r) {
                (Some(l), Some(r)) if l.tumbling && r.tumbling && l.size_ms == r.size_ms => {
                    l.size_ms.expect("tumbling windows have a size")
                }
                _ => {
                    return Err(self.error(
                        span,
                        "a join of windows needs both sides aggregated over tumbling windows of one size (GROUP BY …, TUMBLE(time, size) on each side)",
                    ));
                }
            };
            if version.is_some() || bounds.is_some() {
                return Err(self.error(
                    span,
                    "a join of windows is bounded by the window: no FOR SYSTEM_TIME AS OF or BETWEEN",
                ));
            }
            // By the windows' starts when both are compared, else by their ends.
            same_window.sort_by_key(|(b, _, _)| *b);
            let (_, l, r) = same_window.swap_remove(0);
            config.insert("kind".into(), "window".into());
            config.insert("size_ms".into(), size.into());
            time = Some(l);
            right_time = Some(r);
        }
        match (&version, bounds) {
            _ if config.contains_key("kind") => {}
            (Some(_), None) if lookup => {
                config.insert("kind".into(), "lookup".into());
                // An updating right side is a table's changelog: its deletes remove keys.
                if right.updating {
                    config.insert("op".into(), sabot_sdk::changelog::OP_COLUMN.into());
                }
            }
            (Some(v), None) => {
                let Some(time) = &time else {
                    return Err(self.error(
                        v.span,
                        "a temporal join needs the left side's event time: declare its WATERMARK",
                    ));
                };
                match resolve(&v.column) {
                    Some((Of::Left, c)) if c == *time => {}
                    _ => {
                        return Err(self.error(
                            v.span,
                            format!("FOR SYSTEM_TIME AS OF takes the left side's event-time column, `{time}`"),
                        ));
                    }
                }
                if right.time.is_none() {
                    return Err(self.error(
                        span,
                        "the right side of a temporal join needs event time (its versions' times): declare its WATERMARK",
                    ));
                }
                config.insert("kind".into(), "temporal".into());
            }
            (None, Some((lower, upper))) => {
                config.insert("kind".into(), "interval".into());
                config.insert("lower_ms".into(), lower.into());
                match upper_column {
                    Some(c) => config.insert("upper_column".into(), c.into()),
                    None => config.insert("upper_ms".into(), upper.into()),
                };
            }
            (Some(v), Some(_)) => {
                return Err(self.error(v.span, "a join is temporal (FOR SYSTEM_TIME AS OF) or bounded in time (BETWEEN), not both"));
            }
            (None, None) => {
                return Err(self.error(
                    span,
                    "a join of two streams needs FOR SYSTEM_TIME AS OF left.time (a temporal join), FOR SYSTEM_TIME AS OF PROCTIME() (a lookup join: the right side as it stands when a left row arrives) or AND right.time BETWEEN left.time - INTERVAL … AND left.time + INTERVAL … (an interval join)",
                ));
            }
        }
        config.insert("key".into(), key.clone().into());
        if let Some(time) = &time {
            config.insert("time".into(), time.clone().into());
        }
        if let Some(rt) = &right_time
            && Some(rt) != time.as_ref()
        {
            config.insert("right_time".into(), rt.clone().into());
        }

        // The output's columns, and what the right side's are called in it.
        let mut renames = HashMap::new();
        let schema = match (&left.schema, &right.schema) {
            (Some(l), Some(r)) => {
                let mut fields: Vec<Field> =
                    l.fields().iter().map(|f| f.as_ref().clone()).collect();
                let op = right.updating.then_some(sabot_sdk::changelog::OP_COLUMN);
                for f in r
                    .fields()
                    .iter()
                    .filter(|f| *f.name() != key && Some(f.name().as_str()) != op)
                {
                    let name = if l.field_with_name(f.name()).is_ok() {
                        let renamed = format!("right_{}", f.name());
                        renames.insert(f.name().clone(), renamed.clone());
                        renamed
                    } else {
                        f.name().clone()
                    };
                    fields.push(Field::new(name, f.data_type().clone(), true));
                }
                Some(Arc::new(Schema::new(fields)))
            }
            _ => None,
        };
        let window_join = config.get("kind").and_then(toml::Value::as_str) == Some("window");
        // Two queries of distinct groups: join their rows, then keep each group once.
        if window_join
            && let ((Some(ld), Some(rd)), Some(ls), Some(rs), Some(output)) =
                (&distinct, &left.schema, &right.schema, &schema)
        {
            let rewrite = WindowJoin {
                left: ld,
                right: rd,
                left_schema: ls,
                right_schema: rs,
                key: &key,
                output,
                renames: &renames,
            };
            if let Some(mut stream) = self.join_distinct(&rewrite, hint, span)? {
                self.abandoned
                    .extend(left.nodes.iter().chain(&right.nodes).cloned());
                scope.push(Side {
                    qualifiers: right_side.qualifiers,
                    renames,
                });
                stream.windowed = left.windowed;
                return Ok(stream);
            }
        }
        let agent = self.fresh(&format!("{hint}_join"));
        if config.get("kind").and_then(toml::Value::as_str) == Some("interval")
            && let (Some(l), Some(r)) = (&left.schema, &right.schema)
        {
            let right_columns = r
                .fields()
                .iter()
                .filter(|f| *f.name() != key)
                .map(|f| {
                    let name = renames.get(f.name()).unwrap_or(f.name());
                    (name.clone(), f.name().clone())
                })
                .collect();
            let description = IntervalJoin {
                config: config.clone(),
                key: key.clone(),
                left_nodes: left.nodes.clone(),
                right_node: right.nodes[0].clone(),
                left_columns: l.fields().iter().map(|f| f.name().clone()).collect(),
                right_columns,
                left_unique: left.unique.as_deref() == Some(key.as_str()),
            };
            self.interval_joins.insert(agent.clone(), description);
        }
        self.agent(&agent, "builtin:join", config, Some(&key), &left);
        self.edges.push(format!("{} -> {agent}", right.nodes[0]));
        scope.push(Side {
            qualifiers: right_side.qualifiers,
            renames,
        });
        if window_join {
            // Rows of windows already closed: no event time, the left side's window columns.
            let mut stream = Stream::rows(vec![agent], schema, None);
            stream.windowed = left.windowed;
            return Ok(stream);
        }
        Ok(Stream::rows(vec![agent], schema, time))
    }

    /// `GROUP BY key` of the pairs of an interval join on that key, with `aggregates` (each
    /// its operator spec, `function(column)`, and output column): the join itself folds each
    /// key's pairs (`builtin:join` with `aggregates`, see `sabot_operators::join::GroupedJoin`)
    /// instead of emitting them to a `builtin:aggregate`. `input` is the join's output, or a
    /// projection of it that only selects and renames columns (keeping the key's name).
    /// Returns the new join agent, and whether its results are final (the left side's keys are
    /// unique, so each key is emitted once and the output is append-only, not a changelog); or
    /// `None` (and nothing added) when `input` is not that or an aggregate is not one the join
    /// folds. What the new agent replaces is left to be removed if nothing else reads it.
    pub(super) fn group_interval_join(
        &mut self,
        input: &Stream,
        key: Option<&str>,
        aggregates: &[(String, String)],
        hint: &str,
    ) -> Option<(String, bool)> {
        let [node] = input.nodes.as_slice() else {
            return None;
        };
        if input.updating {
            return None;
        }
        // The join, and the names its columns have in `input` when a projection that only
        // selects and renames them comes between (a view's select list).
        let (join, renames) = match self.interval_joins.get(node) {
            Some(join) => (join, None),
            None => {
                let projection = super::fuse::select_of(&self.agents, node)?;
                let renames: HashMap<String, String> = projection
                    .renames()?
                    .into_iter()
                    .map(|(column, name)| (name.to_owned(), column.to_owned()))
                    .collect();
                let into = format!(" -> {node}");
                let mut from = self.edges.iter().filter_map(|e| e.strip_suffix(&into));
                let (Some(from), None) = (from.next(), from.next()) else {
                    return None;
                };
                (self.interval_joins.get(from)?, Some(renames))
            }
        };
        // A column of `input` as the join's output names it.
        fn joined<'c>(
            renames: &'c Option<HashMap<String, String>>,
            column: &'c str,
        ) -> Option<&'c str> {
            match renames {
                None => Some(column),
                Some(r) => r.get(column).map(String::as_str),
            }
        }
        if key != Some(join.key.as_str()) || joined(&renames, &join.key) != Some(join.key.as_str())
        {
            return None;
        }
        let mut specs = Vec::with_capacity(aggregates.len());
        for (spec, column) in aggregates {
            let (function, arg) = spec.strip_suffix(')')?.split_once('(')?;
            if !matches!(
                function,
                "count" | "sum" | "mean" | "min" | "max" | "first" | "last"
            ) {
                return None;
            }
            let arg = if arg == "*" {
                arg.to_owned()
            } else {
                let column = joined(&renames, arg)?;
                if join.left_columns.iter().any(|c| c == column) {
                    format!("left.{column}")
                } else {
                    format!("right.{}", join.right_columns.get(column)?)
                }
            };
            specs.push(toml::Value::from(format!("{function}({arg}) AS {column}")));
        }
        let mut config = join.config.clone();
        config.insert("aggregates".into(), toml::Value::Array(specs));
        let final_rows = join.left_unique;
        if final_rows {
            config.insert("left_unique".into(), true.into());
        }
        // The grouped join keeps only the columns its aggregates read: it reads each side
        // before the projection that pruned it for the join of pairs (one hop fewer).
        let unpruned = |nodes: &[String]| match nodes {
            [node] => self
                .pruned
                .get(node)
                .cloned()
                .unwrap_or_else(|| nodes.to_vec()),
            _ => nodes.to_vec(),
        };
        let left = unpruned(&join.left_nodes);
        let right = unpruned(std::slice::from_ref(&join.right_node));
        let [right] = right.as_slice() else {
            return None;
        };
        let edges: Vec<String> = left.iter().chain([right]).cloned().collect();
        let join_key = join.key.clone();
        let agent = self.fresh(&format!("{hint}_aggregate"));
        let inputs = Stream::rows(edges, None, None);
        self.agent(&agent, "builtin:join", config, Some(&join_key), &inputs);
        self.abandoned.push(node.clone());
        Some((agent, final_rows))
    }

    /// `stream` without the columns the query does not name (its event time stays): a join
    /// keeps its rows in state, so what it does not need costs on every row.
    fn prune(
        &mut self,
        stream: Stream,
        used: Option<&HashSet<String>>,
        hint: &str,
        span: Span,
    ) -> Result<Stream, SqlError> {
        let (Some(used), Some(schema)) = (used, &stream.schema) else {
            return Ok(stream);
        };
        if stream.updating || stream.nodes.len() != 1 {
            return Ok(stream);
        }
        let keep: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|c| used.contains(*c) || stream.time.as_ref() == Some(*c))
            .cloned()
            .collect();
        if keep.len() == schema.fields().len() || keep.is_empty() {
            return Ok(stream);
        }
        let items: Vec<String> = keep.iter().map(|c| super::plan::quote(c)).collect();
        let agent = self.fresh(&format!("{hint}_columns"));
        self.pruned.insert(agent.clone(), stream.nodes.clone());
        self.project(&agent, &stream, &items, span)
    }

    /// A bound `left_time [± INTERVAL …]` as milliseconds from the left row's time.
    fn offset(
        &self,
        bound: &Expr,
        left_time: &str,
        resolve: &dyn Fn(&Expr) -> Option<(Of, String)>,
    ) -> Result<i64, SqlError> {
        let is_time = |e: &Expr| matches!(resolve(e), Some((Of::Left, t)) if t == left_time);
        let usage = |span: Span| {
            self.error(span, format!("expected a bound {left_time}, {left_time} - INTERVAL … or {left_time} + INTERVAL …"))
        };
        match bound {
            e if is_time(e) => Ok(0),
            Expr::BinaryOp { left, op, right } if is_time(left) => {
                let Expr::Interval(interval) = right.as_ref() else {
                    return Err(usage(right.span()));
                };
                let ms = interval_ms(self.source, interval, right.span())?;
                match op {
                    BinaryOperator::Plus => Ok(ms),
                    BinaryOperator::Minus => Ok(-ms),
                    _ => Err(usage(bound.span())),
                }
            }
            other => Err(usage(other.span())),
        }
    }
}

/// Which bound of a row's window a column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Start,
    End,
}

fn bound_of(stream: &Stream, column: &str) -> Option<Bound> {
    let w = stream.windowed.as_ref()?;
    if w.start.as_deref() == Some(column) {
        Some(Bound::Start)
    } else if w.end.as_deref() == Some(column) {
        Some(Bound::End)
    } else {
        None
    }
}

pub(super) fn split_and<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}
