//! Aggregates over a window of rows: each row with an aggregate of the rows before it in its
//! partition, in event-time order. What the built-in `over` operator runs (SQL's
//! `AVG(amount) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)`
//! and `LAG(country) OVER (…)`).
//!
//! ```toml
//! [agents.moving]
//! module = "builtin:over"
//! key = "card_id"
//! config = { partition = "card_id", order = "ts", preceding = 9, functions = ["avg(amount) AS recent", "lag(country) AS before"] }
//! ```
//!
//! - `partition` (optional): the column whose rows are ordered and aggregated together (int64,
//!   int32 or utf8; absent: all rows, at parallelism 1). Give the agent the same `key` to run it
//!   in parallel.
//! - `order`: the event-time column (a timestamp or int64 milliseconds) the rows are ordered by.
//! - The frame — which rows before a row its aggregates read (the row itself always included):
//!   `preceding = N` — the N rows before it (`ROWS BETWEEN N PRECEDING AND CURRENT ROW`, N at most
//!   [`MAX_FRAME_ROWS`]); `range_ms = D` — the rows at most D milliseconds older
//!   (`RANGE BETWEEN INTERVAL … PRECEDING AND CURRENT ROW`), and every row of the same time;
//!   neither — every row before it: `unbounded = "rows"` (`ROWS UNBOUNDED PRECEDING`) or
//!   `"range"` (the default of SQL's `OVER (ORDER BY …)`: rows of the same time see each other).
//! - `functions`: `count(*)`, `count(col)`, `sum`, `min`, `max`, `mean` (`avg`), `first`,
//!   `last` over the frame, and `lag(col)` or `lag(col, K)` — the value of `col` K rows back
//!   (default 1; null before the partition's K-th row; K at most [`MAX_FRAME_ROWS`]); each
//!   `function(…) [AS name]`.
//!
//! On an append-only stream, each row is emitted once — its columns and the functions' results —
//! when the watermark passes its time, so that a row arriving out of order still sees exactly
//! the rows before it; a row older than the watermark when it arrives is late and goes unchanged
//! to port 1. Rows of one time are taken in arrival order.
//!
//! `changelog_key` (optional): the input is a [changelog](sabot_sdk::changelog) keyed by this
//! column (an updating query's results). Each row replaces the earlier row of its key — in its
//! partition, at its place in time order — and the output is a changelog with the same key: an
//! upsert of every row whose frame changed (the row itself and the `preceding` rows after it), a
//! delete of a deleted key. Over a changelog the frame is `preceding = N`. A partition's rows
//! are kept as one state value, at most [`MAX_PARTITION_ROWS`] of them; run it as one instance
//! (a key may move to another partition).
//!
//! State (the rows of each partition the frames still need, the rows waiting for the
//! watermark, event-time timers) is host-managed keyed state, checkpointed like any agent's.

mod changes;
mod ordered;

use sabot_sdk::arrow::array::ArrayRef;
use sabot_sdk::arrow::datatypes::{Field, Schema};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::Deserialize;

use crate::join::{SideSchema, Values};
use crate::values::{self, OutType, Value};
use crate::window::{Acc, Aggregate, Function};

pub use changes::ChangingOver;
pub use ordered::OrderedOver;

/// The most rows a frame reads (`preceding`, a lag's offset, the rows a `range_ms` frame holds).
pub const MAX_FRAME_ROWS: u64 = 10_000;

/// The most rows one partition of a changelog keeps.
pub const MAX_PARTITION_ROWS: usize = 100_000;

/// The `config` of an over-aggregate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverConfig {
    pub partition: Option<String>,
    pub order: String,
    pub preceding: Option<u64>,
    pub range_ms: Option<i64>,
    pub unbounded: Option<String>,
    pub functions: Vec<String>,
    pub changelog_key: Option<String>,
}

/// Which rows before a row its aggregates read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The `n` rows before it.
    Rows(usize),
    /// The rows at most this many milliseconds older, and those of its time.
    Range(i64),
    /// Every row before it.
    UnboundedRows,
    /// Every row before it and every row of its time.
    UnboundedRange,
}

