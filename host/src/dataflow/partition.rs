//! Hash partitioning on a key column.
//!
//! A row's key is hashed (xxh3, fixed seed: the same on every host and run) to one of
//! [`KEY_GROUPS`] key groups, and key groups are assigned to instances in contiguous ranges, as in
//! Flink. A key group always lands on the same instance for a given parallelism, which is what
//! keyed state will rely on.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use xxhash_rust::xxh3::xxh3_64;

/// The number of key groups: the most instances a keyed agent can ever be split into.
pub const KEY_GROUPS: u32 = 4096;

/// The key group of each row of `column`. Nulls hash as an empty key.
pub fn key_groups(column: &ArrayRef) -> Result<Vec<u32>, String> {
    /// The key group of each row: nulls hash as an empty key, others as `hash(row)`.
    fn groups(
        len: usize,
        is_null: impl Fn(usize) -> bool,
        hash: impl Fn(usize) -> u64,
    ) -> Vec<u32> {
        let empty = xxh3_64(&[]);
        (0..len)
            .map(|i| {
                let h = if is_null(i) { empty } else { hash(i) };
                (h % u64::from(KEY_GROUPS)) as u32
            })
            .collect()
    }
    macro_rules! primitive {
        ($t:ty) => {{
            let a = column.as_primitive::<$t>();
            groups(
                a.len(),
                |i| a.is_null(i),
                |i| xxh3_64(&a.value(i).to_le_bytes()),
            )
        }};
    }
    Ok(match column.data_type() {
        DataType::Int8 => primitive!(Int8Type),
        DataType::Int16 => primitive!(Int16Type),
        DataType::Int32 => primitive!(Int32Type),
        DataType::Int64 => primitive!(Int64Type),
        DataType::UInt8 => primitive!(UInt8Type),
        DataType::UInt16 => primitive!(UInt16Type),
        DataType::UInt32 => primitive!(UInt32Type),
        DataType::UInt64 => primitive!(UInt64Type),
        DataType::Date32 => primitive!(Date32Type),
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            groups(
                a.len(),
                |i| a.is_null(i),
                |i| xxh3_64(a.value(i).as_bytes()),
            )
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            groups(
                a.len(),
                |i| a.is_null(i),
                |i| xxh3_64(a.value(i).as_bytes()),
            )
        }
        DataType::Binary => {
            let a = column.as_binary::<i32>();
            groups(a.len(), |i| a.is_null(i), |i| xxh3_64(a.value(i)))
        }
        other => {
            return Err(format!(
                "has type {other}; a key column must be an integer, date, string or binary column"
            ));
        }
    })
}

/// The key group of a key's bytes (as [`key_groups`] computes for a column's values).
pub fn key_group(key: &[u8]) -> u32 {
    (xxh3_64(key) % u64::from(KEY_GROUPS)) as u32
}

/// The instance (of `parallelism`) that owns key group `group`.
pub fn instance_of(group: u32, parallelism: usize) -> usize {
    (group as usize * parallelism) / KEY_GROUPS as usize
}

/// Splits `batch` by the key column `key` into one batch per instance (`None` where an instance
/// gets no rows).
pub fn split(
    batch: &RecordBatch,
    key: &str,
    parallelism: usize,
) -> Result<Vec<Option<RecordBatch>>, String> {
    let column = batch.column_by_name(key).ok_or_else(|| {
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        format!("has no key column `{key}` (columns: {})", names.join(", "))
    })?;
    let groups = key_groups(column).map_err(|m| format!("key column `{key}` {m}"))?;
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); parallelism];
    for (row, group) in groups.into_iter().enumerate() {
        rows[instance_of(group, parallelism)].push(row as u32);
    }
    rows.into_iter()
        .map(|indices| {
            if indices.is_empty() {
                return Ok(None);
            }
            if indices.len() == batch.num_rows() {
                return Ok(Some(batch.clone()));
            }
            let indices = UInt32Array::from(indices);
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            RecordBatch::try_new(Arc::clone(&batch.schema()), columns)
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn batch(keys: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Float64, false),
        ]));
        let v: Vec<f64> = keys.iter().map(|k| *k as f64).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(Float64Array::from(v)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn every_row_goes_to_exactly_one_instance_and_equal_keys_together() {
        let keys: Vec<i64> = (0..10_000).map(|i| i % 997).collect();
        let parts = split(&batch(keys), "k", 3).unwrap();
        let total: usize = parts.iter().flatten().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 10_000);
        let mut owner = std::collections::HashMap::new();
        for (i, part) in parts.iter().enumerate() {
            let part = part.as_ref().expect("997 keys spread over 3 instances");
            let k = part.column(0).as_primitive::<Int64Type>();
            for key in k.values() {
                assert_eq!(
                    *owner.entry(*key).or_insert(i),
                    i,
                    "key {key} split across instances"
                );
            }
        }
    }

    #[test]
    fn key_groups_are_stable_across_runs() {
        // Fixed values: changing the hash would move keyed state between instances.
        let col: ArrayRef = Arc::new(StringArray::from(vec!["card-1", "card-2"]));
        assert_eq!(key_groups(&col).unwrap(), key_groups(&col).unwrap());
        assert_eq!(instance_of(0, 4), 0);
        assert_eq!(instance_of(KEY_GROUPS - 1, 4), 3);
    }

    #[test]
    fn a_missing_or_unhashable_key_column_is_named() {
        assert!(
            split(&batch(vec![1]), "card", 2)
                .unwrap_err()
                .contains("no key column `card` (columns: k, v)")
        );
        assert!(
            split(&batch(vec![1]), "v", 2)
                .unwrap_err()
                .contains("key column `v` has type Float64")
        );
    }
}
