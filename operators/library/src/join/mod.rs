//! Keyed joins of two inputs: the left input (port 0) is a stream of events, the right input
//! (port 1) is a table (a changelog of upserts and deletes) or another stream. In a pipeline, an
//! agent's inputs are numbered in the order they first appear in `edges`: list the left one
//! first.
//!
//! ```toml
//! [agents.enrich]
//! module = "builtin:join"
//! key = "symbol"     # both inputs carry it; partitions both the same way
//! config = { kind = "temporal", key = "symbol", time = "ts" }
//! ```
//!
//! `time` names the event-time column (`right_time` the right input's, when it differs).
//!
//! | `kind` | joins each left row with | emitted |
//! |---|---|---|
//! | `lookup` | the right row of its key as the table stands when the left row arrives (processing time) | at once |
//! | `temporal` | the right row of its key as of the left row's event time: the latest version with a time at or before it | when the watermark passes the left row |
//! | `interval` | every right row of its key with `lower_ms ≤ right.time − left.time ≤ upper_ms` (or, with `upper_column` instead of `upper_ms`, `right.time ≤` that column of the left row: an absolute time, e.g. an auction's expiry) | when the second row of a pair arrives |
//! | `window` | every right row of its key in the same tumbling window of `size_ms` | when the watermark passes the window |
//!
//! Joins are inner. The output has the left input's columns, then the right input's except the
//! key (and the `op` column), renamed `right_NAME` where a left column has the same name. For
//! `lookup` and `temporal`, a right row whose `op` column (when `op` names one) says `delete`
//! removes the key from the table; any other row upserts it.
//!
//! Rows that arrive after the watermark has passed them (late) are not joined: left ones go to
//! port 1, right ones to port 2, unchanged. The table of a `lookup` join keeps every version it
//! is given; the other kinds keep rows only as long as the watermark allows a match.
//!
//! An interval join with `aggregates` groups its pairs by the key instead of emitting them
//! ([`grouped::GroupedJoin`]): SQL's `GROUP BY` of the join key over an interval join.

mod grouped;

pub use grouped::GroupedJoin;

use std::collections::HashMap;
use std::sync::Arc;

use sabot_sdk::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use sabot_sdk::arrow::compute::filter_record_batch;
use sabot_sdk::arrow::datatypes::{DataType, Schema};
use sabot_sdk::state::{Postcard, ValueState};
use sabot_sdk::timers::{self, TimeDomain, Timer};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::group::Groups;
use crate::values::{self, Column, OutType, Value};
use crate::window::KeyValue;

/// The `config` of a join.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    pub kind: String,
    pub key: String,
    pub time: Option<String>,
    /// The right input's event-time column, when it is not named like the left's.
    pub right_time: Option<String>,
    pub op: Option<String>,
    pub lower_ms: Option<i64>,
    pub upper_ms: Option<i64>,
    /// A left column (a timestamp or int64 milliseconds) bounding its right rows' times, instead
    /// of `upper_ms`.
    pub upper_column: Option<String>,
    pub size_ms: Option<i64>,
    /// Interval joins only: aggregates of each key's pairs, `function(left.NAME | right.NAME)
    /// [AS name]`, emitted when the key's intervals end (see [`GroupedJoin`]).
    pub aggregates: Option<Vec<String>>,
    /// Grouped interval joins only: no two left rows share a key (SQL's `PRIMARY KEY …
    /// NOT ENFORCED` on the left table), so each key's result is final when its left row's
    /// interval ends and the output is append-only (see [`GroupedJoin`]).
    #[serde(default)]
    pub left_unique: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lookup,
    Temporal,
    Interval { lower: i64, upper: i64 },
    Window { size: i64 },
}

/// The columns of one input, as stored beside its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideSchema {
    pub names: Vec<String>,
    pub types: Vec<OutType>,
}

