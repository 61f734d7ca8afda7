//! Date and time functions. Times are computed in UTC at millisecond precision; a result has
//! the type of its input (`DATE_TRUNC` of a `DATE` is a `DATE`).

use std::sync::Arc;

use arrow_arith::temporal::{DatePart, date_part};
use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use arrow_schema::{DataType, TimeUnit};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, Months, NaiveDate};
use sqlparser::ast::{DateTimeField, Expr};

use super::{arity, constant_text_arg, float_arg, int_arg, ints, row_error, values};
use crate::ExprError;
use crate::eval::Cx;
use crate::types::{cast_strict, is_temporal, is_text};
use crate::value::{Aligned, Value};

const MILLIS_TYPE: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);
const DAY_MS: i64 = 86_400_000;

/// The units `DATE_TRUNC`, `FLOOR(… TO …)` and `CEIL(… TO …)` accept.
const UNITS: &str = "millisecond, second, minute, hour, day, week, month, quarter, year";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Fixed(i64),
    Week,
    Months(u32),
}

impl Unit {
    fn parse(name: &str) -> Option<Unit> {
        Some(match name.to_ascii_lowercase().trim_end_matches('s') {
            "millisecond" => Unit::Fixed(1),
            "second" => Unit::Fixed(1_000),
            "minute" => Unit::Fixed(60_000),
            "hour" => Unit::Fixed(3_600_000),
            "day" => Unit::Fixed(DAY_MS),
            "week" => Unit::Week,
            "month" => Unit::Months(1),
            "quarter" => Unit::Months(3),
            "year" => Unit::Months(12),
            _ => return None,
        })
    }