/// One function of the list.
#[derive(Debug, Clone, PartialEq)]
enum OverFn {
    Aggregate(Aggregate),
    Lag {
        column: String,
        offset: usize,
        name: String,
    },
}

impl OverFn {
    fn parse(text: &str) -> Result<Self, AgentError> {
        let lower = text.trim().to_ascii_lowercase();
        if !lower.starts_with("lag(") && !lower.starts_with("lag (") {
            return Aggregate::parse(text).map(OverFn::Aggregate);
        }
        let bad = |why: &str| {
            AgentError::invalid_config(format!(
                "function `{text}`: {why}; expected `lag(column [, offset]) [AS name]` with offset 1 to {MAX_FRAME_ROWS}"
            ))
        };
        let (call, name) = match lower.find(" as ") {
            Some(at) => (
                text.trim()[..at].trim(),
                Some(text.trim()[at + 4..].trim().to_owned()),
            ),
            None => (text.trim(), None),
        };
        let open = call.find('(').ok_or_else(|| bad("no parenthesis"))?;
        let args = call[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| bad("no closing parenthesis"))?;
        let mut parts = args.split(',').map(str::trim);
        let column = parts
            .next()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("no column"))?
            .to_owned();
        let offset = match parts.next() {
            None => 1,
            Some(k) => k
                .parse::<u64>()
                .ok()
                .filter(|k| (1..=MAX_FRAME_ROWS).contains(k))
                .ok_or_else(|| bad(&format!("offset `{k}`")))? as usize,
        };
        if parts.next().is_some() {
            return Err(bad("more than two arguments"));
        }
        let name = match name {
            Some(n) if n.is_empty() => return Err(bad("empty name after AS")),
            Some(n) => n,
            None => format!("lag_{column}"),
        };
        Ok(OverFn::Lag {
            column,
            offset,
            name,
        })
    }

    fn name(&self) -> &str {
        match self {
            OverFn::Aggregate(a) => &a.name,
            OverFn::Lag { name, .. } => name,
        }
    }

    fn column(&self) -> Option<&str> {
        match self {
            OverFn::Aggregate(a) => a.column.as_deref(),
            OverFn::Lag { column, .. } => Some(column),
        }
    }
}

/// The parsed configuration both kinds of input share.
#[derive(Debug, Clone)]
struct Functions {
    partition: Option<String>,
    order: String,
    frame: Frame,
    list: Vec<OverFn>,
}

impl Functions {
    fn new(config: &OverConfig) -> Result<Self, AgentError> {
        if config.functions.is_empty() {
            return Err(AgentError::invalid_config(
                "functions is empty: name at least one, e.g. [\"avg(amount) AS recent\"]",
            ));
        }
        let list: Vec<OverFn> = config
            .functions
            .iter()
            .map(|f| OverFn::parse(f))
            .collect::<Result<_, _>>()?;
        if let Some(OverFn::Aggregate(a)) = list
            .iter()
            .find(|f| matches!(f, OverFn::Aggregate(a) if a.function == Function::Collect))
        {
            return Err(AgentError::invalid_config(format!(
                "function `{}`: collect is not an over-aggregate",
                a.name
            )));
        }
        let frame = match (
            config.preceding,
            config.range_ms,
            config.unbounded.as_deref(),
        ) {
            (Some(n), None, None) if n <= MAX_FRAME_ROWS => Frame::Rows(n as usize),
            (Some(n), None, None) => {
                return Err(AgentError::invalid_config(format!(
                    "preceding = {n}: a frame reads at most {MAX_FRAME_ROWS} rows before a row"
                )));
            }
            (None, Some(ms), None) if ms >= 0 => Frame::Range(ms),
            (None, Some(ms), None) => {
                return Err(AgentError::invalid_config(format!(
                    "range_ms = {ms}: expected 0 or more milliseconds"
                )));
            }
            (None, None, None | Some("range")) => Frame::UnboundedRange,
            (None, None, Some("rows")) => Frame::UnboundedRows,
            (None, None, Some(other)) => {
                return Err(AgentError::invalid_config(format!(
                    "unbounded = \"{other}\": expected \"rows\" or \"range\""
                )));
            }
            _ => {
                return Err(AgentError::invalid_config(
                    "a frame is one of preceding (rows), range_ms or unbounded, not several",
                ));
            }
        };
        Ok(Functions {
            partition: config.partition.clone(),
            order: config.order.clone(),
            frame,
            list,
        })
    }

