//! Aggregates: parsing `"sum(amount) AS total"`, accumulating, merging, and building the output
//! column.

use sabot_sdk::AgentError;
use serde::{Deserialize, Serialize};

pub use crate::values::{OutType, Value};

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    First,
    Last,
    /// Every non-null value, in arrival order, as a list (SQL's `ARRAY_AGG`): what a
    /// user-defined aggregate of SQL (`CREATE AGGREGATE`) folds after the window closes.
    Collect,
}

/// An aggregate of a pipeline's `aggregates` list: `function(column) [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub function: Function,
    /// `None` for `count(*)`.
    pub column: Option<String>,
    pub name: String,
}

impl Aggregate {
    /// Parses `count(*)`, `sum(amount) AS total`, ….
    pub fn parse(text: &str) -> Result<Self, AgentError> {
        let bad = |why: &str| {
            AgentError::invalid_config(format!(
                "aggregate `{text}`: {why}; expected `function(column) [AS name]` with function count, sum, min, max, mean, first, last or collect (count(*) counts rows)"
            ))
        };
        let (call, name) = match text.to_ascii_lowercase().find(" as ") {
            Some(at) => (text[..at].trim(), Some(text[at + 4..].trim().to_owned())),
            None => (text.trim(), None),
        };
        let open = call.find('(').ok_or_else(|| bad("no parenthesis"))?;
        if !call.ends_with(')') {
            return Err(bad("no closing parenthesis"));
        }
        let function = match call[..open].trim().to_ascii_lowercase().as_str() {
            "count" => Function::Count,
            "sum" => Function::Sum,
            "min" => Function::Min,
            "max" => Function::Max,
            "mean" | "avg" => Function::Mean,
            "first" => Function::First,
            "last" => Function::Last,
            "collect" | "array_agg" => Function::Collect,
            other => return Err(bad(&format!("unknown function `{other}`"))),
        };
        let arg = call[open + 1..call.len() - 1].trim();
        let column = match arg {
            "*" if function == Function::Count => None,
            "*" => return Err(bad("only count takes `*`")),
            "" => return Err(bad("no column")),
            c => Some(c.to_owned()),
        };
        let fname = call[..open].trim().to_ascii_lowercase();
        let name = match (name, &column) {
            (Some(n), _) if !n.is_empty() => n,
            (Some(_), _) => return Err(bad("empty name after AS")),
            (None, Some(c)) => format!("{fname}_{c}"),
            (None, None) => "count".to_owned(),
        };
        Ok(Aggregate {
            function,
            column,
            name,
        })
    }
}

/// An aggregate's running state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    Count(i64),
    SumI(Option<i64>),
    SumF(Option<f64>),
    Min(Option<Value>),
    Max(Option<Value>),
    Mean(f64, i64),
    /// The value with the smallest event time (the earliest to arrive among equals).
    First(Option<(i64, Value)>),
    /// The value with the largest event time (the latest to arrive among equals).
    Last(Option<(i64, Value)>),
    /// A user-defined aggregate's accumulator, encoded (see [`UserAggregate`]).
    User(Vec<u8>),
    /// The values `collect` gathered so far.
    Collect(Vec<Value>),
}

impl Acc {
    /// An empty accumulator of `function` over values of type `input`.
    pub fn new(function: Function, input: OutType) -> Acc {
        match function {
            Function::Count => Acc::Count(0),
            Function::Sum if input == OutType::F64 => Acc::SumF(None),
            Function::Sum => Acc::SumI(None),
            Function::Min => Acc::Min(None),
            Function::Max => Acc::Max(None),
            Function::Mean => Acc::Mean(0.0, 0),
            Function::First => Acc::First(None),
            Function::Last => Acc::Last(None),
            Function::Collect => Acc::Collect(Vec::new()),
        }
    }

    /// Adds `value` (of an event at `ts`).
    pub fn add(&mut self, value: Option<Value>, ts: i64) {
        let Some(v) = value else { return };
        match self {
            Acc::User(_) => unreachable!("user aggregates are fed through their aggregator"),
            Acc::Count(n) => *n += 1,
            Acc::Collect(values) => values.push(v),
            Acc::SumI(s) => {
                if let Value::I(x) = v {
                    *s = Some(s.unwrap_or(0).wrapping_add(x));
                }
            }
            Acc::SumF(s) => {
                if let Value::F(x) = v {
                    *s = Some(s.unwrap_or(0.0) + x);
                }
            }
            Acc::Min(m) => {
                if m.as_ref().is_none_or(|m| v < *m) {
                    *m = Some(v);
                }
            }
            Acc::Max(m) => {
                if m.as_ref().is_none_or(|m| v > *m) {
                    *m = Some(v);
                }
            }
            Acc::Mean(sum, n) => {
                let x = match v {
                    Value::I(i) => i as f64,
                    Value::F(f) => f,
                    _ => return,
                };
                *sum += x;
                *n += 1;
            }
            Acc::First(f) => {
                if f.as_ref().is_none_or(|(t, _)| ts < *t) {
                    *f = Some((ts, v));
                }
            }
            Acc::Last(l) => {
                if l.as_ref().is_none_or(|(t, _)| ts >= *t) {
                    *l = Some((ts, v));
                }
            }
        }
    }