    /// The start of the unit that holds `ms`.
    fn truncate(self, ms: i64) -> Option<i64> {
        match self {
            Unit::Fixed(step) => Some(ms - ms.rem_euclid(step)),
            // 1970-01-01 was a Thursday; ISO weeks start on Monday.
            Unit::Week => {
                let day = ms.div_euclid(DAY_MS);
                Some((day - (day + 3).rem_euclid(7)) * DAY_MS)
            }
            Unit::Months(n) => {
                let date = DateTime::from_timestamp_millis(ms)?.date_naive();
                let month0 = date.month0() - date.month0() % n;
                let start = NaiveDate::from_ymd_opt(date.year(), month0 + 1, 1)?;
                Some(start.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
            }
        }
    }

    /// The start of the next unit after the one starting at `start`.
    fn advance(self, start: i64) -> Option<i64> {
        match self {
            Unit::Fixed(step) => start.checked_add(step),
            Unit::Week => start.checked_add(7 * DAY_MS),
            Unit::Months(n) => {
                let at = DateTime::from_timestamp_millis(start)?;
                Some(at.checked_add_months(Months::new(n))?.timestamp_millis())
            }
        }
    }
}

pub(crate) fn call(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Option<Result<Value, ExprError>> {
    Some(match name {
        "DATE_TRUNC" => date_trunc(cx, name, args),
        "TO_TIMESTAMP" => to_timestamp(cx, name, args),
        "TO_TIMESTAMP_MILLIS" | "TO_TIMESTAMP_SECONDS" => from_epoch(cx, name, args),
        "TO_CHAR" | "DATE_FORMAT" => to_char(cx, name, args),
        _ => return None,
    })
}

/// Refuses a value that is not a date or timestamp, saying how to convert it.
fn expect_temporal(cx: &Cx<'_>, name: &str, t: &DataType) -> Result<(), ExprError> {
    if is_temporal(t) || *t == DataType::Null {
        return Ok(());
    }
    let hint = if is_text(t) {
        " (convert text with CAST(x AS TIMESTAMP) or TO_TIMESTAMP(x))"
    } else if t.is_integer() {
        " (convert epoch numbers with TO_TIMESTAMP_MILLIS(x) or TO_TIMESTAMP_SECONDS(x))"
    } else {
        ""
    };
    Err(cx.type_error(format!("{name} needs a date or timestamp, got {t}{hint}")))
}

/// A temporal value as milliseconds since the epoch (`Int64`), with the type to return in.
fn millis(cx: &Cx<'_>, name: &str, v: Value) -> Result<(Value, DataType), ExprError> {
    let t = v.data_type();
    expect_temporal(cx, name, &t)?;
    let ms = v
        .map(|a| cast_strict(&cast_strict(a, &MILLIS_TYPE)?, &DataType::Int64))
        .map_err(|e| cx.arrow(e))?;
    Ok((ms, t))
}

/// Milliseconds since the epoch back to `to` (a timestamp of any unit, or a date).
fn from_millis(cx: &Cx<'_>, ms: Value, to: &DataType) -> Result<Value, ExprError> {
    ms.map(|a| {
        let ms = ints(a);
        match to {
            DataType::Date32 => {
                let days: Int32Array = ms.unary(|m| m.div_euclid(DAY_MS) as i32);
                cast_strict(&(Arc::new(days) as ArrayRef), to)
            }
            DataType::Timestamp(unit, _) => {
                let scale =
                    match unit {
                        TimeUnit::Second => {
                            return cast_strict(
                                &(Arc::new(ms.unary::<_, arrow_array::types::Int64Type>(|m| {
                                    m.div_euclid(1_000)
                                })) as ArrayRef),
                                to,
                            );
                        }
                        TimeUnit::Millisecond => 1,
                        TimeUnit::Microsecond => 1_000,
                        TimeUnit::Nanosecond => 1_000_000,
                    };
                let raw: Int64Array = ms.unary(|m| m.saturating_mul(scale));
                cast_strict(&(Arc::new(raw) as ArrayRef), to)
            }
            DataType::Null => Ok(a.clone()),
            _ => cast_strict(&cast_strict(a, &MILLIS_TYPE)?, to),
        }
    })
    .map_err(|e| cx.arrow(e))
}

fn map_millis(
    cx: &Cx<'_>,
    name: &str,
    v: Value,
    f: impl Fn(i64) -> Option<i64>,
) -> Result<Value, ExprError> {
    let (ms, to) = millis(cx, name, v)?;
    let out = ms
        .map(|a| {
            let out: Int64Array = ints(a)
                .iter()
                .map(|m| m.map(|m| f(m).ok_or(m)).transpose())
                .collect::<Result<_, i64>>()
                .map_err(|m| {
                    arrow_schema::ArrowError::ComputeError(format!(
                        "{name}: {m} ms since the epoch is out of range"
                    ))
                })?;
            Ok(Arc::new(out) as ArrayRef)
        })
        .map_err(|e| cx.arrow(e))?;
    from_millis(cx, out, &to)
}

/// `DATE_TRUNC('hour', ts)`: the start of the unit holding `ts`.
fn date_trunc(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let vals = values(cx, args)?;
    let [unit, v] = <[Value; 2]>::try_from(vals).expect("arity");
    let unit = constant_text_arg(cx, name, 0, unit)?;
    let unit = Unit::parse(&unit).ok_or_else(|| {
        cx.type_error(format!(
            "{name}: unknown unit '{unit}' (expected one of: {UNITS})"
        ))
    })?;
    map_millis(cx, name, v, |m| unit.truncate(m))
}

/// `FLOOR(ts TO HOUR)` and `CEIL(ts TO HOUR)`.
pub(crate) fn round_to(
    cx: &Cx<'_>,
    ceil: bool,
    expr: &Expr,
    field: &DateTimeField,
) -> Result<Value, ExprError> {
    let name = if ceil { "CEIL" } else { "FLOOR" };
    let unit = Unit::parse(&field.to_string()).ok_or_else(|| {
        cx.type_error(format!(
            "{name}: unknown unit {field} (expected one of: {UNITS})"
        ))
    })?;
    let v = cx.eval(expr)?;
    map_millis(cx, name, v, |m| {
        let start = unit.truncate(m)?;
        if ceil && start != m {
            unit.advance(start)
        } else {
            Some(start)
        }
    })
}

/// `EXTRACT(field FROM ts)`: a `BIGINT`, or for `EPOCH` the seconds since 1970 as a `DOUBLE`.
pub(crate) fn extract(cx: &Cx<'_>, field: &DateTimeField, expr: &Expr) -> Result<Value, ExprError> {
    use DateTimeField as F;
    let v = cx.eval(expr)?;
    if matches!(field, F::Epoch) {
        let (ms, _) = millis(cx, "EXTRACT", v)?;
        return ms
            .map(|a| {
                let out: Float64Array = ints(a).unary(|m| m as f64 / 1000.0);
                Ok(Arc::new(out) as ArrayRef)
            })
            .map_err(|e| cx.arrow(e));
    }
    let part = match field {
        F::Year | F::Years => DatePart::Year,
        F::Isoyear => DatePart::YearISO,
        F::Quarter => DatePart::Quarter,
        F::Month | F::Months => DatePart::Month,
        F::Week(None) | F::Weeks | F::IsoWeek => DatePart::WeekISO,
        F::Day | F::Days => DatePart::Day,
        F::DayOfWeek | F::Dow => DatePart::DayOfWeekSunday0,
        F::Isodow => DatePart::DayOfWeekMonday1,
        F::DayOfYear | F::Doy => DatePart::DayOfYear,
        F::Hour | F::Hours => DatePart::Hour,
        F::Minute | F::Minutes => DatePart::Minute,
        F::Second | F::Seconds => DatePart::Second,
        F::Millisecond | F::Milliseconds => DatePart::Millisecond,
        F::Microsecond | F::Microseconds => DatePart::Microsecond,
        other => {
            return Err(cx.unsupported(format!(
                "EXTRACT({other} …) (supported: YEAR, ISOYEAR, QUARTER, MONTH, WEEK, DAY, DOW, ISODOW, DOY, HOUR, MINUTE, SECOND, MILLISECOND, MICROSECOND, EPOCH)"
            )));
        }
    };
    let t = v.data_type();
    expect_temporal(cx, "EXTRACT", &t)?;
    let v = if t == DataType::Null {
        v.map(|a| cast_strict(a, &MILLIS_TYPE))
            .map_err(|e| cx.arrow(e))?
    } else {
        v
    };
    v.map(|a| cast_strict(&date_part(a.as_ref(), part)?, &DataType::Int64))
        .map_err(|e| cx.type_error(format!("EXTRACT({field} FROM …) of {t}: {e}")))
}

/// `TO_TIMESTAMP(text)` parses a timestamp (ISO 8601 / RFC 3339); `TO_TIMESTAMP(number)` reads
/// seconds since 1970, as in PostgreSQL.
fn to_timestamp(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 1)?;
    let v = cx.eval(&args[0])?;
    let t = v.data_type();
    if is_text(&t) || t == DataType::Null {
        return v.map(|a| cast_strict(a, &MILLIS_TYPE)).map_err(|e| {
            cx.type_error(format!(
                "{name}: {e} (expected e.g. '2026-12-03 10:00:00' or '2026-12-03T10:00:00Z')"
            ))
        });
    }
    let v = float_arg(cx, name, 0, v)?;
    v.map(|a| {
        let ms: Int64Array = super::floats(a).unary(|s| (s * 1000.0).round() as i64);
        cast_strict(&(Arc::new(ms) as ArrayRef), &MILLIS_TYPE)
    })
    .map_err(|e| cx.arrow(e))
}

/// `TO_TIMESTAMP_MILLIS(n)`, `TO_TIMESTAMP_SECONDS(n)`: a timestamp from an epoch number.
fn from_epoch(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 1)?;
    let v = int_arg(cx, name, 0, cx.eval(&args[0])?)?;
    let seconds = name == "TO_TIMESTAMP_SECONDS";
    let ms = v
        .map(|a| {
            let out: Int64Array =
                ints(a).unary(|n| if seconds { n.saturating_mul(1000) } else { n });
            Ok(Arc::new(out) as ArrayRef)
        })
        .map_err(|e| cx.arrow(e))?;
    from_millis(cx, ms, &MILLIS_TYPE)
}

