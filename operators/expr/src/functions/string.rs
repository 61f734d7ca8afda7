//! Text functions. Positions and lengths count characters, not bytes, and start at 1, as in
//! SQL; a `NULL` argument gives `NULL` unless a function says otherwise (`CONCAT`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray};
use regex::{Regex, RegexBuilder};
use sqlparser::ast::{Expr, TrimWhereField};

use super::{
    MAX_TEXT_BYTES, arity, constant_text, int_arg, ints, row_error, strs, text_arg, values,
};
use crate::ExprError;
use crate::eval::Cx;
use crate::value::{Aligned, Value};

/// The largest compiled regular expression, so a hostile pattern cannot take the memory of a
/// batch (the `regex` crate matches in linear time, so time is bounded already).
const MAX_REGEX_BYTES: usize = 1 << 20;

pub(crate) fn call(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Option<Result<Value, ExprError>> {
    let f: fn(&Cx<'_>, &str, &[Expr]) -> Result<Value, ExprError> = match name {
        "UPPER" | "LOWER" | "INITCAP" | "REVERSE" => case_like,
        "LENGTH" | "CHAR_LENGTH" | "CHARACTER_LENGTH" | "OCTET_LENGTH" => length,
        "SUBSTRING" | "SUBSTR" => substring,
        "LEFT" | "RIGHT" => left_right,
        "LTRIM" | "RTRIM" | "BTRIM" => trim_function,
        "CONCAT" => concat,
        "CONCAT_WS" => concat_ws,
        "GROUP_KEY" => group_key,
        "REPLACE" => replace,
        "POSITION" | "STRPOS" | "INSTR" => position,
        "STARTS_WITH" | "ENDS_WITH" => starts_ends,
        "LPAD" | "RPAD" => pad,
        "REPEAT" => repeat,
        "SPLIT_PART" => split_part,
        "REGEXP_LIKE" | "REGEXP_REPLACE" | "REGEXP_EXTRACT" => regexp,
        _ => return None,
    };
    Some(f(cx, name, args))
}

/// Evaluates the arguments as text and aligns them.
fn text_args(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Aligned, ExprError> {
    let vals = values(cx, args)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| text_arg(cx, name, i, v, false))
        .collect::<Result<Vec<_>, _>>()?;
    Aligned::new(vals, cx.rows()).map_err(|e| cx.arrow(e))
}

/// The arguments of `f(text, n)` (`LEFT`, `RIGHT`, `REPEAT`), aligned.
fn text_and_count(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Aligned, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let vals = values(cx, args)?;
    let [s, n] = <[Value; 2]>::try_from(vals).expect("arity");
    Aligned::new(
        vec![text_arg(cx, name, 0, s, false)?, int_arg(cx, name, 1, n)?],
        cx.rows(),
    )
    .map_err(|e| cx.arrow(e))
}

fn finish_text(a: &Aligned, out: StringArray) -> Result<Value, ExprError> {
    Ok(a.finish(Arc::new(out)))
}

fn any_null(arrays: &[ArrayRef], i: usize) -> bool {
    arrays.iter().any(|a| a.is_null(i))
}

fn too_long(cx: &Cx<'_>, name: &str, bytes: usize) -> ExprError {
    row_error(
        cx,
        format!(
            "{name} would build a value of {bytes} bytes, more than the limit of {MAX_TEXT_BYTES}"
        ),
    )
}

fn case_like(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 1)?;
    let a = text_args(cx, name, args)?;
    let f: fn(&str) -> String = match name {
        "UPPER" => str::to_uppercase,
        "LOWER" => str::to_lowercase,
        "REVERSE" => |s| s.chars().rev().collect(),
        _ => initcap,
    };
    let out: StringArray = strs(&a.arrays[0]).iter().map(|s| s.map(f)).collect();
    finish_text(&a, out)
}

/// `INITCAP`: the first letter of every word upper case, the rest lower case.
fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn length(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 1)?;
    let a = text_args(cx, name, args)?;
    let bytes = name == "OCTET_LENGTH";
    let out: Int64Array = strs(&a.arrays[0])
        .iter()
        .map(|s| s.map(|s| if bytes { s.len() } else { s.chars().count() } as i64))
        .collect();
    Ok(a.finish(Arc::new(out)))
}

