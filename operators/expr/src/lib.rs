//! SQL expressions over Arrow record batches, for Sabot's built-in `filter` and `project`
//! operators.
//!
//! Expressions are parsed with [`sqlparser`] and evaluated column-at-a-time with Arrow's compute
//! kernels, so a predicate costs a few vectorised passes over a batch, not a call per row.
//!
//! Supported: column names (quote with `"…"` when they are not plain identifiers), number, string,
//! boolean and `NULL` literals, `+ - * / %`, `= <> != < <= > >=`, `AND OR NOT`, `IS [NOT] NULL`,
//! `[NOT] IN (…)`, `[NOT] BETWEEN … AND …`, `[NOT] LIKE` / `ILIKE`, `CAST(x AS type)` and
//! parentheses. Integers mixed with floats compute as `Float64`; integers of different widths as
//! `Int64`.
//!
//! ```
//! # use std::sync::Arc;
//! # use arrow_array::{Float64Array, RecordBatch, StringArray};
//! # use arrow_schema::{DataType, Field, Schema};
//! use sabot_expr::Predicate;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("amount", DataType::Float64, false),
//!     Field::new("country", DataType::Utf8, false),
//! ]));
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(Float64Array::from(vec![5.0, 5000.0, 7000.0])),
//!     Arc::new(StringArray::from(vec!["FR", "FR", "NG"])),
//! ]).unwrap();
//!
//! let big_abroad = Predicate::parse("amount > 1000 AND country IN ('NG', 'KP')").unwrap();
//! assert_eq!(big_abroad.filter(&batch).unwrap().num_rows(), 1);
//! ```

use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_arith::numeric;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, RecordBatch, Scalar, UInt32Array, new_null_array,
};
use arrow_cast::cast;
use arrow_ord::cmp;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_select::filter::filter_record_batch;
use sqlparser::ast::{self, BinaryOperator, Expr, SelectItem, UnaryOperator};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// Why an expression could not be parsed or evaluated. Messages quote the expression.
#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    /// The text is not a valid expression.
    #[error("cannot parse expression `{text}`: {message}")]
    Parse { text: String, message: String },
    /// A column named in the expression is not in the batch.
    #[error("unknown column `{name}` in `{text}` (the input has columns: {available})")]
    UnknownColumn {
        name: String,
        text: String,
        available: String,
    },
    /// The operand types do not fit the operator.
    #[error("type error in `{text}`: {message}")]
    Type { text: String, message: String },
    /// A construct this evaluator does not support.
    #[error(
        "unsupported in `{text}`: {what} (supported: columns, literals, + - * / %, comparisons, AND/OR/NOT, IS NULL, IN, BETWEEN, LIKE, CAST)"
    )]
    Unsupported { text: String, what: String },
    /// An Arrow kernel failed (division by zero, overflow, a failed cast).
    #[error("evaluating `{text}`: {source}")]
    Arrow { text: String, source: ArrowError },
}

/// A parsed boolean expression that selects rows.
#[derive(Debug, Clone)]
pub struct Predicate {
    text: String,
    expr: Expr,
}

impl Predicate {
    /// Parses a SQL boolean expression, e.g. `amount > 100 AND country <> 'FR'`.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        Ok(Predicate {
            text: text.to_owned(),
            expr: parse_one_expr(text)?,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the predicate over `batch`: one boolean per row (`NULL` counts as false when
    /// filtering).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, ExprError> {
        let cx = Cx {
            text: &self.text,
            batch,
        };
        let value = cx.eval(&self.expr)?;
        if value.data_type() != DataType::Boolean {
            return Err(cx.type_error(format!(
                "a filter must be a boolean expression, this one is of type {}",
                value.data_type()
            )));
        }
        let array = value.into_array(batch.num_rows(), &cx)?;
        Ok(array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("checked boolean above")
            .clone())
    }