/// `TO_CHAR(ts, format)`: formatted with strftime codes (`%Y-%m-%d %H:%M:%S`).
fn to_char(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let vals = values(cx, args)?;
    let [v, format] = <[Value; 2]>::try_from(vals).expect("arity");
    let format = constant_text_arg(cx, name, 1, format)?;
    let items: Vec<Item<'_>> = StrftimeItems::new(&format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(cx.type_error(format!(
            "{name}: bad format '{format}' (expected strftime codes such as %Y-%m-%d %H:%M:%S)"
        )));
    }
    let (ms, _) = millis(cx, name, v)?;
    let a = Aligned::new(vec![ms], cx.rows()).map_err(|e| cx.arrow(e))?;
    let out = ints(&a.arrays[0])
        .iter()
        .map(|m| {
            m.map(|m| {
                DateTime::from_timestamp_millis(m)
                    .map(|t| t.format_with_items(items.iter()).to_string())
                    .ok_or_else(|| row_error(cx, format!("{name}: {m} ms is out of range")))
            })
            .transpose()
        })
        .collect::<Result<StringArray, ExprError>>()?;
    Ok(a.finish(Arc::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn units_truncate_and_advance_across_calendar_boundaries() {
        let t = ms("2024-02-29T13:45:10.250Z");
        let trunc = |u: &str| Unit::parse(u).unwrap().truncate(t).unwrap();
        assert_eq!(trunc("second"), ms("2024-02-29T13:45:10Z"));
        assert_eq!(trunc("hours"), ms("2024-02-29T13:00:00Z"));
        assert_eq!(trunc("day"), ms("2024-02-29T00:00:00Z"));
        assert_eq!(trunc("week"), ms("2024-02-26T00:00:00Z"));
        assert_eq!(trunc("month"), ms("2024-02-01T00:00:00Z"));
        assert_eq!(trunc("quarter"), ms("2024-01-01T00:00:00Z"));
        assert_eq!(trunc("year"), ms("2024-01-01T00:00:00Z"));
        let month = Unit::parse("month").unwrap();
        assert_eq!(
            month.advance(ms("2024-01-01T00:00:00Z")),
            Some(ms("2024-02-01T00:00:00Z"))
        );
        // Before 1970, flooring still goes down.
        assert_eq!(Unit::Fixed(1000).truncate(-1), Some(-1000));
        assert_eq!(
            Unit::Week.truncate(ms("1969-12-31T12:00:00Z")),
            Some(ms("1969-12-29T00:00:00Z"))
        );
    }
}
