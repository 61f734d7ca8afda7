//! Over-aggregates of a changelog: each partition's current rows in time order; a change
//! re-emits every row whose frame it touched.

use std::collections::{BTreeSet, HashMap};

use sabot_sdk::changelog;
use sabot_sdk::state::{Postcard, ValueState};
use sabot_sdk::{AgentError, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

use super::{Frame, Functions, MAX_PARTITION_ROWS, OverConfig, inputs_of, output};
use crate::join::{SideSchema, Values};
use crate::values::{OutType, Value};
use crate::window::{KeyValue, key_values};

/// One current row of a partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    order: i64,
    /// The changelog key (rows of one time are ordered by it).
    key: KeyValue,
    values: Values,
}

/// How rows of one time are ordered: by key, numerically or as text.
fn tie(key: &KeyValue) -> (i64, &str) {
    match key {
        KeyValue::I64(v) => (*v, ""),
        KeyValue::I32(v) => (i64::from(*v), ""),
        KeyValue::Str(s) => (0, s),
        KeyValue::Global => (0, ""),
    }
}

/// A partition's current rows, in time order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Partition {
    schema: SideSchema,
    rows: Vec<Entry>,
}

impl Partition {
    /// Where the row `(order, key)` is, or would be.
    fn position(&self, order: i64, key: &KeyValue) -> usize {
        self.rows
            .partition_point(|e| (e.order, tie(&e.key)) < (order, tie(key)))
    }
}

/// Where a changelog key's current row is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Place {
    partition: KeyValue,
    order: i64,
}

/// An over-aggregate of a changelog.
pub struct ChangingOver {
    functions: Functions,
    preceding: usize,
    changelog_key: String,
    partitions: ValueState<Partition, Postcard>,
    places: ValueState<Place, Postcard>,
}

impl ChangingOver {
    pub(super) fn new(
        name: &str,
        config: &OverConfig,
        changelog_key: String,
    ) -> Result<Self, AgentError> {
        let functions = Functions::new(config)?;
        let Frame::Rows(preceding) = functions.frame else {
            return Err(AgentError::invalid_config(
                "over a changelog the frame is `preceding = N` (ROWS BETWEEN N PRECEDING AND CURRENT ROW): a change re-emits the N rows after it",
            ));
        };
        Ok(ChangingOver {
            functions,
            preceding,
            changelog_key,
            partitions: ValueState::with_codec(&format!("{name}.partitions"), Postcard),
            places: ValueState::with_codec(&format!("{name}.places"), Postcard),
        })
    }

    /// Applies a batch of changes; emits the rows whose frames changed and the deleted keys.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let deletes = changelog::deletes(batch).map_err(AgentError::invalid_input)?;
        let (schema, columns) =
            SideSchema::read(batch, Some(changelog::OP_COLUMN), "an over-aggregate")?;
        let (at, types) = self.functions.inputs(&schema)?;
        let column = |name: &str, what: &str| {
            schema.names.iter().position(|c| c == name).ok_or_else(|| {
                AgentError::invalid_input(format!(
                    "the {what} column `{name}` is missing (columns: {})",
                    schema.names.join(", ")
                ))
            })
        };
        let order_at = column(&self.functions.order, "order")?;
        if !matches!(schema.types[order_at], OutType::I64 | OutType::TimestampMs) {
            return Err(AgentError::invalid_input(format!(
                "the order column `{}` is {:?}; expected a timestamp or int64 milliseconds",
                self.functions.order, schema.types[order_at]
            )));
        }
        let partition_at = match &self.functions.partition {
            Some(p) => Some(column(p, "partition")?),
            None => None,
        };
        let keys = key_values(Some(&self.changelog_key), batch, "changelog key")?;

        let mut unique: Vec<KeyValue> = Vec::new();
        for k in &keys {
            if !unique.contains(k) {
                unique.push(k.clone());
            }
        }
        let stored = self.places.get_many(&unique)?;
        let mut places: HashMap<KeyValue, Option<Place>> =
            unique.iter().cloned().zip(stored).collect();

        // The partitions the batch leaves or enters.
        let mut rows_of: Vec<(KeyValue, i64)> = Vec::with_capacity(n);
        let mut touched: Vec<KeyValue> = Vec::new();
        let touch = |p: &KeyValue, touched: &mut Vec<KeyValue>| {
            if !touched.contains(p) {
                touched.push(p.clone());
            }
        };
        for place in places.values().flatten() {
            touch(&place.partition, &mut touched);
        }
        for (row, deleted) in deletes.iter().enumerate() {
            if *deleted {
                rows_of.push((KeyValue::Global, 0));
                continue;
            }
            let partition = match partition_at {
                None => KeyValue::Global,
                Some(i) => match columns[i].get(row) {
                    Some(Value::I(v)) => KeyValue::I64(v),
                    Some(Value::S(s)) => KeyValue::Str(s),
                    other => {
                        return Err(AgentError::invalid_input(format!(
                            "the partition column `{}` holds {other:?}; expected a non-null integer or text",
                            schema.names[i]
                        ))
                        .at_row(row));
                    }
                },
            };
            let Some(Value::I(order)) = columns[order_at].get(row) else {
                return Err(AgentError::invalid_input(format!(
                    "the order column `{}` is null",
                    self.functions.order
                ))
                .at_row(row));
            };
            touch(&partition, &mut touched);
            rows_of.push((partition, order));
        }
        let stored = self.partitions.get_many(&touched)?;
        let mut partitions: HashMap<KeyValue, Partition> = HashMap::new();
        for (p, stored) in touched.iter().zip(stored) {
            let partition = match stored {
                Some(s) if s.schema == schema => s,
                Some(s) => {
                    return Err(AgentError::invalid_input(format!(
                        "the input's columns changed: ({}) then ({})",
                        s.schema.names.join(", "),
                        schema.names.join(", ")
                    )));
                }
                None => Partition {
                    schema: schema.clone(),
                    rows: Vec::new(),
                },
            };
            partitions.insert(p.clone(), partition);
        }

