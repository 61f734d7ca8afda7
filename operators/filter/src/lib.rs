//! Built-in `filter` operator: keeps the rows for which a SQL expression is true.
//!
//! ```toml
//! [agents.big]
//! module = "builtin:filter"
//! config = { where = "amount > 1000 AND country IN ('NG', 'KP')" }
//! ```
//!
//! Every input port is filtered with the same expression and emitted on output 0. The expression
//! language is described in [`sabot_expr`].
//!
//! On a [changelog](sabot_sdk::changelog) (a batch with an `_op` column, such as an updating
//! aggregate's), an upsert the predicate rejects must delete its key, whose earlier value may have
//! passed: that is SQL's `HAVING` over a `GROUP BY` without a window. With `key` (the changelog's
//! key column, which the pipeline should also partition by), the filter remembers in keyed state
//! which keys it let through, and emits a delete only for those: an exact changelog. Without it,
//! every rejected upsert becomes a delete, and deletes pass.
//!
//! ```toml
//! [agents.regulars]
//! module = "builtin:filter"
//! key = "card_id"
//! config = { where = "n >= 3", key = "card_id" }
//! ```

use sabot_expr::Predicate;
use std::collections::HashMap;

use sabot_sdk::arrow::array::{Array, BooleanArray};
use sabot_sdk::arrow::compute::filter_record_batch;
use sabot_sdk::state::{RawState, RawWrite, column_keys};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch, changelog};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The predicate, e.g. `amount > 1000`.
    #[serde(rename = "where")]
    predicate: String,
    /// A changelog's key column: deletes only for keys that passed.
    key: Option<String>,
}

/// Keeps the rows matching a predicate.
pub struct Filter {
    predicate: Predicate,
    key: Option<String>,
    /// The keys of a changelog whose last upsert passed (value: a single `1`).
    visible: RawState,
}

impl Agent for Filter {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        let predicate = Predicate::parse(&settings.predicate)
            .map_err(|e| AgentError::invalid_config(format!("filter `where`: {e}")))?;
        Ok(Filter {
            predicate,
            key: settings.key,
            visible: RawState::new("filter.visible"),
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let bad = |e| AgentError::invalid_input(format!("filter: {e}"));
        if changelog::is_changelog(&batch) {
            let passed = self.predicate.evaluate(&batch).map_err(bad)?;
            let deleted = changelog::deletes(&batch).map_err(AgentError::invalid_input)?;
            let upsert: Vec<bool> = (0..batch.num_rows())
                .map(|i| !deleted[i] && passed.is_valid(i) && passed.value(i))
                .collect();
            let (keep, ops) = match &self.key {
                None => (vec![true; batch.num_rows()], upsert),
                Some(key) => self.exact(&batch, key, &upsert)?,
            };
            let kept = filter_record_batch(&batch, &BooleanArray::from(keep.clone()))?;
            let (i, _) = kept
                .schema()
                .column_with_name(changelog::OP_COLUMN)
                .expect("a changelog has an _op column");
            let mut rest = kept;
            rest.remove_column(i);
            let deletes: Vec<bool> = ops
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(upsert, _)| !upsert)
                .collect();
            out.emit(changelog::with_ops(rest, &deletes)?);
            return Ok(());
        }
        out.emit(self.predicate.filter(&batch).map_err(bad)?);
        Ok(())
    }
}

impl Filter {
    /// Which rows of a changelog to keep, and whether each is an upsert: an upsert that passed
    /// always; a delete (or a rejected upsert) only when its key's last kept row was an upsert.
    fn exact(
        &self,
        batch: &RecordBatch,
        key: &str,
        upsert: &[bool],
    ) -> Result<(Vec<bool>, Vec<bool>), AgentError> {
        let column = batch.column_by_name(key).ok_or_else(|| {
            AgentError::invalid_input(format!(
                "filter: the changelog key column `{key}` is missing"
            ))
        })?;
        let keys = column_keys(column.as_ref())?;
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        for k in &keys {
            index.entry(k.as_slice()).or_insert_with(|| {
                order.push(k.clone());
                order.len() - 1
            });
        }
        let lookups: Vec<(Vec<u8>, Vec<u8>)> =
            order.iter().map(|k| (k.clone(), Vec::new())).collect();
        let before: Vec<bool> = self
            .visible
            .get_many(&lookups)?
            .into_iter()
            .map(|v| v.is_some())
            .collect();
        let mut visible = before.clone();
        let mut keep = vec![false; keys.len()];
        for (row, k) in keys.iter().enumerate() {
            let v = &mut visible[index[k.as_slice()]];
            keep[row] = upsert[row] || *v;
            *v = upsert[row];
        }
        let writes: Vec<RawWrite<Vec<u8>>> = order
            .iter()
            .zip(before.iter().zip(&visible))
            .filter(|(_, (b, a))| b != a)
            .map(|(k, (_, a))| (k.clone(), Vec::new(), a.then(|| vec![1])))
            .collect();
        self.visible.write_many(&writes)?;
        Ok((keep, upsert.to_vec()))
    }
}

sabot_sdk::export_agent!(Filter);