impl SideSchema {
    /// The columns of `batch` (but `skip`, a changelog's `_op`) as stored beside rows, and
    /// their readers; `operator` ("a top-N") names what refuses a column it cannot carry.
    pub fn read(
        batch: &RecordBatch,
        skip: Option<&str>,
        operator: &str,
    ) -> Result<(SideSchema, Vec<Column>), AgentError> {
        let schema = batch.schema();
        let mut names = Vec::with_capacity(schema.fields().len());
        let mut types = Vec::with_capacity(schema.fields().len());
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            if Some(field.name().as_str()) == skip {
                continue;
            }
            let ty = OutType::of(field.data_type()).ok_or_else(|| {
                AgentError::invalid_input(format!(
                    "{operator} cannot carry column `{}` of type {}",
                    field.name(),
                    field.data_type()
                ))
            })?;
            names.push(field.name().clone());
            types.push(ty);
            columns.push(Column::from_array(array)?);
        }
        Ok((SideSchema { names, types }, columns))
    }
}

/// The values of one row.
pub type Values = Vec<Option<Value>>;
/// A stored row: its event time and its values.
pub type Row = (i64, Values);
/// A joined pair: the left row's values and the right row's.
type Pair = (Values, Values);

/// What one key holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KeyState {
    left_schema: Option<SideSchema>,
    right_schema: Option<SideSchema>,
    /// Buffered left rows (temporal, interval, window), in arrival order.
    left: Vec<Row>,
    /// Right rows: versions in time order (temporal; `None` values = deleted), the current row
    /// (lookup), or buffered rows (interval, window).
    right: Vec<(i64, Option<Vec<Option<Value>>>)>,
}

/// A join and its state: what the `join` operator runs, usable from any Rust agent.
pub struct Join {
    kind: Kind,
    key: String,
    time: Option<String>,
    right_time: Option<String>,
    op: Option<String>,
    upper_column: Option<String>,
    state: ValueState<KeyState, Postcard>,
}

/// A batch read into rows, with its schema.
struct Side {
    schema: SideSchema,
    keys: Vec<KeyValue>,
    times: Vec<i64>,
    rows: Vec<Vec<Option<Value>>>,
    deletes: Vec<bool>,
}

impl Join {
    /// A join as `config` says, keeping its state in the store `name`.
    pub fn new(name: &str, config: JoinConfig) -> Result<Self, AgentError> {
        let need = |v: Option<i64>, field: &str| {
            v.ok_or_else(|| {
                AgentError::invalid_config(format!("`{}` joins need {field}", config.kind))
            })
        };
        if config.aggregates.is_some() {
            return Err(AgentError::invalid_config(
                "a join with `aggregates` groups its pairs: run it as a GroupedJoin",
            ));
        }
        if config.left_unique {
            return Err(AgentError::invalid_config(
                "`left_unique` applies to a join with `aggregates` (a grouped interval join): a join of pairs keeps no per-key result to finish early",
            ));
        }
        let kind = match config.kind.as_str() {
            "lookup" => Kind::Lookup,
            "temporal" => Kind::Temporal,
            "interval" => {
                let lower = need(config.lower_ms, "lower_ms")?;
                let upper = match (&config.upper_column, config.upper_ms) {
                    (Some(_), None) => i64::MAX,
                    (None, upper) => need(upper, "upper_ms or upper_column")?,
                    (Some(_), Some(_)) => {
                        return Err(AgentError::invalid_config(
                            "an interval join's upper bound is upper_ms or upper_column, not both",
                        ));
                    }
                };
                if lower > upper {
                    return Err(AgentError::invalid_config(format!(
                        "lower_ms ({lower}) must not exceed upper_ms ({upper})"
                    )));
                }
                Kind::Interval { lower, upper }
            }
            "window" => {
                let size = need(config.size_ms, "size_ms")?;
                if size <= 0 {
                    return Err(AgentError::invalid_config(format!(
                        "size_ms must be positive, got {size}"
                    )));
                }
                Kind::Window { size }
            }
            other => {
                return Err(AgentError::invalid_config(format!(
                    "unknown join kind `{other}`: expected \"lookup\", \"temporal\", \"interval\" or \"window\""
                )));
            }
        };
        if kind != Kind::Lookup && config.time.is_none() {
            return Err(AgentError::invalid_config(format!(
                "`{}` joins are in event time: set `time` to the event-time column both inputs carry",
                config.kind
            )));
        }
        Ok(Join {
            kind,
            key: config.key,
            right_time: config.right_time.or_else(|| config.time.clone()),
            time: config.time,
            op: config.op,
            upper_column: config.upper_column,
            state: ValueState::with_codec(&format!("{name}.keys"), Postcard),
        })
    }

