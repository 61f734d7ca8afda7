//! Windows over event time: what the built-in `window` operator runs, usable from any Rust agent.
//!
//! ```toml
//! [agents.per_minute]
//! module = "builtin:window"
//! key = "card_id"            # partitions the input: each card's windows live on one instance
//! config = { kind = "tumbling", size_ms = 60000, time = "ts", key = "card_id", aggregates = ["count(*) AS n", "sum(amount) AS total", "max(amount)"], allowed_lateness_ms = 5000 }
//! ```
//!
//! - `kind = "tumbling"` with `size_ms`; `"sliding"` with `size_ms` and `slide_ms` (an event is in
//!   every window that contains it); `"session"` with `gap_ms` (per key, events closer than the
//!   gap share a window, which ends `gap_ms` after its last event).
//! - `time`: the event-time column (a timestamp, or int64 milliseconds). `key`: the column windows
//!   are kept per (absent: one set of windows for everything, at parallelism 1).
//! - `aggregates`: `count(*)`, `count(col)`, `sum`, `min`, `max`, `mean` (or `avg`), `first`,
//!   `last` (by event time), `collect` (or `array_agg`: the non-null values as a list, what a
//!   SQL `CREATE AGGREGATE` folds), each `function(column) [AS name]`.
//! - Output (port 0), one row per window when the watermark passes its end plus
//!   `allowed_lateness_ms`: the key column, `window_start`, `window_end` (timestamps, end
//!   exclusive), then the aggregates. Each window is emitted once, with every event that arrived
//!   in time for it.
//! - Late events — whose window (for sliding windows: one of their windows) had already been
//!   emitted — go unchanged to port 1, which the pipeline can send where it likes
//!   (`"per_minute:1 -> late"`), instead of being dropped silently. A sliding-window event late
//!   for some of its windows still counts in the others.
//!
//! Window state is keyed state (a `MapState` of windows per key for tumbling windows; for
//! sliding ones a `ValueState` of *panes* per key — the slices of time, `gcd(size, slide)` long,
//! whose events share the same windows — merged into each window as it closes; a `ValueState`
//! of sessions for session windows) and windows close on event-time timers: both are
//! host-managed and checkpointed like any agent's. Sliding windows with a `collect` or a
//! user-defined aggregate are kept per window instead (their results depend on arrival order, or
//! need a merge the aggregator may not have). Merging panes adds float sums in another order
//! than one event after the other: a float `sum` or `mean` may differ in its last bits.

mod aggregate;
mod assign;
mod panes;

use std::collections::HashMap;

use crate::group::Groups;
use std::sync::Arc;

use sabot_sdk::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray};
use sabot_sdk::arrow::compute::filter_record_batch;
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sabot_sdk::state::{MapState, Postcard, StateKey, ValueState};
use sabot_sdk::timers::{self, TimeDomain, Timer};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::values::{self, OutType};
pub use aggregate::{Acc, Aggregate, Erased, FromValue, Function, IntoValue, UserAggregate};
pub use assign::{Assigner, Session, add_session};
pub use panes::{Pane, Panes};

/// The `config` of a window operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub kind: String,
    pub size_ms: Option<i64>,
    pub slide_ms: Option<i64>,
    pub gap_ms: Option<i64>,
    pub time: String,
    pub key: Option<String>,
    pub aggregates: Vec<String>,
    #[serde(default)]
    pub allowed_lateness_ms: i64,
}

/// The value of the key column of a window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyValue {
    /// No key column: one set of windows.
    Global,
    I64(i64),
    I32(i32),
    Str(String),
}

impl StateKey for KeyValue {
    /// The host's encoding of a key column's value (what it partitions by).
    fn state_key(&self) -> Vec<u8> {
        match self {
            KeyValue::Global => Vec::new(),
            KeyValue::I64(v) => v.to_le_bytes().to_vec(),
            KeyValue::I32(v) => v.to_le_bytes().to_vec(),
            KeyValue::Str(s) => s.as_bytes().to_vec(),
        }
    }
}

/// What is kept per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub key: KeyValue,
    pub accs: Vec<Acc>,
    /// The type of each aggregate's result, so a window can be emitted before any batch of this
    /// run arrived (after a restore).
    pub types: Vec<OutType>,
}

