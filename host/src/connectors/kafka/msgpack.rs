//! MessagePack records ↔ Arrow columns, directly: each record is a map from column name to
//! value, read into (and written from) the columns' own builders, with no value tree between.
//!
//! | Arrow | MessagePack |
//! |---|---|
//! | bool | bool |
//! | int8 … uint64 | int (any width that holds the value) |
//! | float32, float64 | float 32/64 (an int is taken too) |
//! | utf8 | str |
//! | binary | bin (a str is taken too) |
//! | timestamp\[s, ms, us, ns\], date | the timestamp extension (type −1), to the nanosecond; an int is taken as the column's unit (days for a date) |
//!
//! A null is `nil`, and a column missing from a record's map is null; keys that are not columns
//! are skipped.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use rmp::Marker;

/// How deep a skipped value may nest (a hostile record cannot recurse the decoder away).
const MAX_DEPTH: usize = 64;

/// The extension type of MessagePack timestamps.
const TIMESTAMP_EXT: i8 = -1;

/// One value read from a record.
enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    /// A timestamp: seconds and nanoseconds since the epoch.
    Time(i64, u32),
    /// Anything else (an array, a map, another extension), already skipped.
    Other(&'static str),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bin(_) => "binary",
            Value::Time(..) => "a timestamp",
            Value::Other(kind) => kind,
        }
    }
}

/// Reads bytes off the front of a record.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "not MessagePack: the record ends {} bytes early",
                n - self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn be<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn len(&mut self, width: usize) -> Result<usize, String> {
        Ok(match width {
            1 => self.u8()? as usize,
            2 => u16::from_be_bytes(self.be()?) as usize,
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn marker(&mut self) -> Result<Marker, String> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// The next value; arrays, maps and unknown extensions are skipped whole.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, String> {
        let m = self.marker()?;
        Ok(match m {
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::Int(n.into()),
            Marker::FixNeg(n) => Value::Int(n.into()),
            Marker::U8 => Value::Int(self.u8()?.into()),
            Marker::U16 => Value::Int(u16::from_be_bytes(self.be()?).into()),
            Marker::U32 => Value::Int(u32::from_be_bytes(self.be()?).into()),
            Marker::U64 => Value::Int(u64::from_be_bytes(self.be()?).into()),
            Marker::I8 => Value::Int(i8::from_be_bytes(self.be()?).into()),
            Marker::I16 => Value::Int(i16::from_be_bytes(self.be()?).into()),
            Marker::I32 => Value::Int(i32::from_be_bytes(self.be()?).into()),
            Marker::I64 => Value::Int(i64::from_be_bytes(self.be()?).into()),
            Marker::F32 => Value::Float(f32::from_be_bytes(self.be()?).into()),
            Marker::F64 => Value::Float(f64::from_be_bytes(self.be()?)),
            Marker::FixStr(n) => Value::Str(self.take(n.into())?),
            Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let n = self.len(width(m))?;
                Value::Str(self.take(n)?)
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let n = self.len(width(m))?;
                Value::Bin(self.take(n)?)
            }
            Marker::FixArray(n) => self.skip_items(n.into(), depth, "an array")?,
            Marker::Array16 | Marker::Array32 => {
                let n = self.len(width(m))?;
                self.skip_items(n, depth, "an array")?
            }
            Marker::FixMap(n) => self.skip_items(2 * usize::from(n), depth, "a map")?,
            Marker::Map16 | Marker::Map32 => {
                let n = self.len(width(m))?;
                self.skip_items(2 * n, depth, "a map")?
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16 => {
                let n = match m {
                    Marker::FixExt1 => 1,
                    Marker::FixExt2 => 2,
                    Marker::FixExt4 => 4,
                    Marker::FixExt8 => 8,
                    _ => 16,
                };
                self.ext(n)?
            }
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let n = self.len(width(m))?;
                self.ext(n)?
            }
            Marker::Reserved => return Err("not MessagePack: a reserved byte (0xc1)".into()),
        })
    }

    fn skip_items(
        &mut self,
        n: usize,
        depth: usize,
        kind: &'static str,
    ) -> Result<Value<'a>, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        for _ in 0..n {
            self.value(depth + 1)?;
        }
        Ok(Value::Other(kind))
    }

    fn ext(&mut self, n: usize) -> Result<Value<'a>, String> {
        let ty = i8::from_be_bytes(self.be()?);
        let data = self.take(n)?;
        if ty != TIMESTAMP_EXT {
            return Ok(Value::Other("an extension value"));
        }
        Ok(match data.len() {
            4 => Value::Time(u32::from_be_bytes(data.try_into().expect("4")).into(), 0),
            8 => {
                let v = u64::from_be_bytes(data.try_into().expect("8"));
                Value::Time((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
            }
            12 => Value::Time(
                i64::from_be_bytes(data[4..].try_into().expect("8")),
                u32::from_be_bytes(data[..4].try_into().expect("4")),
            ),
            other => {
                return Err(format!(
                    "a timestamp extension of {other} bytes (expected 4, 8 or 12)"
                ));
            }
        })
    }
}

