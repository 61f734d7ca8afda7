//! Row values: one Arrow cell in the few types operators compute with, reading columns into them
//! and building columns from them.

use std::sync::Arc;

use sabot_sdk::AgentError;
use sabot_sdk::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    TimestampMillisecondArray,
};
use sabot_sdk::arrow::buffer::{NullBuffer, OffsetBuffer};
use sabot_sdk::arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::window::Function;

/// One value, in the types operators compute with.
#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Value {
    I(i64),
    F(f64),
    S(String),
    B(bool),
    /// The values `collect` gathered (non-null, in arrival order).
    L(Vec<Value>),
}

/// The type of an output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutType {
    I64,
    F64,
    Str,
    Bool,
    TimestampMs,
    /// Lists of values of one of the types above (what `collect` returns).
    ListI64,
    ListF64,
    ListStr,
    ListBool,
    ListTimestampMs,
}

impl OutType {
    /// The canonical type for values of `data_type`, or why it is not supported.
    pub fn of(data_type: &DataType) -> Option<OutType> {
        Some(match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => OutType::I64,
            DataType::Float32 | DataType::Float64 => OutType::F64,
            DataType::Utf8 | DataType::LargeUtf8 => OutType::Str,
            DataType::Boolean => OutType::Bool,
            DataType::Timestamp(..) => OutType::TimestampMs,
            _ => return None,
        })
    }

    pub fn data_type(self) -> DataType {
        match self {
            OutType::I64 => DataType::Int64,
            OutType::F64 => DataType::Float64,
            OutType::Str => DataType::Utf8,
            OutType::Bool => DataType::Boolean,
            OutType::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, None),
            list => DataType::List(Arc::new(Field::new_list_field(
                list.element().expect("a list type").data_type(),
                true,
            ))),
        }
    }

    /// A list of values of this type (`None` for a list already).
    pub fn list(self) -> Option<OutType> {
        Some(match self {
            OutType::I64 => OutType::ListI64,
            OutType::F64 => OutType::ListF64,
            OutType::Str => OutType::ListStr,
            OutType::Bool => OutType::ListBool,
            OutType::TimestampMs => OutType::ListTimestampMs,
            _ => return None,
        })
    }

    /// The type of a list's values (`None` when this is not a list).
    pub fn element(self) -> Option<OutType> {
        Some(match self {
            OutType::ListI64 => OutType::I64,
            OutType::ListF64 => OutType::F64,
            OutType::ListStr => OutType::Str,
            OutType::ListBool => OutType::Bool,
            OutType::ListTimestampMs => OutType::TimestampMs,
            _ => return None,
        })
    }

    /// The type of `function`'s result over values of this type.
    pub fn result(self, function: Function) -> OutType {
        match function {
            Function::Count => OutType::I64,
            Function::Mean => OutType::F64,
            Function::Sum if self == OutType::F64 => OutType::F64,
            Function::Sum => OutType::I64,
            Function::Collect => self.list().unwrap_or(self),
            _ => self,
        }
    }
}

/// A column of input values, converted once per batch.
pub enum Column {
    I(Vec<Option<i64>>),
    F(Vec<Option<f64>>),
    S(StringArray),
    B(BooleanArray),
    /// `count(*)`.
    Rows,
}

impl Column {
    /// Converts `array` (of a type [`OutType::of`] accepts).
    pub fn from_array(array: &ArrayRef) -> Result<Column, AgentError> {
        use sabot_sdk::arrow::datatypes::DataType as D;
        let cast = |to: &D| {
            arrow_cast::cast(array, to).map_err(|e| {
                AgentError::invalid_input(format!(
                    "cannot read a {} column: {e}",
                    array.data_type()
                ))
            })
        };
        Ok(match OutType::of(array.data_type()) {
            Some(OutType::I64) => {
                let a = cast(&D::Int64)?;
                let a = a
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("cast to Int64");
                Column::I(a.iter().collect())
            }
            Some(OutType::TimestampMs) => {
                let a = cast(&D::Timestamp(TimeUnit::Millisecond, None))?;
                let a = a
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .expect("cast to Timestamp(ms)");
                Column::I(a.iter().collect())
            }
            Some(OutType::F64) => {
                let a = cast(&D::Float64)?;
                let a = a
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("cast to Float64");
                Column::F(a.iter().collect())
            }
            Some(OutType::Str) => {
                let a = cast(&D::Utf8)?;
                Column::S(
                    a.as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to Utf8")
                        .clone(),
                )
            }
            Some(OutType::Bool) => Column::B(
                array
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("a Boolean column")
                    .clone(),
            ),
            // `of` never answers a list type.
            Some(_) | None => {
                return Err(AgentError::invalid_input(format!(
                    "a window aggregate cannot read a column of type {}",
                    array.data_type()
                )));
            }
        })
    }

    /// The value at `row`; `None` when null. `count(*)` sees every row as present.
    pub fn get(&self, row: usize) -> Option<Value> {
        match self {
            Column::I(v) => v[row].map(Value::I),
            Column::F(v) => v[row].map(Value::F),
            Column::S(a) => a.is_valid(row).then(|| Value::S(a.value(row).to_owned())),
            Column::B(a) => a.is_valid(row).then(|| Value::B(a.value(row))),
            Column::Rows => Some(Value::B(true)),
        }
    }
}

/// Builds an output column of `ty` from `values`.
pub fn build(ty: OutType, values: Vec<Option<Value>>) -> ArrayRef {
    if let Some(element) = ty.element() {
        // A list column: the values of every row, then offsets into them.
        let mut offsets = vec![0i32];
        let mut items = Vec::new();
        let mut valid = Vec::with_capacity(values.len());
        for v in values {
            match v {
                Some(Value::L(list)) => {
                    items.extend(list.into_iter().map(Some));
                    valid.push(true);
                }
                _ => valid.push(false),
            }
            offsets.push(i32::try_from(items.len()).unwrap_or(i32::MAX));
        }
        let field = Arc::new(Field::new_list_field(element.data_type(), true));
        return Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(offsets.into()),
            build(element, items),
            Some(NullBuffer::from(valid)),
        ));
    }
    match ty {
        OutType::I64 => Arc::new(Int64Array::from_iter(values.into_iter().map(|v| match v {
            Some(Value::I(i)) => Some(i),
            _ => None,
        }))),
        OutType::TimestampMs => Arc::new(TimestampMillisecondArray::from_iter(
            values.into_iter().map(|v| match v {
                Some(Value::I(i)) => Some(i),
                _ => None,
            }),
        )),
        OutType::F64 => Arc::new(Float64Array::from_iter(values.into_iter().map(
            |v| match v {
                Some(Value::F(f)) => Some(f),
                Some(Value::I(i)) => Some(i as f64),
                _ => None,
            },
        ))),
        OutType::Str => Arc::new(StringArray::from_iter(values.into_iter().map(
            |v| match v {
                Some(Value::S(s)) => Some(s),
                _ => None,
            },
        ))),
        OutType::Bool => Arc::new(BooleanArray::from_iter(values.into_iter().map(
            |v| match v {
                Some(Value::B(b)) => Some(b),
                _ => None,
            },
        ))),
        _ => unreachable!("lists are built above"),
    }
}

/// The output field of an aggregate.
pub fn field(name: &str, ty: OutType) -> Field {
    Field::new(name, ty.data_type(), true)
}
