//! The function library: how a call is checked and evaluated, one module per family.
//!
//! Each family exposes `call(cx, name, args)`, which answers `None` for a name it does not own,
//! so adding a function touches one module. Arguments are evaluated to [`Value`]s first and
//! converted to the type a function takes with the same implicit conversions as operators.

pub(crate) mod conditional;
pub(crate) mod json;
pub(crate) mod math;
pub(crate) mod string;
pub(crate) mod time;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use arrow_schema::{ArrowError, DataType};
use sqlparser::ast::{
    CeilFloorKind, DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
};

use crate::ExprError;
use crate::eval::Cx;
use crate::types::{cast_strict, is_text};
use crate::value::Value;

/// The longest text value a function builds (`REPEAT`, `LPAD`, `RPAD`, `CONCAT`…): 1 MiB, so
/// an expression cannot make one row take the memory of a whole batch.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The most text the functions of one expression (or one projection, all its columns together)
/// build for one batch: 64 MiB, the size of the most output one call of an agent may return
/// (`limits.max_output_mb`). Checked before the text is built, so a query of values under
/// [`MAX_TEXT_BYTES`] each cannot make a batch of them take gigabytes, sandboxed or not.
pub const MAX_BATCH_TEXT_BYTES: usize = 64 << 20;

/// Aggregates, which are not row expressions.
const AGGREGATES: &[&str] = &[
    "SUM",
    "COUNT",
    "AVG",
    "MIN",
    "MAX",
    "FIRST_VALUE",
    "LAST_VALUE",
    "STDDEV",
    "VARIANCE",
    "LISTAGG",
    "ARRAY_AGG",
];

/// Functions of the wall clock, which would give another answer when a pipeline replays.
const PROCESSING_TIME: &[&str] = &[
    "NOW",
    "CURRENT_TIMESTAMP",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "LOCALTIMESTAMP",
    "LOCALTIME",
    "PROCTIME",
    "RANDOM",
    "RAND",
    "UUID",
];

