//! Fraud rules that need no state: each transaction is judged on its own.
//!
//! - `over_limit`: the amount is more than `over_limit_factor` times the card's limit;
//! - `blacklisted_merchant`: the merchant is on the blacklist;
//! - `high_risk_country`: the transaction happened in a high-risk country.
//!
//! Emits the flagged transactions with one more column, `reason`, naming the first rule that
//! matched (in the order above).

use std::collections::HashSet;
use std::sync::Arc;

use sabot_sdk::arrow::array::{Array, ArrayRef, Float64Array, StringArray, UInt32Array};
use sabot_sdk::arrow::compute::take;
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_factor")]
    over_limit_factor: f64,
    #[serde(default)]
    blacklisted_merchants: Vec<String>,
    #[serde(default)]
    high_risk_countries: Vec<String>,
}

fn default_factor() -> f64 {
    1.5
}

/// The stateless fraud rules.
pub struct FraudRules {
    over_limit_factor: f64,
    blacklist: HashSet<String>,
    high_risk: HashSet<String>,
    output_schema: Option<(SchemaRef, SchemaRef)>,
}

impl FraudRules {
    fn output_schema(&mut self, input: &SchemaRef) -> SchemaRef {
        match &self.output_schema {
            Some((seen, out)) if seen == input => out.clone(),
            _ => {
                let mut fields: Vec<Field> =
                    input.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields.push(Field::new("reason", DataType::Utf8, false));
                let out = Arc::new(Schema::new(fields));
                self.output_schema = Some((input.clone(), out.clone()));
                out
            }
        }
    }
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
    expected: &str,
) -> Result<&'a T, AgentError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            AgentError::invalid_input(format!(
                "fraud-rules needs a column `{name}` of type {expected}; the batch has columns {:?}",
                batch.schema().fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>()
            ))
        })
}

impl Agent for FraudRules {
    fn init(config: Config) -> Result<Self, AgentError> {
        let s: Settings = config.parse()?;
        if !(s.over_limit_factor.is_finite() && s.over_limit_factor > 0.0) {
            return Err(AgentError::invalid_config(format!(
                "over_limit_factor must be a positive number, got {}",
                s.over_limit_factor
            )));
        }
        Ok(FraudRules {
            over_limit_factor: s.over_limit_factor,
            blacklist: s.blacklisted_merchants.into_iter().collect(),
            high_risk: s.high_risk_countries.into_iter().collect(),
            output_schema: None,
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let amount = column::<Float64Array>(&batch, "amount", "Float64")?;
        let limit = column::<Float64Array>(&batch, "card_limit", "Float64")?;
        let merchant = column::<StringArray>(&batch, "merchant_id", "Utf8")?;
        let country = column::<StringArray>(&batch, "country", "Utf8")?;

        let mut rows = Vec::new();
        let mut reasons = Vec::new();
        for i in 0..batch.num_rows() {
            let reason = if !amount.is_null(i)
                && !limit.is_null(i)
                && amount.value(i) > limit.value(i) * self.over_limit_factor
            {
                "over_limit"
            } else if merchant.is_valid(i) && self.blacklist.contains(merchant.value(i)) {
                "blacklisted_merchant"
            } else if country.is_valid(i) && self.high_risk.contains(country.value(i)) {
                "high_risk_country"
            } else {
                continue;
            };
            rows.push(i as u32);
            reasons.push(reason);
        }
        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        columns.push(Arc::new(StringArray::from(reasons)));
        let schema = self.output_schema(&batch.schema());
        out.emit(RecordBatch::try_new(schema, columns)?);
        Ok(())
    }
}

sabot_sdk::export_agent!(FraudRules);