    /// The rows of `batch` for which the predicate is true.
    pub fn filter(&self, batch: &RecordBatch) -> Result<RecordBatch, ExprError> {
        let mask = self.evaluate(batch)?;
        filter_record_batch(batch, &mask).map_err(|source| ExprError::Arrow {
            text: self.text.clone(),
            source,
        })
    }
}

/// A parsed list of output columns: `txn_id, amount * 0.92 AS amount_eur, *`.
#[derive(Debug, Clone)]
pub struct Projection {
    text: String,
    items: Vec<Item>,
    cached: Option<(SchemaRef, SchemaRef)>,
}

#[derive(Debug, Clone)]
enum Item {
    Wildcard,
    Expr { name: String, expr: Box<Expr> },
}

impl Projection {
    /// Parses a SQL select list.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let parse_error = |e: sqlparser::parser::ParserError| ExprError::Parse {
            text: text.to_owned(),
            message: e.to_string(),
        };
        let mut parser = Parser::new(&GenericDialect {})
            .try_with_sql(text)
            .map_err(parse_error)?;
        let items = parser
            .parse_comma_separated(Parser::parse_select_item)
            .map_err(parse_error)?;
        expect_end(&parser, text)?;
        let items = items
            .into_iter()
            .map(|item| match item {
                SelectItem::Wildcard(_) => Ok(Item::Wildcard),
                SelectItem::UnnamedExpr(expr) => Ok(Item::Expr {
                    name: default_name(&expr),
                    expr: Box::new(expr),
                }),
                SelectItem::ExprWithAlias { expr, alias } => Ok(Item::Expr {
                    name: alias.value,
                    expr: Box::new(expr),
                }),
                other => Err(ExprError::Unsupported {
                    text: text.to_owned(),
                    what: format!("select item `{other}`"),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Projection {
            text: text.to_owned(),
            items,
            cached: None,
        })
    }

    /// Parses several select items, each its own string, as one list.
    pub fn parse_items<S: AsRef<str>>(items: &[S]) -> Result<Self, ExprError> {
        let joined = items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ");
        Self::parse(&joined)
    }

    /// Computes the output columns for `batch`.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, ExprError> {
        let cx = Cx {
            text: &self.text,
            batch,
        };
        let rows = batch.num_rows();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for item in &self.items {
            match item {
                Item::Wildcard => {
                    fields.extend(batch.schema().fields().iter().map(|f| f.as_ref().clone()));
                    columns.extend(batch.columns().iter().cloned());
                }
                Item::Expr { name, expr } => {
                    let array = cx.eval(expr)?.into_array(rows, &cx)?;
                    let nullable = array.null_count() > 0
                        || column_of(expr)
                            .and_then(|c| batch.schema().field_with_name(c).ok().cloned())
                            .is_none_or(|f| f.is_nullable());
                    fields.push(Field::new(name, array.data_type().clone(), nullable));
                    columns.push(array);
                }
            }
        }
        let input = batch.schema();
        let schema = match &self.cached {
            // Reuse one schema per input schema, so downstream sees a stable schema (and the IPC
            // framing does not resend it) unless the input changes.
            Some((seen, out))
                if *seen == input
                    && out.fields().len() == fields.len()
                    && out.fields().iter().zip(&fields).all(|(a, b)| {
                        a.data_type() == b.data_type() && (a.is_nullable() || !b.is_nullable())
                    }) =>
            {
                out.clone()
            }
            _ => {
                // Nullability is widened once seen, so a later batch with nulls keeps the schema.
                let out = Arc::new(Schema::new(fields.clone()));
                self.cached = Some((input, out.clone()));
                out
            }
        };
        RecordBatch::try_new(schema, columns).map_err(|source| ExprError::Arrow {
            text: self.text.clone(),
            source,
        })
    }
}

fn default_name(expr: &Expr) -> String {
    match column_of(expr) {
        Some(name) => name.to_owned(),
        None => expr.to_string(),
    }
}

fn column_of(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Identifier(ident) => Some(&ident.value),
        Expr::Nested(inner) => column_of(inner),
        _ => None,
    }
}

