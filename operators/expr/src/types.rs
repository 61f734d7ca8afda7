//! SQL types, their Arrow types, and the implicit conversions between them.

use arrow_array::ArrayRef;
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use sqlparser::ast;

/// The SQL types `CAST` accepts, by their Arrow types.
pub(crate) const CAST_TYPES: &str = "BOOLEAN, SMALLINT, INT, BIGINT, FLOAT, REAL, DOUBLE, DECIMAL(p, s), VARCHAR, TEXT, DATE, TIMESTAMP";

/// The Arrow type of a SQL type, when this library supports it.
pub(crate) fn sql_type(t: &ast::DataType) -> Option<DataType> {
    use ast::DataType as S;
    Some(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::Int(_) | S::Integer(_) | S::Int4(_) => DataType::Int32,
        S::BigInt(_) | S::Int8(_) | S::Int64 => DataType::Int64,
        S::SmallInt(_) | S::Int2(_) => DataType::Int16,
        S::TinyInt(_) => DataType::Int8,
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => DataType::Float64,
        S::Float(_) | S::Real | S::Float4 | S::Float32 => DataType::Float32,
        S::Varchar(_) | S::Text | S::String(_) | S::Char(_) | S::CharVarying(_) => DataType::Utf8,
        S::Timestamp(_, _) | S::Datetime(_) => DataType::Timestamp(TimeUnit::Millisecond, None),
        S::Date => DataType::Date32,
        S::Decimal(info) | S::Numeric(info) | S::Dec(info) => {
            let (precision, scale) = match info {
                ast::ExactNumberInfo::None => (38, 10),
                ast::ExactNumberInfo::Precision(p) => (*p, 0),
                ast::ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            let precision = u8::try_from(precision)
                .ok()
                .filter(|p| (1..=38).contains(p))?;
            let scale = i8::try_from(scale).ok().filter(|s| *s as u8 <= precision)?;
            DataType::Decimal128(precision, scale)
        }
        _ => return None,
    })
}

pub(crate) fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

pub(crate) fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    )
}

/// The type two operands are brought to before they are compared, computed with, or merged
/// (`CASE` branches, `COALESCE` arguments), as SQL engines do; `None` when they do not mix.
pub(crate) fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    Some(match (a, b) {
        _ if a == b => a.clone(),
        (DataType::Null, t) | (t, DataType::Null) => t.clone(),
        (x, y) if x.is_integer() && y.is_integer() => DataType::Int64,
        (DataType::Decimal128(_, _), y) if y.is_integer() => a.clone(),
        (x, DataType::Decimal128(_, _)) if x.is_integer() => b.clone(),
        (x, y) if x.is_numeric() && y.is_numeric() => DataType::Float64,
        (x, y) if is_text(x) && is_text(y) => DataType::Utf8,
        (x, y) if is_temporal(x) && is_text(y) => x.clone(),
        (x, y) if is_text(x) && is_temporal(y) => y.clone(),
        (DataType::Date32 | DataType::Date64, DataType::Timestamp(_, _)) => b.clone(),
        (DataType::Timestamp(_, _), DataType::Date32 | DataType::Date64) => a.clone(),
        _ => return None,
    })
}

/// A cast that fails on a value that does not convert (`CAST`, implicit conversions).
pub(crate) fn cast_strict(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(array, to, &options)
}

/// A cast that turns a value that does not convert into `NULL` (`TRY_CAST`).
pub(crate) fn cast_or_null(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    cast_with_options(array, to, &CastOptions::default())
}
