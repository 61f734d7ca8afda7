//! An interval join grouped by its key: `GROUP BY` the join key over an interval join (Nexmark
//! q4's "each auction's highest bid between its opening and its expiry"), in one operator.
//!
//! ```toml
//! [agents.winners]
//! module = "builtin:join"
//! key = "auction"
//! config = { kind = "interval", key = "auction", time = "date_time", lower_ms = 0,
//!            upper_column = "expires",
//!            aggregates = ["first(left.category) AS category", "max(right.price) AS final"] }
//! ```
//!
//! It pairs rows as the interval join does (every right row of a key whose time is in a left
//! row's interval), but folds each pair into its key's aggregates instead of emitting it. Each
//! aggregate reads a column of one side, `left.NAME` or `right.NAME` (`count(*)` counts pairs);
//! `first` and `last` are ordered by the left row's time. A key's result is emitted when the
//! watermark has passed the end of the interval of every left row of the key — when no pair
//! can be added to it any more — and only if a pair was added since it was last emitted. The
//! output is a [changelog](sabot_sdk::changelog) keyed by the key column: the key, the
//! aggregates, `_op` = `"upsert"` — what `builtin:aggregate` over the join's pairs emits, once
//! per key instead of after every batch. A left row of the key arriving later reopens the
//! group: its pairs are added to the aggregates so far and the key is emitted again when that
//! row's interval ends.
//!
//! With `left_unique = true` (SQL: the left table declares `PRIMARY KEY (key) NOT ENFORCED`),
//! no two left rows share a key, so a key's result is final when its left row's interval ends:
//! it is emitted once, as a plain row (no `_op`: the output is append-only), and the key's
//! state is dropped. A right row arriving once its key's left row is there is folded or
//! dropped, never kept. Should a second left row of a key arrive all the same (the key is not
//! enforced), it starts a new group whose result is emitted as another row.
//!
//! Each key keeps its left rows until their interval ends, its right rows until no later left
//! row could match them (as the interval join does), and only the columns the aggregates read;
//! its aggregates are kept after that, so that a reopened group continues from them. Late rows
//! (at or before the watermark) are not joined: left ones go to port 1, right ones to port 2.

use sabot_sdk::arrow::datatypes::{Field, Schema};
use sabot_sdk::changelog;
use sabot_sdk::state::{Postcard, ValueState};
use sabot_sdk::timers::{self, Timer};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use super::{JoinConfig, emit_late, fired_keys};
use crate::group::Groups;
use crate::values::{self, Column, OutType, Value};
use crate::window::{Acc, Aggregate, Function, KeyValue, event_times, key_column, key_values};

/// Which input an aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// Where a left row's interval ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Upper {
    /// `upper_ms` after the row's time.
    After(i64),
    /// A column of the left row (an absolute time); null matches nothing.
    Column(String),
}

/// Rows of one side of a key: each row's times, and the values the aggregates read, `width`
/// per row, in one list (one allocation per side, not per row).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Rows<T> {
    times: Vec<T>,
    values: Vec<Option<Value>>,
}

impl<T: Copy> Rows<T> {
    fn push(&mut self, time: T, values: impl IntoIterator<Item = Option<Value>>) {
        self.times.push(time);
        self.values.extend(values);
    }

    /// Each row's times and values.
    fn iter(&self, width: usize) -> impl Iterator<Item = (T, &[Option<Value>])> {
        self.times
            .iter()
            .enumerate()
            .map(move |(i, t)| (*t, &self.values[i * width..(i + 1) * width]))
    }

    /// Keeps the rows whose times `keep` accepts.
    fn retain(&mut self, width: usize, keep: impl Fn(T) -> bool) {
        let mut kept = 0;
        for i in 0..self.times.len() {
            if keep(self.times[i]) {
                if kept != i {
                    self.times[kept] = self.times[i];
                    for c in 0..width {
                        self.values.swap(kept * width + c, i * width + c);
                    }
                }
                kept += 1;
            }
        }
        self.times.truncate(kept);
        self.values.truncate(kept * width);
    }

    /// Drops the last row pushed.
    fn pop(&mut self, width: usize) {
        self.times.pop();
        self.values.truncate(self.times.len() * width);
    }

    fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// What one key holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupState {
    /// The key, as the output writes it.
    key: KeyValue,
    /// Left rows whose interval the watermark has not passed: (time, interval end), and the
    /// values of the left columns the aggregates read.
    left: Rows<(i64, i64)>,
    /// Right rows a later left row could still match: time, and the values read.
    right: Rows<i64>,
    /// The group's accumulators, once it has a pair.
    accs: Option<Vec<Acc>>,
    /// Each aggregate's input type, once its side has arrived.
    inputs: Vec<Option<OutType>>,
    /// Whether a pair was added since the result was last emitted.
    pending: bool,
}

