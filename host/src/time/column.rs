//! Reading event times from a batch's column.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

/// Why a batch's event times cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTimeError {
    #[error("has no event-time column `{column}` (its columns: {available})")]
    Missing { column: String, available: String },
    #[error(
        "has event-time column `{column}` of type {found}; expected a timestamp or an int64 of milliseconds since the Unix epoch"
    )]
    WrongType { column: String, found: String },
}

/// The largest event time in `batch`'s `column`, in milliseconds since the Unix epoch (nulls
/// are skipped; `None` when every value is null or the batch is empty).
pub fn event_times(batch: &RecordBatch, column: &str) -> Result<Option<i64>, EventTimeError> {
    let Some(array) = batch.column_by_name(column) else {
        return Err(EventTimeError::Missing {
            column: column.to_owned(),
            available: batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let max = match array.data_type() {
        DataType::Int64 => arrow_arith::aggregate::max(array.as_primitive::<Int64Type>()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            arrow_arith::aggregate::max(array.as_primitive::<TimestampMillisecondType>())
        }
        DataType::Timestamp(TimeUnit::Second, _) => {
            arrow_arith::aggregate::max(array.as_primitive::<TimestampSecondType>())
                .map(|s| s.saturating_mul(1_000))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            arrow_arith::aggregate::max(array.as_primitive::<TimestampMicrosecondType>())
                .map(|us| us.div_euclid(1_000))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            arrow_arith::aggregate::max(array.as_primitive::<TimestampNanosecondType>())
                .map(|ns| ns.div_euclid(1_000_000))
        }
        other => {
            return Err(EventTimeError::WrongType {
                column: column.to_owned(),
                found: other.to_string(),
            });
        }
    };
    let _ = array.null_count();
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn the_largest_event_time_is_read_in_milliseconds_whatever_the_unit() {
        let b = RecordBatch::try_from_iter([(
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(5_000),
                None,
                Some(9_999),
            ])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(event_times(&b, "ts"), Ok(Some(9)));
        let b =
            RecordBatch::try_from_iter([("t", Arc::new(Int64Array::from(vec![3, 1])) as ArrayRef)])
                .unwrap();
        assert_eq!(event_times(&b, "t"), Ok(Some(3)));
    }

    #[test]
    fn a_missing_or_mistyped_column_is_named() {
        let b = RecordBatch::try_from_iter([(
            "ts",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )])
        .unwrap();
        assert!(
            event_times(&b, "when")
                .unwrap_err()
                .to_string()
                .contains("no event-time column `when` (its columns: ts)")
        );
        assert!(
            event_times(&b, "ts")
                .unwrap_err()
                .to_string()
                .contains("of type Utf8")
        );
    }
}