fn width(m: Marker) -> usize {
    match m {
        Marker::Str8 | Marker::Bin8 | Marker::Ext8 => 1,
        Marker::Str16 | Marker::Bin16 | Marker::Ext16 | Marker::Array16 | Marker::Map16 => 2,
        _ => 4,
    }
}

/// The builder of one column.
enum Builder {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    /// Values in the column's unit, made a timestamp array at the end.
    Time(TimeUnit, Int64Builder),
}

impl Builder {
    fn new(ty: &DataType) -> Option<Self> {
        Some(match ty {
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Int8 => Builder::I8(Int8Builder::new()),
            DataType::Int16 => Builder::I16(Int16Builder::new()),
            DataType::Int32 => Builder::I32(Int32Builder::new()),
            DataType::Int64 => Builder::I64(Int64Builder::new()),
            DataType::UInt8 => Builder::U8(UInt8Builder::new()),
            DataType::UInt16 => Builder::U16(UInt16Builder::new()),
            DataType::UInt32 => Builder::U32(UInt32Builder::new()),
            DataType::UInt64 => Builder::U64(UInt64Builder::new()),
            DataType::Float32 => Builder::F32(Float32Builder::new()),
            DataType::Float64 => Builder::F64(Float64Builder::new()),
            DataType::Utf8 => Builder::Utf8(StringBuilder::new()),
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            DataType::Date32 => Builder::Date(Date32Builder::new()),
            DataType::Timestamp(unit, _) => Builder::Time(*unit, Int64Builder::new()),
            _ => return None,
        })
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I8(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::U8(b) => b.append_null(),
            Builder::U16(b) => b.append_null(),
            Builder::U32(b) => b.append_null(),
            Builder::U64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(_, b) => b.append_null(),
        }
    }