fn parse_one_expr(text: &str) -> Result<Expr, ExprError> {
    let parse_error = |e: sqlparser::parser::ParserError| ExprError::Parse {
        text: text.to_owned(),
        message: e.to_string(),
    };
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .map_err(parse_error)?;
    let expr = parser.parse_expr().map_err(parse_error)?;
    expect_end(&parser, text)?;
    Ok(expr)
}

fn expect_end(parser: &Parser<'_>, text: &str) -> Result<(), ExprError> {
    let next = parser.peek_token();
    if next.token == Token::EOF {
        Ok(())
    } else {
        Err(ExprError::Parse {
            text: text.to_owned(),
            message: format!(
                "unexpected `{}` after the end of the expression",
                next.token
            ),
        })
    }
}

/// A value during evaluation: a column, or one value for every row.
enum Value {
    Array(ArrayRef),
    /// An array of length 1.
    Scalar(ArrayRef),
}

impl Value {
    fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) | Value::Scalar(a) => a,
        }
    }

    fn data_type(&self) -> DataType {
        self.array().data_type().clone()
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    fn into_array(self, rows: usize, cx: &Cx<'_>) -> Result<ArrayRef, ExprError> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) if s.is_null(0) => Ok(new_null_array(s.data_type(), rows)),
            Value::Scalar(s) => {
                let indices = UInt32Array::from(vec![0u32; rows]);
                arrow_select::take::take(s.as_ref(), &indices, None).map_err(|e| cx.arrow(e))
            }
        }
    }

    fn map(
        self,
        f: impl FnOnce(&ArrayRef) -> Result<ArrayRef, ArrowError>,
        cx: &Cx<'_>,
    ) -> Result<Value, ExprError> {
        let scalar = self.is_scalar();
        let out = f(self.array()).map_err(|e| cx.arrow(e))?;
        Ok(if scalar {
            Value::Scalar(out)
        } else {
            Value::Array(out)
        })
    }
}

/// Applies a two-operand kernel, keeping a scalar result scalar.
fn binary(
    l: &Value,
    r: &Value,
    f: impl FnOnce(&dyn Datum, &dyn Datum) -> Result<ArrayRef, ArrowError>,
    cx: &Cx<'_>,
) -> Result<Value, ExprError> {
    let both_scalar = l.is_scalar() && r.is_scalar();
    let out = match (l, r) {
        (Value::Array(a), Value::Array(b)) => f(a, b),
        (Value::Array(a), Value::Scalar(b)) => f(a, &Scalar::new(b.clone())),
        (Value::Scalar(a), Value::Array(b)) => f(&Scalar::new(a.clone()), b),
        (Value::Scalar(a), Value::Scalar(b)) => f(a, b),
    }
    .map_err(|e| cx.arrow(e))?;
    Ok(if both_scalar {
        Value::Scalar(out)
    } else {
        Value::Array(out)
    })
}

struct Cx<'a> {
    text: &'a str,
    batch: &'a RecordBatch,
}

