//! Materialized views: the current rows of a stream, by key, readable while the pipeline runs.
//! What the built-in `view` operator runs.
//!
//! ```toml
//! [agents.card_totals]
//! module = "builtin:view"
//! key = "card_id"
//! config = { key = "card_id" }
//! ```
//!
//! Each input row is its key's current value: an upsert. On a [changelog](sabot_sdk::changelog)
//! a row whose `_op` is `"delete"` removes its key instead. A windowed result keeps one row per
//! window: `sub_key = "window_start"` makes each key hold one row per value of that column.
//!
//! - `key`: the key column (int64, int32 or utf8; absent: every row under one empty key).
//! - `sub_key` (optional): a second column (int64, timestamp or utf8) telling apart rows of one
//!   key; they are kept in its order.
//!
//! Rows are kept in a raw state store named [`ROWS`], as JSON objects (every column but `_op`;
//! timestamps as ISO-8601 text), so that the host's HTTP API (`GET /v1/views/NAME`) reads them
//! without knowing this crate. Sub-keys are encoded so that byte order is value order: integers
//! as 8 big-endian bytes with the sign bit flipped, text as UTF-8.

use sabot_sdk::arrow::array::{
    Array, BooleanArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array,
    StringArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use sabot_sdk::arrow::datatypes::DataType;
use sabot_sdk::changelog;
use sabot_sdk::state::{RawState, RawWrite, StateKey};
use sabot_sdk::{AgentError, RecordBatch};
use serde::Deserialize;

use crate::window::key_values;

/// The state store a view keeps its rows in.
pub const ROWS: &str = "view.rows";

/// The `config` of a view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    pub key: Option<String>,
    pub sub_key: Option<String>,
}

/// A materialized view.
pub struct View {
    key: Option<String>,
    sub_key: Option<String>,
    rows: RawState,
}

impl View {
    pub fn new(config: ViewConfig) -> Self {
        View {
            key: config.key,
            sub_key: config.sub_key,
            rows: RawState::new(ROWS),
        }
    }

    /// Applies a batch: upserts and deletes, the last one of each entry winning.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<(), AgentError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = key_values(self.key.as_deref(), batch, "view key")?;
        let subs = match &self.sub_key {
            Some(name) => sub_keys(batch, name)?,
            None => vec![Vec::new(); n],
        };
        let deletes = changelog::deletes(batch).map_err(AgentError::invalid_input)?;
        let rows = json_rows(batch)?;
        // The last write of each entry, in first-seen order.
        let mut order: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut last: std::collections::HashMap<(Vec<u8>, Vec<u8>), usize> =
            std::collections::HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let entry = (key.state_key(), subs[i].clone());
            if last.insert(entry.clone(), i).is_none() {
                order.push(entry);
            }
        }
        let writes: Vec<RawWrite<Vec<u8>>> = order
            .into_iter()
            .map(|entry| {
                let i = last[&entry];
                let value = (!deletes[i]).then(|| rows[i].clone().into_bytes());
                (entry.0, entry.1, value)
            })
            .collect();
        self.rows.write_many(&writes)
    }
}

/// Sub-keys whose byte order is the column's order.
fn sub_keys(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<u8>>, AgentError> {
    let col = batch.column_by_name(name).ok_or_else(|| {
        AgentError::invalid_input(format!("the view's sub_key column `{name}` is missing"))
    })?;
    let null = |i: usize| {
        AgentError::invalid_input(format!("the view's sub_key `{name}` is null")).at_row(i)
    };
    if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
        return (0..s.len())
            .map(|i| {
                s.is_valid(i)
                    .then(|| s.value(i).as_bytes().to_vec())
                    .ok_or_else(|| null(i))
            })
            .collect();
    }
    let ints = match col.data_type() {
        DataType::Int64 | DataType::Int32 | DataType::Timestamp(..) => {
            crate::values::Column::from_array(col)?
        }
        other => {
            return Err(AgentError::invalid_input(format!(
                "the view's sub_key `{name}` is {other}; expected int64, int32, a timestamp or utf8"
            )));
        }
    };
    (0..batch.num_rows())
        .map(|i| match ints.get(i) {
            Some(crate::values::Value::I(v)) => Ok(((v as u64) ^ (1 << 63)).to_be_bytes().to_vec()),
            _ => Err(null(i)),
        })
        .collect()
}

/// Each row as a JSON object of every column but `_op`.
fn json_rows(batch: &RecordBatch) -> Result<Vec<String>, AgentError> {
    let schema = batch.schema();
    let mut objects = vec![serde_json::Map::new(); batch.num_rows()];
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        if field.name() == changelog::OP_COLUMN {
            continue;
        }
        let values = json_values(col.as_ref())?;
        for (object, value) in objects.iter_mut().zip(values) {
            object.insert(field.name().clone(), value);
        }
    }
    Ok(objects
        .into_iter()
        .map(|o| serde_json::Value::Object(o).to_string())
        .collect())
}

fn json_values(col: &dyn Array) -> Result<Vec<serde_json::Value>, AgentError> {
    use serde_json::Value as J;
    macro_rules! each {
        ($t:ty, $f:expr) => {
            if let Some(a) = col.as_any().downcast_ref::<$t>() {
                return Ok((0..a.len())
                    .map(|i| {
                        if a.is_valid(i) {
                            $f(a.value(i))
                        } else {
                            J::Null
                        }
                    })
                    .collect());
            }
        };
    }
    each!(Int64Array, |v: i64| J::from(v));
    each!(Int32Array, |v: i32| J::from(v));
    each!(Int16Array, |v: i16| J::from(v));
    each!(Int8Array, |v: i8| J::from(v));
    each!(UInt64Array, |v: u64| J::from(v));
    each!(UInt32Array, |v: u32| J::from(v));
    each!(UInt16Array, |v: u16| J::from(v));
    each!(UInt8Array, |v: u8| J::from(v));
    each!(Float64Array, |v: f64| J::from(v));
    each!(Float32Array, |v: f32| J::from(f64::from(v)));
    each!(BooleanArray, J::Bool);
    each!(StringArray, |v: &str| J::String(v.to_owned()));
    // Timestamps, dates and the rest: as Arrow displays them.
    let formatter = arrow_cast::display::ArrayFormatter::try_new(col, &Default::default())?;
    Ok((0..col.len())
        .map(|i| {
            if col.is_valid(i) {
                J::String(formatter.value(i).to_string())
            } else {
                J::Null
            }
        })
        .collect())
}