    /// Whether [`Acc::retract`] can take a value back out of this accumulator.
    pub fn retracts(function: Function) -> bool {
        matches!(function, Function::Count | Function::Sum | Function::Mean)
    }

    /// Takes back a value [`Acc::add`] added (`count`, `sum` and `mean` only: see
    /// [`Acc::retracts`]; others are left as they are).
    pub fn retract(&mut self, value: Option<Value>) {
        let Some(v) = value else { return };
        match (self, v) {
            (Acc::Count(n), _) => *n -= 1,
            (Acc::SumI(s), Value::I(x)) => *s = Some(s.unwrap_or(0).wrapping_sub(x)),
            (Acc::SumF(s), Value::F(x)) => *s = Some(s.unwrap_or(0.0) - x),
            (Acc::Mean(sum, n), Value::I(x)) => {
                *sum -= x as f64;
                *n -= 1;
            }
            (Acc::Mean(sum, n), Value::F(x)) => {
                *sum -= x;
                *n -= 1;
            }
            _ => {}
        }
    }

    /// Folds `later` (the state of events that arrived after this one's) into this one.
    pub fn merge(&mut self, later: Acc) {
        match (self, later) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Collect(a), Acc::Collect(b)) => a.extend(b),
            (Acc::SumI(a), Acc::SumI(b)) => {
                if let Some(b) = b {
                    *a = Some(a.unwrap_or(0).wrapping_add(b));
                }
            }
            (Acc::SumF(a), Acc::SumF(b)) => {
                if let Some(b) = b {
                    *a = Some(a.unwrap_or(0.0) + b);
                }
            }
            (Acc::Min(a), Acc::Min(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b < *a)
                {
                    *a = Some(b);
                }
            }
            (Acc::Max(a), Acc::Max(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b > *a)
                {
                    *a = Some(b);
                }
            }
            (Acc::Mean(s, n), Acc::Mean(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (Acc::First(a), Acc::First(b)) => {
                if let Some((t, v)) = b
                    && a.as_ref().is_none_or(|(ta, _)| t < *ta)
                {
                    *a = Some((t, v));
                }
            }
            (Acc::Last(a), Acc::Last(b)) => {
                if let Some((t, v)) = b
                    && a.as_ref().is_none_or(|(ta, _)| t >= *ta)
                {
                    *a = Some((t, v));
                }
            }
            (a, b) => unreachable!("merging {a:?} with {b:?}: accumulators of one aggregate"),
        }
    }

    /// The result.
    pub fn finish(&self) -> Option<Value> {
        match self {
            Acc::User(_) => unreachable!("user aggregates are finished by their aggregator"),
            Acc::Count(n) => Some(Value::I(*n)),
            Acc::SumI(s) => s.map(Value::I),
            Acc::SumF(s) => s.map(Value::F),
            Acc::Min(m) | Acc::Max(m) => m.clone(),
            Acc::Mean(s, n) => (*n > 0).then(|| Value::F(s / *n as f64)),
            Acc::First(f) | Acc::Last(f) => f.as_ref().map(|(_, v)| v.clone()),
            Acc::Collect(values) => Some(Value::L(values.clone())),
        }
    }
}

/// A value a user aggregate takes from a column.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::I(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::F(f) => Some(*f),
            Value::I(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::S(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::B(b) => Some(*b),
            _ => None,
        }
    }
}

/// A result a user aggregate produces.
pub trait IntoValue {
    /// The output column's type.
    const TYPE: OutType;
    fn into_value(self) -> Option<Value>;
}

impl IntoValue for i64 {
    const TYPE: OutType = OutType::I64;
    fn into_value(self) -> Option<Value> {
        Some(Value::I(self))
    }
}

impl IntoValue for f64 {
    const TYPE: OutType = OutType::F64;
    fn into_value(self) -> Option<Value> {
        Some(Value::F(self))
    }
}

impl IntoValue for String {
    const TYPE: OutType = OutType::Str;
    fn into_value(self) -> Option<Value> {
        Some(Value::S(self))
    }
}

impl IntoValue for bool {
    const TYPE: OutType = OutType::Bool;
    fn into_value(self) -> Option<Value> {
        Some(Value::B(self))
    }
}

impl<T: IntoValue> IntoValue for Option<T> {
    const TYPE: OutType = T::TYPE;
    fn into_value(self) -> Option<Value> {
        self.and_then(IntoValue::into_value)
    }
}

/// A user-defined aggregate, whatever its types: the SDK's
/// [`Aggregator`](sabot_sdk::state::Aggregator) with its accumulator kept encoded in window state.
/// `Send`, as every operator is: the host runs the built-in ones natively, on its task threads.
pub trait UserAggregate: Send {
    fn create(&self) -> Result<Vec<u8>, AgentError>;
    fn add(&self, acc: &mut Vec<u8>, value: Option<&Value>) -> Result<(), AgentError>;
    fn merge(&self, acc: &mut Vec<u8>, other: &[u8]) -> Result<(), AgentError>;
    fn result(&self, acc: &[u8]) -> Result<Option<Value>, AgentError>;
    fn output(&self) -> OutType;
}