impl Cx<'_> {
    fn arrow(&self, source: ArrowError) -> ExprError {
        ExprError::Arrow {
            text: self.text.to_owned(),
            source,
        }
    }

    fn type_error(&self, message: String) -> ExprError {
        ExprError::Type {
            text: self.text.to_owned(),
            message,
        }
    }

    fn unsupported(&self, what: String) -> ExprError {
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

    fn eval(&self, expr: &Expr) -> Result<Value, ExprError> {
        match expr {
            Expr::Identifier(ident) => self.column(&ident.value),
            Expr::CompoundIdentifier(parts) if parts.len() == 1 => self.column(&parts[0].value),
            Expr::Nested(inner) => self.eval(inner),
            Expr::Value(v) => self.literal(&v.value),
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
                        v.map(|a| Ok(Arc::new(not(as_bool(a))?) as ArrayRef), self)
                    }
                    UnaryOperator::Minus => v.map(|a| numeric::neg(a), self),
                    UnaryOperator::Plus => Ok(v),
                    other => Err(self.unsupported(format!("unary operator `{other}`"))),
                }
            }
            Expr::IsNull(inner) => {
                let v = self.eval(inner)?;
                v.map(|a| Ok(Arc::new(is_null(a.as_ref())?) as ArrayRef), self)
            }
            Expr::IsNotNull(inner) => {
                let v = self.eval(inner)?;
                v.map(|a| Ok(Arc::new(is_not_null(a.as_ref())?) as ArrayRef), self)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let probe = self.eval(expr)?;
                let mut acc: Option<Value> = None;
                for item in list {
                    let candidate = self.eval(item)?;
                    let (p, c) = self.coerce(probe_clone(&probe), candidate, "IN")?;
                    let eq = binary(
                        &p,
                        &c,
                        |a, b| Ok(Arc::new(cmp::eq(a, b)?) as ArrayRef),
                        self,
                    )?;
                    acc = Some(match acc {
                        None => eq,
                        Some(prev) => self.logical(prev, eq, true)?,
                    });
                }
                let Some(result) = acc else {
                    return Err(self.type_error("IN needs at least one value".into()));
                };
                if *negated {
                    result.map(|a| Ok(Arc::new(not(as_bool(a))?) as ArrayRef), self)
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
                let (a, lo) = self.coerce(probe_clone(&v), self.eval(low)?, "BETWEEN")?;
                let (b, hi) = self.coerce(v, self.eval(high)?, "BETWEEN")?;
                let ge = binary(
                    &a,
                    &lo,
                    |x, y| Ok(Arc::new(cmp::gt_eq(x, y)?) as ArrayRef),
                    self,
                )?;
                let le = binary(
                    &b,
                    &hi,
                    |x, y| Ok(Arc::new(cmp::lt_eq(x, y)?) as ArrayRef),
                    self,
                )?;
                let inside = self.logical(ge, le, false)?;
                if *negated {
                    inside.map(|a| Ok(Arc::new(not(as_bool(a))?) as ArrayRef), self)
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
                expr,
                data_type,
                format: None,
                ..
            } => {
                let to = sql_type(data_type).ok_or_else(|| {
                    self.unsupported(format!(
                        "CAST to `{data_type}` (supported: BOOLEAN, INT, BIGINT, DOUBLE, FLOAT, VARCHAR, TEXT, TIMESTAMP)"
                    ))
                })?;
                let v = self.eval(expr)?;
                v.map(|a| cast(a, &to), self)
            }
            other => Err(self.unsupported(format!("`{other}`"))),
        }
    }

    fn like(
        &self,
        expr: &Expr,
        pattern: &Expr,
        negated: bool,
        insensitive: bool,
    ) -> Result<Value, ExprError> {
        let v = self.string(self.eval(expr)?, "LIKE")?;
        let p = self.string(self.eval(pattern)?, "LIKE")?;
        binary(
            &v,
            &p,
            |a, b| {
                let out = match (negated, insensitive) {
                    (false, false) => arrow_string::like::like(a, b)?,
                    (true, false) => arrow_string::like::nlike(a, b)?,
                    (false, true) => arrow_string::like::ilike(a, b)?,
                    (true, true) => arrow_string::like::nilike(a, b)?,
                };
                Ok(Arc::new(out) as ArrayRef)
            },
            self,
        )
    }

    fn string(&self, v: Value, op: &str) -> Result<Value, ExprError> {
        match v.data_type() {
            DataType::Utf8 => Ok(v),
            DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Dictionary(_, _)
            | DataType::Null => v.map(|a| cast(a, &DataType::Utf8), self),
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

    fn expect_boolean(&self, v: &Value, op: &str) -> Result<(), ExprError> {
        match v.data_type() {
            DataType::Boolean | DataType::Null => Ok(()),
            other => Err(self.type_error(format!("{op} needs boolean operands, got {other}"))),
        }
    }

    fn logical(&self, l: Value, r: Value, or: bool) -> Result<Value, ExprError> {
        let op = if or { "OR" } else { "AND" };
        self.expect_boolean(&l, op)?;
        self.expect_boolean(&r, op)?;
        let rows = if l.is_scalar() && r.is_scalar() {
            1
        } else {
            self.batch.num_rows()
        };
        let scalar = l.is_scalar() && r.is_scalar();
        let to_bool = |v: Value| -> Result<ArrayRef, ExprError> {
            let a = if v.is_scalar() && rows == 1 {
                v.array().clone()
            } else {
                v.into_array(rows, self)?
            };
            if a.data_type() == &DataType::Null {
                cast(&a, &DataType::Boolean).map_err(|e| self.arrow(e))
            } else {
                Ok(a)
            }
        };
        let (a, b) = (to_bool(l)?, to_bool(r)?);
        let out = if or {
            or_kleene(as_bool(&a), as_bool(&b))
        } else {
            and_kleene(as_bool(&a), as_bool(&b))
        }
        .map_err(|e| self.arrow(e))?;
        let out: ArrayRef = Arc::new(out);
        Ok(if scalar {
            Value::Scalar(out)
        } else {
            Value::Array(out)
        })
    }

    fn binary_op(&self, l: Value, op: &BinaryOperator, r: Value) -> Result<Value, ExprError> {
        use BinaryOperator as B;
        match op {
            B::And => return self.logical(l, r, false),
            B::Or => return self.logical(l, r, true),
            _ => {}
        }
        let name = op.to_string();
        let (l, r) = self.coerce(l, r, &name)?;
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
        binary(&l, &r, kernel, self)
    }

    /// Brings two operands to one type, as SQL engines do for comparisons and arithmetic.
    fn coerce(&self, l: Value, r: Value, op: &str) -> Result<(Value, Value), ExprError> {
        let (lt, rt) = (l.data_type(), r.data_type());
        if lt == rt {
            return Ok((l, r));
        }
        let to = match (&lt, &rt) {
            (DataType::Null, t) | (t, DataType::Null) => t.clone(),
            (a, b) if a.is_integer() && b.is_integer() => DataType::Int64,
            (a, b) if a.is_numeric() && b.is_numeric() => DataType::Float64,
            (a, b) if is_text(a) && is_text(b) => DataType::Utf8,
            (DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64, b) if is_text(b) => {
                lt.clone()
            }
            (a, DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64) if is_text(a) => {
                rt.clone()
            }
            _ => {
                return Err(self.type_error(format!("`{op}` cannot combine {lt} with {rt}")));
            }
        };
        let l = if lt == to {
            l
        } else {
            l.map(|a| cast(a, &to), self)?
        };
        let r = if rt == to {
            r
        } else {
            r.map(|a| cast(a, &to), self)?
        };
        Ok((l, r))
    }
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn probe_clone(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.clone()),
        Value::Scalar(a) => Value::Scalar(a.clone()),
    }
}

