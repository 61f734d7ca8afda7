//! The blackhole sink: counts rows and discards them. For benchmarks and dry runs.

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{ConnectorError, Sink};

/// `type = "blackhole"` in a `[sinks.NAME]` table. It has no settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSpec {}

/// Discards batches (the dataflow counts their rows, as for any sink).
#[derive(Debug, Default)]
pub struct Blackhole;

impl Sink for Blackhole {
    fn write(&mut self, _batch: &RecordBatch) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn recover(&mut self, _pending: Option<&serde_json::Value>) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn pre_commit(&mut self, _epoch: u64) -> Result<serde_json::Value, ConnectorError> {
        Ok(serde_json::Value::Null)
    }

    fn commit(&mut self, _epoch: u64) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn abort(&mut self, _keep_pending: bool) {}
}
