//! Top-N per window: the first rows of each window by one column, emitted when the watermark
//! closes the window. What the built-in `top` operator runs (SQL's `ROW_NUMBER()`, `RANK()` or
//! `DENSE_RANK() OVER (PARTITION BY window … ORDER BY …)` read through `WHERE rank <= N`).
//!
//! ```toml
//! [agents.hottest]
//! module = "builtin:top"
//! config = { window = "window_end", close_offset_ms = -1, order = "bids", descending = true, limit = 1, ranking = "rank" }
//! ```
//!
//! Rows are grouped by window one of two ways:
//!
//! - `window` names a column that already tells a row's window (a windowed aggregate's
//!   `window_end` or `window_start`, a timestamp or int64 milliseconds): the window of rows with
//!   value `w` is complete once the watermark reaches `w + close_offset_ms` (-1 for a window's
//!   end, `size - 1` for its start);
//! - `time` names the event-time column and `size_ms` a tumbling window size: each row falls in
//!   the window `[start, start + size_ms)` of its event time, the output gains `window_start` and
//!   `window_end` (timestamps), and the window is complete once the watermark reaches its last
//!   millisecond.
//!
//! - `key` (optional): a further partition: the top rows of each key in each window. Give the
//!   agent the same `key` to run it in parallel.
//! - `order`: the column rows are ranked by (integers, floats, text, booleans, timestamps);
//!   `descending` (default false) ranks the largest first. Rows whose value is null rank last.
//! - `limit`: how many ranks are kept (1 to [`MAX_LIMIT`]). `ranking`: `row_number` (exactly `limit` rows per
//!   window, ties broken by arrival), `rank` (every row whose rank — one more than the rows
//!   strictly before it — is at most `limit`: ties at the cut are all kept) or `dense_rank` (the
//!   rows of the first `limit` distinct values).
//! - `rank_column` (optional): appends the rank (int64) under that name.
//!
//! Output (port 0): each window's kept rows, in rank order, with the input's columns (integers
//! as int64, floats as float64, timestamps in milliseconds). Rows whose window had already been
//! emitted when they arrived (late) go unchanged to port 1.
//!
//! State is a `MapState` per key of the candidate rows of each open window — never more than the
//! kept rows plus those tied with the last — and windows close on event-time timers: both are
//! host-managed and checkpointed like any agent's.

use std::cmp::Ordering;
use std::sync::Arc;

use sabot_sdk::arrow::array::{ArrayRef, BooleanArray, Int64Array, UInt32Array};
use sabot_sdk::arrow::compute::{filter_record_batch, take};
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema};
use sabot_sdk::state::{MapState, Postcard, StateKey};
use sabot_sdk::timers::{self, Timer};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::group::Groups;
use crate::join::{SideSchema, Values};
use crate::values::{self, Column, OutType, Value};
use crate::window::{event_times, key_values};

/// The most ranks a top-N keeps per window.
pub const MAX_LIMIT: u64 = 10_000;

/// The `config` of a top-N.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopConfig {
    pub window: Option<String>,
    #[serde(default)]
    pub close_offset_ms: i64,
    pub time: Option<String>,
    pub size_ms: Option<i64>,
    pub key: Option<String>,
    pub order: String,
    #[serde(default)]
    pub descending: bool,
    pub limit: u64,
    #[serde(default = "row_number")]
    pub ranking: String,
    pub rank_column: Option<String>,
}

fn row_number() -> String {
    "row_number".into()
}

/// How ranks are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    RowNumber,
    Rank,
    DenseRank,
}

/// How a row's window is found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Windowing {
    /// A column holds it; complete at value + offset.
    Column { name: String, offset: i64 },
    /// Tumbling windows of `size` over the event-time column `time`.
    Tumbling { time: String, size: i64 },
}

/// The candidate rows of one window (of one key), best first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Candidates {
    schema: SideSchema,
    /// The index of the order column in `schema`.
    order: usize,
    rows: Vec<Values>,
}