        // Apply the changes in order, noting where each one happened.
        let mut changed: HashMap<KeyValue, Vec<(i64, KeyValue)>> = HashMap::new();
        let mut removed: HashMap<KeyValue, Values> = HashMap::new();
        for row in 0..n {
            let key = &keys[row];
            let slot = places.get_mut(key).expect("read above");
            if let Some(before) = slot.take() {
                let partition = partitions.get_mut(&before.partition).expect("read above");
                let at = partition.position(before.order, key);
                if partition.rows.get(at).is_some_and(|e| e.key == *key) {
                    let entry = partition.rows.remove(at);
                    removed.insert(key.clone(), entry.values);
                }
                changed
                    .entry(before.partition)
                    .or_default()
                    .push((before.order, key.clone()));
            }
            if deletes[row] {
                continue;
            }
            let (p, order) = rows_of[row].clone();
            let partition = partitions.get_mut(&p).expect("read above");
            if partition.rows.len() >= MAX_PARTITION_ROWS {
                return Err(AgentError::invalid_input(format!(
                    "partition {p:?} of the over-aggregate holds {MAX_PARTITION_ROWS} rows, the most one partition of a changelog keeps: partition more finely"
                ))
                .at_row(row));
            }
            let at = partition.position(order, key);
            partition.rows.insert(
                at,
                Entry {
                    order,
                    key: key.clone(),
                    values: columns.iter().map(|c| c.get(row)).collect(),
                },
            );
            changed
                .entry(p.clone())
                .or_default()
                .push((order, key.clone()));
            *slot = Some(Place {
                partition: p,
                order,
            });
        }

        // Deleted keys first, then every row whose frame or lag a change reached.
        let mut rows: Vec<(Values, Values)> = Vec::new();
        let mut deleted: Vec<bool> = Vec::new();
        let nulls: Values = vec![None; self.functions.list.len()];
        for key in &unique {
            if places[key].is_none()
                && let Some(values) = removed.remove(key)
            {
                rows.push((values, nulls.clone()));
                deleted.push(true);
            }
        }
        let fresh = self.functions.fresh(&schema, &at);
        let reach = self.preceding.max(self.functions.lag_depth());
        for p in &touched {
            let Some(points) = changed.get(p) else {
                continue;
            };
            let partition = &partitions[p];
            let mut affected: BTreeSet<usize> = BTreeSet::new();
            for (order, key) in points {
                let from = partition.position(*order, key);
                // An inserted row changes its own frame and the next `reach` rows'; a removed
                // one, those of the rows after it.
                affected.extend(from..(from + reach + 1).min(partition.rows.len()));
            }
            if affected.is_empty() {
                continue;
            }
            let seq: Vec<(i64, Values)> = partition
                .rows
                .iter()
                .map(|e| (e.order, inputs_of(&e.values, &at)))
                .collect();
            let positions: Vec<usize> = affected.into_iter().collect();
            let (results, _) =
                self.functions
                    .evaluate_rows(&seq, &positions, self.preceding, &fresh, None);
            for (i, result) in positions.into_iter().zip(results) {
                rows.push((partition.rows[i].values.clone(), result));
                deleted.push(false);
            }
        }

        // Write back what changed.
        let (mut kept, mut emptied) = (Vec::new(), Vec::new());
        for (p, partition) in partitions {
            if partition.rows.is_empty() {
                emptied.push(p);
            } else if changed.contains_key(&p) {
                kept.push((p, partition));
            }
        }
        self.partitions.clear_many(&emptied)?;
        self.partitions.set_many(&kept)?;
        let (mut placed, mut gone) = (Vec::new(), Vec::new());
        for (k, place) in places {
            match place {
                Some(place) => placed.push((k, place)),
                None => gone.push(k),
            }
        }
        self.places.clear_many(&gone)?;
        self.places.set_many(&placed)?;
        if !rows.is_empty() {
            let batch = output(&schema, &self.functions, &types, rows)?;
            out.emit(changelog::with_ops(batch, &deleted)?);
        }
        Ok(())
    }
}