/// `SUBSTRING(s, start [, length])`: the characters at positions `start .. start + length`,
/// counting from 1; positions before 1 count but yield nothing, as in PostgreSQL.
fn substring(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 3)?;
    let mut vals = values(cx, args)?.into_iter();
    let mut aligned = vec![text_arg(cx, name, 0, vals.next().expect("arity"), false)?];
    for (i, v) in vals.enumerate() {
        aligned.push(int_arg(cx, name, i + 1, v)?);
    }
    let a = Aligned::new(aligned, cx.rows()).map_err(|e| cx.arrow(e))?;
    let s = strs(&a.arrays[0]);
    let start = ints(&a.arrays[1]);
    let length = a.arrays.get(2).map(ints);
    let out = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return Ok(None);
            }
            let from = start.value(i);
            let end = match length {
                Some(l) if l.value(i) < 0 => {
                    return Err(row_error(
                        cx,
                        format!("{name}: negative length {}", l.value(i)),
                    ));
                }
                Some(l) => from.saturating_add(l.value(i)),
                None => i64::MAX,
            };
            let skip = (from.max(1) - 1) as usize;
            let take = (end.saturating_sub(from.max(1))).max(0) as usize;
            Ok(Some(
                s.value(i).chars().skip(skip).take(take).collect::<String>(),
            ))
        })
        .collect::<Result<StringArray, ExprError>>()?;
    finish_text(&a, out)
}

/// `LEFT(s, n)` and `RIGHT(s, n)`; a negative `n` drops `|n|` characters from the other end.
fn left_right(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    let a = text_and_count(cx, name, args)?;
    let (s, n) = (strs(&a.arrays[0]), ints(&a.arrays[1]));
    let left = name == "LEFT";
    let out: StringArray = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return None;
            }
            let text = s.value(i);
            let chars = text.chars().count() as i64;
            let n = n.value(i);
            let keep = if n >= 0 {
                n.min(chars)
            } else {
                (chars + n).max(0)
            } as usize;
            Some(if left {
                text.chars().take(keep).collect::<String>()
            } else {
                text.chars().skip(chars as usize - keep).collect()
            })
        })
        .collect();
    finish_text(&a, out)
}

/// `TRIM([BOTH | LEADING | TRAILING] [characters] FROM s)`, spaces by default.
pub(crate) fn trim(
    cx: &Cx<'_>,
    side: Option<&TrimWhereField>,
    what: Option<&Expr>,
    expr: &Expr,
    characters: Option<&[Expr]>,
) -> Result<Value, ExprError> {
    let name = match side {
        Some(TrimWhereField::Leading) => "LTRIM",
        Some(TrimWhereField::Trailing) => "RTRIM",
        Some(TrimWhereField::Both) | None => "BTRIM",
    };
    let mut args = vec![expr.clone()];
    match (what, characters) {
        (Some(w), _) => args.push(w.clone()),
        (None, Some([c])) => args.push(c.clone()),
        (None, Some(_)) => {
            return Err(cx.unsupported("TRIM with several character lists".into()));
        }
        (None, None) => {}
    }
    trim_function(cx, name, &args)
}

fn trim_function(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, 2)?;
    let a = text_args(cx, name, args)?;
    let s = strs(&a.arrays[0]);
    let set = a.arrays.get(1).map(strs);
    let out: StringArray = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return None;
            }
            let chars: Vec<char> = set.map_or(vec![' '], |c| c.value(i).chars().collect());
            let text = s.value(i);
            let trimmed = match name {
                "LTRIM" => text.trim_start_matches(chars.as_slice()),
                "RTRIM" => text.trim_end_matches(chars.as_slice()),
                _ => text.trim_matches(chars.as_slice()),
            };
            Some(trimmed.to_owned())
        })
        .collect();
    finish_text(&a, out)
}

/// `CONCAT(a, b, …)`: every argument as text, `NULL`s skipped (as in PostgreSQL and DataFusion).
fn concat(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, usize::MAX)?;
    join(cx, name, args, None)
}

/// `CONCAT_WS(separator, a, b, …)`: the non-`NULL` arguments joined by the separator.
fn concat_ws(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, usize::MAX)?;
    join(cx, name, &args[1..], Some(&args[0]))
}