/// A key whose intervals ended: its key, accumulators and input types.
type Closed = (KeyValue, Vec<Acc>, Vec<Option<OutType>>);

/// An interval join grouped by its key, and its state.
pub struct GroupedJoin {
    key: String,
    time: String,
    right_time: String,
    lower: i64,
    upper: Upper,
    aggregates: Vec<Aggregate>,
    /// Per aggregate: the side and the index of its column among that side's `reads`.
    reads: Vec<Option<(Side, usize)>>,
    left_reads: Vec<String>,
    right_reads: Vec<String>,
    /// No two left rows share a key: results are final when emitted (see the module docs).
    left_unique: bool,
    state: ValueState<GroupState, Postcard>,
}

impl GroupedJoin {
    /// The grouped join `config` (an interval join with `aggregates`) describes, keeping its
    /// state in the store `name`.
    pub fn new(name: &str, config: JoinConfig) -> Result<Self, AgentError> {
        let Some(specs) = &config.aggregates else {
            return Err(AgentError::invalid_config(
                "a grouped join needs `aggregates`, e.g. [\"max(right.price) AS best\"]",
            ));
        };
        if config.kind != "interval" {
            return Err(AgentError::invalid_config(format!(
                "`aggregates` group the pairs of an interval join, not of a `{}` join: set kind = \"interval\"",
                config.kind
            )));
        }
        if specs.is_empty() {
            return Err(AgentError::invalid_config(
                "aggregates is empty: name at least one, e.g. [\"count(*)\"]",
            ));
        }
        if config.op.is_some() {
            return Err(AgentError::invalid_config(
                "an interval join reads two streams: `op` (a table's changes) does not apply",
            ));
        }
        let time = config.time.clone().ok_or_else(|| {
            AgentError::invalid_config(
                "`interval` joins are in event time: set `time` to the event-time column both inputs carry",
            )
        })?;
        let lower = config
            .lower_ms
            .ok_or_else(|| AgentError::invalid_config("`interval` joins need lower_ms"))?;
        let upper = match (&config.upper_column, config.upper_ms) {
            (Some(c), None) => Upper::Column(c.clone()),
            (None, Some(u)) if u < lower => {
                return Err(AgentError::invalid_config(format!(
                    "lower_ms ({lower}) must not exceed upper_ms ({u})"
                )));
            }
            (None, Some(u)) => Upper::After(u),
            (None, None) => {
                return Err(AgentError::invalid_config(
                    "`interval` joins need upper_ms or upper_column",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(AgentError::invalid_config(
                    "an interval join's upper bound is upper_ms or upper_column, not both",
                ));
            }
        };
        let mut aggregates = Vec::with_capacity(specs.len());
        let mut reads = Vec::with_capacity(specs.len());
        let (mut left_reads, mut right_reads) = (Vec::new(), Vec::new());
        for spec in specs {
            let mut a = Aggregate::parse(spec)?;
            if a.function == Function::Collect {
                return Err(AgentError::invalid_config(format!(
                    "aggregate `{spec}`: a grouped join folds count, sum, min, max, mean, first and last"
                )));
            }
            reads.push(match a.column.take() {
                None => None,
                Some(column) => {
                    let (side, name, names) = if let Some(n) = column.strip_prefix("left.") {
                        (Side::Left, n, &mut left_reads)
                    } else if let Some(n) = column.strip_prefix("right.") {
                        (Side::Right, n, &mut right_reads)
                    } else {
                        return Err(AgentError::invalid_config(format!(
                            "aggregate `{spec}`: name its column as left.NAME or right.NAME (the input it reads)"
                        )));
                    };
                    let at = match names.iter().position(|c| c == name) {
                        Some(at) => at,
                        None => {
                            names.push(name.to_owned());
                            names.len() - 1
                        }
                    };
                    // Named after the column, not the side, when no `AS` names it.
                    if !spec.to_ascii_lowercase().contains(" as ") {
                        a.name = a.name.replacen(&column, name, 1);
                    }
                    a.column = Some(name.to_owned());
                    Some((side, at))
                }
            });
            aggregates.push(a);
        }
        Ok(GroupedJoin {
            key: config.key,
            right_time: config.right_time.unwrap_or_else(|| time.clone()),
            time,
            lower,
            upper,
            aggregates,
            reads,
            left_reads,
            right_reads,
            left_unique: config.left_unique,
            state: ValueState::with_codec(&format!("{name}.groups"), Postcard),
        })
    }

    /// Handles a batch on input `port` (0: left, 1: right).
    pub fn process(
        &mut self,
        port: u32,
        batch: &RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        changelog::refuse(batch, "a join")?;
        let (side, time, names) = match port {
            0 => (Side::Left, &self.time, &self.left_reads),
            1 => (Side::Right, &self.right_time, &self.right_reads),
            other => {
                return Err(AgentError::invalid_input(format!(
                    "a join has two inputs (ports 0 and 1), not port {other}"
                )));
            }
        };
        let what = if side == Side::Left { "left" } else { "right" };
        let keys = key_values(Some(&self.key), batch, &format!("{what} join key"))?;
        let times = event_times(batch, time)?;
        let mut columns = Vec::with_capacity(names.len());
        let mut types = Vec::with_capacity(names.len());
        for name in names {
            let array = batch.column_by_name(name).ok_or_else(|| {
                AgentError::invalid_input(format!(
                    "an aggregate reads column `{name}` of the {what} input, which it lacks"
                ))
            })?;
            types.push(OutType::of(array.data_type()).ok_or_else(|| {
                AgentError::invalid_input(format!(
                    "an aggregate cannot read column `{name}` of type {}",
                    array.data_type()
                ))
            })?);
            columns.push(Column::from_array(array)?);
        }
        let inputs = self.input_types(side, &types)?;
        let ends = match (side, &self.upper) {
            (Side::Right, _) => Vec::new(),
            (Side::Left, Upper::After(upper)) => {
                times.iter().map(|t| t.saturating_add(*upper)).collect()
            }
            (Side::Left, Upper::Column(c)) => interval_ends(batch, c)?,
        };

        let watermark = timers::watermark().unwrap_or(i64::MIN);
        let mut groups = Groups::new();
        let late: Vec<bool> = times.iter().map(|t| *t <= watermark).collect();
        for (row, key) in keys.iter().enumerate() {
            if !late[row] {
                groups.push(key, row);
            }
        }
        let mut states = self.state.get_many(&groups.order)?;
        let lower = self.lower;
        for (key, state) in groups.order.iter().zip(states.iter_mut()) {
            let GroupState {
                key: _,
                left,
                right,
                accs,
                inputs: known,
                pending,
            } = state.get_or_insert_with(|| GroupState {
                key: key.clone(),
                left: Rows::default(),
                right: Rows::default(),
                accs: None,
                inputs: Vec::new(),
                pending: false,
            });
            known.resize(self.aggregates.len(), None);
            for (k, t) in known.iter_mut().zip(&inputs) {
                if t.is_some() {
                    *k = *t;
                }
            }
            // Right rows no later left row can match.
            let (lw, rw) = (self.left_reads.len(), self.right_reads.len());
            right.retain(rw, |ts| ts - lower > watermark);
            let mut expiry = i64::MIN;
            for &row in groups.rows(key) {
                // Each row folds every row it matches: a call's work grows with the product of
                // the inputs, so it checks its deadline as it goes.
                out.reserve(0)?;
                let ts = times[row];
                match side {
                    Side::Right => {
                        // A kept left row that ends later clears this row with its own timer.
                        let mut covered = false;
                        right.push(ts, columns.iter().map(|c| c.get(row)));
                        let values = &right.values[right.values.len() - rw..];
                        for ((lt, end), l) in left.iter(lw) {
                            covered |= end >= ts - lower;
                            if lt + lower <= ts && ts <= end {
                                self.fold(accs, known, l, values, lt);
                                *pending = true;
                            }
                        }
                        if self.left_unique && !left.is_empty() {
                            // The key's only left row is here: this row paired with it now or
                            // never, so it is not kept.
                            right.pop(rw);
                        } else if !covered {
                            expiry = expiry.max(ts - lower);
                        }
                    }
                    Side::Left => {
                        let end = ends[row];
                        left.push((ts, end), columns.iter().map(|c| c.get(row)));
                        let values = &left.values[left.values.len() - lw..];
                        for (rt, r) in right.iter(rw) {
                            if ts + lower <= rt && rt <= end {
                                self.fold(accs, known, values, r, ts);
                                *pending = true;
                            }
                        }
                        expiry = expiry.max(end.max(ts));
                    }
                }
            }
            if self.left_unique && side == Side::Left {
                // No other left row will come for the rows kept waiting for this one.
                *right = Rows::default();
            }
            if expiry > i64::MIN {
                timers::register_event_time(key, expiry);
            }
        }
        let writes: Vec<(KeyValue, GroupState)> = groups
            .order
            .into_iter()
            .zip(states)
            .filter_map(|(k, s)| s.map(|s| (k, s)))
            .collect();
        self.state.set_many(&writes)?;
        emit_late(out, side == Side::Right, batch, late)
    }

    /// The input type of each aggregate that reads `side`, whose read columns have `types`.
    fn input_types(
        &self,
        side: Side,
        types: &[OutType],
    ) -> Result<Vec<Option<OutType>>, AgentError> {
        self.aggregates
            .iter()
            .zip(&self.reads)
            .map(|(a, read)| match read {
                Some((s, i)) if *s == side => {
                    let ty = types[*i];
                    if matches!(a.function, Function::Sum | Function::Mean)
                        && !matches!(ty, OutType::I64 | OutType::F64)
                    {
                        return Err(AgentError::invalid_input(format!(
                            "aggregate `{}` needs a numeric column; `{}` is {}",
                            a.name,
                            a.column.as_deref().unwrap_or("*"),
                            ty.data_type()
                        )));
                    }
                    Ok(Some(ty))
                }
                _ => Ok(None),
            })
            .collect()
    }

    /// Adds the pair of a left row (its values and time) and a right row to `accs`.
    fn fold(
        &self,
        accs: &mut Option<Vec<Acc>>,
        inputs: &[Option<OutType>],
        left: &[Option<Value>],
        right: &[Option<Value>],
        left_time: i64,
    ) {
        let accs = accs.get_or_insert_with(|| {
            self.aggregates
                .iter()
                .zip(inputs)
                .map(|(a, t)| Acc::new(a.function, t.unwrap_or(OutType::I64)))
                .collect()
        });
        for (acc, read) in accs.iter_mut().zip(&self.reads) {
            let value = match read {
                None => Some(Value::B(true)),
                Some((Side::Left, i)) => left[*i].clone(),
                Some((Side::Right, i)) => right[*i].clone(),
            };
            acc.add(value, left_time);
        }
    }

    /// Drops the rows the watermark released for the keys of `fired`, and emits each key
    /// whose left rows have all ended and which gained a pair since it was last emitted.
    pub fn on_timers(&mut self, fired: &[Timer], out: &mut Emitter) -> Result<(), AgentError> {
        let (order, until) = fired_keys(fired);
        if order.is_empty() {
            return Ok(());
        }
        let states = self.state.get_many(&order)?;
        let (mut writes, mut cleared, mut emitted) = (Vec::new(), Vec::new(), Vec::new());
        for (key, state) in order.into_iter().zip(states) {
            let Some(mut state) = state else { continue };
            let t = until[&key];
            let lower = self.lower;
            state.left.retain(self.left_reads.len(), |(_, end)| end > t);
            state
                .right
                .retain(self.right_reads.len(), |ts| ts - lower > t);
            if state.left.is_empty()
                && state.pending
                && let Some(accs) = &state.accs
            {
                emitted.push((state.key.clone(), accs.clone(), state.inputs.clone()));
                state.pending = false;
            }
            if self.left_unique && state.left.is_empty() {
                // Final: no later left row of the key will reopen the group.
                state.accs = None;
            }
            if state.left.is_empty() && state.right.is_empty() && state.accs.is_none() {
                cleared.push(key);
            } else {
                writes.push((key, state));
            }
        }
        self.state.clear_many(&cleared)?;
        self.state.set_many(&writes)?;
        if !emitted.is_empty() {
            out.emit(self.results(&emitted)?);
        }
        Ok(())
    }

    /// The changelog rows of `groups` (their keys, accumulators and input types).
    fn results(&self, groups: &[Closed]) -> Result<RecordBatch, AgentError> {
        let (key_type, key_array) = key_column(groups.iter().map(|(k, _, _)| k));
        let mut fields = vec![Field::new(&self.key, key_type, false)];
        let mut columns = vec![key_array];
        for (i, a) in self.aggregates.iter().enumerate() {
            let ty = match a.function {
                Function::Count => OutType::I64,
                f => groups
                    .iter()
                    .find_map(|(_, _, inputs)| inputs.get(i).copied().flatten())
                    .unwrap_or(OutType::I64)
                    .result(f),
            };
            fields.push(values::field(&a.name, ty));
            columns.push(values::build(
                ty,
                groups.iter().map(|(_, accs, _)| accs[i].finish()).collect(),
            ));
        }
        let batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)?;
        if self.left_unique {
            return Ok(batch);
        }
        Ok(changelog::with_ops(batch, &vec![false; groups.len()])?)
    }
}

/// The interval ends of a left batch's rows: its column `column`, a timestamp or int64
/// milliseconds (a null end matches nothing).
fn interval_ends(batch: &RecordBatch, column: &str) -> Result<Vec<i64>, AgentError> {
    let array = batch.column_by_name(column).ok_or_else(|| {
        AgentError::invalid_input(format!(
            "the left input has no column `{column}` (upper_column, where each row's interval ends)"
        ))
    })?;
    match Column::from_array(array)? {
        Column::I(v) => Ok(v.into_iter().map(|e| e.unwrap_or(i64::MIN)).collect()),
        _ => Err(AgentError::invalid_input(format!(
            "upper_column `{column}` is {}; expected a timestamp or int64 milliseconds",
            array.data_type()
        ))),
    }
}
