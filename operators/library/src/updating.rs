//! Updating aggregates: `GROUP BY` without a window. What the built-in `aggregate` operator runs.
//!
//! ```toml
//! [agents.per_card]
//! module = "builtin:aggregate"
//! key = "card_id"            # partitions the input: each card's group lives on one instance
//! config = { key = "card_id", aggregates = ["count(*) AS n", "sum(amount) AS total"] }
//! ```
//!
//! A group never closes, so its result is emitted each time it changes: after each input batch,
//! one row per group the batch touched, with the group's result over everything seen so far.
//! The output is a [changelog](sabot_sdk::changelog) keyed by the key column: the key, the
//! aggregates, and `_op` = `"upsert"`. (A filter after it — SQL's `HAVING` — turns the upserts it
//! rejects into deletes.)
//!
//! - `key`: the group column (int64, int32 or utf8; absent: one group for everything, at
//!   parallelism 1).
//! - `aggregates`: as for windows: `count(*)`, `count(col)`, `sum`, `min`, `max`, `mean`
//!   (`avg`), `first`, `last`, each `function(column) [AS name]`.
//! - `time` (optional): the event-time column that orders `first` and `last`; without it they
//!   follow arrival order.
//!
//! Each group's accumulators are keyed state (a `ValueState`), checkpointed like any agent's.

use std::sync::Arc;

use sabot_sdk::arrow::array::ArrayRef;
use sabot_sdk::arrow::datatypes::{Field, Schema};
use sabot_sdk::changelog;
use sabot_sdk::state::ValueState;
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::Deserialize;

use crate::group::Groups;
use crate::values;
use crate::window::{
    Aggregate, KeyValue, WindowState, aggregate_inputs, event_times, fresh_accs, key_column,
    key_values,
};

/// The `config` of an updating aggregate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    pub key: Option<String>,
    pub aggregates: Vec<String>,
    pub time: Option<String>,
}

/// Groups and their running aggregates.
pub struct UpdatingAggregate {
    key: Option<String>,
    time: Option<String>,
    aggregates: Vec<Aggregate>,
    groups: ValueState<WindowState>,
}

impl UpdatingAggregate {
    /// Groups as `config` says, keeping their state in a store prefixed with `name`.
    pub fn new(name: &str, config: AggregateConfig) -> Result<Self, AgentError> {
        if config.aggregates.is_empty() {
            return Err(AgentError::invalid_config(
                "aggregates is empty: name at least one, e.g. [\"count(*)\"]",
            ));
        }
        Ok(UpdatingAggregate {
            aggregates: config
                .aggregates
                .iter()
                .map(|a| Aggregate::parse(a))
                .collect::<Result<_, _>>()?,
            key: config.key,
            time: config.time,
            groups: ValueState::new(&format!("{name}.groups")),
        })
    }

    /// Adds a batch's rows to their groups and emits each touched group's new result.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        changelog::refuse(batch, "an updating aggregate")?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = key_values(self.key.as_deref(), batch, "group key")?;
        let times = match &self.time {
            Some(t) => event_times(batch, t)?,
            None => vec![0; batch.num_rows()],
        };
        let (columns, types) = aggregate_inputs(&self.aggregates, batch)?;
        let mut groups = Groups::new();
        for (row, key) in keys.iter().enumerate() {
            groups.push(key, row);
        }
        let current = self.groups.get_many(&groups.order)?;
        let mut updated: Vec<(KeyValue, WindowState)> = Vec::with_capacity(current.len());
        for (key, state) in groups.order.iter().zip(current) {
            let mut state = state.unwrap_or_else(|| WindowState {
                key: key.clone(),
                accs: fresh_accs(&self.aggregates, &columns),
                types: types.clone(),
            });
            for &row in groups.rows(key) {
                for (acc, col) in state.accs.iter_mut().zip(&columns) {
                    acc.add(col.get(row), times[row]);
                }
            }
            updated.push((key.clone(), state));
        }
        self.groups.set_many(&updated)?;
        out.emit(self.results(&updated)?);
        Ok(())
    }

    fn results(&self, rows: &[(KeyValue, WindowState)]) -> Result<RecordBatch, AgentError> {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        if let Some(name) = &self.key {
            let (key_type, keys) = key_column(rows.iter().map(|r| &r.0));
            fields.push(Field::new(name, key_type, false));
            columns.push(keys);
        }
        let types = &rows[0].1.types;
        for (i, a) in self.aggregates.iter().enumerate() {
            fields.push(values::field(&a.name, types[i]));
            columns.push(values::build(
                types[i],
                rows.iter().map(|r| r.1.accs[i].finish()).collect(),
            ));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(changelog::with_ops(batch, &vec![false; rows.len()])?)
    }
}