/// Windows and their state: what the `window` operator runs, usable from any Rust agent.
pub struct Windows {
    assigner: Assigner,
    lateness: i64,
    time: String,
    key: Option<String>,
    aggregates: Vec<Aggregate>,
    fixed: MapState<i64, WindowState, Postcard>,
    /// Sliding windows' panes (see [`panes`]): `Some` for sliding windows whose aggregates all
    /// merge without regard to arrival order (not `collect`, not user-defined ones).
    panes: Option<ValueState<Panes, Postcard>>,
    sessions: ValueState<Vec<Session<WindowState>>, Postcard>,
    ports: (u32, u32),
    key_name: String,
    /// User-defined aggregates: name, input column, aggregator. Their accumulators follow the
    /// built-in ones in [`WindowState::accs`].
    user: Vec<(String, Option<String>, Box<dyn UserAggregate>)>,
}

fn positive(v: Option<i64>, field: &str, kind: &str) -> Result<i64, AgentError> {
    match v {
        Some(v) if v > 0 => Ok(v),
        Some(v) => Err(AgentError::invalid_config(format!(
            "{field} must be positive, got {v}"
        ))),
        None => Err(AgentError::invalid_config(format!(
            "{kind} windows need {field}"
        ))),
    }
}

impl Windows {
    /// Windows as `config` says, keeping their state in stores prefixed with `name` (so an agent
    /// can hold several).
    pub fn new(name: &str, config: WindowConfig) -> Result<Self, AgentError> {
        let assigner = match config.kind.as_str() {
            "tumbling" => Assigner::Tumbling {
                size: positive(config.size_ms, "size_ms", "tumbling")?,
            },
            "sliding" => {
                let size = positive(config.size_ms, "size_ms", "sliding")?;
                let slide = positive(config.slide_ms, "slide_ms", "sliding")?;
                if slide > size {
                    return Err(AgentError::invalid_config(format!(
                        "slide_ms ({slide}) must not exceed size_ms ({size}): events would fall between windows"
                    )));
                }
                Assigner::Sliding { size, slide }
            }
            "session" => Assigner::Session {
                gap: positive(config.gap_ms, "gap_ms", "session")?,
            },
            other => {
                return Err(AgentError::invalid_config(format!(
                    "unknown window kind `{other}`: expected \"tumbling\", \"sliding\" or \"session\""
                )));
            }
        };
        if config.allowed_lateness_ms < 0 {
            return Err(AgentError::invalid_config(
                "allowed_lateness_ms must be ≥ 0",
            ));
        }
        let aggregates = config
            .aggregates
            .iter()
            .map(|a| Aggregate::parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        let panes = (matches!(assigner, Assigner::Sliding { .. })
            && aggregates.iter().all(|a| a.function != Function::Collect))
        .then(|| ValueState::with_codec(&format!("{name}.panes"), Postcard));
        Ok(Windows {
            assigner,
            lateness: config.allowed_lateness_ms,
            key_name: config.key.clone().unwrap_or_else(|| "key".into()),
            time: config.time,
            key: config.key,
            aggregates,
            fixed: MapState::with_codec(&format!("{name}.windows"), Postcard),
            panes,
            sessions: ValueState::with_codec(&format!("{name}.sessions"), Postcard),
            ports: (0, 1),
            user: Vec::new(),
        })
    }

    /// Adds a user-defined aggregate named `name` over `column` (`None`: every row is an input
    /// of `()`-like value `true`), computed by an SDK [`Aggregator`]: its accumulator is kept in
    /// window state like the built-in ones. Session windows also need [`Aggregator::merge`].
    ///
    /// [`Aggregator`]: sabot_sdk::state::Aggregator
    /// [`Aggregator::merge`]: sabot_sdk::state::Aggregator::merge
    pub fn with_aggregator<In, Acc, Out, A>(
        mut self,
        name: &str,
        column: Option<&str>,
        aggregator: A,
    ) -> Self
    where
        In: FromValue + 'static,
        Acc: Serialize + serde::de::DeserializeOwned + 'static,
        Out: IntoValue + 'static,
        A: sabot_sdk::state::Aggregator<In, Acc, Out> + Send + 'static,
    {
        // Panes merge accumulators, which an aggregator need not support.
        self.panes = None;
        self.user.push((
            name.to_owned(),
            column.map(str::to_owned),
            Box::new(Erased {
                aggregator,
                _types: std::marker::PhantomData,
            }),
        ));
        self
    }

    /// Folds `later` into `state`, user aggregates through their aggregators.
    fn merge_states(&self, state: &mut WindowState, later: WindowState) -> Result<(), AgentError> {
        let builtin = self.aggregates.len();
        for (i, (a, b)) in state.accs.iter_mut().zip(later.accs).enumerate() {
            match (a, b) {
                (Acc::User(a), Acc::User(b)) => self.user[i - builtin].2.merge(a, &b)?,
                (a, b) => a.merge(b),
            }
        }
        Ok(())
    }

    /// Emits results on `output` and late events on `late` (default 0 and 1).
    pub fn with_ports(mut self, output: u32, late: u32) -> Self {
        self.ports = (output, late);
        self
    }

    fn close(&self, end: i64) -> i64 {
        end.saturating_sub(1).saturating_add(self.lateness)
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Vec<KeyValue>, AgentError> {
        key_values(self.key.as_deref(), batch, "window key")
    }

    fn times(&self, batch: &RecordBatch) -> Result<Vec<i64>, AgentError> {
        event_times(batch, &self.time)
    }

    /// Adds a batch's events to their windows; emits late ones on the late port.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        sabot_sdk::changelog::refuse(batch, "a window")?;
        let n = batch.num_rows();
        let keys = self.keys(batch)?;
        let times = self.times(batch)?;
        let (mut columns, mut types) = aggregate_inputs(&self.aggregates, batch)?;
        for (name, column, aggregator) in &self.user {
            match column {
                None => columns.push(values::Column::Rows),
                Some(c) => {
                    let array = batch.column_by_name(c).ok_or_else(|| {
                        AgentError::invalid_input(format!(
                            "aggregate `{name}` reads column `{c}`, which the input lacks"
                        ))
                    })?;
                    columns.push(values::Column::from_array(array)?);
                }
            }
            types.push(aggregator.output());
        }
        let builtin = self.aggregates.len();
        let fresh = |key: &KeyValue| -> Result<WindowState, AgentError> {
            let mut accs = fresh_accs(&self.aggregates, &columns);
            for (_, _, aggregator) in &self.user {
                accs.push(Acc::User(aggregator.create()?));
            }
            Ok(WindowState {
                key: key.clone(),
                accs,
                types: types.clone(),
            })
        };
        let add = |accs: &mut [Acc], row: usize| -> Result<(), AgentError> {
            for (i, (acc, col)) in accs.iter_mut().zip(&columns).enumerate() {
                match acc {
                    Acc::User(bytes) => {
                        self.user[i - builtin].2.add(bytes, col.get(row).as_ref())?
                    }
                    acc => acc.add(col.get(row), times[row]),
                }
            }
            Ok(())
        };
        let watermark = timers::watermark().unwrap_or(i64::MIN);
        let mut late = vec![false; n];

        if let Assigner::Session { gap } = self.assigner {
            // Per key, in arrival order.
            let mut groups = Groups::new();
            for (row, key) in keys.iter().enumerate() {
                if self.close(times[row].saturating_add(gap)) <= watermark {
                    late[row] = true;
                    continue;
                }
                groups.push(key, row);
            }
            let order = groups.order.clone();
            let mut all = self.sessions.get_many(&order)?;
            let mut writes = Vec::with_capacity(order.len());
            for (key, sessions) in order.into_iter().zip(all.iter_mut()) {
                let sessions = sessions.get_or_insert_with(Vec::new);
                for &row in groups.rows(&key) {
                    let mut state = fresh(&key)?;
                    add(&mut state.accs, row)?;
                    let mut failed = None;
                    add_session(sessions, times[row], times[row] + gap, state, |a, b| {
                        if let Err(e) = self.merge_states(a, b) {
                            failed.get_or_insert(e);
                        }
                    });
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
                for s in sessions.iter() {
                    timers::register_event_time(&key, self.close(s.end));
                }
                writes.push((key, std::mem::take(sessions)));
            }
            self.sessions.set_many(&writes)?;
        } else if let (Some(store), Assigner::Sliding { size, slide }) =
            (&self.panes, self.assigner)
        {
            let width = panes::width(size, slide);
            let mut groups = Groups::new();
            for (row, key) in keys.iter().enumerate() {
                let (first, last) = panes::ends(times[row].div_euclid(width) * width, size, slide);
                if self.close(first) <= watermark {
                    // Late for some of its windows; it still counts in those not yet emitted.
                    late[row] = true;
                    if self.close(last) <= watermark {
                        continue;
                    }
                }
                groups.push(key, row);
            }
            let order = groups.order.clone();
            let current = store.get_many(&order)?;
            let mut writes = Vec::with_capacity(order.len());
            for (key, state) in order.into_iter().zip(current) {
                let mut state = match state {
                    Some(s) => s,
                    None => {
                        let WindowState { types, .. } = fresh(&key)?;
                        Panes {
                            key: key.clone(),
                            types,
                            panes: Vec::new(),
                        }
                    }
                };
                for &row in groups.rows(&key) {
                    let start = times[row].div_euclid(width) * width;
                    let (accs, made) = state.pane(start, || fresh(&key).map(|s| s.accs))?;
                    add(accs, row)?;
                    if made {
                        // A new pane: the timers of its windows still open (a timer is kept
                        // once however often it is registered).
                        for (_, end) in self.assigner.windows(start) {
                            if self.close(end) > watermark {
                                timers::register_event_time(&key, self.close(end));
                            }
                        }
                    }
                }
                writes.push((key, state));
            }
            store.set_many(&writes)?;
        } else {
            let mut groups = Groups::new();
            for (row, key) in keys.iter().enumerate() {
                for (start, end) in self.assigner.windows(times[row]) {
                    if self.close(end) <= watermark {
                        late[row] = true;
                        continue;
                    }
                    groups.push(&(key.clone(), start), row);
                }
            }
            let order = groups.order.clone();
            let current = self.fixed.get_many(&order)?;
            let size = match self.assigner {
                Assigner::Tumbling { size } | Assigner::Sliding { size, .. } => size,
                Assigner::Session { .. } => unreachable!("handled above"),
            };
            let mut writes = Vec::with_capacity(order.len());
            for ((key, start), state) in order.into_iter().zip(current) {
                let mut state = match state {
                    Some(s) => s,
                    None => {
                        // A new window: its timer, once (it is kept with the state).
                        timers::register_event_time(&key, self.close(start + size));
                        fresh(&key)?
                    }
                };
                for &row in groups.rows(&(key.clone(), start)) {
                    add(&mut state.accs, row)?;
                }
                writes.push((key, start, state));
            }
            self.fixed.put_many(&writes)?;
        }
        if late.iter().any(|l| *l) {
            out.emit_to(
                self.ports.1,
                filter_record_batch(batch, &BooleanArray::from(late))?,
            );
        }
        Ok(())
    }

    /// Emits the windows whose timers fired.
    pub fn on_timers(&mut self, fired: &[Timer], out: &mut Emitter) -> Result<(), AgentError> {
        let due: Vec<&Timer> = fired
            .iter()
            .filter(|t| t.domain == TimeDomain::EventTime)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(i64, i64, WindowState)> = Vec::new();
        match self.assigner {
            Assigner::Session { .. } => {
                // The latest timer of each key closes every session it passed.
                let mut order: Vec<Vec<u8>> = Vec::new();
                let mut until: HashMap<Vec<u8>, i64> = HashMap::new();
                for t in &due {
                    let e = until.entry(t.key.clone()).or_insert_with(|| {
                        order.push(t.key.clone());
                        t.ts
                    });
                    *e = (*e).max(t.ts);
                }
                let all = self.sessions.get_many(&order)?;
                let mut writes = Vec::new();
                let mut clears = Vec::new();
                for (key, sessions) in order.into_iter().zip(all) {
                    let Some(sessions) = sessions else { continue };
                    let (closed, open): (Vec<_>, Vec<_>) = sessions
                        .into_iter()
                        .partition(|s| self.close(s.end) <= until[&key]);
                    rows.extend(closed.into_iter().map(|s| (s.start, s.end, s.acc)));
                    if open.is_empty() {
                        clears.push(key);
                    } else {
                        writes.push((key, open));
                    }
                }
                self.sessions.set_many(&writes)?;
                for key in clears {
                    self.sessions.clear(&key)?;
                }
            }
            Assigner::Sliding { size, .. } if self.panes.is_some() => {
                rows = self.close_panes(&due, size)?;
            }
            Assigner::Tumbling { size } | Assigner::Sliding { size, .. } => {
                let pairs: Vec<(Vec<u8>, i64)> = due
                    .iter()
                    .map(|t| (t.key.clone(), t.ts + 1 - self.lateness - size))
                    .collect();
                let states = self.fixed.get_many(&pairs)?;
                for ((_, start), state) in pairs.iter().zip(states) {
                    if let Some(state) = state {
                        rows.push((*start, start + size, state));
                    }
                }
                self.fixed.remove_many(&pairs)?;
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        out.emit_to(self.ports.0, self.results(rows)?);
        Ok(())
    }

    /// The sliding windows `due` closes, from their panes; drops the panes no window still to
    /// close needs.
    fn close_panes(
        &self,
        due: &[&Timer],
        size: i64,
    ) -> Result<Vec<(i64, i64, WindowState)>, AgentError> {
        let store = self.panes.as_ref().expect("called for panes");
        // The keys in order of first firing, and the latest window end each fired.
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut latest: Vec<i64> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let ends: Vec<(usize, i64)> = due
            .iter()
            .map(|t| {
                let at = *index.entry(&t.key).or_insert_with(|| {
                    order.push(t.key.clone());
                    latest.push(i64::MIN);
                    order.len() - 1
                });
                let end = t.ts + 1 - self.lateness;
                latest[at] = latest[at].max(end);
                (at, end)
            })
            .collect();
        let mut all = store.get_many(&order)?;
        let mut rows = Vec::new();
        for (at, end) in ends {
            let Some(panes) = &all[at] else { continue };
            if let Some(accs) = panes.window(end, size) {
                let state = WindowState {
                    key: panes.key.clone(),
                    accs,
                    types: panes.types.clone(),
                };
                rows.push((end - size, end, state));
            }
        }
        let (mut writes, mut clears) = (Vec::new(), Vec::new());
        for ((key, panes), until) in order.into_iter().zip(all.iter_mut()).zip(latest) {
            let Some(mut panes) = panes.take() else {
                continue;
            };
            panes.expire(until, size);
            if panes.panes.is_empty() {
                clears.push(key);
            } else {
                writes.push((key, panes));
            }
        }
        store.set_many(&writes)?;
        store.clear_many(&clears)?;
        Ok(rows)
    }

    fn results(&self, rows: Vec<(i64, i64, WindowState)>) -> Result<RecordBatch, AgentError> {
        let first = &rows[0].2;
        let (key_type, key_column) = key_column(rows.iter().map(|r| &r.2.key));
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        if self.key.is_some() {
            fields.push(Field::new(&self.key_name, key_type, false));
            columns.push(key_column);
        }
        fields.push(Field::new("window_start", ts.clone(), false));
        fields.push(Field::new("window_end", ts, false));
        columns.push(Arc::new(
            sabot_sdk::arrow::array::TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            ),
        ));
        columns.push(Arc::new(
            sabot_sdk::arrow::array::TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            ),
        ));
        let names = self
            .aggregates
            .iter()
            .map(|a| a.name.as_str())
            .chain(self.user.iter().map(|u| u.0.as_str()));
        let builtin = self.aggregates.len();
        for (i, name) in names.enumerate() {
            let ty = first.types[i];
            fields.push(values::field(name, ty));
            let results = rows
                .iter()
                .map(|r| match &r.2.accs[i] {
                    Acc::User(bytes) => self.user[i - builtin].2.result(bytes),
                    acc => Ok(acc.finish()),
                })
                .collect::<Result<Vec<_>, AgentError>>()?;
            columns.push(values::build(ty, results));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// The values of the key column `key` of `batch` (`None`: every row in one global group);
/// `what` names the column in errors ("window key").
pub(crate) fn key_values(
    key: Option<&str>,
    batch: &RecordBatch,
    what: &str,
) -> Result<Vec<KeyValue>, AgentError> {
    let Some(name) = key else {
        return Ok(vec![KeyValue::Global; batch.num_rows()]);
    };
    let col = batch.column_by_name(name).ok_or_else(|| {
        AgentError::invalid_input(format!("the {what} column `{name}` is missing"))
    })?;
    let null =
        |row: usize| AgentError::invalid_input(format!("the {what} `{name}` is null")).at_row(row);
    fn all<T>(
        len: usize,
        is_null: impl Fn(usize) -> bool,
        value: impl Fn(usize) -> T,
        null: impl Fn(usize) -> AgentError,
    ) -> Result<Vec<T>, AgentError> {
        (0..len)
            .map(|i| {
                if is_null(i) {
                    Err(null(i))
                } else {
                    Ok(value(i))
                }
            })
            .collect()
    }
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return all(
            a.len(),
            |i| a.is_null(i),
            |i| KeyValue::I64(a.value(i)),
            null,
        );
    }
    if let Some(a) = col.as_any().downcast_ref::<Int32Array>() {
        return all(
            a.len(),
            |i| a.is_null(i),
            |i| KeyValue::I32(a.value(i)),
            null,
        );
    }
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return all(
            a.len(),
            |i| a.is_null(i),
            |i| KeyValue::Str(a.value(i).to_owned()),
            null,
        );
    }
    Err(AgentError::invalid_input(format!(
        "the {what} `{name}` is {}; expected int64, int32 or utf8",
        col.data_type()
    )))
}

/// The input column and result type of each built-in aggregate over `batch`.
pub(crate) fn aggregate_inputs(
    aggregates: &[Aggregate],
    batch: &RecordBatch,
) -> Result<(Vec<values::Column>, Vec<OutType>), AgentError> {
    let mut columns = Vec::with_capacity(aggregates.len());
    let mut types = Vec::with_capacity(aggregates.len());
    for a in aggregates {
        match &a.column {
            None => {
                columns.push(values::Column::Rows);
                types.push(OutType::I64);
            }
            Some(c) => {
                let array = batch.column_by_name(c).ok_or_else(|| {
                    AgentError::invalid_input(format!(
                        "aggregate `{}` reads column `{c}`, which the input lacks",
                        a.name
                    ))
                })?;
                let input = OutType::of(array.data_type()).ok_or_else(|| {
                    AgentError::invalid_input(format!(
                        "aggregate `{}` cannot read column `{c}` of type {}",
                        a.name,
                        array.data_type()
                    ))
                })?;
                if matches!(a.function, Function::Sum | Function::Mean)
                    && !matches!(input, OutType::I64 | OutType::F64)
                {
                    return Err(AgentError::invalid_input(format!(
                        "aggregate `{}` needs a numeric column; `{c}` is {}",
                        a.name,
                        array.data_type()
                    )));
                }
                columns.push(values::Column::from_array(array)?);
                types.push(input.result(a.function));
            }
        }
    }
    Ok((columns, types))
}

/// Empty accumulators of the built-in `aggregates` over input `columns`.
pub(crate) fn fresh_accs(aggregates: &[Aggregate], columns: &[values::Column]) -> Vec<Acc> {
    aggregates
        .iter()
        .zip(columns)
        .map(|(a, c)| {
            Acc::new(
                a.function,
                match c {
                    values::Column::F(_) => OutType::F64,
                    _ => OutType::I64,
                },
            )
        })
        .collect()
}

/// The key column of result rows (all of one key type; global keys give a null int64 column).
pub(crate) fn key_column<'a>(
    keys: impl Iterator<Item = &'a KeyValue> + Clone,
) -> (DataType, ArrayRef) {
    match keys.clone().next() {
        Some(KeyValue::I32(_)) => (
            DataType::Int32,
            Arc::new(Int32Array::from_iter(keys.map(|k| match k {
                KeyValue::I32(v) => Some(*v),
                _ => None,
            }))),
        ),
        Some(KeyValue::Str(_)) => (
            DataType::Utf8,
            Arc::new(StringArray::from_iter(keys.map(|k| match k {
                KeyValue::Str(s) => Some(s.clone()),
                _ => None,
            }))),
        ),
        _ => (
            DataType::Int64,
            Arc::new(Int64Array::from_iter(keys.map(|k| match k {
                KeyValue::I64(v) => Some(*v),
                _ => None,
            }))),
        ),
    }
}

/// The event times (milliseconds) of `batch`'s column `time`: a timestamp or int64, never null.
pub(crate) fn event_times(batch: &RecordBatch, time: &str) -> Result<Vec<i64>, AgentError> {
    let col = batch.column_by_name(time).ok_or_else(|| {
        AgentError::invalid_input(format!("the event-time column `{time}` is missing"))
    })?;
    match values::Column::from_array(col) {
        Ok(values::Column::I(v))
            if matches!(col.data_type(), DataType::Int64 | DataType::Timestamp(..)) =>
        {
            v.into_iter()
                .enumerate()
                .map(|(i, t)| {
                    t.ok_or_else(|| {
                        AgentError::invalid_input(format!("the event time `{time}` is null"))
                            .at_row(i)
                    })
                })
                .collect()
        }
        _ => Err(AgentError::invalid_input(format!(
            "the event-time column `{time}` is {}; expected a timestamp or int64 milliseconds",
            col.data_type()
        ))),
    }
}
