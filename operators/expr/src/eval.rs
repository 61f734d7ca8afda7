//! The evaluator: one expression over one batch, column at a time.

use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_arith::numeric;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, IntervalMonthDayNanoArray, RecordBatch, UInt32Array,
    new_null_array,
};
use arrow_ord::cmp;
use arrow_schema::{ArrowError, DataType};
use arrow_select::filter::filter;
use sqlparser::ast::{self, BinaryOperator, CaseWhen, CastKind, Expr, UnaryOperator};

use crate::ExprError;
use crate::functions;
use crate::types::{CAST_TYPES, cast_or_null, cast_strict, common_type, is_text, sql_type};
use crate::value::{Value, binary};

/// One evaluation: the expression's text (for messages) and the batch it reads.
pub(crate) struct Cx<'a> {
    pub(crate) text: &'a str,
    pub(crate) batch: &'a RecordBatch,
    /// Bytes of text the functions of this evaluation built so far (see
    /// [`MAX_BATCH_TEXT_BYTES`](crate::functions::MAX_BATCH_TEXT_BYTES)), shared with the
    /// evaluations of its sub-batches.
    pub(crate) built: &'a std::cell::Cell<usize>,
}

impl Cx<'_> {
    /// Counts `bytes` of text that function `name` is about to build against what one
    /// evaluation may build, before it builds them.
    pub(crate) fn charge(&self, name: &str, bytes: usize) -> Result<(), ExprError> {
        use crate::functions::{MAX_BATCH_TEXT_BYTES, MAX_TEXT_BYTES, row_error};
        let built = self.built.get().saturating_add(bytes);
        self.built.set(built);
        if built > MAX_BATCH_TEXT_BYTES {
            return Err(row_error(
                self,
                format!(
                    "{name} would build more than {} MiB of text for one batch of {} rows (the limit of one evaluation; each value may hold up to {} MiB)",
                    MAX_BATCH_TEXT_BYTES >> 20,
                    self.rows(),
                    MAX_TEXT_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub(crate) fn arrow(&self, source: ArrowError) -> ExprError {
        ExprError::Arrow {
            text: self.text.to_owned(),
            source,
        }
    }

    pub(crate) fn type_error(&self, message: String) -> ExprError {
        ExprError::Type {
            text: self.text.to_owned(),
            message,
        }
    }

    pub(crate) fn unsupported(&self, what: String) -> ExprError {
        ExprError::Unsupported {
            text: self.text.to_owned(),
            what,
        }
    }

    fn column(&self, name: &str) -> Result<Value, ExprError> {
        let schema = self.batch.schema();
        let index = schema
            .index_of(name)
            .or_else(|_| {
                // Unquoted identifiers match case-insensitively when there is exactly one match.
                let matches: Vec<_> = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.name().eq_ignore_ascii_case(name))
                    .collect();
                match matches.as_slice() {
                    [(i, _)] => Ok(*i),
                    _ => Err(()),
                }
            })
            .map_err(|()| ExprError::UnknownColumn {
                name: name.to_owned(),
                text: self.text.to_owned(),
                available: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok(Value::Array(self.batch.column(index).clone()))
    }

    pub(crate) fn eval(&self, expr: &Expr) -> Result<Value, ExprError> {
        match expr {
            Expr::Identifier(ident) => self.column(&ident.value),
            Expr::CompoundIdentifier(parts) if parts.len() == 1 => self.column(&parts[0].value),
            Expr::Nested(inner) => self.eval(inner),
            Expr::Value(v) => self.literal(&v.value),
            Expr::TypedString(typed) => {
                let text = match &typed.value.value {
                    ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s,
                    other => return Err(self.unsupported(format!("literal `{other}`"))),
                };
                let to = self.cast_type(&typed.data_type)?;
                let s: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![text.as_str()]));
                Ok(Value::Scalar(cast_strict(&s, &to).map_err(|e| {
                    self.type_error(format!("`{expr}` is not a valid {}: {e}", typed.data_type))
                })?))
            }
            Expr::Interval(interval) => self.interval(expr, interval),
            Expr::BinaryOp { left, op, right } => {
                let l = self.eval(left)?;
                let r = self.eval(right)?;
                self.binary_op(l, op, r)
            }
            Expr::UnaryOp { op, expr } => {
                let v = self.eval(expr)?;
                match op {
                    UnaryOperator::Not => {
                        self.expect_boolean(&v, "NOT")?;
                        self.boolean_map(v, not)
                    }
                    UnaryOperator::Minus => v.map(|a| numeric::neg(a)).map_err(|e| self.arrow(e)),
                    UnaryOperator::Plus => Ok(v),
                    other => Err(self.unsupported(format!("unary operator `{other}`"))),
                }
            }
            Expr::IsNull(inner) => self
                .eval(inner)?
                .map(|a| Ok(Arc::new(is_null(a.as_ref())?) as ArrayRef))
                .map_err(|e| self.arrow(e)),
            Expr::IsNotNull(inner) => self
                .eval(inner)?
                .map(|a| Ok(Arc::new(is_not_null(a.as_ref())?) as ArrayRef))
                .map_err(|e| self.arrow(e)),
            Expr::IsTrue(inner) => self.truth(inner, "IS TRUE", |b| Ok(true_mask(b))),
            Expr::IsNotTrue(inner) => self.truth(inner, "IS NOT TRUE", |b| not(&true_mask(b))),
            Expr::IsFalse(inner) => self.truth(inner, "IS FALSE", |b| Ok(true_mask(&not(b)?))),
            Expr::IsNotFalse(inner) => {
                self.truth(inner, "IS NOT FALSE", |b| not(&true_mask(&not(b)?)))
            }
            Expr::IsDistinctFrom(a, b) => self.compare(a, b, "IS DISTINCT FROM", cmp::distinct),
            Expr::IsNotDistinctFrom(a, b) => {
                self.compare(a, b, "IS NOT DISTINCT FROM", cmp::not_distinct)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let probe = self.eval(expr)?;
                let mut acc: Option<Value> = None;
                for item in list {
                    let (p, c) = self.coerce(probe.clone(), self.eval(item)?, "IN")?;
                    let eq = binary(&p, &c, |a, b| Ok(Arc::new(cmp::eq(a, b)?) as ArrayRef))
                        .map_err(|e| self.arrow(e))?;
                    acc = Some(match acc {
                        None => eq,
                        Some(prev) => self.logical(prev, eq, true)?,
                    });
                }
                let Some(result) = acc else {
                    return Err(self.type_error("IN needs at least one value".into()));
                };
                if *negated {
                    self.boolean_map(result, not)
                } else {
                    Ok(result)
                }
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let v = self.eval(expr)?;
                let (a, lo) = self.coerce(v.clone(), self.eval(low)?, "BETWEEN")?;
                let (b, hi) = self.coerce(v, self.eval(high)?, "BETWEEN")?;
                let ge = binary(&a, &lo, |x, y| Ok(Arc::new(cmp::gt_eq(x, y)?) as ArrayRef));
                let le = binary(&b, &hi, |x, y| Ok(Arc::new(cmp::lt_eq(x, y)?) as ArrayRef));
                let inside = self.logical(
                    ge.map_err(|e| self.arrow(e))?,
                    le.map_err(|e| self.arrow(e))?,
                    false,
                )?;
                if *negated {
                    self.boolean_map(inside, not)
                } else {
                    Ok(inside)
                }
            }
            Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => self.like(expr, pattern, *negated, false),
            Expr::ILike {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => self.like(expr, pattern, *negated, true),
            Expr::Cast {
                kind,
                expr,
                data_type,
                format: None,
            } => {
                let to = self.cast_type(data_type)?;
                let v = self.eval(expr)?;
                let result = match kind {
                    CastKind::TryCast | CastKind::SafeCast => v.map(|a| cast_or_null(a, &to)),
                    CastKind::Cast | CastKind::DoubleColon => v.map(|a| cast_strict(a, &to)),
                };
                result.map_err(|e| {
                    self.type_error(format!(
                        "cannot cast to {data_type}: {e} (TRY_CAST gives NULL instead)"
                    ))
                })
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref()),
            Expr::Function(_)
            | Expr::Substring { .. }
            | Expr::Trim { .. }
            | Expr::Position { .. }
            | Expr::Extract { .. }
            | Expr::Ceil { .. }
            | Expr::Floor { .. } => functions::eval(self, expr),
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => Err(self
                .unsupported(
                    "a sub-query inside a row expression (use a join instead)".to_owned(),
                )),
            other => Err(self.unsupported(format!("`{other}`"))),
        }
    }

    fn cast_type(&self, data_type: &ast::DataType) -> Result<DataType, ExprError> {
        sql_type(data_type).ok_or_else(|| {
            self.unsupported(format!(
                "the type `{data_type}` (supported types: {CAST_TYPES})"
            ))
        })
    }

    /// `x IS [NOT] TRUE|FALSE`: never `NULL`.
    fn truth(
        &self,
        inner: &Expr,
        op: &str,
        f: impl FnOnce(&BooleanArray) -> Result<BooleanArray, ArrowError>,
    ) -> Result<Value, ExprError> {
        let v = self.eval(inner)?;
        self.expect_boolean(&v, op)?;
        self.boolean_map(v, f)
    }

    fn compare(
        &self,
        a: &Expr,
        b: &Expr,
        op: &str,
        kernel: fn(&dyn Datum, &dyn Datum) -> Result<BooleanArray, ArrowError>,
    ) -> Result<Value, ExprError> {
        let (l, r) = self.coerce(self.eval(a)?, self.eval(b)?, op)?;
        binary(&l, &r, |x, y| Ok(Arc::new(kernel(x, y)?) as ArrayRef)).map_err(|e| self.arrow(e))
    }

    /// Applies a kernel to a boolean value (a `NULL` literal counts as a boolean `NULL`).
    fn boolean_map(
        &self,
        v: Value,
        f: impl FnOnce(&BooleanArray) -> Result<BooleanArray, ArrowError>,
    ) -> Result<Value, ExprError> {
        v.map(|a| {
            let a = cast_strict(a, &DataType::Boolean)?;
            Ok(Arc::new(f(as_bool(&a))?) as ArrayRef)
        })
        .map_err(|e| self.arrow(e))
    }

    fn interval(&self, expr: &Expr, interval: &ast::Interval) -> Result<Value, ExprError> {
        let amount = match interval.value.as_ref() {
            Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => s.clone(),
                other => return Err(self.unsupported(format!("interval value `{other}`"))),
            },
            other => return Err(self.unsupported(format!("interval value `{other}`"))),
        };
        let text = match &interval.leading_field {
            Some(field) => format!("{amount} {field}"),
            None => amount,
        };
        let value = arrow_cast::parse::parse_interval_month_day_nano(&text).map_err(|e| {
            self.type_error(format!(
                "`{expr}` is not an interval: {e} (expected e.g. INTERVAL '5' MINUTE or INTERVAL '1 hour 30 minutes')"
            ))
        })?;
        Ok(Value::Scalar(Arc::new(IntervalMonthDayNanoArray::from(
            vec![value],
        ))))
    }

    /// `CASE`: each branch is evaluated only on the rows it answers, so
    /// `CASE WHEN n <> 0 THEN total / n END` never divides by zero.
    fn case(
        &self,
        operand: Option<&Expr>,
        conditions: &[CaseWhen],
        else_result: Option<&Expr>,
    ) -> Result<Value, ExprError> {
        let rows = self.rows();
        let mut remaining = UInt32Array::from_iter_values(0..rows as u32);
        let mut parts: Vec<(ArrayRef, UInt32Array)> = Vec::with_capacity(conditions.len() + 1);
        for when in conditions {
            let sub = self.take(&remaining)?;
            let cx = Cx {
                text: self.text,
                batch: &sub,
                built: self.built,
            };
            let condition = match operand {
                None => cx.eval(&when.condition)?,
                Some(operand) => {
                    let (l, r) = cx.coerce(cx.eval(operand)?, cx.eval(&when.condition)?, "CASE")?;
                    binary(&l, &r, |a, b| Ok(Arc::new(cmp::eq(a, b)?) as ArrayRef))
                        .map_err(|e| cx.arrow(e))?
                }
            };
            cx.expect_boolean(&condition, "CASE WHEN")?;
            let condition = condition
                .into_array(remaining.len())
                .and_then(|a| cast_strict(&a, &DataType::Boolean))
                .map_err(|e| self.arrow(e))?;
            let hit = true_mask(as_bool(&condition));
            let taken = filter(&remaining, &hit).map_err(|e| self.arrow(e))?;
            let left = filter(&remaining, &not(&hit).map_err(|e| self.arrow(e))?)
                .map_err(|e| self.arrow(e))?;
            let taken = as_u32(&taken).clone();
            let result = self.eval_on(&taken, &when.result)?;
            parts.push((result, taken));
            remaining = as_u32(&left).clone();
        }
        let otherwise = match else_result {
            Some(e) => self.eval_on(&remaining, e)?,
            None => new_null_array(&DataType::Null, remaining.len()),
        };
        parts.push((otherwise, remaining));

        let mut to = DataType::Null;
        for (array, _) in &parts {
            to = common_type(&to, array.data_type()).ok_or_else(|| {
                self.type_error(format!(
                    "CASE results do not mix: {to} and {}",
                    array.data_type()
                ))
            })?;
        }
        let arrays = parts
            .iter()
            .map(|(a, _)| cast_strict(a, &to))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.arrow(e))?;
        let mut slots = vec![(0usize, 0usize); rows];
        for (part, (_, indices)) in parts.iter().enumerate() {
            for (position, row) in indices.values().iter().enumerate() {
                slots[*row as usize] = (part, position);
            }
        }
        let refs: Vec<&dyn Array> = arrays.iter().map(AsRef::as_ref).collect();
        let out = arrow_select::interleave::interleave(&refs, &slots).map_err(|e| self.arrow(e))?;
        Ok(Value::Array(out))
    }

    /// The batch's rows at `indices`.
    fn take(&self, indices: &UInt32Array) -> Result<RecordBatch, ExprError> {
        if indices.len() == self.rows() {
            return Ok(self.batch.clone());
        }
        arrow_select::take::take_record_batch(self.batch, indices).map_err(|e| self.arrow(e))
    }

    /// Evaluates `expr` on the batch's rows at `indices`, as a column.
    fn eval_on(&self, indices: &UInt32Array, expr: &Expr) -> Result<ArrayRef, ExprError> {
        let sub = self.take(indices)?;
        let cx = Cx {
            text: self.text,
            batch: &sub,
            built: self.built,
        };
        cx.eval(expr)?
            .into_array(indices.len())
            .map_err(|e| self.arrow(e))
    }

    fn like(
        &self,
        expr: &Expr,
        pattern: &Expr,
        negated: bool,
        insensitive: bool,
    ) -> Result<Value, ExprError> {
        let v = self.text_value(self.eval(expr)?, "LIKE")?;
        let p = self.text_value(self.eval(pattern)?, "LIKE")?;
        binary(&v, &p, |a, b| {
            let out = match (negated, insensitive) {
                (false, false) => arrow_string::like::like(a, b)?,
                (true, false) => arrow_string::like::nlike(a, b)?,
                (false, true) => arrow_string::like::ilike(a, b)?,
                (true, true) => arrow_string::like::nilike(a, b)?,
            };
            Ok(Arc::new(out) as ArrayRef)
        })
        .map_err(|e| self.arrow(e))
    }

    /// The value as `Utf8`, or a type error naming `op`.
    pub(crate) fn text_value(&self, v: Value, op: &str) -> Result<Value, ExprError> {
        match v.data_type() {
            DataType::Utf8 => Ok(v),
            t if is_text(&t) || t == DataType::Null => v
                .map(|a| cast_strict(a, &DataType::Utf8))
                .map_err(|e| self.arrow(e)),
            other => Err(self.type_error(format!("{op} needs text, got {other}"))),
        }
    }

    fn literal(&self, value: &ast::Value) -> Result<Value, ExprError> {
        let array: ArrayRef = match value {
            ast::Value::Number(n, _) => {
                if let Ok(i) = n.parse::<i64>() {
                    Arc::new(arrow_array::Int64Array::from(vec![i]))
                } else {
                    let f = n
                        .parse::<f64>()
                        .map_err(|e| self.type_error(format!("bad number `{n}`: {e}")))?;
                    Arc::new(arrow_array::Float64Array::from(vec![f]))
                }
            }
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                Arc::new(arrow_array::StringArray::from(vec![s.as_str()]))
            }
            ast::Value::Boolean(b) => Arc::new(BooleanArray::from(vec![*b])),
            ast::Value::Null => new_null_array(&DataType::Null, 1),
            other => return Err(self.unsupported(format!("literal `{other}`"))),
        };
        Ok(Value::Scalar(array))
    }

    pub(crate) fn expect_boolean(&self, v: &Value, op: &str) -> Result<(), ExprError> {
        match v.data_type() {
            DataType::Boolean | DataType::Null => Ok(()),
            other => Err(self.type_error(format!("{op} needs boolean operands, got {other}"))),
        }
    }

    fn logical(&self, l: Value, r: Value, or: bool) -> Result<Value, ExprError> {
        let op = if or { "OR" } else { "AND" };
        self.expect_boolean(&l, op)?;
        self.expect_boolean(&r, op)?;
        let scalar = l.is_scalar() && r.is_scalar();
        let rows = if scalar { 1 } else { self.rows() };
        let to_bool = |v: Value| -> Result<ArrayRef, ArrowError> {
            let a = if scalar {
                v.array().clone()
            } else {
                v.into_array(rows)?
            };
            cast_strict(&a, &DataType::Boolean)
        };
        let out = (|| {
            let (a, b) = (to_bool(l)?, to_bool(r)?);
            if or {
                or_kleene(as_bool(&a), as_bool(&b))
            } else {
                and_kleene(as_bool(&a), as_bool(&b))
            }
        })()
        .map_err(|e| self.arrow(e))?;
        Ok(Value::new(Arc::new(out), scalar))
    }

    fn binary_op(&self, l: Value, op: &BinaryOperator, r: Value) -> Result<Value, ExprError> {
        use BinaryOperator as B;
        match op {
            B::And => return self.logical(l, r, false),
            B::Or => return self.logical(l, r, true),
            B::StringConcat => return functions::string::concat_operator(self, l, r),
            B::Arrow => return functions::json::arrow_operator(self, l, r, false),
            B::LongArrow => return functions::json::arrow_operator(self, l, r, true),
            _ => {}
        }
        let name = op.to_string();
        let interval = |t: &DataType| matches!(t, DataType::Interval(_) | DataType::Duration(_));
        let (l, r) = if matches!(op, B::Plus | B::Minus)
            && (interval(&l.data_type()) || interval(&r.data_type()))
        {
            // Date and time arithmetic: the kernels take the operand types as they are.
            (l, r)
        } else {
            self.coerce(l, r, &name)?
        };
        type Kernel = fn(&dyn Datum, &dyn Datum) -> Result<ArrayRef, ArrowError>;
        let kernel: Kernel = match op {
            B::Eq => |a, b| Ok(Arc::new(cmp::eq(a, b)?)),
            B::NotEq => |a, b| Ok(Arc::new(cmp::neq(a, b)?)),
            B::Lt => |a, b| Ok(Arc::new(cmp::lt(a, b)?)),
            B::LtEq => |a, b| Ok(Arc::new(cmp::lt_eq(a, b)?)),
            B::Gt => |a, b| Ok(Arc::new(cmp::gt(a, b)?)),
            B::GtEq => |a, b| Ok(Arc::new(cmp::gt_eq(a, b)?)),
            B::Plus => numeric::add,
            B::Minus => numeric::sub,
            B::Multiply => numeric::mul,
            B::Divide => numeric::div,
            B::Modulo => numeric::rem,
            other => return Err(self.unsupported(format!("operator `{other}`"))),
        };
        binary(&l, &r, kernel).map_err(|e| match e {
            ArrowError::InvalidArgumentError(_) | ArrowError::ComputeError(_)
                if !is_arithmetic(op) =>
            {
                self.type_error(format!(
                    "`{name}` cannot combine {} with {}",
                    l.data_type(),
                    r.data_type()
                ))
            }
            other => self.arrow(other),
        })
    }

    /// Brings two operands to one type, as SQL engines do for comparisons and arithmetic.
    pub(crate) fn coerce(&self, l: Value, r: Value, op: &str) -> Result<(Value, Value), ExprError> {
        let (lt, rt) = (l.data_type(), r.data_type());
        if lt == rt {
            return Ok((l, r));
        }
        let to = common_type(&lt, &rt)
            .ok_or_else(|| self.type_error(format!("`{op}` cannot combine {lt} with {rt}")))?;
        let convert = |v: Value| {
            v.map(|a| cast_strict(a, &to)).map_err(|e| {
                self.type_error(format!(
                    "`{op}`: a {} operand does not convert to {to}: {e}",
                    if lt == to { &rt } else { &lt }
                ))
            })
        };
        Ok((convert(l)?, convert(r)?))
    }
}

fn is_arithmetic(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(op, B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo)
}

/// `true` where `b` is true, `false` where it is false or `NULL`.
pub(crate) fn true_mask(b: &BooleanArray) -> BooleanArray {
    match b.nulls() {
        None => b.clone(),
        Some(nulls) => BooleanArray::new(b.values() & nulls.inner(), None),
    }
}

pub(crate) fn as_bool(a: &ArrayRef) -> &BooleanArray {
    a.as_any()
        .downcast_ref::<BooleanArray>()
        .expect("operand checked to be boolean")
}

fn as_u32(a: &ArrayRef) -> &UInt32Array {
    a.as_any()
        .downcast_ref::<UInt32Array>()
        .expect("filtered row indices")
}