/// A kept row on its way out: its window, its values, its rank.
type Ranked = (i64, Values, i64);

/// A top-N and its state.
pub struct Top {
    windowing: Windowing,
    key: Option<String>,
    order: String,
    descending: bool,
    limit: usize,
    ranking: Ranking,
    rank_column: Option<String>,
    windows: MapState<i64, Candidates, Postcard>,
}

impl Top {
    /// A top-N as `config` says, keeping its state in the store `name`.
    pub fn new(name: &str, config: TopConfig) -> Result<Self, AgentError> {
        let windowing = match (config.window, config.time, config.size_ms) {
            (Some(name), None, None) => Windowing::Column {
                name,
                offset: config.close_offset_ms,
            },
            (None, Some(time), Some(size)) if size > 0 => Windowing::Tumbling { time, size },
            (None, Some(_), Some(size)) => {
                return Err(AgentError::invalid_config(format!(
                    "size_ms must be positive, got {size}"
                )));
            }
            _ => {
                return Err(AgentError::invalid_config(
                    "a top-N needs `window` (a column telling each row's window, with close_offset_ms) or `time` and `size_ms` (tumbling windows over event time), not both",
                ));
            }
        };
        let ranking = match config.ranking.as_str() {
            "row_number" => Ranking::RowNumber,
            "rank" => Ranking::Rank,
            "dense_rank" => Ranking::DenseRank,
            other => {
                return Err(AgentError::invalid_config(format!(
                    "unknown ranking `{other}`: expected row_number, rank or dense_rank"
                )));
            }
        };
        if !(1..=MAX_LIMIT).contains(&config.limit) {
            return Err(AgentError::invalid_config(format!(
                "limit {} is out of range: expected 1 to {MAX_LIMIT} (a window's kept rows are rewritten with each batch, so a top-N is for the first rows, not all of them)",
                config.limit
            )));
        }
        Ok(Top {
            windowing,
            key: config.key,
            order: config.order,
            descending: config.descending,
            limit: usize::try_from(config.limit).unwrap_or(usize::MAX),
            ranking,
            rank_column: config.rank_column,
            windows: MapState::with_codec(&format!("{name}.windows"), Postcard),
        })
    }

    /// The window of each row and when it closes.
    fn windows_of(&self, batch: &RecordBatch) -> Result<(Vec<i64>, i64), AgentError> {
        match &self.windowing {
            Windowing::Column { name, offset } => Ok((event_times(batch, name)?, *offset)),
            Windowing::Tumbling { time, size } => Ok((
                event_times(batch, time)?
                    .into_iter()
                    .map(|t| t.div_euclid(*size) * size)
                    .collect(),
                size - 1,
            )),
        }
    }

