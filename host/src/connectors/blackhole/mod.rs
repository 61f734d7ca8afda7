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

    fn commit(self: Box<Self>) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}