    /// How many rows back a lag reads, at most.
    fn lag_depth(&self) -> usize {
        self.list
            .iter()
            .map(|f| match f {
                OverFn::Lag { offset, .. } => *offset,
                OverFn::Aggregate(_) => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// The index in `schema` of each function's input column (`None` for `count(*)`), and the
    /// type of each function's result.
    fn inputs(
        &self,
        schema: &SideSchema,
    ) -> Result<(Vec<Option<usize>>, Vec<OutType>), AgentError> {
        let mut at = Vec::with_capacity(self.list.len());
        let mut types = Vec::with_capacity(self.list.len());
        for f in &self.list {
            let Some(column) = f.column() else {
                at.push(None);
                types.push(OutType::I64);
                continue;
            };
            let i = schema.names.iter().position(|n| n == column).ok_or_else(|| {
                AgentError::invalid_input(format!(
                    "function `{}` reads column `{column}`, which the input lacks (columns: {})",
                    f.name(),
                    schema.names.join(", ")
                ))
            })?;
            let ty = schema.types[i];
            types.push(match f {
                OverFn::Lag { .. } => ty,
                OverFn::Aggregate(a) => {
                    if matches!(a.function, Function::Sum | Function::Mean)
                        && !matches!(ty, OutType::I64 | OutType::F64)
                    {
                        return Err(AgentError::invalid_input(format!(
                            "function `{}` needs a numeric column; `{column}` is {ty:?}",
                            a.name
                        )));
                    }
                    ty.result(a.function)
                }
            });
            at.push(Some(i));
        }
        Ok((at, types))
    }

    /// Empty accumulators of the aggregates (a lag's slot is unused).
    fn fresh(&self, schema: &SideSchema, at: &[Option<usize>]) -> Vec<Acc> {
        self.list
            .iter()
            .zip(at)
            .map(|(f, i)| match f {
                OverFn::Aggregate(a) => Acc::new(
                    a.function,
                    i.map_or(OutType::I64, |i| match schema.types[i] {
                        OutType::F64 => OutType::F64,
                        _ => OutType::I64,
                    }),
                ),
                OverFn::Lag { .. } => Acc::Count(0),
            })
            .collect()
    }

    /// The functions' results for the row at `i` of `seq` (a partition's rows in order, as
    /// each function's input), whose frame is `seq[start..=end]`. `running`: the aggregates'
    /// accumulators when the frame is unbounded (kept, not recomputed). `skip_sliding`: leave
    /// `count`, `sum` and `mean` to the caller, which slides them.
    fn evaluate(
        &self,
        seq: &[(i64, Values)],
        i: usize,
        (start, end): (usize, usize),
        running: Option<&[Acc]>,
        fresh: &[Acc],
        skip_sliding: bool,
    ) -> Values {
        self.list
            .iter()
            .enumerate()
            .map(|(f, function)| match function {
                OverFn::Lag { offset, .. } => i
                    .checked_sub(*offset)
                    .and_then(|j| seq.get(j))
                    .and_then(|(_, v)| v[f].clone()),
                OverFn::Aggregate(a) if skip_sliding && Acc::retracts(a.function) => None,
                OverFn::Aggregate(_) => match running {
                    Some(accs) => accs[f].finish(),
                    None => {
                        let mut acc = fresh[f].clone();
                        for (ts, v) in &seq[start..=end] {
                            acc.add(v[f].clone(), *ts);
                        }
                        acc.finish()
                    }
                },
            })
            .collect()
    }
}

impl Functions {
    /// The functions' results for the rows at `positions` (ascending) of `seq`, each over
    /// itself and the `n` rows before it. `count`, `sum` and `mean` slide along a run of
    /// consecutive positions — one value added and one taken back per row — so a wide frame
    /// costs no more than a narrow one; the others read their frame. `carried`: the sliding
    /// accumulators of an earlier call, at the position they end at; returned the same way.
    #[allow(clippy::type_complexity)]
    fn evaluate_rows(
        &self,
        seq: &[(i64, Values)],
        positions: &[usize],
        n: usize,
        fresh: &[Acc],
        carried: Option<(usize, Vec<(Acc, i64)>)>,
    ) -> (Vec<Values>, Option<(usize, Vec<(Acc, i64)>)>) {
        let slides = |f: &OverFn| matches!(f, OverFn::Aggregate(a) if Acc::retracts(a.function));
        // The sliding accumulators, each with how many non-null values its frame holds, and
        // the position they are at.
        let mut sliding = carried;
        let mut results = Vec::with_capacity(positions.len());
        for &i in positions {
            let start = i.saturating_sub(n);
            let accs = match sliding.take() {
                Some((at, mut accs)) if at + 1 == i => {
                    for (f, (acc, present)) in accs.iter_mut().enumerate() {
                        if let Some(v) = seq[i].1[f].clone() {
                            acc.add(Some(v), seq[i].0);
                            *present += 1;
                        }
                        if i > n
                            && let Some(v) = seq[i - n - 1].1[f].clone()
                        {
                            acc.retract(Some(v));
                            *present -= 1;
                        }
                    }
                    accs
                }
                _ => fresh
                    .iter()
                    .enumerate()
                    .map(|(f, acc)| {
                        let mut acc = acc.clone();
                        let mut present = 0;
                        if slides(&self.list[f]) {
                            for (ts, v) in &seq[start..=i] {
                                if let Some(v) = v[f].clone() {
                                    acc.add(Some(v), *ts);
                                    present += 1;
                                }
                            }
                        }
                        (acc, present)
                    })
                    .collect(),
            };
            let mut row = self.evaluate(seq, i, (start, i), None, fresh, true);
            for (f, (acc, present)) in accs.iter().enumerate() {
                if slides(&self.list[f]) {
                    row[f] = if *present > 0 || matches!(acc, Acc::Count(_)) {
                        acc.finish()
                    } else {
                        None
                    };
                }
            }
            sliding = Some((i, accs));
            results.push(row);
        }
        (results, sliding)
    }
}

/// Each function's input value in a stored row (`count(*)` sees every row).
fn inputs_of(row: &Values, at: &[Option<usize>]) -> Values {
    at.iter()
        .map(|i| match i {
            Some(i) => row.get(*i).cloned().flatten(),
            None => Some(Value::B(true)),
        })
        .collect()
}

/// A batch of rows with the functions' results appended.
fn output(
    schema: &SideSchema,
    functions: &Functions,
    types: &[OutType],
    rows: Vec<(Values, Values)>,
) -> Result<RecordBatch, AgentError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, (name, ty)) in schema.names.iter().zip(&schema.types).enumerate() {
        fields.push(values::field(name, *ty));
        columns.push(values::build(
            *ty,
            rows.iter().map(|r| r.0.get(i).cloned().flatten()).collect(),
        ));
    }
    for (f, (function, ty)) in functions.list.iter().zip(types).enumerate() {
        fields.push(values::field(function.name(), *ty));
        columns.push(values::build(
            *ty,
            rows.iter().map(|r| r.1[f].clone()).collect(),
        ));
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The over-aggregate of a config: over an append-only stream, or over a changelog.
pub enum Over {
    Ordered(OrderedOver),
    Changes(ChangingOver),
}

impl Over {
    /// An over-aggregate as `config` says, keeping its state in stores prefixed with `name`.
    pub fn new(name: &str, config: OverConfig) -> Result<Self, AgentError> {
        Ok(match config.changelog_key.clone() {
            Some(key) => Over::Changes(ChangingOver::new(name, &config, key)?),
            None => Over::Ordered(OrderedOver::new(name, &config)?),
        })
    }

    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        match self {
            Over::Ordered(o) => o.process(batch, out),
            Over::Changes(c) => c.process(batch, out),
        }
    }

    pub fn on_timers(
        &mut self,
        fired: &[sabot_sdk::timers::Timer],
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        match self {
            Over::Ordered(o) => o.on_timers(fired, out),
            Over::Changes(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
