//! Over-aggregates of an append-only stream: rows wait for the watermark, then each partition's
//! rows are taken in time order, each emitted once with its frame's results.

use std::collections::{HashMap, VecDeque};

use sabot_sdk::arrow::array::BooleanArray;
use sabot_sdk::arrow::compute::filter_record_batch;
use sabot_sdk::state::{MapState, Postcard, StateKey, ValueState};
use sabot_sdk::timers::{self, Timer};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use super::{Frame, Functions, MAX_FRAME_ROWS, OverConfig, OverFn, inputs_of, output};
use crate::group::Groups;
use crate::join::{SideSchema, Values};
use crate::values::OutType;
use crate::window::{Acc, KeyValue, event_times, key_values};

/// The rows of one partition and time, waiting for the watermark.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    schema: SideSchema,
    rows: Vec<Values>,
}

/// What a partition's next frames need of the rows already emitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct History {
    /// The latest rows, oldest first: time and each function's input.
    rows: VecDeque<(i64, Values)>,
    /// The aggregates' accumulators over every row, when the frame is unbounded.
    accs: Option<Vec<Acc>>,
    /// The sliding aggregates over the frame of the latest row, when the frame is `preceding`
    /// rows (see `Functions::evaluate_rows`).
    #[serde(default)]
    sliding: Option<Vec<(Acc, i64)>>,
}

/// Rows on their way out, with the columns they share.
type Run = (SideSchema, Vec<OutType>, Vec<(Values, Values)>);

/// An over-aggregate of an append-only stream.
pub struct OrderedOver {
    functions: Functions,
    pending: MapState<i64, Pending, Postcard>,
    history: ValueState<History, Postcard>,
}

impl OrderedOver {
    pub(super) fn new(name: &str, config: &OverConfig) -> Result<Self, AgentError> {
        Ok(OrderedOver {
            functions: Functions::new(config)?,
            pending: MapState::with_codec(&format!("{name}.pending"), Postcard),
            history: ValueState::with_codec(&format!("{name}.history"), Postcard),
        })
    }