/// `GROUP_KEY(a, b, …)`: one text value per distinct combination of the arguments' values,
/// `NULL` included — each value as its length in characters, `:` and its text (as `CAST(x AS
/// VARCHAR)` writes it), or `-` for `NULL`, joined by `,`. What a `GROUP BY` of several columns
/// groups by.
fn group_key(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    use std::fmt::Write;
    arity(cx, name, args, 1, usize::MAX)?;
    let vals = values(cx, args)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| text_arg(cx, name, i, v, true))
        .collect::<Result<Vec<_>, _>>()?;
    let a = Aligned::new(vals, cx.rows()).map_err(|e| cx.arrow(e))?;
    let columns: Vec<&StringArray> = a.arrays.iter().map(strs).collect();
    let mut out = StringBuilder::with_capacity(a.len(), 0);
    let mut key = String::new();
    for i in 0..a.len() {
        key.clear();
        for (k, column) in columns.iter().enumerate() {
            if k > 0 {
                key.push(',');
            }
            if column.is_null(i) {
                key.push('-');
            } else {
                let text = column.value(i);
                write!(key, "{}:{text}", text.chars().count()).expect("a String takes any text");
            }
        }
        if key.len() > MAX_TEXT_BYTES {
            return Err(too_long(cx, name, key.len()));
        }
        cx.charge(name, key.len())?;
        out.append_value(&key);
    }
    finish_text(&a, out.finish())
}

fn join(
    cx: &Cx<'_>,
    name: &str,
    parts: &[Expr],
    separator: Option<&Expr>,
) -> Result<Value, ExprError> {
    let mut vals = Vec::with_capacity(parts.len() + 1);
    if let Some(sep) = separator {
        vals.push(text_arg(cx, name, 0, cx.eval(sep)?, false)?);
    }
    let offset = usize::from(separator.is_some());
    for (i, p) in parts.iter().enumerate() {
        vals.push(text_arg(cx, name, i + offset, cx.eval(p)?, true)?);
    }
    let a = Aligned::new(vals, cx.rows()).map_err(|e| cx.arrow(e))?;
    let columns: Vec<&StringArray> = a.arrays.iter().map(strs).collect();
    let (sep, items) = if separator.is_some() {
        (Some(columns[0]), &columns[1..])
    } else {
        (None, &columns[..])
    };
    let out = (0..a.len())
        .map(|i| {
            let sep = match sep {
                Some(s) if s.is_null(i) => return Ok(None),
                Some(s) => s.value(i),
                None => "",
            };
            let mut out = String::new();
            for (k, item) in items.iter().filter(|c| c.is_valid(i)).enumerate() {
                if k > 0 {
                    out.push_str(sep);
                }
                out.push_str(item.value(i));
                if out.len() > MAX_TEXT_BYTES {
                    return Err(too_long(cx, name, out.len()));
                }
            }
            cx.charge(name, out.len())?;
            Ok(Some(out))
        })
        .collect::<Result<StringArray, ExprError>>()?;
    finish_text(&a, out)
}

/// `a || b`: text concatenation, `NULL` when either side is (SQL's rule).
pub(crate) fn concat_operator(cx: &Cx<'_>, l: Value, r: Value) -> Result<Value, ExprError> {
    let l = text_arg(cx, "||", 0, l, true)?;
    let r = text_arg(cx, "||", 1, r, true)?;
    let a = Aligned::new(vec![l, r], cx.rows()).map_err(|e| cx.arrow(e))?;
    let bytes = |x: &ArrayRef| strs(x).value_data().len();
    cx.charge(
        "||",
        bytes(&a.arrays[0]).saturating_add(bytes(&a.arrays[1])),
    )?;
    let out = arrow_string::concat_elements::concat_elements_dyn(&a.arrays[0], &a.arrays[1])
        .map_err(|e| cx.arrow(e))?;
    if let Some(longest) = strs(&out).iter().flatten().map(str::len).max()
        && longest > MAX_TEXT_BYTES
    {
        return Err(too_long(cx, "||", longest));
    }
    Ok(a.finish(out))
}

fn replace(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 3, 3)?;
    let a = text_args(cx, name, args)?;
    let [s, from, to] = [0, 1, 2].map(|i| strs(&a.arrays[i]));
    let out = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return Ok(None);
            }
            let (text, from) = (s.value(i), from.value(i));
            if from.is_empty() {
                return Ok(Some(text.to_owned()));
            }
            let grows = to.value(i).len().saturating_sub(from.len());
            let bound = text.len() + grows * text.matches(from).count();
            if bound > MAX_TEXT_BYTES {
                return Err(too_long(cx, name, bound));
            }
            cx.charge(name, bound)?;
            Ok(Some(text.replace(from, to.value(i))))
        })
        .collect::<Result<StringArray, ExprError>>()?;
    finish_text(&a, out)
}

