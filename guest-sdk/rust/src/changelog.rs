//! Changelogs: streams whose rows replace earlier ones.
//!
//! An updating aggregate (a `GROUP BY` without a window) does not emit each group once: it emits
//! a group's new result every time it changes. Such a stream is a *changelog* keyed by its group
//! columns, and it says so with one extra column, [`OP_COLUMN`] (`_op`, utf8), on every batch:
//!
//! - [`UPSERT`]: the row is the key's current value, replacing any earlier one;
//! - [`DELETE`]: the key has no value any more (the row still carries its last values).
//!
//! A stream without `_op` is append-only. The host reads `_op` where a sink applies changes (a
//! Kafka sink with a `key` writes upserts as records and deletes as tombstones; the built-in
//! `view` operator keeps the current row of each key) and refuses, at validation, to send a
//! changelog into a sink that can only append.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_schema::ArrowError;
use arrow_schema::{DataType, Field, Schema};

#[cfg(feature = "guest")]
use crate::AgentError;

/// The column that makes a stream a changelog.
pub const OP_COLUMN: &str = "_op";
/// `_op` of a row that is its key's new value.
pub const UPSERT: &str = "upsert";
/// `_op` of a row whose key is deleted.
pub const DELETE: &str = "delete";

/// Whether `batch` is part of a changelog.
pub fn is_changelog(batch: &RecordBatch) -> bool {
    batch.schema().column_with_name(OP_COLUMN).is_some()
}

/// `batch` with an `_op` column appended: `DELETE` where `deleted` says so, else `UPSERT`.
pub fn with_ops(batch: RecordBatch, deleted: &[bool]) -> Result<RecordBatch, ArrowError> {
    let ops: ArrayRef = Arc::new(StringArray::from_iter_values(
        deleted.iter().map(|d| if *d { DELETE } else { UPSERT }),
    ));
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    let mut columns = batch.columns().to_vec();
    columns.push(ops);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Which rows of a changelog batch are deletes (none, for an append-only batch); an error names
/// the row whose `_op` is neither.
pub fn deletes(batch: &RecordBatch) -> Result<Vec<bool>, String> {
    let Some(ops) = batch.column_by_name(OP_COLUMN) else {
        return Ok(vec![false; batch.num_rows()]);
    };
    let ops = ops.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
        format!(
            "the changelog column `{OP_COLUMN}` is {}; expected utf8 \"{UPSERT}\" or \"{DELETE}\"",
            ops.data_type()
        )
    })?;
    (0..ops.len())
        .map(|i| match ops.is_valid(i).then(|| ops.value(i)) {
            Some(UPSERT) => Ok(false),
            Some(DELETE) => Ok(true),
            other => Err(format!(
                "the changelog column `{OP_COLUMN}` holds {other:?} at row {i}; expected \"{UPSERT}\" or \"{DELETE}\""
            )),
        })
        .collect()
}

/// Refuses a changelog where an operator reads only append-only streams.
#[cfg(feature = "guest")]
pub fn refuse(batch: &RecordBatch, operator: &str) -> Result<(), AgentError> {
    if is_changelog(batch) {
        return Err(AgentError::invalid_input(format!(
            "{operator} reads append-only streams, and its input is a changelog (it has an \
             `{OP_COLUMN}` column: the output of an updating aggregate)"
        )));
    }
    Ok(())
}