/// Wraps an SDK aggregator as a [`UserAggregate`].
pub struct Erased<In, Acc, Out, A> {
    pub aggregator: A,
    pub _types: std::marker::PhantomData<fn(In, Acc) -> Out>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AgentError> {
    postcard::to_allocvec(v)
        .map_err(|e| AgentError::internal(format!("cannot encode an aggregate's accumulator: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, AgentError> {
    postcard::from_bytes(b).map_err(|e| {
        AgentError::internal(format!("an aggregate's accumulator does not decode: {e}"))
    })
}

impl<In, Acc, Out, A> UserAggregate for Erased<In, Acc, Out, A>
where
    In: FromValue,
    Acc: Serialize + serde::de::DeserializeOwned,
    Out: IntoValue,
    A: sabot_sdk::state::Aggregator<In, Acc, Out> + Send,
{
    fn create(&self) -> Result<Vec<u8>, AgentError> {
        encode(&self.aggregator.create())
    }

    fn add(&self, acc: &mut Vec<u8>, value: Option<&Value>) -> Result<(), AgentError> {
        let Some(input) = value.and_then(In::from_value) else {
            return Ok(()); // nulls, and values of another type, are skipped
        };
        let mut a: Acc = decode(acc)?;
        self.aggregator.add(&mut a, input);
        *acc = encode(&a)?;
        Ok(())
    }

    fn merge(&self, acc: &mut Vec<u8>, other: &[u8]) -> Result<(), AgentError> {
        let mut a: Acc = decode(acc)?;
        self.aggregator.merge(&mut a, decode(other)?)?;
        *acc = encode(&a)?;
        Ok(())
    }

    fn result(&self, acc: &[u8]) -> Result<Option<Value>, AgentError> {
        Ok(self.aggregator.result(&decode(acc)?).into_value())
    }

    fn output(&self) -> OutType {
        Out::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_parse_with_and_without_names() {
        let a = Aggregate::parse("sum(amount) AS total").unwrap();
        assert_eq!(
            (a.function, a.column.as_deref(), a.name.as_str()),
            (Function::Sum, Some("amount"), "total")
        );
        assert_eq!(Aggregate::parse("count(*)").unwrap().name, "count");
        assert_eq!(Aggregate::parse("AVG(x)").unwrap().name, "avg_x");
        for bad in ["median(x)", "sum(*)", "sum x", "sum()", "max(x) as "] {
            let e = Aggregate::parse(bad).unwrap_err().message;
            assert!(e.contains(&format!("aggregate `{bad}`")), "{e}");
        }
    }

    #[test]
    fn collect_keeps_non_null_values_in_arrival_order_as_a_list_column() {
        use sabot_sdk::arrow::array::{Array, Float64Array, ListArray};
        let a = Aggregate::parse("collect(amount) AS agg0_list").unwrap();
        assert_eq!(a.function, Function::Collect);
        assert_eq!(
            Aggregate::parse("array_agg(x)").unwrap().function,
            Function::Collect
        );
        let mut acc = Acc::new(Function::Collect, OutType::F64);
        for (v, ts) in [(Some(2.0), 5), (None, 6), (Some(1.0), 1)] {
            acc.add(v.map(Value::F), ts);
        }
        let mut later = Acc::new(Function::Collect, OutType::F64);
        later.add(Some(Value::F(3.0)), 9);
        acc.merge(later);
        let ty = OutType::F64.result(Function::Collect);
        assert_eq!(ty, OutType::ListF64);
        let column = crate::values::build(ty, vec![acc.finish(), None]);
        assert_eq!(column.data_type(), &ty.data_type());
        let lists = column.as_any().downcast_ref::<ListArray>().unwrap();
        let first = lists.value(0);
        let first = first.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(first.values().to_vec(), [2.0, 1.0, 3.0]);
        assert!(lists.is_null(1));
    }

    #[test]
    fn merging_gives_what_adding_everything_to_one_would() {
        let values = [(5, 3i64), (1, -2), (9, 7), (4, 3)];
        for f in [
            Function::Count,
            Function::Sum,
            Function::Min,
            Function::Max,
            Function::Mean,
            Function::First,
            Function::Last,
        ] {
            let mut one = Acc::new(f, OutType::I64);
            for (t, v) in values {
                one.add(Some(Value::I(v)), t);
            }
            let (mut a, mut b) = (Acc::new(f, OutType::I64), Acc::new(f, OutType::I64));
            for (t, v) in &values[..2] {
                a.add(Some(Value::I(*v)), *t);
            }
            for (t, v) in &values[2..] {
                b.add(Some(Value::I(*v)), *t);
            }
            a.merge(b);
            assert_eq!(a.finish(), one.finish(), "{f:?}");
        }
    }
}