    /// Holds a batch's rows until the watermark passes their time; emits late ones on port 1.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        sabot_sdk::changelog::refuse(batch, "an over-aggregate without changelog_key")?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = key_values(self.functions.partition.as_deref(), batch, "partition key")?;
        let times = event_times(batch, &self.functions.order)?;
        let (schema, columns) = SideSchema::read(batch, None, "an over-aggregate")?;
        // A function reading a column the input lacks fails now, not when the rows are due.
        self.functions.inputs(&schema)?;
        let watermark = timers::watermark().unwrap_or(i64::MIN);
        let mut late = vec![false; n];
        let mut groups: Groups<(KeyValue, i64)> = Groups::new();
        for row in 0..n {
            if times[row] <= watermark {
                late[row] = true;
            } else {
                groups.push(&(keys[row].clone(), times[row]), row);
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
            .map(|(k, t)| (k.state_key(), *t))
            .collect();
        let stored = self.pending.get_many(&pairs)?;
        let mut writes = Vec::with_capacity(pairs.len());
        for ((group, (key, ts)), stored) in groups.order.iter().zip(pairs).zip(stored) {
            let mut pending = match stored {
                Some(p) if p.schema == schema => p,
                Some(p) => {
                    return Err(AgentError::invalid_input(format!(
                        "the input's columns changed while rows waited for the watermark: ({}) then ({})",
                        p.schema.names.join(", "),
                        schema.names.join(", ")
                    )));
                }
                None => {
                    timers::register_event_time(&key, ts);
                    Pending {
                        schema: schema.clone(),
                        rows: Vec::new(),
                    }
                }
            };
            pending.rows.extend(
                groups
                    .rows(group)
                    .iter()
                    .map(|r| columns.iter().map(|c| c.get(*r)).collect::<Values>()),
            );
            writes.push((key, ts, pending));
        }
        self.pending.put_many(&writes)
    }

    /// Emits the rows whose time the watermark passed, partition by partition in time order.
    pub fn on_timers(&mut self, fired: &[Timer], out: &mut Emitter) -> Result<(), AgentError> {
        let mut fired: Vec<&Timer> = fired.iter().collect();
        fired.sort_by_key(|t| t.ts);
        let pairs: Vec<(Vec<u8>, i64)> = fired.iter().map(|t| (t.key.clone(), t.ts)).collect();
        let due = self.pending.get_many(&pairs)?;
        self.pending.remove_many(&pairs)?;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for (k, _) in &pairs {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        let stored = self.history.get_many(&keys)?;
        let mut histories: HashMap<Vec<u8>, History> = keys
            .iter()
            .cloned()
            .zip(stored.into_iter().map(Option::unwrap_or_default))
            .collect();
        let mut run: Option<Run> = None;
        for ((key, ts), pending) in pairs.iter().zip(due) {
            let Some(pending) = pending else { continue };
            let history = histories.get_mut(key).expect("read above");
            let (at, types) = self.functions.inputs(&pending.schema)?;
            let results = emit_time(&self.functions, history, *ts, &pending, &at)?;
            if let Some((schema, types, rows)) =
                run.take_if(|(s, t, _)| *s != pending.schema || *t != types)
            {
                out.emit(output(&schema, &self.functions, &types, rows)?);
            }
            let (_, _, rows) =
                run.get_or_insert_with(|| (pending.schema.clone(), types, Vec::new()));
            rows.extend(pending.rows.into_iter().zip(results));
        }
        if let Some((schema, types, rows)) = run {
            out.emit(output(&schema, &self.functions, &types, rows)?);
        }
        let writes: Vec<(Vec<u8>, History)> = histories.into_iter().collect();
        self.history.set_many(&writes)
    }
}

/// The functions' results for the rows of one partition at time `ts`, advancing its history.
fn emit_time(
    f: &Functions,
    history: &mut History,
    ts: i64,
    pending: &Pending,
    at: &[Option<usize>],
) -> Result<Vec<Values>, AgentError> {
    let fresh = f.fresh(&pending.schema, at);
    let base = history.rows.len();
    history
        .rows
        .extend(pending.rows.iter().map(|r| (ts, inputs_of(r, at))));
    // Amortized O(1): the ring buffer is rotated only when it wraps.
    let seq: &[(i64, Values)] = history.rows.make_contiguous();
    let last = seq.len() - 1;
    let mut results = Vec::with_capacity(pending.rows.len());
    match f.frame {
        Frame::Rows(n) => {
            // The sliding aggregates carry on from the partition's previous row.
            let carried = history
                .sliding
                .take()
                .and_then(|accs| base.checked_sub(1).map(|at| (at, accs)));
            let positions: Vec<usize> = (base..=last).collect();
            let (rows, sliding) = f.evaluate_rows(seq, &positions, n, &fresh, carried);
            results = rows;
            history.sliding = sliding.map(|(_, accs)| accs);
        }
        Frame::Range(ms) => {
            let from = ts.saturating_sub(ms);
            let start = seq.partition_point(|(t, _)| *t < from);
            if last + 1 - start > MAX_FRAME_ROWS as usize {
                return Err(AgentError::invalid_input(format!(
                    "a RANGE frame of {ms} ms holds {} rows at time {ts}; a frame reads at most {MAX_FRAME_ROWS}: narrow the range, or partition more finely",
                    last + 1 - start
                )));
            }
            // Rows of one time share their frame: its aggregates are read once.
            let shared = f.evaluate(seq, base, (start, last), None, &fresh, false);
            for i in base..=last {
                let mut row = shared.clone();
                for (k, function) in f.list.iter().enumerate() {
                    if let OverFn::Lag { offset, .. } = function {
                        row[k] = i
                            .checked_sub(*offset)
                            .and_then(|j| seq.get(j))
                            .and_then(|(_, v)| v[k].clone());
                    }
                }
                results.push(row);
            }
        }
        Frame::UnboundedRows | Frame::UnboundedRange => {
            let mut accs = history.accs.take().unwrap_or_else(|| fresh.clone());
            let add = |accs: &mut Vec<Acc>, (t, v): &(i64, Values)| {
                for (acc, v) in accs.iter_mut().zip(v) {
                    acc.add(v.clone(), *t);
                }
            };
            if f.frame == Frame::UnboundedRange {
                for row in &seq[base..] {
                    add(&mut accs, row);
                }
            }
            for i in base..=last {
                if f.frame == Frame::UnboundedRows {
                    add(&mut accs, &seq[i]);
                }
                results.push(f.evaluate(seq, i, (0, i), Some(&accs), &fresh, false));
            }
            history.accs = Some(accs);
        }
    }
    // Keep what later frames and lags can read (and, for `preceding` rows, the one row the
    // next frame takes back).
    let depth = f.lag_depth().max(match f.frame {
        Frame::Rows(n) => n + 1,
        _ => 0,
    });
    let mut keep_from = seq.len().saturating_sub(depth);
    if let Frame::Range(ms) = f.frame {
        // A later row's frame starts at or after this row's time minus the range.
        keep_from = keep_from.min(seq.partition_point(|(t, _)| *t < ts.saturating_sub(ms)));
    }
    history.rows.drain(..keep_from);
    Ok(results)
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    /// Emits `rows` of one partition at time `ts`.
    pub fn emit(
        functions: &Functions,
        history: &mut History,
        ts: i64,
        schema: SideSchema,
        rows: Vec<Values>,
    ) -> Result<Vec<Values>, AgentError> {
        let (at, _) = functions.inputs(&schema)?;
        emit_time(functions, history, ts, &Pending { schema, rows }, &at)
    }

    /// How many rows a history keeps.
    pub fn kept(history: &History) -> usize {
        history.rows.len()
    }
}
