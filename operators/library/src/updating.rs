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
//! one row per group whose result the batch changed (a group the batch touched but left as it
//! was, say a `max` the new rows did not beat, emits nothing), with the group's result over
//! everything seen so far.
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
//! - `changelog_key` (optional): the input is itself a [changelog](sabot_sdk::changelog) keyed
//!   by this column (another updating aggregate's results): each row replaces the earlier row of
//!   its changelog key, so that row's values are taken back out of the group it counted in before
//!   the new ones are added (or, for a delete, only taken back). Over a changelog the aggregates
//!   are `count`, `sum` and `mean`, which can take a value back; a group left with no rows is
//!   deleted. The rows each changelog key contributes are kept in keyed state too; run such an
//!   aggregate as one instance, since a changelog key may move from one group to another.
//!
//! Each group's accumulators are keyed state (a `ValueState`), checkpointed like any agent's.

use std::collections::HashMap;
use std::sync::Arc;

use sabot_sdk::arrow::array::ArrayRef;
use sabot_sdk::arrow::datatypes::{Field, Schema};
use sabot_sdk::changelog;
use sabot_sdk::state::{Postcard, ValueState};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::group::Groups;
use crate::values::{self, Value};
use crate::window::{
    Acc, Aggregate, KeyValue, WindowState, aggregate_inputs, event_times, fresh_accs, key_column,
    key_values,
};

/// The `config` of an updating aggregate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    pub key: Option<String>,
    pub aggregates: Vec<String>,
    pub time: Option<String>,
    pub changelog_key: Option<String>,
}

/// What one changelog key's current row adds to its group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Contribution {
    group: KeyValue,
    values: Vec<Option<Value>>,
}

/// Groups and their running aggregates.
pub struct UpdatingAggregate {
    key: Option<String>,
    time: Option<String>,
    aggregates: Vec<Aggregate>,
    groups: ValueState<WindowState, Postcard>,
    changelog_key: Option<String>,
    contributions: ValueState<Contribution, Postcard>,
}

impl UpdatingAggregate {
    /// Groups as `config` says, keeping their state in a store prefixed with `name`.
    pub fn new(name: &str, config: AggregateConfig) -> Result<Self, AgentError> {
        if config.aggregates.is_empty() {
            return Err(AgentError::invalid_config(
                "aggregates is empty: name at least one, e.g. [\"count(*)\"]",
            ));
        }
        let aggregates: Vec<Aggregate> = config
            .aggregates
            .iter()
            .map(|a| Aggregate::parse(a))
            .collect::<Result<_, _>>()?;
        if config.changelog_key.is_some()
            && let Some(a) = aggregates.iter().find(|a| !Acc::retracts(a.function))
        {
            return Err(AgentError::invalid_config(format!(
                "aggregate `{}` over a changelog: a changed row must be taken back out of its group, which count, sum and mean (avg) can do and {:?} cannot",
                a.name, a.function
            )));
        }
        Ok(UpdatingAggregate {
            aggregates,
            key: config.key,
            time: config.time,
            groups: ValueState::with_codec(&format!("{name}.groups"), Postcard),
            contributions: ValueState::with_codec(&format!("{name}.contributions"), Postcard),
            changelog_key: config.changelog_key,
        })
    }