    /// Appends `v`, or says what was expected.
    fn append(&mut self, v: &Value<'_>, ty: &DataType) -> Result<(), String> {
        fn int<T: TryFrom<i128>>(v: &Value<'_>) -> Option<T> {
            match v {
                Value::Int(i) => T::try_from(*i).ok(),
                _ => None,
            }
        }
        if matches!(v, Value::Nil) {
            self.append_null();
            return Ok(());
        }
        let ok = match self {
            Builder::Bool(b) => matches!(v, Value::Bool(x) if { b.append_value(*x); true }),
            Builder::I8(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::I16(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::I32(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::I64(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::U8(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::U16(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::U32(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::U64(b) => int(v).map(|x| b.append_value(x)).is_some(),
            Builder::F32(b) => match v {
                Value::Float(x) => {
                    b.append_value(*x as f32);
                    true
                }
                Value::Int(i) => {
                    b.append_value(*i as f32);
                    true
                }
                _ => false,
            },
            Builder::F64(b) => match v {
                Value::Float(x) => {
                    b.append_value(*x);
                    true
                }
                Value::Int(i) => {
                    b.append_value(*i as f64);
                    true
                }
                _ => false,
            },
            Builder::Utf8(b) => match v {
                Value::Str(s) => {
                    let s = std::str::from_utf8(s)
                        .map_err(|_| "a string that is not UTF-8".to_owned())?;
                    b.append_value(s);
                    true
                }
                _ => false,
            },
            Builder::Binary(b) => match v {
                Value::Bin(s) | Value::Str(s) => {
                    b.append_value(s);
                    true
                }
                _ => false,
            },
            Builder::Date(b) => match v {
                Value::Time(secs, _) => {
                    b.append_value(secs.div_euclid(86_400) as i32);
                    true
                }
                Value::Int(_) => int(v).map(|x| b.append_value(x)).is_some(),
                _ => false,
            },
            Builder::Time(unit, b) => match v {
                Value::Time(secs, nanos) => {
                    let per = per_second(*unit);
                    let in_unit = i128::from(*secs) * i128::from(per)
                        + i128::from(*nanos) / i128::from(1_000_000_000 / per);
                    match i64::try_from(in_unit) {
                        Ok(x) => {
                            b.append_value(x);
                            true
                        }
                        Err(_) => false,
                    }
                }
                Value::Int(_) => int(v).map(|x| b.append_value(x)).is_some(),
                _ => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected {}, got {}", expected(ty), v.kind()))
        }
    }

    fn finish(self, ty: &DataType) -> ArrayRef {
        match self {
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::I8(mut b) => Arc::new(b.finish()),
            Builder::I16(mut b) => Arc::new(b.finish()),
            Builder::I32(mut b) => Arc::new(b.finish()),
            Builder::I64(mut b) => Arc::new(b.finish()),
            Builder::U8(mut b) => Arc::new(b.finish()),
            Builder::U16(mut b) => Arc::new(b.finish()),
            Builder::U32(mut b) => Arc::new(b.finish()),
            Builder::U64(mut b) => Arc::new(b.finish()),
            Builder::F32(mut b) => Arc::new(b.finish()),
            Builder::F64(mut b) => Arc::new(b.finish()),
            Builder::Utf8(mut b) => Arc::new(b.finish()),
            Builder::Binary(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Time(_, mut b) => {
                let values = b.finish();
                arrow_cast::cast(&values, ty).expect("int64 casts to a timestamp")
            }
        }
    }
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn expected(ty: &DataType) -> String {
    match ty {
        DataType::Boolean => "a boolean".into(),
        DataType::Float32 | DataType::Float64 => format!("a number ({ty})"),
        DataType::Utf8 => "a string".into(),
        DataType::Binary => "binary (or a string)".into(),
        DataType::Date32 => "a timestamp or a number of days".into(),
        DataType::Timestamp(unit, _) => format!("a timestamp or an integer of {unit:?}s"),
        _ => format!("an integer that fits {ty}"),
    }
}

/// Decodes `records` (each a map) into a batch of `schema`; the error names the record's index
/// and, where it is one column's value, the column.
pub(super) fn decode(
    schema: &SchemaRef,
    records: &[&[u8]],
) -> Result<RecordBatch, (usize, String)> {
    let mut builders: Vec<Builder> = schema
        .fields()
        .iter()
        .map(|f| {
            Builder::new(f.data_type()).ok_or_else(|| {
                (
                    0,
                    format!(
                        "column `{}` of type {} is not read from MessagePack",
                        f.name(),
                        f.data_type()
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut seen = vec![false; builders.len()];
    for (index, bytes) in records.iter().enumerate() {
        let mut r = Reader { bytes };
        let fail = |m: String| (index, m);
        let entries = match r.marker().map_err(fail)? {
            Marker::FixMap(n) => usize::from(n),
            m @ (Marker::Map16 | Marker::Map32) => r.len(width(m)).map_err(fail)?,
            _ => {
                return Err((
                    index,
                    "expected a map of the schema's columns (not MessagePack, or another value)"
                        .into(),
                ));
            }
        };
        seen.iter_mut().for_each(|s| *s = false);
        for _ in 0..entries {
            let key = match r.value(0).map_err(fail)? {
                Value::Str(k) => k,
                other => {
                    return Err((
                        index,
                        format!("a map key is {}, not a string", other.kind()),
                    ));
                }
            };
            let column = schema
                .fields()
                .iter()
                .position(|f| f.name().as_bytes() == key);
            let value = r.value(0).map_err(fail)?;
            let Some(c) = column else { continue };
            if seen[c] {
                return Err((
                    index,
                    format!("column `{}` appears twice", schema.field(c).name()),
                ));
            }
            seen[c] = true;
            let field = schema.field(c);
            builders[c]
                .append(&value, field.data_type())
                .map_err(|m| (index, format!("column `{}`: {m}", field.name())))?;
        }
        if !r.bytes.is_empty() {
            return Err((index, format!("{} bytes follow the map", r.bytes.len())));
        }
        for (c, seen) in seen.iter().enumerate() {
            if !seen {
                builders[c].append_null();
            }
        }
    }
    let columns = builders
        .into_iter()
        .zip(schema.fields())
        .map(|(b, f)| b.finish(f.data_type()))
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| (0, e.to_string()))
}

/// Whether every column of `schema` is written column-wise (see the table above); a batch with
/// other types (lists, structs, decimals…) is written through JSON values.
pub(super) fn writes(schema: &arrow_schema::Schema) -> bool {
    schema.fields().iter().all(|f| {
        matches!(
            f.data_type(),
            DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Date32
                | DataType::Timestamp(..)
        )
    })
}

/// Each row of `batch` as one MessagePack map (every column, `nil` for a null). Only for
/// batches [`writes`] accepts.
pub(super) fn encode(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
    use arrow_array::types::*;
    let schema = batch.schema();
    let mut rows: Vec<Vec<u8>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(64))
        .collect();
    let io = |e: std::io::Error| e.to_string();
    let value_err = |e: rmp::encode::ValueWriteError| e.to_string();
    for row in &mut rows {
        rmp::encode::write_map_len(row, schema.fields().len() as u32).map_err(value_err)?;
    }
    // Column by column: each row's map gets the column's key and value in turn.
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let column = column.as_ref();
        for (i, out) in rows.iter_mut().enumerate() {
            rmp::encode::write_str(out, field.name()).map_err(value_err)?;
            if column.is_null(i) {
                rmp::encode::write_nil(out).map_err(io)?;
                continue;
            }
            match column.data_type() {
                DataType::Boolean => {
                    rmp::encode::write_bool(out, column.as_boolean().value(i)).map_err(io)?
                }
                DataType::Int8 => drop(
                    rmp::encode::write_sint(out, column.as_primitive::<Int8Type>().value(i).into())
                        .map_err(value_err)?,
                ),
                DataType::Int16 => drop(
                    rmp::encode::write_sint(
                        out,
                        column.as_primitive::<Int16Type>().value(i).into(),
                    )
                    .map_err(value_err)?,
                ),
                DataType::Int32 => drop(
                    rmp::encode::write_sint(
                        out,
                        column.as_primitive::<Int32Type>().value(i).into(),
                    )
                    .map_err(value_err)?,
                ),
                DataType::Int64 => drop(
                    rmp::encode::write_sint(out, column.as_primitive::<Int64Type>().value(i))
                        .map_err(value_err)?,
                ),
                DataType::UInt8 => drop(
                    rmp::encode::write_uint(
                        out,
                        column.as_primitive::<UInt8Type>().value(i).into(),
                    )
                    .map_err(value_err)?,
                ),
                DataType::UInt16 => drop(
                    rmp::encode::write_uint(
                        out,
                        column.as_primitive::<UInt16Type>().value(i).into(),
                    )
                    .map_err(value_err)?,
                ),
                DataType::UInt32 => drop(
                    rmp::encode::write_uint(
                        out,
                        column.as_primitive::<UInt32Type>().value(i).into(),
                    )
                    .map_err(value_err)?,
                ),
                DataType::UInt64 => drop(
                    rmp::encode::write_uint(out, column.as_primitive::<UInt64Type>().value(i))
                        .map_err(value_err)?,
                ),
                DataType::Float32 => {
                    rmp::encode::write_f32(out, column.as_primitive::<Float32Type>().value(i))
                        .map_err(value_err)?
                }
                DataType::Float64 => {
                    rmp::encode::write_f64(out, column.as_primitive::<Float64Type>().value(i))
                        .map_err(value_err)?
                }
                DataType::Utf8 => rmp::encode::write_str(out, column.as_string::<i32>().value(i))
                    .map_err(value_err)?,
                DataType::LargeUtf8 => {
                    rmp::encode::write_str(out, column.as_string::<i64>().value(i))
                        .map_err(value_err)?
                }
                DataType::Utf8View => rmp::encode::write_str(out, column.as_string_view().value(i))
                    .map_err(value_err)?,
                DataType::Binary => rmp::encode::write_bin(out, column.as_binary::<i32>().value(i))
                    .map_err(value_err)?,
                DataType::LargeBinary => {
                    rmp::encode::write_bin(out, column.as_binary::<i64>().value(i))
                        .map_err(value_err)?
                }
                DataType::BinaryView => {
                    rmp::encode::write_bin(out, column.as_binary_view().value(i))
                        .map_err(value_err)?
                }
                DataType::Date32 => {
                    let days = column.as_primitive::<Date32Type>().value(i);
                    write_time(out, i64::from(days) * 86_400, 0)?;
                }
                DataType::Timestamp(unit, _) => {
                    let v = match unit {
                        TimeUnit::Second => column.as_primitive::<TimestampSecondType>().value(i),
                        TimeUnit::Millisecond => {
                            column.as_primitive::<TimestampMillisecondType>().value(i)
                        }
                        TimeUnit::Microsecond => {
                            column.as_primitive::<TimestampMicrosecondType>().value(i)
                        }
                        TimeUnit::Nanosecond => {
                            column.as_primitive::<TimestampNanosecondType>().value(i)
                        }
                    };
                    let per = per_second(*unit);
                    let nanos = v.rem_euclid(per) * (1_000_000_000 / per);
                    write_time(out, v.div_euclid(per), nanos as u32)?;
                }
                other => {
                    return Err(format!(
                        "column `{}` of type {other} is not written column-wise",
                        field.name()
                    ));
                }
            }
        }
    }
    Ok(rows)
}

/// The timestamp extension (type −1), in its smallest form that holds the time.
fn write_time(out: &mut Vec<u8>, secs: i64, nanos: u32) -> Result<(), String> {
    let err = |e: rmp::encode::ValueWriteError| e.to_string();
    if secs >= 0 && secs >> 34 == 0 {
        if nanos == 0 && secs <= i64::from(u32::MAX) {
            rmp::encode::write_ext_meta(out, 4, TIMESTAMP_EXT).map_err(err)?;
            out.extend_from_slice(&(secs as u32).to_be_bytes());
        } else {
            rmp::encode::write_ext_meta(out, 8, TIMESTAMP_EXT).map_err(err)?;
            out.extend_from_slice(&((u64::from(nanos) << 34) | secs as u64).to_be_bytes());
        }
    } else {
        rmp::encode::write_ext_meta(out, 12, TIMESTAMP_EXT).map_err(err)?;
        out.extend_from_slice(&nanos.to_be_bytes());
        out.extend_from_slice(&secs.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BinaryArray, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow_schema::{Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("blob", DataType::Binary, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-7)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("ü"), None])),
                Arc::new(BinaryArray::from(vec![
                    Some(&[0u8, 255, 10][..]),
                    None,
                    Some(b""),
                ])),
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(1_767_225_600_123_456_789),
                    Some(-1),
                    None,
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn binary_and_timestamp_columns_round_trip_unchanged() {
        let b = batch();
        assert!(writes(&b.schema()));
        let rows = encode(&b).unwrap();
        let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let back = decode(&b.schema(), &refs).unwrap();
        assert_eq!(back, b);
        // On the wire: `blob` a bin 8 (0xc4), `at` the timestamp extension in 12 bytes (0xc7 12 −1:
        // nanoseconds, then seconds).
        let has = |needle: &[u8]| rows[0].windows(needle.len()).any(|w| w == needle);
        assert!(has(b"\xa4blob\xc4\x03\x00\xff\x0a"));
        assert!(has(b"\xa2at\xd7\xff") || has(b"\xa2at\xc7\x0c\xff"));
    }

    #[test]
    fn a_record_that_does_not_fit_is_named_by_index_and_column() {
        let b = batch();
        let mut rows = encode(&b).unwrap();
        rows[2] = rmp_serde::to_vec_named(&serde_json::json!({"id": "seven"})).unwrap();
        let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let (index, reason) = decode(&b.schema(), &refs).unwrap_err();
        assert_eq!(index, 2);
        assert!(
            reason.contains("column `id`") && reason.contains("a string"),
            "{reason}"
        );
        let (index, reason) = decode(&b.schema(), &[refs[0], &[0xc1][..]]).unwrap_err();
        assert_eq!(index, 1);
        assert!(reason.contains("expected a map"), "{reason}");
        let deep = [vec![0x81, 0xa1, b'x'], vec![0x91; 100], vec![0xc0]].concat();
        let (_, reason) = decode(&b.schema(), &[&deep]).unwrap_err();
        assert!(reason.contains("nested"), "{reason}");
    }
}