/// `POSITION(needle IN s)`, `STRPOS(s, needle)`: the 1-based character position of the first
/// match, 0 when there is none.
fn position(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let a = text_args(cx, name, args)?;
    let (s, needle) = (strs(&a.arrays[0]), strs(&a.arrays[1]));
    let out: Int64Array = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return None;
            }
            let text = s.value(i);
            Some(
                text.find(needle.value(i))
                    .map_or(0, |byte| text[..byte].chars().count() as i64 + 1),
            )
        })
        .collect();
    Ok(a.finish(Arc::new(out)))
}

fn starts_ends(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let a = text_args(cx, name, args)?;
    let out = if name == "STARTS_WITH" {
        arrow_string::like::starts_with(&a.arrays[0], &a.arrays[1])
    } else {
        arrow_string::like::ends_with(&a.arrays[0], &a.arrays[1])
    }
    .map_err(|e| cx.arrow(e))?;
    Ok(a.finish(Arc::new(out)))
}

/// `LPAD(s, n [, fill])`, `RPAD`: `s` padded (or cut) to `n` characters, spaces by default.
fn pad(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 3)?;
    let mut vals = values(cx, args)?;
    let fill = (vals.len() == 3)
        .then(|| vals.pop().expect("three"))
        .map(|v| text_arg(cx, name, 2, v, false))
        .transpose()?;
    let n = int_arg(cx, name, 1, vals.pop().expect("arity"))?;
    let s = text_arg(cx, name, 0, vals.pop().expect("arity"), false)?;
    let a = Aligned::new(
        [Some(s), Some(n), fill].into_iter().flatten().collect(),
        cx.rows(),
    )
    .map_err(|e| cx.arrow(e))?;
    let (s, n) = (strs(&a.arrays[0]), ints(&a.arrays[1]));
    let fill = a.arrays.get(2).map(strs);
    let left = name == "LPAD";
    let out = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return Ok(None);
            }
            let width = n.value(i).max(0) as usize;
            if width > MAX_TEXT_BYTES {
                return Err(too_long(cx, name, width));
            }
            // Up to four bytes a character.
            cx.charge(name, width.saturating_mul(4).min(MAX_TEXT_BYTES))?;
            let text: Vec<char> = s.value(i).chars().collect();
            if text.len() >= width {
                return Ok(Some(text[..width].iter().collect::<String>()));
            }
            let fill: Vec<char> = fill.map_or(vec![' '], |f| f.value(i).chars().collect());
            if fill.is_empty() {
                return Ok(Some(text.iter().collect()));
            }
            let padding: String = fill.iter().cycle().take(width - text.len()).collect();
            let text: String = text.iter().collect();
            Ok(Some(if left {
                padding + &text
            } else {
                text + &padding
            }))
        })
        .collect::<Result<StringArray, ExprError>>()?;
    finish_text(&a, out)
}

fn repeat(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    let a = text_and_count(cx, name, args)?;
    let (s, n) = (strs(&a.arrays[0]), ints(&a.arrays[1]));
    let out = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return Ok(None);
            }
            let times = n.value(i).max(0) as usize;
            let bytes = s.value(i).len().saturating_mul(times);
            if bytes > MAX_TEXT_BYTES {
                return Err(too_long(cx, name, bytes));
            }
            cx.charge(name, bytes)?;
            Ok(Some(s.value(i).repeat(times)))
        })
        .collect::<Result<StringArray, ExprError>>()?;
    finish_text(&a, out)
}

/// `SPLIT_PART(s, delimiter, n)`: the `n`th field (from 1; negative counts from the end), or
/// `''` when there are fewer fields.
fn split_part(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 3, 3)?;
    let vals = values(cx, args)?;
    let [s, d, n] = <[Value; 3]>::try_from(vals).expect("arity");
    let a = Aligned::new(
        vec![
            text_arg(cx, name, 0, s, false)?,
            text_arg(cx, name, 1, d, false)?,
            int_arg(cx, name, 2, n)?,
        ],
        cx.rows(),
    )
    .map_err(|e| cx.arrow(e))?;
    let (s, d, n) = (strs(&a.arrays[0]), strs(&a.arrays[1]), ints(&a.arrays[2]));
    let out = (0..a.len())
        .map(|i| {
            if any_null(&a.arrays, i) {
                return Ok(None);
            }
            let n = n.value(i);
            if n == 0 {
                return Err(row_error(
                    cx,
                    format!("{name}: field position must not be 0"),
                ));
            }
            let fields: Vec<&str> = if d.value(i).is_empty() {
                vec![s.value(i)]
            } else {
                s.value(i).split(d.value(i)).collect()
            };
            let index = if n > 0 {
                usize::try_from(n - 1).ok()
            } else {
                fields.len().checked_sub(n.unsigned_abs() as usize)
            };
            Ok(Some(
                index
                    .and_then(|k| fields.get(k))
                    .copied()
                    .unwrap_or("")
                    .to_owned(),
            ))
        })
        .collect::<Result<StringArray, ExprError>>()?;
    finish_text(&a, out)
}