    /// Adds a batch's rows to their groups and emits each touched group's new result.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(changelog_key) = self.changelog_key.clone() {
            return self.process_changes(batch, &changelog_key, out);
        }
        changelog::refuse(batch, "an updating aggregate")?;
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
        let mut changed = Vec::with_capacity(current.len());
        for (key, state) in groups.order.iter().zip(current) {
            let before = state.as_ref().map(|s| self.result_of(s));
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
            changed.push(before.is_none_or(|b| b != self.result_of(&state)));
            updated.push((key.clone(), state));
        }
        self.groups.set_many(&updated)?;
        let emitted: Vec<(KeyValue, WindowState)> = updated
            .into_iter()
            .zip(changed)
            .filter_map(|(group, changed)| changed.then_some(group))
            .collect();
        if !emitted.is_empty() {
            out.emit(self.results(&emitted, &vec![false; emitted.len()])?);
        }
        Ok(())
    }

    /// A batch of a changelog: each row's earlier contribution taken back, its new one added.
    fn process_changes(
        &mut self,
        batch: &RecordBatch,
        changelog_key: &str,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let deletes = changelog::deletes(batch).map_err(AgentError::invalid_input)?;
        let sources = key_values(Some(changelog_key), batch, "changelog key")?;
        let groups = key_values(self.key.as_deref(), batch, "group key")?;
        let (columns, types) = aggregate_inputs(&self.aggregates, batch)?;
        let mut by_source = Groups::new();
        for (row, k) in sources.iter().enumerate() {
            by_source.push(k, row);
        }
        let earlier = self.contributions.get_many(&by_source.order)?;
        let mut contributions: HashMap<KeyValue, Option<Contribution>> =
            by_source.order.iter().cloned().zip(earlier).collect();

        // Every group a row leaves or joins, in order of first mention.
        let mut order: Vec<KeyValue> = Vec::new();
        let mut index: HashMap<KeyValue, usize> = HashMap::new();
        let mut touch = |g: &KeyValue| -> usize {
            *index.entry(g.clone()).or_insert_with(|| {
                order.push(g.clone());
                order.len() - 1
            })
        };
        for k in &by_source.order {
            if let Some(Some(c)) = contributions.get(k) {
                touch(&c.group);
            }
        }
        let at: Vec<Option<usize>> = (0..batch.num_rows())
            .map(|row| (!deletes[row]).then(|| touch(&groups[row])))
            .collect();
        let stored = self.groups.get_many(&order)?;
        let fresh = |key: &KeyValue| {
            let mut accs = fresh_accs(&self.aggregates, &columns);
            // The group's rows, so that an emptied group is deleted.
            accs.push(Acc::Count(0));
            let mut types = types.clone();
            types.push(values::OutType::I64);
            WindowState {
                key: key.clone(),
                accs,
                types,
            }
        };
        let before: Vec<Option<Vec<Option<Value>>>> = stored
            .iter()
            .map(|s| s.as_ref().map(|s| self.result_of(s)))
            .collect();
        let mut states: Vec<WindowState> = order
            .iter()
            .zip(stored)
            .map(|(k, s)| s.unwrap_or_else(|| fresh(k)))
            .collect();
        let one = Some(Value::B(true));
        for row in 0..batch.num_rows() {
            let slot = contributions.entry(sources[row].clone()).or_default();
            if let Some(before) = slot.take() {
                let state = &mut states[index[&before.group]];
                let (rows, accs) = state.accs.split_last_mut().expect("the row count");
                for (acc, v) in accs.iter_mut().zip(before.values) {
                    acc.retract(v);
                }
                rows.retract(one.clone());
            }
            if let Some(i) = at[row] {
                let values: Vec<Option<Value>> = columns.iter().map(|c| c.get(row)).collect();
                let state = &mut states[i];
                let (rows, accs) = state.accs.split_last_mut().expect("the row count");
                for (acc, v) in accs.iter_mut().zip(&values) {
                    acc.add(v.clone(), 0);
                }
                rows.add(one.clone(), 0);
                *slot = Some(Contribution {
                    group: groups[row].clone(),
                    values,
                });
            }
        }

        let (mut kept, mut gone) = (Vec::new(), Vec::new());
        for (k, c) in contributions {
            match c {
                Some(c) => kept.push((k, c)),
                None => gone.push(k),
            }
        }
        self.contributions.clear_many(&gone)?;
        self.contributions.set_many(&kept)?;
        let emptied: Vec<bool> = states
            .iter()
            .map(|s| matches!(s.accs.last(), Some(Acc::Count(n)) if *n <= 0))
            .collect();
        let results: Vec<(KeyValue, WindowState)> = order.into_iter().zip(states).collect();
        let live: Vec<(KeyValue, WindowState)> = results
            .iter()
            .zip(&emptied)
            .filter(|(_, e)| !**e)
            .map(|(r, _)| r.clone())
            .collect();
        let cleared: Vec<&KeyValue> = results
            .iter()
            .zip(&emptied)
            .filter(|(_, e)| **e)
            .map(|((k, _), _)| k)
            .collect();
        self.groups.clear_many(&cleared)?;
        self.groups.set_many(&live)?;
        // A group whose result is what it was (a row changed and changed back, or a changed
        // value that leaves the sum alone) emits nothing.
        let (emitted, deleted): (Vec<(KeyValue, WindowState)>, Vec<bool>) = results
            .into_iter()
            .zip(emptied)
            .zip(before)
            .filter(|(((_, state), emptied), before)| {
                *emptied || before.as_ref().is_none_or(|b| *b != self.result_of(state))
            })
            .map(|(row, _)| row)
            .unzip();
        if !emitted.is_empty() {
            out.emit(self.results(&emitted, &deleted)?);
        }
        Ok(())
    }

    /// What a group's row says: each aggregate's result.
    fn result_of(&self, state: &WindowState) -> Vec<Option<Value>> {
        state.accs[..self.aggregates.len()]
            .iter()
            .map(Acc::finish)
            .collect()
    }

    fn results(
        &self,
        rows: &[(KeyValue, WindowState)],
        deleted: &[bool],
    ) -> Result<RecordBatch, AgentError> {
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
        Ok(changelog::with_ops(batch, deleted)?)
    }
}