/// Evaluates a function call or one of SQL's function-like forms (`SUBSTRING(s FROM 2)`,
/// `TRIM(LEADING 'x' FROM s)`, `POSITION(a IN b)`, `EXTRACT(HOUR FROM ts)`, `CEIL`, `FLOOR`).
pub(crate) fn eval(cx: &Cx<'_>, expr: &Expr) -> Result<Value, ExprError> {
    match expr {
        Expr::Function(f) => call(cx, f),
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![expr.as_ref().clone()];
            args.extend(substring_from.as_deref().cloned());
            if let Some(length) = substring_for {
                if args.len() == 1 {
                    args.push(one());
                }
                args.push(length.as_ref().clone());
            }
            string::call(cx, "SUBSTRING", &args).expect("SUBSTRING is a string function")
        }
        Expr::Trim {
            trim_where,
            trim_what,
            expr,
            trim_characters,
        } => string::trim(
            cx,
            trim_where.as_ref(),
            trim_what.as_deref(),
            expr,
            trim_characters.as_deref(),
        ),
        Expr::Position { expr, r#in } => {
            string::call(cx, "POSITION", &[*r#in.clone(), *expr.clone()])
                .expect("POSITION is a string function")
        }
        Expr::Extract { field, expr, .. } => time::extract(cx, field, expr),
        Expr::Ceil { expr, field } => ceil_floor(cx, "CEIL", expr, field),
        Expr::Floor { expr, field } => ceil_floor(cx, "FLOOR", expr, field),
        other => Err(cx.unsupported(format!("`{other}`"))),
    }
}

fn one() -> Expr {
    Expr::value(sqlparser::ast::Value::Number("1".into(), false))
}

fn ceil_floor(
    cx: &Cx<'_>,
    name: &str,
    expr: &Expr,
    field: &CeilFloorKind,
) -> Result<Value, ExprError> {
    match field {
        CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {
            math::call(cx, name, std::slice::from_ref(expr)).expect("CEIL/FLOOR are math functions")
        }
        CeilFloorKind::DateTimeField(unit) => time::round_to(cx, name == "CEIL", expr, unit),
        CeilFloorKind::Scale(_) => Err(cx.unsupported(format!(
            "{name} with a scale (use ROUND(x, digits) or TRUNC(x, digits))"
        ))),
    }
}

fn call(cx: &Cx<'_>, f: &Function) -> Result<Value, ExprError> {
    let name = f.name.to_string().to_ascii_uppercase();
    if f.over.is_some() {
        return Err(cx.unsupported(format!(
            "the window function `{f}` (OVER): aggregate over windows with a window operator"
        )));
    }
    if f.filter.is_some() || !f.within_group.is_empty() {
        return Err(cx.unsupported(format!("`{f}`: FILTER and WITHIN GROUP")));
    }
    let args: Vec<Expr> = match &f.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::Subquery(_) => {
            return Err(cx.unsupported(format!("a sub-query as the argument of `{name}`")));
        }
        FunctionArguments::List(list) => {
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return Err(cx.unsupported(format!(
                    "`{f}`: DISTINCT, ORDER BY and other clauses in a call"
                )));
            }
            list.args
                .iter()
                .map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    other => Err(cx.unsupported(format!("the argument `{other}` of `{name}`"))),
                })
                .collect::<Result<_, _>>()?
        }
    };
    if AGGREGATES.contains(&name.as_str()) {
        return Err(cx.unsupported(format!(
            "the aggregate `{f}` in a row expression: aggregate with a window operator (builtin:window) or GROUP BY in SQL"
        )));
    }
    if PROCESSING_TIME.contains(&name.as_str()) {
        return Err(cx.unsupported(format!(
            "`{name}`: its value would differ when a pipeline replays after a failure, breaking exactly-once results; use an event-time column"
        )));
    }
    string::call(cx, &name, &args)
        .or_else(|| math::call(cx, &name, &args))
        .or_else(|| conditional::call(cx, &name, &args))
        .or_else(|| time::call(cx, &name, &args))
        .or_else(|| json::call(cx, &name, &args))
        .unwrap_or_else(|| {
            Err(cx.unsupported(format!(
                "the function `{name}` (the README's \"Expressions\" section lists the functions)"
            )))
        })
}

/// Whether `name` is a function of this library (or an aggregate, or a wall-clock function it
/// refuses): the names a user-defined function cannot take, so that a call means one thing.
pub fn is_function(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    if AGGREGATES.contains(&name.as_str()) || PROCESSING_TIME.contains(&name.as_str()) {
        return true;
    }
    let batch =
        arrow_array::RecordBatch::new_empty(std::sync::Arc::new(arrow_schema::Schema::empty()));
    let built = std::cell::Cell::new(0);
    let cx = Cx {
        text: &name,
        batch: &batch,
        built: &built,
    };
    // A family answers `None` only for a name it does not own, whatever the arguments.
    string::call(&cx, &name, &[]).is_some()
        || math::call(&cx, &name, &[]).is_some()
        || conditional::call(&cx, &name, &[]).is_some()
        || time::call(&cx, &name, &[]).is_some()
        || json::call(&cx, &name, &[]).is_some()
}

/// Checks the number of arguments a function got.
pub(crate) fn arity(
    cx: &Cx<'_>,
    name: &str,
    args: &[Expr],
    min: usize,
    max: usize,
) -> Result<(), ExprError> {
    if (min..=max).contains(&args.len()) {
        return Ok(());
    }
    let expected = match (min, max) {
        (a, b) if a == b => format!("{a}"),
        (a, usize::MAX) => format!("at least {a}"),
        (a, b) if b == a + 1 => format!("{a} or {b}"),
        (a, b) => format!("{a} to {b}"),
    };
    Err(cx.type_error(format!(
        "{name} takes {expected} argument{}, got {}",
        if max == 1 && min == 1 { "" } else { "s" },
        args.len()
    )))
}