    /// Compares two order values, best first.
    fn compare(&self, a: &Option<Value>, b: &Option<Value>) -> Ordering {
        match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => {
                let o = a.partial_cmp(b).unwrap_or(Ordering::Equal);
                if self.descending { o.reverse() } else { o }
            }
        }
    }

    /// How many of `sorted` (best first) are kept.
    fn cut(&self, sorted: &[&Option<Value>]) -> usize {
        match self.ranking {
            Ranking::RowNumber => sorted.len().min(self.limit),
            Ranking::Rank => {
                if sorted.len() <= self.limit {
                    return sorted.len();
                }
                let last = sorted[self.limit - 1];
                self.limit
                    + sorted[self.limit..]
                        .iter()
                        .take_while(|v| self.compare(v, last).is_eq())
                        .count()
            }
            Ranking::DenseRank => {
                let mut distinct = 0;
                for (i, v) in sorted.iter().enumerate() {
                    if i == 0 || !self.compare(v, sorted[i - 1]).is_eq() {
                        distinct += 1;
                        if distinct > self.limit {
                            return i;
                        }
                    }
                }
                sorted.len()
            }
        }
    }

    /// Adds a batch's rows to their windows; emits late ones on port 1.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        sabot_sdk::changelog::refuse(batch, "a top-N")?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = key_values(self.key.as_deref(), batch, "top-N key")?;
        let (windows, offset) = self.windows_of(batch)?;
        let order_col = batch.column_by_name(&self.order).ok_or_else(|| {
            AgentError::invalid_input(format!("the order column `{}` is missing", self.order))
        })?;
        let order = Column::from_array(order_col)?;
        let watermark = timers::watermark().unwrap_or(i64::MIN);
        let mut late = vec![false; n];
        let mut groups = Groups::new();
        for row in 0..n {
            if windows[row].saturating_add(offset) <= watermark {
                late[row] = true;
            } else {
                groups.push(&(keys[row].clone(), windows[row]), row);
            }
        }
        if late.iter().any(|l| *l) {
            out.emit_to(1, filter_record_batch(batch, &BooleanArray::from(late))?);
        }
        if groups.order.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(Vec<u8>, i64)> = groups
            .order
            .iter()
            .map(|(k, w)| (k.state_key(), *w))
            .collect();
        let stored = self.windows.get_many(&pairs)?;
        // Of each window's rows, those that could make the cut: rows worse than the last one
        // kept (when as many as the limit are) cannot, nor can one outside the batch's own best.
        let mut kept: Vec<Vec<usize>> = Vec::with_capacity(pairs.len());
        for ((key, window), stored) in groups.order.iter().zip(&stored) {
            let bar = stored
                .as_ref()
                .filter(|c| c.rows.len() >= self.limit && self.ranking != Ranking::DenseRank)
                .map(|c| c.rows[c.rows.len() - 1][c.order].clone());
            let mut rows: Vec<usize> = Vec::new();
            let mut values: Vec<Option<Value>> = Vec::new();
            for &r in groups.rows(&(key.clone(), *window)) {
                let v = order.get(r);
                if bar
                    .as_ref()
                    .is_none_or(|bar| !self.compare(&v, bar).is_gt())
                {
                    rows.push(r);
                    values.push(v);
                }
            }
            kept.push(self.batch_best(rows, &values));
        }
        // Only the rows kept are read, column by column.
        let mut taken: Vec<usize> = kept.iter().flatten().copied().collect();
        if taken.is_empty() {
            return Ok(());
        }
        taken.sort_unstable();
        taken.dedup();
        let indices = UInt32Array::from_iter_values(taken.iter().map(|r| *r as u32));
        let small = RecordBatch::try_new(
            batch.schema(),
            batch
                .columns()
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<Result<Vec<_>, _>>()?,
        )?;
        let (schema, columns) = SideSchema::read(&small, None, "a top-N")?;
        let order_index = schema
            .names
            .iter()
            .position(|c| *c == self.order)
            .expect("the order column was read");
        let at = |row: usize| taken.binary_search(&row).expect("a kept row was taken");
        let mut writes = Vec::with_capacity(pairs.len());
        for ((((key, window), pair), stored), rows) in
            groups.order.iter().zip(&pairs).zip(stored).zip(kept)
        {
            if rows.is_empty() {
                // Nothing of this batch makes the window's cut: its candidates stand.
                continue;
            }
            let fresh = || Candidates {
                schema: schema.clone(),
                order: order_index,
                rows: Vec::new(),
            };
            let mut candidates = match stored {
                Some(c) if c.schema == schema => c,
                Some(c) => {
                    return Err(AgentError::invalid_input(format!(
                        "the input's columns changed within a window: ({}) then ({})",
                        c.schema.names.join(", "),
                        schema.names.join(", ")
                    )));
                }
                None => {
                    timers::register_event_time(&key.state_key(), window.saturating_add(offset));
                    fresh()
                }
            };
            // Merge: stored rows arrived first, so they win ties (a stable sort keeps them
            // ahead).
            candidates.rows.extend(
                rows.iter()
                    .map(|r| columns.iter().map(|c| c.get(at(*r))).collect()),
            );
            candidates
                .rows
                .sort_by(|a, b| self.compare(&a[order_index], &b[order_index]));
            let sorted: Vec<&Option<Value>> =
                candidates.rows.iter().map(|r| &r[order_index]).collect();
            let keep = self.cut(&sorted);
            candidates.rows.truncate(keep);
            writes.push((pair.0.clone(), pair.1, candidates));
        }
        self.windows.put_many(&writes)
    }

    /// Of a batch's `rows` of one window (with their order `values`), those that could make
    /// the cut, best first (ties in arrival order).
    fn batch_best(&self, rows: Vec<usize>, values: &[Option<Value>]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..rows.len()).collect();
        let by = |a: &usize, b: &usize| self.compare(&values[*a], &values[*b]).then(a.cmp(b));
        if self.ranking != Ranking::DenseRank && idx.len() > self.limit {
            // Only what ties with the limit-th best or beats it needs sorting.
            idx.select_nth_unstable_by(self.limit - 1, by);
            let nth = values[idx[self.limit - 1]].clone();
            idx.retain(|i| !self.compare(&values[*i], &nth).is_gt());
        }
        idx.sort_by(by);
        let sorted: Vec<&Option<Value>> = idx.iter().map(|i| &values[*i]).collect();
        idx.truncate(self.cut(&sorted));
        idx.into_iter().map(|i| rows[i]).collect()
    }

    /// Emits the windows the watermark closed.
    pub fn on_timers(&mut self, fired: &[Timer], out: &mut Emitter) -> Result<(), AgentError> {
        let offset = match &self.windowing {
            Windowing::Column { offset, .. } => *offset,
            Windowing::Tumbling { size, .. } => size - 1,
        };
        let pairs: Vec<(Vec<u8>, i64)> = fired
            .iter()
            .map(|t| (t.key.clone(), t.ts.saturating_sub(offset)))
            .collect();
        let closed = self.windows.get_many(&pairs)?;
        self.windows.remove_many(&pairs)?;
        // One batch per run of windows with the same columns.
        let mut pending: Option<(SideSchema, Vec<Ranked>)> = None;
        for ((_, window), candidates) in pairs.iter().zip(closed) {
            let Some(c) = candidates else { continue };
            if let Some((schema, rows)) = pending.take_if(|(s, _)| *s != c.schema) {
                out.emit(self.output(&schema, rows)?);
            }
            let (_, rows) = pending.get_or_insert_with(|| (c.schema.clone(), Vec::new()));
            let mut rank = 0i64;
            let mut dense = 0i64;
            for (i, row) in c.rows.iter().enumerate() {
                let tied = i > 0 && self.compare(&row[c.order], &c.rows[i - 1][c.order]).is_eq();
                if !tied {
                    rank = i as i64 + 1;
                    dense += 1;
                }
                let r = match self.ranking {
                    Ranking::RowNumber => i as i64 + 1,
                    Ranking::Rank => rank,
                    Ranking::DenseRank => dense,
                };
                rows.push((*window, row.clone(), r));
            }
        }
        if let Some((schema, rows)) = pending {
            out.emit(self.output(&schema, rows)?);
        }
        Ok(())
    }

    fn output(&self, schema: &SideSchema, rows: Vec<Ranked>) -> Result<RecordBatch, AgentError> {
        let mut fields: Vec<Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, (name, ty)) in schema.names.iter().zip(&schema.types).enumerate() {
            fields.push(values::field(name, *ty));
            columns.push(values::build(
                *ty,
                rows.iter().map(|r| r.1.get(i).cloned().flatten()).collect(),
            ));
        }
        if let Windowing::Tumbling { size, .. } = &self.windowing {
            for (name, shift) in [("window_start", 0), ("window_end", *size)] {
                fields.push(Field::new(name, OutType::TimestampMs.data_type(), false));
                columns.push(values::build(
                    OutType::TimestampMs,
                    rows.iter().map(|r| Some(Value::I(r.0 + shift))).collect(),
                ));
            }
        }
        if let Some(name) = &self.rank_column {
            fields.push(Field::new(name, DataType::Int64, false));
            columns.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.2),
            )));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(ranking: &str, limit: u64, descending: bool) -> Top {
        Top::new(
            "t",
            TopConfig {
                window: Some("w".into()),
                close_offset_ms: -1,
                time: None,
                size_ms: None,
                key: None,
                order: "v".into(),
                descending,
                limit,
                ranking: ranking.into(),
                rank_column: None,
            },
        )
        .unwrap()
    }

    fn cut(t: &Top, values: &[Option<i64>]) -> usize {
        let values: Vec<Option<Value>> = values.iter().map(|v| v.map(Value::I)).collect();
        let refs: Vec<&Option<Value>> = values.iter().collect();
        t.cut(&refs)
    }

    #[test]
    fn row_number_keeps_exactly_the_limit() {
        assert_eq!(
            cut(&top("row_number", 2, true), &[Some(9), Some(9), Some(9)]),
            2
        );
        assert_eq!(cut(&top("row_number", 5, true), &[Some(9)]), 1);
    }

    #[test]
    fn rank_keeps_every_row_tied_at_the_cut() {
        let t = top("rank", 2, true);
        assert_eq!(cut(&t, &[Some(9), Some(8), Some(8), Some(7)]), 3);
        assert_eq!(cut(&t, &[Some(9), Some(9), Some(9), Some(7)]), 3);
        assert_eq!(cut(&top("rank", 1, true), &[Some(9), Some(9), Some(8)]), 2);
    }

    #[test]
    fn dense_rank_keeps_the_rows_of_the_first_distinct_values() {
        let t = top("dense_rank", 2, true);
        assert_eq!(cut(&t, &[Some(9), Some(9), Some(8), Some(8), Some(7)]), 4);
    }

    #[test]
    fn a_batch_keeps_its_best_rows_and_every_tie_at_the_cut_in_arrival_order() {
        let values: Vec<Option<Value>> = [5, 9, 7, 9, 1, 7, 7]
            .iter()
            .map(|v| Some(Value::I(*v)))
            .collect();
        let rows: Vec<usize> = (10..17).collect();
        assert_eq!(
            top("rank", 3, true).batch_best(rows.clone(), &values),
            [11, 13, 12, 15, 16]
        );
        assert_eq!(
            top("row_number", 3, true).batch_best(rows.clone(), &values),
            [11, 13, 12]
        );
        assert_eq!(
            top("dense_rank", 2, true).batch_best(rows.clone(), &values),
            [11, 13, 12, 15, 16]
        );
        assert_eq!(top("rank", 1, false).batch_best(rows, &values), [14]);
    }

    #[test]
    fn nulls_rank_last_whichever_the_direction() {
        for descending in [true, false] {
            let t = top("row_number", 3, descending);
            let mut v = [None, Some(1), Some(2)];
            v.sort_by(|a, b| t.compare(&a.map(Value::I), &b.map(Value::I)));
            assert_eq!(v[2], None, "descending: {descending}");
        }
    }

    #[test]
    fn a_config_without_a_window_or_with_both_is_refused() {
        let mut c = TopConfig {
            window: None,
            close_offset_ms: 0,
            time: None,
            size_ms: None,
            key: None,
            order: "v".into(),
            descending: false,
            limit: 1,
            ranking: "rank".into(),
            rank_column: None,
        };
        assert!(Top::new("t", c.clone()).is_err());
        c.window = Some("w".into());
        c.time = Some("t".into());
        c.size_ms = Some(10);
        assert!(Top::new("t", c.clone()).is_err());
        c.window = None;
        for limit in [0, MAX_LIMIT + 1] {
            c.limit = limit;
            let err = Top::new("t", c.clone()).err().unwrap();
            assert!(err.to_string().contains("expected 1 to 10000"), "{err}");
        }
    }
}
