//! Numeric functions. Integers stay integers where the result is exact (`ABS`, `SIGN`, `CEIL`,
//! `FLOOR`, `ROUND` of an integer); everything else computes in `DOUBLE` and follows IEEE 754
//! (`SQRT(-1)` is `NaN`, `LN(0)` is `-Infinity`) rather than failing a batch.

use std::sync::Arc;

use arrow_arith::numeric;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array};
use arrow_schema::{ArrowError, DataType};
use sqlparser::ast::Expr;

use super::{arity, float_arg, floats, int_arg, ints, values};
use crate::ExprError;
use crate::eval::Cx;
use crate::types::cast_strict;
use crate::value::{Aligned, Value, binary};

pub(crate) fn call(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Option<Result<Value, ExprError>> {
    let unary: Option<fn(f64) -> f64> = match name {
        "SQRT" => Some(f64::sqrt),
        "CBRT" => Some(f64::cbrt),
        "EXP" => Some(f64::exp),
        "LN" => Some(f64::ln),
        "LOG10" => Some(f64::log10),
        "LOG2" => Some(f64::log2),
        "SIN" => Some(f64::sin),
        "COS" => Some(f64::cos),
        "TAN" => Some(f64::tan),
        "ASIN" => Some(f64::asin),
        "ACOS" => Some(f64::acos),
        "ATAN" => Some(f64::atan),
        "DEGREES" => Some(f64::to_degrees),
        "RADIANS" => Some(f64::to_radians),
        _ => None,
    };
    if let Some(f) = unary {
        return Some(float_unary(cx, name, args, f));
    }
    Some(match name {
        "ABS" | "SIGN" => abs_sign(cx, name, args),
        "CEIL" | "CEILING" | "FLOOR" => ceil_floor(cx, name, args),
        "ROUND" | "TRUNC" | "TRUNCATE" => round(cx, name, args),
        "POWER" | "POW" | "ATAN2" | "LOG" => float_binary(cx, name, args),
        "MOD" => modulo(cx, name, args),
        "PI" => arity(cx, name, args, 0, 0)
            .map(|()| Value::Scalar(Arc::new(Float64Array::from(vec![std::f64::consts::PI])))),
        _ => return None,
    })
}

fn one_value(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 1)?;
    cx.eval(&args[0])
}

fn float_unary(
    cx: &Cx<'_>,
    name: &str,
    args: &[Expr],
    f: fn(f64) -> f64,
) -> Result<Value, ExprError> {
    let v = float_arg(cx, name, 0, one_value(cx, name, args)?)?;
    v.map(|a| Ok(Arc::new(floats(a).unary::<_, Float64Type>(f)) as ArrayRef))
        .map_err(|e| cx.arrow(e))
}

fn abs_sign(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    let v = one_value(cx, name, args)?;
    let abs = name == "ABS";
    if v.data_type().is_integer() {
        let v = int_arg(cx, name, 0, v)?;
        return v
            .map(|a| {
                let out: Int64Array = if abs {
                    ints(a).try_unary::<_, Int64Type, _>(|x| {
                        x.checked_abs().ok_or_else(|| {
                            ArrowError::ComputeError(format!("ABS({x}) overflows BIGINT"))
                        })
                    })?
                } else {
                    ints(a).unary::<_, Int64Type>(i64::signum)
                };
                Ok(Arc::new(out) as ArrayRef)
            })
            .map_err(|e| cx.arrow(e));
    }
    let v = float_arg(cx, name, 0, v)?;
    let f: fn(f64) -> f64 = if abs {
        f64::abs
    } else {
        |x| {
            if x == 0.0 || x.is_nan() {
                x
            } else {
                x.signum()
            }
        }
    };
    v.map(|a| Ok(Arc::new(floats(a).unary::<_, Float64Type>(f)) as ArrayRef))
        .map_err(|e| cx.arrow(e))
}

fn ceil_floor(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    let v = one_value(cx, name, args)?;
    if v.data_type().is_integer() {
        return int_arg(cx, name, 0, v);
    }
    let f: fn(f64) -> f64 = if name == "FLOOR" {
        f64::floor
    } else {
        f64::ceil
    };
    float_unary_value(cx, name, v, f)
}