/// Evaluates every argument.
pub(crate) fn values(cx: &Cx<'_>, args: &[Expr]) -> Result<Vec<Value>, ExprError> {
    args.iter().map(|a| cx.eval(a)).collect()
}

/// Argument `i` (0-based) of `name` converted to `to`, when its type is one `accepts` (or
/// `NULL`); otherwise a type error saying it must be `what`.
fn converted_arg(
    cx: &Cx<'_>,
    (name, i): (&str, usize),
    v: Value,
    accepts: impl Fn(&DataType) -> bool,
    (to, what): (DataType, &str),
) -> Result<Value, ExprError> {
    let t = v.data_type();
    if t == to {
        return Ok(v);
    }
    if !(accepts(&t) || t == DataType::Null) {
        return Err(cx.type_error(format!(
            "argument {} of {name} must be {what}, got {t}",
            i + 1
        )));
    }
    v.map(|a| cast_strict(a, &to)).map_err(|e| cx.arrow(e))
}

/// Argument `i` (0-based) of `name` as text; any type converts when `any` is set (`CONCAT`).
pub(crate) fn text_arg(
    cx: &Cx<'_>,
    name: &str,
    i: usize,
    v: Value,
    any: bool,
) -> Result<Value, ExprError> {
    converted_arg(
        cx,
        (name, i),
        v,
        |t| any || is_text(t),
        (DataType::Utf8, "text"),
    )
}

/// Argument `i` of `name` as a 64-bit integer.
pub(crate) fn int_arg(cx: &Cx<'_>, name: &str, i: usize, v: Value) -> Result<Value, ExprError> {
    converted_arg(
        cx,
        (name, i),
        v,
        DataType::is_integer,
        (DataType::Int64, "an integer"),
    )
}

/// Argument `i` of `name` as a double.
pub(crate) fn float_arg(cx: &Cx<'_>, name: &str, i: usize, v: Value) -> Result<Value, ExprError> {
    converted_arg(
        cx,
        (name, i),
        v,
        DataType::is_numeric,
        (DataType::Float64, "a number"),
    )
}

/// The constant text argument `i` of `name` (a unit, a JSON path, a format): checked to be
/// text and a constant; empty when `NULL`.
pub(crate) fn constant_text_arg(
    cx: &Cx<'_>,
    name: &str,
    i: usize,
    v: Value,
) -> Result<String, ExprError> {
    let v = text_arg(cx, name, i, v, false)?;
    Ok(constant_text(cx, name, i, &v)?.unwrap_or_default())
}

/// The constant text of argument `i`, for arguments that configure a function (a unit, a JSON
/// path, a format) rather than vary by row.
pub(crate) fn constant_text(
    cx: &Cx<'_>,
    name: &str,
    i: usize,
    v: &Value,
) -> Result<Option<String>, ExprError> {
    if !v.is_scalar() {
        return Err(cx.type_error(format!(
            "argument {} of {name} must be a constant, not a column",
            i + 1
        )));
    }
    let a = cast_strict(v.array(), &DataType::Utf8).map_err(|e| cx.arrow(e))?;
    let s = strs(&a);
    Ok((!s.is_empty() && s.is_valid(0)).then(|| s.value(0).to_owned()))
}

pub(crate) fn strs(a: &ArrayRef) -> &StringArray {
    a.as_any()
        .downcast_ref::<StringArray>()
        .expect("argument converted to Utf8")
}

pub(crate) fn ints(a: &ArrayRef) -> &Int64Array {
    a.as_any()
        .downcast_ref::<Int64Array>()
        .expect("argument converted to Int64")
}

pub(crate) fn floats(a: &ArrayRef) -> &Float64Array {
    a.as_any()
        .downcast_ref::<Float64Array>()
        .expect("argument converted to Float64")
}

/// A failure of a function on one row's values.
pub(crate) fn row_error(cx: &Cx<'_>, message: String) -> ExprError {
    cx.arrow(ArrowError::ComputeError(message))
}