/// `REGEXP_LIKE(s, pattern)`, `REGEXP_REPLACE(s, pattern, replacement)` (every match; `$1`
/// names a group), `REGEXP_EXTRACT(s, pattern [, group])` (the whole match by default, `NULL`
/// when nothing matches). Patterns use the syntax of Rust's `regex` crate.
fn regexp(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    let (min, max) = match name {
        "REGEXP_LIKE" => (2, 2),
        "REGEXP_REPLACE" => (3, 3),
        _ => (2, 3),
    };
    arity(cx, name, args, min, max)?;
    let mut vals = values(cx, args)?;
    let group = if name == "REGEXP_EXTRACT" && vals.len() == 3 {
        Some(int_arg(cx, name, 2, vals.pop().expect("three"))?)
    } else {
        None
    };
    let mut aligned = vals
        .into_iter()
        .enumerate()
        .map(|(i, v)| text_arg(cx, name, i, v, false))
        .collect::<Result<Vec<_>, _>>()?;
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .map_err(|e| cx.type_error(format!("{name}: bad pattern `{p}`: {e}")))
    };
    let mut cache: HashMap<String, Regex> = HashMap::new();
    // A constant pattern is compiled once, before any row, so validation catches a bad one.
    if aligned[1].is_scalar()
        && let Some(p) = constant_text(cx, name, 1, &aligned[1])?
    {
        cache.insert(p.clone(), build(&p)?);
    }
    aligned.extend(group);
    let a = Aligned::new(aligned, cx.rows()).map_err(|e| cx.arrow(e))?;
    let (s, pattern) = (strs(&a.arrays[0]), strs(&a.arrays[1]));
    let mut compiled = |i: usize| -> Result<Regex, ExprError> {
        let p = pattern.value(i);
        if let Some(r) = cache.get(p) {
            return Ok(r.clone());
        }
        let r = build(p)?;
        cache.insert(p.to_owned(), r.clone());
        Ok(r)
    };
    let out: ArrayRef = match name {
        "REGEXP_LIKE" => {
            let out = (0..a.len())
                .map(|i| {
                    if any_null(&a.arrays, i) {
                        return Ok(None);
                    }
                    Ok(Some(compiled(i)?.is_match(s.value(i))))
                })
                .collect::<Result<BooleanArray, ExprError>>()?;
            Arc::new(out)
        }
        "REGEXP_REPLACE" => {
            let to = strs(&a.arrays[2]);
            let out = (0..a.len())
                .map(|i| {
                    if any_null(&a.arrays, i) {
                        return Ok(None);
                    }
                    let replaced = compiled(i)?
                        .replace_all(s.value(i), to.value(i))
                        .into_owned();
                    if replaced.len() > MAX_TEXT_BYTES {
                        return Err(too_long(cx, name, replaced.len()));
                    }
                    cx.charge(name, replaced.len())?;
                    Ok(Some(replaced))
                })
                .collect::<Result<StringArray, ExprError>>()?;
            Arc::new(out)
        }
        _ => {
            let group = a.arrays.get(2).map(ints);
            let out = (0..a.len())
                .map(|i| {
                    if any_null(&a.arrays, i) {
                        return Ok(None);
                    }
                    let g = group.map_or(0, |g| g.value(i));
                    let regex = compiled(i)?;
                    let g = usize::try_from(g)
                        .ok()
                        .filter(|g| *g < regex.captures_len())
                        .ok_or_else(|| {
                            row_error(
                                cx,
                                format!(
                                    "{name}: group {g} does not exist in `{}` (it has {} groups)",
                                    regex.as_str(),
                                    regex.captures_len() - 1
                                ),
                            )
                        })?;
                    Ok(regex
                        .captures(s.value(i))
                        .and_then(|c| c.get(g))
                        .map(|m| m.as_str().to_owned()))
                })
                .collect::<Result<StringArray, ExprError>>()?;
            Arc::new(out)
        }
    };
    Ok(a.finish(out))
}