fn float_unary_value(
    cx: &Cx<'_>,
    name: &str,
    v: Value,
    f: fn(f64) -> f64,
) -> Result<Value, ExprError> {
    let v = float_arg(cx, name, 0, v)?;
    v.map(|a| Ok(Arc::new(floats(a).unary::<_, Float64Type>(f)) as ArrayRef))
        .map_err(|e| cx.arrow(e))
}

/// `ROUND(x [, digits])` rounds half away from zero; `TRUNC(x [, digits])` towards zero.
/// Negative digits round to tens, hundreds….
fn round(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 2)?;
    let mut vals = values(cx, args)?;
    let digits = (vals.len() == 2)
        .then(|| vals.pop().expect("two"))
        .map(|d| int_arg(cx, name, 1, d))
        .transpose()?;
    let v = vals.pop().expect("arity");
    let integer = v.data_type().is_integer();
    if integer && digits.is_none() {
        return int_arg(cx, name, 0, v);
    }
    let v = float_arg(cx, name, 0, v)?;
    let digits = match digits {
        Some(d) => d,
        None => Value::Scalar(Arc::new(Int64Array::from(vec![0]))),
    };
    let a = Aligned::new(vec![v, digits], cx.rows()).map_err(|e| cx.arrow(e))?;
    let (x, d) = (floats(&a.arrays[0]), ints(&a.arrays[1]));
    let truncate = name != "ROUND";
    let out: Float64Array = (0..a.len())
        .map(|i| {
            if x.is_null(i) || d.is_null(i) {
                return None;
            }
            let scale = 10f64.powi(d.value(i).clamp(-308, 308) as i32);
            let scaled = x.value(i) * scale;
            let r = if truncate {
                scaled.trunc()
            } else {
                scaled.round()
            };
            Some(if scale.is_finite() && r.is_finite() {
                r / scale
            } else {
                x.value(i)
            })
        })
        .collect();
    let out = a.finish(Arc::new(out));
    if integer {
        // An integer rounded to tens stays an integer.
        return out
            .map(|a| cast_strict(a, &DataType::Int64))
            .map_err(|e| cx.arrow(e));
    }
    Ok(out)
}

/// `POWER(x, y)`, `ATAN2(y, x)`, `LOG(base, x)` (and `LOG(x)`, base 10).
fn float_binary(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    if name == "LOG" && args.len() == 1 {
        return float_unary(cx, name, args, f64::log10);
    }
    arity(cx, name, args, 2, 2)?;
    let vals = values(cx, args)?;
    let [x, y] = <[Value; 2]>::try_from(vals).expect("arity");
    let a = Aligned::new(
        vec![float_arg(cx, name, 0, x)?, float_arg(cx, name, 1, y)?],
        cx.rows(),
    )
    .map_err(|e| cx.arrow(e))?;
    let f: fn(f64, f64) -> f64 = match name {
        "ATAN2" => f64::atan2,
        "LOG" => |base, x| x.log(base),
        _ => f64::powf,
    };
    let out = arrow_arith::arity::binary::<_, _, _, Float64Type>(
        floats(&a.arrays[0]),
        floats(&a.arrays[1]),
        f,
    )
    .map_err(|e| cx.arrow(e))?;
    Ok(a.finish(Arc::new(out)))
}

/// `MOD(a, b)`: the remainder, as `a % b`.
fn modulo(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let vals = values(cx, args)?;
    let [a, b] = <[Value; 2]>::try_from(vals).expect("arity");
    for (i, v) in [&a, &b].into_iter().enumerate() {
        let t = v.data_type();
        if !(t.is_numeric() || t == DataType::Null) {
            return Err(cx.type_error(format!(
                "argument {} of {name} must be a number, got {t}",
                i + 1
            )));
        }
    }
    let (a, b) = cx.coerce(a, b, name)?;
    binary(&a, &b, numeric::rem).map_err(|e| cx.arrow(e))
}
