//! JSON in text columns: `JSON_VALUE`, `JSON_QUERY`, `JSON_EXISTS` with SQL/JSON paths
//! (`$.user.name`, `$.items[0]`, `$."odd key"`), and PostgreSQL's `->` and `->>`.
//!
//! A row whose text is not valid JSON gives `NULL` (SQL's `NULL ON ERROR`), so one malformed
//! event does not fail a pipeline; a malformed *path* is refused when the expression is checked.

use std::sync::Arc;

use arrow_array::{Array, BooleanArray, StringArray};
use arrow_schema::DataType;
use serde_json::Value as Json;
use sqlparser::ast::Expr;

use super::{arity, constant_text_arg, ints, strs, text_arg, values};
use crate::ExprError;
use crate::eval::Cx;
use crate::types::cast_strict;
use crate::value::{Aligned, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

pub(crate) fn call(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Option<Result<Value, ExprError>> {
    match name {
        "JSON_VALUE" | "JSON_QUERY" | "JSON_EXISTS" => Some(path_function(cx, name, args)),
        _ => None,
    }
}

fn path_function(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let vals = values(cx, args)?;
    let [doc, path] = <[Value; 2]>::try_from(vals).expect("arity");
    let doc = text_arg(cx, name, 0, doc, false)?;
    let path = constant_text_arg(cx, name, 1, path)?;
    let steps = parse_path(&path)
        .map_err(|e| cx.type_error(format!("{name}: bad JSON path '{path}': {e}")))?;
    let docs = strs(doc.array());
    let found = |i: usize| -> Option<Json> {
        if docs.is_null(i) {
            return None;
        }
        let json: Json = serde_json::from_str(docs.value(i)).ok()?;
        lookup(&json, &steps).cloned()
    };
    let out: Arc<dyn Array> = match name {
        "JSON_EXISTS" => Arc::new(
            (0..docs.len())
                .map(|i| (!docs.is_null(i)).then(|| found(i).is_some()))
                .collect::<BooleanArray>(),
        ),
        "JSON_VALUE" => Arc::new(
            (0..docs.len())
                .map(|i| found(i).and_then(|j| scalar_text(&j)))
                .collect::<StringArray>(),
        ),
        _ => Arc::new(
            (0..docs.len())
                .map(|i| found(i).map(|j| j.to_string()))
                .collect::<StringArray>(),
        ),
    };
    Ok(Value::new(out, doc.is_scalar()))
}

/// `json -> key` (JSON text) and `json ->> key` (text); the key is a field name or, when an
/// integer, an array index.
pub(crate) fn arrow_operator(
    cx: &Cx<'_>,
    l: Value,
    r: Value,
    as_text: bool,
) -> Result<Value, ExprError> {
    let op = if as_text { "->>" } else { "->" };
    let doc = text_arg(cx, op, 0, l, false)?;
    let index = r.data_type().is_integer();
    let key = if index {
        r.map(|a| cast_strict(a, &DataType::Int64))
            .map_err(|e| cx.arrow(e))?
    } else {
        text_arg(cx, op, 1, r, false)?
    };
    let a = Aligned::new(vec![doc, key], cx.rows()).map_err(|e| cx.arrow(e))?;
    let docs = strs(&a.arrays[0]);
    let out: StringArray = (0..a.len())
        .map(|i| {
            if docs.is_null(i) || a.arrays[1].is_null(i) {
                return None;
            }
            let json: Json = serde_json::from_str(docs.value(i)).ok()?;
            let step = if index {
                Step::Index(usize::try_from(ints(&a.arrays[1]).value(i)).ok()?)
            } else {
                Step::Key(strs(&a.arrays[1]).value(i).to_owned())
            };
            let found = lookup(&json, std::slice::from_ref(&step))?;
            if as_text {
                scalar_text(found)
            } else {
                Some(found.to_string())
            }
        })
        .collect();
    Ok(a.finish(Arc::new(out)))
}

fn lookup<'j>(json: &'j Json, steps: &[Step]) -> Option<&'j Json> {
    steps.iter().try_fold(json, |at, step| match step {
        Step::Key(k) => at.as_object()?.get(k),
        Step::Index(i) => at.as_array()?.get(*i),
    })
}

/// A scalar as SQL text (a string without its quotes); `NULL` for JSON null, objects, arrays.
fn scalar_text(json: &Json) -> Option<String> {
    match json {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// Parses `$`, `.key`, `."quoted key"`, `['key']`, `["key"]` and `[n]` steps.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let rest = path
        .trim()
        .strip_prefix('$')
        .ok_or("a path starts with `$`")?;
    let chars: Vec<char> = rest.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'"') {
                    let (key, next) = quoted(&chars, i)?;
                    steps.push(Step::Key(key));
                    i = next;
                } else {
                    let start = i;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    if start == i {
                        return Err(format!(
                            "expected a key after `.` at character {}",
                            start + 1
                        ));
                    }
                    steps.push(Step::Key(chars[start..i].iter().collect()));
                }
            }
            '[' => {
                i += 1;
                if matches!(chars.get(i), Some('\'' | '"')) {
                    let (key, next) = quoted(&chars, i)?;
                    steps.push(Step::Key(key));
                    i = next;
                } else {
                    let start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let digits: String = chars[start..i].iter().collect();
                    let index = digits.parse().map_err(|_| {
                        format!("expected an array index at character {}", start + 2)
                    })?;
                    steps.push(Step::Index(index));
                }
                if chars.get(i) != Some(&']') {
                    return Err(format!("expected `]` at character {}", i + 2));
                }
                i += 1;
            }
            c => return Err(format!("unexpected `{c}` at character {}", i + 2)),
        }
    }
    Ok(steps)
}

/// A quoted key starting at `chars[start]`; returns it and the index after the closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let end = chars[start + 1..]
        .iter()
        .position(|c| *c == quote)
        .ok_or_else(|| format!("unterminated {quote}…{quote} at character {}", start + 2))?;
    Ok((
        chars[start + 1..start + 1 + end].iter().collect(),
        start + end + 2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_keys_quoted_keys_and_indices() {
        assert_eq!(
            parse_path("$.user.\"first name\"['x'][2]").unwrap(),
            vec![
                Step::Key("user".into()),
                Step::Key("first name".into()),
                Step::Key("x".into()),
                Step::Index(2),
            ]
        );
        assert_eq!(parse_path("$").unwrap(), vec![]);
        assert!(parse_path("user").unwrap_err().contains("starts with `$`"));
        assert!(parse_path("$.a[x]").unwrap_err().contains("array index"));
        assert!(parse_path("$.a[1").unwrap_err().contains("`]`"));
    }
}
