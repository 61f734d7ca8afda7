//! `COALESCE`, `NULLIF`, `IF`, `GREATEST` and `LEAST` (`CASE` is in the evaluator, since it is
//! syntax). Arguments are brought to one type as `CASE` branches are.

use arrow_arith::boolean::{is_null, or};
use arrow_array::BooleanArray;
use arrow_ord::cmp;
use arrow_schema::DataType;
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{CaseWhen, Expr};

use super::{arity, values};
use crate::ExprError;
use crate::eval::{Cx, true_mask};
use crate::types::{cast_strict, common_type};
use crate::value::{Aligned, Value};

pub(crate) fn call(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Option<Result<Value, ExprError>> {
    Some(match name {
        "COALESCE" | "IFNULL" | "NVL" => coalesce(cx, name, args),
        "NULLIF" => nullif(cx, name, args),
        "GREATEST" | "LEAST" => extreme(cx, name, args),
        "IF" | "IFF" => if_function(cx, name, args),
        _ => return None,
    })
}

/// Evaluates `args` and brings them to their common type, as columns of one length.
fn unified(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<(Aligned, DataType), ExprError> {
    let vals = values(cx, args)?;
    let mut to = DataType::Null;
    for v in &vals {
        to = common_type(&to, &v.data_type()).ok_or_else(|| {
            cx.type_error(format!(
                "the arguments of {name} do not mix: {to} and {}",
                v.data_type()
            ))
        })?;
    }
    let vals = vals
        .into_iter()
        .map(|v| v.map(|a| cast_strict(a, &to)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cx.arrow(e))?;
    Ok((Aligned::new(vals, cx.rows()).map_err(|e| cx.arrow(e))?, to))
}

/// The first argument that is not `NULL`.
fn coalesce(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    let max = if name == "COALESCE" { usize::MAX } else { 2 };
    arity(cx, name, args, if name == "COALESCE" { 1 } else { 2 }, max)?;
    let (a, _) = unified(cx, name, args)?;
    let mut acc = a.arrays[0].clone();
    for next in &a.arrays[1..] {
        let missing = is_null(&acc).map_err(|e| cx.arrow(e))?;
        acc = arrow_select::zip::zip(&missing, next, &acc).map_err(|e| cx.arrow(e))?;
    }
    Ok(a.finish(acc))
}

/// `NULLIF(a, b)`: `NULL` where `a = b`, else `a`.
fn nullif(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 2, 2)?;
    let (a, _) = unified(cx, name, args)?;
    let out = (|| {
        let equal = true_mask(&cmp::eq(&a.arrays[0], &a.arrays[1])?);
        arrow_select::nullif::nullif(&a.arrays[0], &equal)
    })()
    .map_err(|e| cx.arrow(e))?;
    Ok(a.finish(out))
}

/// `GREATEST(a, b, …)`, `LEAST(…)`: `NULL`s are skipped; `NULL` only when all are.
fn extreme(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 1, usize::MAX)?;
    let (a, to) = unified(cx, name, args)?;
    if to == DataType::Boolean || to.is_nested() {
        return Err(cx.type_error(format!("{name} needs comparable values, got {to}")));
    }
    let greatest = name == "GREATEST";
    let mut acc = a.arrays[0].clone();
    for next in &a.arrays[1..] {
        let out = (|| {
            let better = if greatest {
                cmp::gt(next, &acc)?
            } else {
                cmp::lt(next, &acc)?
            };
            let take: BooleanArray = or(&is_null(&acc)?, &true_mask(&better))?;
            arrow_select::zip::zip(&take, next, &acc)
        })()
        .map_err(|e| cx.arrow(e))?;
        acc = out;
    }
    Ok(a.finish(acc))
}

/// `IF(condition, then, else)`: `CASE WHEN condition THEN then ELSE else END`, with the same
/// rule that each branch sees only its own rows.
fn if_function(cx: &Cx<'_>, name: &str, args: &[Expr]) -> Result<Value, ExprError> {
    arity(cx, name, args, 3, 3)?;
    let case = Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen {
            condition: args[0].clone(),
            result: args[1].clone(),
        }],
        else_result: Some(Box::new(args[2].clone())),
    };
    cx.eval(&case)
}
