//! Scalar functions that SQL calls: `CREATE FUNCTION risk AS 'fx@1.0.0'` makes `risk(amount,
//! country)` usable in a SQL pipeline's expressions.
//!
//! Each call site runs as an agent of the module, configured with a [`Call`]: the function, the
//! columns holding its arguments, and the column to write. The agent returns every row it got
//! with the result appended as that column — one crossing of the sandbox per batch, whatever the
//! number of rows. The SQL planner learns the result type by sending a batch with no rows: the
//! module answers with an empty batch whose new column has the result type, or refuses the
//! argument types with an `invalid-input` error that says what the function takes. Modules in
//! any language follow this protocol; in Rust, implement [`ScalarFunction`] and name the
//! functions in [`export_functions!`](crate::export_functions):
//!
//! ```
//! use std::sync::Arc;
//! use sabot_sdk::arrow::array::{Array, ArrayRef, Float64Array, StringArray};
//! use sabot_sdk::arrow::datatypes::DataType;
//! use sabot_sdk::AgentError;
//! use sabot_sdk::function::{ScalarFunction, Signature};
//!
//! /// A risk score from an amount and a country.
//! struct Risk;
//!
//! impl ScalarFunction for Risk {
//!     fn signature(&self) -> Signature {
//!         Signature::new([DataType::Float64, DataType::Utf8], DataType::Float64)
//!     }
//!
//!     fn call(&self, args: &[ArrayRef]) -> Result<ArrayRef, AgentError> {
//!         let amount = args[0].as_any().downcast_ref::<Float64Array>().expect("checked");
//!         let country = args[1].as_any().downcast_ref::<StringArray>().expect("checked");
//!         let score: Float64Array = amount
//!             .iter()
//!             .zip(country.iter())
//!             .map(|(a, c)| Some(a? / 1000.0 + if c? == "KP" { 1.0 } else { 0.0 }))
//!             .collect();
//!         Ok(Arc::new(score))
//!     }
//! }
//!
//! sabot_sdk::export_functions!("risk" => Risk);
//! ```
//!
//! The arguments reach [`ScalarFunction::call`] already checked against the signature, so the
//! downcasts cannot fail; a NULL argument is the function's to handle (above: a NULL result).

use serde::{Deserialize, Serialize};

/// The config of an agent that applies a function: what the SQL planner writes for each call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The function's name, as `CREATE FUNCTION` declared it.
    pub function: String,
    /// The columns holding the arguments, in order.
    pub args: Vec<String>,
    /// The column to append the results as.
    pub output: String,
}

#[cfg(feature = "guest")]
pub use guest::*;

#[cfg(feature = "guest")]
mod guest {
    use std::sync::Arc;

    use arrow_array::{Array, ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::Call;
    use crate::{AgentError, Config, Emitter};

    /// The types a function takes and the type it returns.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Signature {
        /// The argument types, in order. A column of another type is refused at planning time
        /// (SQL's `CAST` converts it).
        pub args: Vec<DataType>,
        /// The type of the result.
        pub returns: DataType,
    }

    impl Signature {
        /// A function of `args` returning `returns`.
        pub fn new(args: impl IntoIterator<Item = DataType>, returns: DataType) -> Self {
            Signature {
                args: args.into_iter().collect(),
                returns,
            }
        }
    }

    /// A function of columns to a column, applied to a whole batch at once.
    pub trait ScalarFunction: 'static {
        /// The types it takes and returns: what the SQL planner checks calls against.
        fn signature(&self) -> Signature;