    fn read(&self, batch: &RecordBatch, side: &str) -> Result<Side, AgentError> {
        let key_col = batch.column_by_name(&self.key).ok_or_else(|| {
            AgentError::invalid_input(format!(
                "the {side} input has no join key column `{}`",
                self.key
            ))
        })?;
        let keys = match Column::from_array(key_col)? {
            Column::I(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, k)| match (k, key_col.data_type()) {
                    (Some(k), DataType::Int32) => Ok(KeyValue::I32(k as i32)),
                    (Some(k), _) => Ok(KeyValue::I64(k)),
                    (None, _) => Err(AgentError::invalid_input(format!(
                        "the join key `{}` is null",
                        self.key
                    ))
                    .at_row(i)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Column::S(a) => (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Err(AgentError::invalid_input(format!(
                            "the join key `{}` is null",
                            self.key
                        ))
                        .at_row(i))
                    } else {
                        Ok(KeyValue::Str(a.value(i).to_owned()))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(AgentError::invalid_input(format!(
                    "the join key `{}` is {}; expected an integer or utf8 column",
                    self.key,
                    key_col.data_type()
                )));
            }
        };
        let time = if side == "right" {
            &self.right_time
        } else {
            &self.time
        };
        let times = match time {
            None => vec![0; batch.num_rows()],
            Some(t) => {
                let col = batch.column_by_name(t).ok_or_else(|| {
                    AgentError::invalid_input(format!(
                        "the {side} input has no event-time column `{t}`"
                    ))
                })?;
                match Column::from_array(col)? {
                    Column::I(v)
                        if matches!(col.data_type(), DataType::Int64 | DataType::Timestamp(..)) =>
                    {
                        v.into_iter()
                            .enumerate()
                            .map(|(i, t)| {
                                t.ok_or_else(|| {
                                    AgentError::invalid_input("a null event time").at_row(i)
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?
                    }
                    _ => {
                        return Err(AgentError::invalid_input(format!(
                            "the event-time column `{t}` is {}; expected a timestamp or int64 milliseconds",
                            col.data_type()
                        )));
                    }
                }
            }
        };
        let deletes = match (&self.op, side) {
            (Some(op), "right") => {
                let col = batch.column_by_name(op).ok_or_else(|| {
                    AgentError::invalid_input(format!("the right input has no op column `{op}`"))
                })?;
                let ops = col.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                    AgentError::invalid_input(format!("the op column `{op}` must be utf8"))
                })?;
                (0..ops.len())
                    .map(|i| ops.is_valid(i) && ops.value(i).eq_ignore_ascii_case("delete"))
                    .collect()
            }
            _ => vec![false; batch.num_rows()],
        };
        let schema = batch.schema();
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut columns = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if side == "right"
                && (field.name() == &self.key || Some(field.name()) == self.op.as_ref())
            {
                continue;
            }
            let ty = OutType::of(field.data_type()).ok_or_else(|| {
                AgentError::invalid_input(format!(
                    "a join cannot carry column `{}` of type {}",
                    field.name(),
                    field.data_type()
                ))
            })?;
            names.push(field.name().clone());
            types.push(ty);
            columns.push(Column::from_array(batch.column(i))?);
        }
        let rows = (0..batch.num_rows())
            .map(|r| columns.iter().map(|c| c.get(r)).collect())
            .collect();
        Ok(Side {
            schema: SideSchema { names, types },
            keys,
            times,
            rows,
            deletes,
        })
    }

    /// Handles a batch on input `port` (0: left, 1: right).
    pub fn process(
        &mut self,
        port: u32,
        batch: &RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        // A lookup join applies a changelog on its right side when its `op` column is the
        // changelog's: upserts replace a key's row, deletes remove it.
        let applies_changes = port == 1
            && self.kind == Kind::Lookup
            && self.op.as_deref() == Some(sabot_sdk::changelog::OP_COLUMN);
        if !applies_changes {
            sabot_sdk::changelog::refuse(batch, "a join")?;
        }
        let right = match port {
            0 => false,
            1 => true,
            other => {
                return Err(AgentError::invalid_input(format!(
                    "a join has two inputs (ports 0 and 1), not port {other}"
                )));
            }
        };
        let side = self.read(batch, if right { "right" } else { "left" })?;
        let watermark = timers::watermark().unwrap_or(i64::MIN);
        let mut groups = Groups::new();
        let mut late = vec![false; side.rows.len()];
        for (i, key) in side.keys.iter().enumerate() {
            if self.is_late(right, side.times[i], watermark) {
                late[i] = true;
                continue;
            }
            groups.push(key, i);
        }
        let order = &groups.order;
        let mut states = self.state.get_many(order)?;
        let mut pairs: Vec<Pair> = Vec::new();
        let mut schemas: Option<(SideSchema, SideSchema)> = None;
        for (key, state) in order.iter().zip(states.iter_mut()) {
            let state = state.get_or_insert_with(KeyState::default);
            if right {
                state.right_schema = Some(side.schema.clone());
            } else {
                state.left_schema = Some(side.schema.clone());
            }
            // Right rows no later left row can match: dropped as the key is read, so that a
            // key's state stays as small as the watermark allows between its timers.
            if let Kind::Interval { lower, .. } = self.kind {
                state.right.retain(|(ts, _)| ts - lower > watermark);
            }
            // An interval join clears a key's rows when the watermark passes the last of the
            // batch's (rows that expire earlier are kept a little longer, and never match).
            let mut expiry = i64::MIN;
            // The window timer last registered for this key (a window's rows share one).
            let mut registered = None;
            for &i in groups.rows(key) {
                // Pairs grow with the product of the inputs: checked against the call's budget
                // before each row adds its own.
                out.reserve(pairs.len())?;
                let (ts, values) = (side.times[i], side.rows[i].clone());
                match self.kind {
                    Kind::Lookup if right => {
                        state.right = vec![(ts, (!side.deletes[i]).then_some(values))];
                    }
                    Kind::Lookup => {
                        if let Some((_, Some(r))) = state.right.last() {
                            pairs.push((values, r.clone()));
                        }
                    }
                    Kind::Temporal if right => {
                        let at = state.right.partition_point(|(t, _)| *t <= ts);
                        state
                            .right
                            .insert(at, (ts, (!side.deletes[i]).then_some(values)));
                    }
                    Kind::Temporal => {
                        state.left.push((ts, values));
                        timers::register_event_time(key, ts);
                    }
                    Kind::Interval { lower, upper } => {
                        let until = self.until(upper, state.left_schema.as_ref());
                        if right {
                            // A kept left row that ends later clears this row with its own
                            // timer: no timer of its own then.
                            let mut covered = false;
                            for (lt, l) in &state.left {
                                let end = until(*lt, l);
                                covered |= end >= ts - lower;
                                if lt + lower <= ts && ts <= end {
                                    pairs.push((l.clone(), values.clone()));
                                }
                            }
                            state.right.push((ts, Some(values)));
                            if !covered {
                                expiry = expiry.max(ts - lower);
                            }
                        } else {
                            let last = until(ts, &values);
                            for (rt, r) in &state.right {
                                if ts + lower <= *rt && *rt <= last {
                                    pairs.push((values.clone(), r.clone().unwrap_or_default()));
                                }
                            }
                            state.left.push((ts, values));
                            expiry = expiry.max(last.max(ts));
                        }
                    }
                    Kind::Window { size } => {
                        let end = (ts.div_euclid(size) + 1) * size;
                        if right {
                            state.right.push((ts, Some(values)));
                        } else {
                            state.left.push((ts, values));
                        }
                        if registered != Some(end) {
                            timers::register_event_time(key, end - 1);
                            registered = Some(end);
                        }
                    }
                }
            }
            if expiry > i64::MIN {
                timers::register_event_time(key, expiry);
            }
            if !pairs.is_empty()
                && schemas.is_none()
                && let (Some(l), Some(r)) = (&state.left_schema, &state.right_schema)
            {
                schemas = Some((l.clone(), r.clone()));
            }
        }
        let writes: Vec<(KeyValue, KeyState)> = groups
            .order
            .into_iter()
            .zip(states)
            .filter_map(|(k, s)| s.map(|s| (k, s)))
            .collect();
        self.state.set_many(&writes)?;
        if let Some((l, r)) = schemas {
            out.emit(self.output(&l, &r, pairs)?);
        }
        emit_late(out, right, batch, late)
    }

    /// The latest right time a left row (its time and values) matches: `upper_ms` after its
    /// time, or its `upper_column` (a null bound matches nothing).
    fn until(&self, upper: i64, left: Option<&SideSchema>) -> impl Fn(i64, &Values) -> i64 {
        let column = self
            .upper_column
            .as_ref()
            .map(|c| left.and_then(|s| s.names.iter().position(|n| n == c)));
        move |ts, values| match column {
            None => ts.saturating_add(upper),
            Some(Some(i)) => match values.get(i) {
                Some(Some(Value::I(v))) => *v,
                _ => i64::MIN,
            },
            Some(None) => i64::MIN,
        }
    }

    fn is_late(&self, right: bool, ts: i64, watermark: i64) -> bool {
        match self.kind {
            Kind::Lookup => false,
            // A version of the table is never late: it only affects left rows after it.
            Kind::Temporal => !right && ts <= watermark,
            Kind::Interval { .. } => ts <= watermark,
            Kind::Window { size } => (ts.div_euclid(size) + 1) * size - 1 <= watermark,
        }
    }

    /// Emits what the watermark releases for the keys of `fired`.
    pub fn on_timers(&mut self, fired: &[Timer], out: &mut Emitter) -> Result<(), AgentError> {
        let (order, until) = fired_keys(fired);
        if order.is_empty() {
            return Ok(());
        }
        let states = self.state.get_many(&order)?;
        let mut pairs = Vec::new();
        let mut schemas = None;
        let (mut writes, mut clears) = (Vec::new(), Vec::new());
        for (key, state) in order.into_iter().zip(states) {
            let Some(mut state) = state else { continue };
            let t = until[&key];
            let before = pairs.len();
            match self.kind {
                Kind::Lookup => {}
                Kind::Temporal => {
                    let (due, keep): (Vec<Row>, Vec<Row>) =
                        state.left.into_iter().partition(|(ts, _)| *ts <= t);
                    state.left = keep;
                    for (ts, l) in due {
                        let at = state.right.partition_point(|(v, _)| *v <= ts);
                        if let Some((_, Some(r))) = at.checked_sub(1).map(|i| &state.right[i]) {
                            pairs.push((l, r.clone()));
                        }
                    }
                    // Versions older than the latest one at or before `t` can match nothing more.
                    let at = state.right.partition_point(|(v, _)| *v <= t);
                    if at > 1 {
                        state.right.drain(..at - 1);
                    }
                }
                Kind::Interval { lower, upper } => {
                    let until = self.until(upper, state.left_schema.as_ref());
                    state.left.retain(|(ts, l)| until(*ts, l) > t);
                    state.right.retain(|(ts, _)| ts - lower > t);
                }
                Kind::Window { size } => {
                    let closed = |ts: &i64| (ts.div_euclid(size) + 1) * size - 1 <= t;
                    let (left_due, left_keep): (Vec<Row>, Vec<Row>) =
                        state.left.into_iter().partition(|(ts, _)| closed(ts));
                    let (right_due, right_keep): (Vec<_>, Vec<_>) =
                        state.right.into_iter().partition(|(ts, _)| closed(ts));
                    state.left = left_keep;
                    state.right = right_keep;
                    for (lt, l) in &left_due {
                        out.reserve(pairs.len())?;
                        for (rt, r) in &right_due {
                            if lt.div_euclid(size) == rt.div_euclid(size) {
                                pairs.push((l.clone(), r.clone().unwrap_or_default()));
                            }
                        }
                    }
                }
            }
            if pairs.len() > before
                && schemas.is_none()
                && let (Some(l), Some(r)) = (&state.left_schema, &state.right_schema)
            {
                schemas = Some((l.clone(), r.clone()));
            }
            let buffers = matches!(self.kind, Kind::Interval { .. } | Kind::Window { .. });
            if buffers && state.left.is_empty() && state.right.is_empty() {
                // Nothing left to match: the key holds no state until its next row.
                clears.push(key);
            } else {
                writes.push((key, state));
            }
        }
        self.state.clear_many(&clears)?;
        self.state.set_many(&writes)?;
        if let Some((l, r)) = schemas {
            out.emit(self.output(&l, &r, pairs)?);
        }
        Ok(())
    }

    fn output(
        &self,
        left: &SideSchema,
        right: &SideSchema,
        pairs: Vec<Pair>,
    ) -> Result<RecordBatch, AgentError> {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, (name, ty)) in left.names.iter().zip(&left.types).enumerate() {
            fields.push(values::field(name, *ty));
            columns.push(values::build(
                *ty,
                pairs
                    .iter()
                    .map(|p| p.0.get(i).cloned().flatten())
                    .collect(),
            ));
        }
        for (i, (name, ty)) in right.names.iter().zip(&right.types).enumerate() {
            let name = if left.names.contains(name) {
                format!("right_{name}")
            } else {
                name.clone()
            };
            fields.push(values::field(&name, *ty));
            columns.push(values::build(
                *ty,
                pairs
                    .iter()
                    .map(|p| p.1.get(i).cloned().flatten())
                    .collect(),
            ));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// The keys of the event-time timers in `fired`, in order of first appearance, and the latest
/// time fired for each.
fn fired_keys(fired: &[Timer]) -> (Vec<Vec<u8>>, HashMap<Vec<u8>, i64>) {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut until: HashMap<Vec<u8>, i64> = HashMap::new();
    for t in fired.iter().filter(|t| t.domain == TimeDomain::EventTime) {
        let e = until.entry(t.key.clone()).or_insert_with(|| {
            order.push(t.key.clone());
            t.ts
        });
        *e = (*e).max(t.ts);
    }
    (order, until)
}

/// Sends the rows of `batch` that `late` marks, unchanged, to port 1 (a left input's) or 2 (a
/// right input's).
fn emit_late(
    out: &mut Emitter,
    right: bool,
    batch: &RecordBatch,
    late: Vec<bool>,
) -> Result<(), AgentError> {
    if late.iter().any(|l| *l) {
        out.emit_to(
            if right { 2 } else { 1 },
            filter_record_batch(batch, &BooleanArray::from(late))?,
        );
    }
    Ok(())
}