fn as_bool(a: &ArrayRef) -> &BooleanArray {
    a.as_any()
        .downcast_ref::<BooleanArray>()
        .expect("operand checked to be boolean")
}

fn sql_type(t: &ast::DataType) -> Option<DataType> {
    use ast::DataType as S;
    Some(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::Int(_) | S::Integer(_) | S::Int4(_) => DataType::Int32,
        S::BigInt(_) | S::Int8(_) | S::Int64 => DataType::Int64,
        S::SmallInt(_) | S::Int2(_) => DataType::Int16,
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => DataType::Float64,
        S::Float(_) | S::Real | S::Float4 | S::Float32 => DataType::Float32,
        S::Varchar(_) | S::Text | S::String(_) | S::Char(_) => DataType::Utf8,
        S::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Millisecond, None),
        S::Date => DataType::Date32,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int32Array, Int64Array, StringArray};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("qty", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(Float64Array::from(vec![
                    Some(10.0),
                    Some(2500.0),
                    None,
                    Some(99.5),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("FR"),
                    Some("NG"),
                    Some("KP"),
                    None,
                ])),
                Arc::new(Int32Array::from(vec![1, 5, 10, 20])),
            ],
        )
        .unwrap()
    }

    fn ids(filtered: &RecordBatch) -> Vec<i64> {
        filtered
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    fn keep(expr: &str) -> Vec<i64> {
        ids(&Predicate::parse(expr).unwrap().filter(&batch()).unwrap())
    }

    #[test]
    fn comparisons_mix_integer_and_float_operands() {
        assert_eq!(keep("amount > 50"), vec![2, 4]);
        assert_eq!(keep("qty >= 5 AND qty < 20"), vec![2, 3]);
        assert_eq!(keep("qty * 2.5 > amount"), vec![]);
        assert_eq!(keep("id % 2 = 0"), vec![2, 4]);
    }

    #[test]
    fn nulls_follow_sql_three_valued_logic() {
        assert_eq!(keep("amount IS NULL"), vec![3]);
        assert_eq!(keep("country IS NOT NULL AND amount < 100"), vec![1]);
        assert_eq!(keep("amount > 100 OR country = 'KP'"), vec![2, 3]);
        assert_eq!(keep("NOT (amount > 100)"), vec![1, 4]);
    }

    #[test]
    fn in_between_and_like_select_rows() {
        assert_eq!(keep("country IN ('NG', 'KP')"), vec![2, 3]);
        assert_eq!(keep("country NOT IN ('NG', 'KP')"), vec![1]);
        assert_eq!(keep("qty BETWEEN 5 AND 10"), vec![2, 3]);
        assert_eq!(keep("country LIKE 'N%'"), vec![2]);
        assert_eq!(keep("country ILIKE 'fr'"), vec![1]);
        assert_eq!(keep("CAST(qty AS VARCHAR) = '20'"), vec![4]);
    }

    #[test]
    fn constant_predicates_apply_to_every_row() {
        assert_eq!(keep("true"), vec![1, 2, 3, 4]);
        assert_eq!(keep("1 = 2"), Vec::<i64>::new());
    }

    #[test]
    fn unknown_columns_are_named_with_the_available_ones() {
        let err = Predicate::parse("amout > 5")
            .unwrap()
            .filter(&batch())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown column `amout`"), "{err}");
        assert!(err.contains("id, amount, country, qty"), "{err}");
    }

    #[test]
    fn parse_errors_quote_the_expression() {
        let err = Predicate::parse("amount >").unwrap_err().to_string();
        assert!(err.contains("`amount >`"), "{err}");
        let err = Predicate::parse("amount > 1 2").unwrap_err().to_string();
        assert!(err.contains("unexpected `2`"), "{err}");
    }

    #[test]
    fn non_boolean_filters_and_type_clashes_are_refused() {
        let err = Predicate::parse("amount + 1")
            .unwrap()
            .filter(&batch())
            .unwrap_err()
            .to_string();
        assert!(err.contains("boolean"), "{err}");
        let err = Predicate::parse("country > 5")
            .unwrap()
            .filter(&batch())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot combine Utf8 with Int64"), "{err}");
    }

    #[test]
    fn projection_computes_named_columns_and_wildcards() {
        let mut p = Projection::parse("id, amount * 2 AS double_amount, upper_country")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = p.apply(&batch()).unwrap_err().to_string();
        assert!(err.contains("unknown column `upper_country`"), "{err}");

        let mut p =
            Projection::parse_items(&["id", "amount * 2 AS double_amount", "qty + 1"]).unwrap();
        let out = p.apply(&batch()).unwrap();
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, vec!["id", "double_amount", "qty + 1"]);
        let doubled = out
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(doubled.value(1), 5000.0);
        assert!(doubled.is_null(2));

        let mut all = Projection::parse("*, id * 10 AS id10").unwrap();
        assert_eq!(all.apply(&batch()).unwrap().num_columns(), 5);
    }

    #[test]
    fn projection_keeps_one_schema_across_batches() {
        let mut p = Projection::parse("id, amount").unwrap();
        let a = p.apply(&batch()).unwrap();
        let b = p.apply(&batch()).unwrap();
        assert!(Arc::ptr_eq(&a.schema(), &b.schema()));
    }
}
