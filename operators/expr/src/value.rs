//! Values during evaluation: a column, or one value for every row.

use arrow_array::{Array, ArrayRef, Datum, Scalar, UInt32Array, new_null_array};
use arrow_schema::{ArrowError, DataType};

/// A value during evaluation. A scalar stays an array of length 1 until it meets a column, so a
/// constant costs one value, not one per row.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Array(ArrayRef),
    /// An array of length 1.
    Scalar(ArrayRef),
}

impl Value {
    /// A column when `scalar` is false, else a length-1 scalar.
    pub(crate) fn new(array: ArrayRef, scalar: bool) -> Value {
        if scalar {
            Value::Scalar(array)
        } else {
            Value::Array(array)
        }
    }

    pub(crate) fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) | Value::Scalar(a) => a,
        }
    }

    pub(crate) fn data_type(&self) -> DataType {
        self.array().data_type().clone()
    }

    pub(crate) fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// The value as a column of `rows` rows.
    pub(crate) fn into_array(self, rows: usize) -> Result<ArrayRef, ArrowError> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) if s.is_null(0) => Ok(new_null_array(s.data_type(), rows)),
            Value::Scalar(s) => {
                let indices = UInt32Array::from(vec![0u32; rows]);
                arrow_select::take::take(s.as_ref(), &indices, None)
            }
        }
    }

    /// Applies a one-array kernel, keeping a scalar scalar.
    pub(crate) fn map(
        self,
        f: impl FnOnce(&ArrayRef) -> Result<ArrayRef, ArrowError>,
    ) -> Result<Value, ArrowError> {
        let scalar = self.is_scalar();
        Ok(Value::new(f(self.array())?, scalar))
    }
}

/// Applies a two-operand kernel, keeping a scalar result scalar.
pub(crate) fn binary(
    l: &Value,
    r: &Value,
    f: impl FnOnce(&dyn Datum, &dyn Datum) -> Result<ArrayRef, ArrowError>,
) -> Result<Value, ArrowError> {
    let out = match (l, r) {
        (Value::Array(a), Value::Array(b)) => f(a, b),
        (Value::Array(a), Value::Scalar(b)) => f(a, &Scalar::new(b.clone())),
        (Value::Scalar(a), Value::Array(b)) => f(&Scalar::new(a.clone()), b),
        (Value::Scalar(a), Value::Scalar(b)) => f(a, b),
    }?;
    Ok(Value::new(out, l.is_scalar() && r.is_scalar()))
}

/// Several values brought to one length: all scalars stay length 1, otherwise every scalar is
/// spread over `rows` rows, so row-wise code can index every argument alike.
pub(crate) struct Aligned {
    pub(crate) arrays: Vec<ArrayRef>,
    pub(crate) scalar: bool,
}

impl Aligned {
    pub(crate) fn new(values: Vec<Value>, rows: usize) -> Result<Aligned, ArrowError> {
        let scalar = values.iter().all(Value::is_scalar);
        let arrays = if scalar {
            values.into_iter().map(|v| v.array().clone()).collect()
        } else {
            values
                .into_iter()
                .map(|v| v.into_array(rows))
                .collect::<Result<_, _>>()?
        };
        Ok(Aligned { arrays, scalar })
    }

    /// The number of rows every array has.
    pub(crate) fn len(&self) -> usize {
        self.arrays.first().map_or(0, |a| a.len())
    }

    pub(crate) fn finish(&self, out: ArrayRef) -> Value {
        Value::new(out, self.scalar)
    }
}
