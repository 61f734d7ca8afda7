//! Scores the fraud rules: sums the per-label counts `fraud-rules` emits on its port 1, and when
//! the input is complete (the watermark reaches its end, `i64::MAX`) emits one row per label —
//! how many rows carried it and how many were flagged — then a row `all` with the precision
//! (flagged rows that were fraud) and recall (fraud rows that were flagged).

use std::collections::BTreeMap;
use std::sync::Arc;

use sabot_sdk::arrow::array::{Array, ArrayRef, Float64Array, StringArray, UInt64Array};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// Rows and flagged rows per label.
#[derive(Default)]
pub struct FraudScore {
    counts: BTreeMap<String, (u64, u64)>,
}

impl Agent for FraudScore {
    fn init(_config: Config) -> Result<Self, AgentError> {
        Ok(FraudScore::default())
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        _out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let get = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                AgentError::invalid_input(format!("fraud-score needs a column `{name}`"))
            })
        };
        let labels = get("label")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| AgentError::invalid_input("`label` must be Utf8"))?;
        let rows = get("rows")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| AgentError::invalid_input("`rows` must be UInt64"))?;
        let flagged = get("flagged")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| AgentError::invalid_input("`flagged` must be UInt64"))?;
        for i in 0..batch.num_rows() {
            let c = self.counts.entry(labels.value(i).to_owned()).or_default();
            c.0 += rows.value(i);
            c.1 += flagged.value(i);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Emitter) -> Result<(), AgentError> {
        if watermark != i64::MAX || self.counts.is_empty() {
            return Ok(());
        }
        let (mut fraud, mut caught, mut flagged) = (0, 0, 0);
        let mut names = Vec::new();
        let mut rows = Vec::new();
        let mut hits = Vec::new();
        let mut rates = Vec::new();
        for (label, (n, f)) in &self.counts {
            flagged += f;
            if label != "none" {
                fraud += n;
                caught += f;
            }
            names.push(label.clone());
            rows.push(*n);
            hits.push(*f);
            rates.push(if *n == 0 {
                None
            } else {
                Some(*f as f64 / *n as f64)
            });
        }
        let precision = if flagged == 0 {
            None
        } else {
            Some(caught as f64 / flagged as f64)
        };
        let recall = if fraud == 0 {
            None
        } else {
            Some(caught as f64 / fraud as f64)
        };
        names.push("all".into());
        rows.push(fraud);
        hits.push(caught);
        rates.push(recall);
        let mut precisions = vec![None; names.len() - 1];
        precisions.push(precision);
        out.emit(RecordBatch::try_from_iter([
            ("label", Arc::new(StringArray::from(names)) as ArrayRef),
            ("rows", Arc::new(UInt64Array::from(rows)) as ArrayRef),
            ("flagged", Arc::new(UInt64Array::from(hits)) as ArrayRef),
            ("recall", Arc::new(Float64Array::from(rates)) as ArrayRef),
            (
                "precision",
                Arc::new(Float64Array::from(precisions)) as ArrayRef,
            ),
        ])?);
        self.counts.clear();
        Ok(())
    }
}

sabot_sdk::export_agent!(FraudScore);