        /// One result per row from the argument columns, which have the signature's types and
        /// the same length. The result must have that length and the signature's return type.
        fn call(&self, args: &[ArrayRef]) -> Result<ArrayRef, AgentError>;
    }

    /// Makes a function, by the name SQL calls it.
    pub type Constructor = fn() -> Box<dyn ScalarFunction>;

    /// The agent behind [`export_functions!`](crate::export_functions): applies one function
    /// of the module to the columns its [`Call`] names.
    pub struct FunctionAgent {
        function: Box<dyn ScalarFunction>,
        signature: Signature,
        call: Call,
    }

    impl FunctionAgent {
        /// The agent for the function `config` names, among `functions`.
        pub fn new(config: Config, functions: &[(&str, Constructor)]) -> Result<Self, AgentError> {
            let names = || {
                functions
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let call: Call = config.parse().map_err(|_| {
                AgentError::invalid_config(format!(
                    "a function module is configured with {{\"function\": NAME, \"args\": [COLUMN, …], \"output\": COLUMN}}, got {} (functions: {})",
                    config.as_str(),
                    names()
                ))
            })?;
            let Some((_, make)) = functions
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&call.function))
            else {
                return Err(AgentError::invalid_config(format!(
                    "this module has no function `{}` (functions: {})",
                    call.function,
                    names()
                )));
            };
            let function = make();
            let signature = function.signature();
            if signature.args.len() != call.args.len() {
                return Err(AgentError::invalid_config(format!(
                    "{} takes {} argument(s), {}; the call gives {}",
                    call.function,
                    signature.args.len(),
                    describe(&call.function, &signature),
                    call.args.len()
                )));
            }
            Ok(FunctionAgent {
                function,
                signature,
                call,
            })
        }

        /// Appends the function's result for each row of `batch` as the call's output column.
        pub fn process(&mut self, batch: RecordBatch, out: &mut Emitter) -> Result<(), AgentError> {
            let name = &self.call.function;
            let mut args = Vec::with_capacity(self.call.args.len());
            for (i, (column, ty)) in self.call.args.iter().zip(&self.signature.args).enumerate() {
                let array = batch.column_by_name(column).ok_or_else(|| {
                    AgentError::invalid_input(format!(
                        "{name}: no column `{column}` for argument {} in the batch",
                        i + 1
                    ))
                })?;
                if array.data_type() != ty {
                    return Err(AgentError::invalid_input(format!(
                        "{}: argument {} (`{column}`) is {}, expected {ty} (CAST it)",
                        describe(name, &self.signature),
                        i + 1,
                        array.data_type()
                    )));
                }
                args.push(array.clone());
            }
            let result = self.function.call(&args)?;
            if result.len() != batch.num_rows() || result.data_type() != &self.signature.returns {
                return Err(AgentError::internal(format!(
                    "{name} returned {} value(s) of type {} for {} row(s); its signature says {}",
                    result.len(),
                    result.data_type(),
                    batch.num_rows(),
                    self.signature.returns
                )));
            }
            let mut fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .filter(|f| f.name() != &self.call.output)
                .map(|f| f.as_ref().clone())
                .collect();
            let mut columns: Vec<ArrayRef> = batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .filter(|(f, _)| f.name() != &self.call.output)
                .map(|(_, c)| c.clone())
                .collect();
            fields.push(Field::new(
                &self.call.output,
                result.data_type().clone(),
                true,
            ));
            columns.push(result);
            // Kept even without rows: the planner's question is answered by the schema.
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
            out.batches.push((0, batch));
            Ok(())
        }
    }

    /// A Rust value an aggregate reads or returns, with its Arrow type.
    pub trait ArrowValue: Sized + 'static {
        /// The Arrow type of a column of these values.
        fn data_type() -> DataType;
        /// The value at `row` of `array` (of [`ArrowValue::data_type`]); `None` when null.
        fn read(array: &dyn Array, row: usize) -> Option<Self>;
        /// A column of `values`.
        fn column(values: Vec<Option<Self>>) -> ArrayRef;
    }

    macro_rules! arrow_values {
        ($($t:ty => $dt:expr, $array:ty, $get:expr);* $(;)?) => {$(
            impl ArrowValue for $t {
                fn data_type() -> DataType {
                    $dt
                }
                fn read(array: &dyn Array, row: usize) -> Option<Self> {
                    let a = array.as_any().downcast_ref::<$array>()?;
                    a.is_valid(row).then(|| $get(a, row))
                }
                fn column(values: Vec<Option<Self>>) -> ArrayRef {
                    Arc::new(values.into_iter().collect::<$array>())
                }
            }
        )*};
    }

    arrow_values! {
        f64 => DataType::Float64, arrow_array::Float64Array, |a: &arrow_array::Float64Array, i| a.value(i);
        i64 => DataType::Int64, arrow_array::Int64Array, |a: &arrow_array::Int64Array, i| a.value(i);
        bool => DataType::Boolean, arrow_array::BooleanArray, |a: &arrow_array::BooleanArray, i| a.value(i);
        String => DataType::Utf8, arrow_array::StringArray, |a: &arrow_array::StringArray, i| a.value(i).to_owned();
    }

    /// What an aggregate returns: a value, or an optional one (`None` is NULL).
    pub trait ArrowResult: 'static {
        /// The type of the values in the column.
        type Value: ArrowValue;
        /// The value, or `None` for NULL.
        fn into_option(self) -> Option<Self::Value>;
    }

    impl<T: ArrowValue> ArrowResult for Option<T> {
        type Value = T;
        fn into_option(self) -> Option<T> {
            self
        }
    }

    macro_rules! plain_results {
        ($($t:ty),*) => {$(
            impl ArrowResult for $t {
                type Value = $t;
                fn into_option(self) -> Option<$t> {
                    Some(self)
                }
            }
        )*};
    }
    plain_results!(f64, i64, bool, String);

    /// An [`Aggregator`](crate::state::Aggregator) as a function SQL's `CREATE AGGREGATE`
    /// calls: the SQL planner collects each group's values (of each window) into a list, and
    /// this folds every list — `create`, `add` for each non-null value in arrival order,
    /// `result` — into one value. Export it with
    /// `sabot_sdk::export_functions!("p95" => sabot_sdk::function::aggregate(P95))`.
    pub struct AggregateFunction<In, Acc, Out, A> {
        aggregator: A,
        _types: std::marker::PhantomData<fn(In, Acc) -> Out>,
    }

    /// Wraps `aggregator` as a function over lists of its inputs.
    pub fn aggregate<In, Acc, Out, A>(aggregator: A) -> AggregateFunction<In, Acc, Out, A>
    where
        A: crate::state::Aggregator<In, Acc, Out>,
    {
        AggregateFunction {
            aggregator,
            _types: std::marker::PhantomData,
        }
    }

    impl<In, Acc, Out, A> ScalarFunction for AggregateFunction<In, Acc, Out, A>
    where
        In: ArrowValue,
        Out: ArrowResult,
        Acc: 'static,
        A: crate::state::Aggregator<In, Acc, Out> + 'static,
    {
        fn signature(&self) -> Signature {
            Signature::new(
                [DataType::List(Arc::new(Field::new_list_field(
                    In::data_type(),
                    true,
                )))],
                Out::Value::data_type(),
            )
        }

        fn call(&self, args: &[ArrayRef]) -> Result<ArrayRef, AgentError> {
            let lists = args[0]
                .as_any()
                .downcast_ref::<arrow_array::ListArray>()
                .expect("the signature's type");
            let mut results = Vec::with_capacity(lists.len());
            for row in 0..lists.len() {
                if lists.is_null(row) {
                    results.push(None);
                    continue;
                }
                let values = lists.value(row);
                let mut acc = self.aggregator.create();
                for i in 0..values.len() {
                    if let Some(v) = In::read(values.as_ref(), i) {
                        self.aggregator.add(&mut acc, v);
                    }
                }
                results.push(self.aggregator.result(&acc).into_option());
            }
            Ok(Out::Value::column(results))
        }
    }

    /// `risk(Float64, Utf8) -> Float64`.
    fn describe(name: &str, signature: &Signature) -> String {
        let args: Vec<String> = signature.args.iter().map(|t| t.to_string()).collect();
        format!("{name}({}) -> {}", args.join(", "), signature.returns)
    }
}

/// Exports a module's scalar functions by the names SQL calls them:
/// `sabot_sdk::export_functions!("risk" => Risk, "bucket" => Bucket);` where each value
/// implements [`ScalarFunction`]. The module is an agent (see [`Call`]); `CREATE FUNCTION risk
/// AS 'MODULE'` in SQL calls it.
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! export_functions {
    ($($name:literal => $function:expr),+ $(,)?) => {
        const _: () = {
            struct __SabotFunctions($crate::function::FunctionAgent);

            impl $crate::Agent for __SabotFunctions {
                fn init(config: $crate::Config) -> ::core::result::Result<Self, $crate::AgentError> {
                    let functions: &[(&str, $crate::function::Constructor)] =
                        &[$(($name, || ::std::boxed::Box::new($function))),+];
                    $crate::function::FunctionAgent::new(config, functions).map(__SabotFunctions)
                }

                fn process(
                    &mut self,
                    _port: u32,
                    batch: $crate::RecordBatch,
                    out: &mut $crate::Emitter,
                ) -> ::core::result::Result<(), $crate::AgentError> {
                    self.0.process(batch, out)
                }
            }

            $crate::export_agent!(__SabotFunctions);
        };
    };
}
