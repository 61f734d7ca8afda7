//! The stdout sink: JSON Lines (default) or CSV on standard output, written as batches arrive.

use std::io::Write;

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{ConnectorError, Format, Sink};

/// `type = "stdout"` in a `[sinks.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSpec {
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    pub format: Option<Format>,
}

/// Writes batches to standard output.
#[derive(Debug)]
pub struct Stdout {
    name: String,
    format: Format,
    header_written: bool,
    /// The reader went away (`sabot run … | head`): the rest of the output is dropped, and the
    /// pipeline goes on so that its other sinks still complete.
    closed: bool,
}

impl StdoutSpec {
    /// Checks the settings: stdout takes text formats only.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self.format {
            Some(Format::Arrow) => Err((
                "format".into(),
                "stdout writes text: expected \"jsonl\" or \"csv\" (use a file sink for Arrow IPC)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// Opens the sink named `name`.
    pub fn open(&self, name: &str) -> Stdout {
        Stdout {
            name: name.to_owned(),
            format: self.format.unwrap_or(Format::Jsonl),
            header_written: false,
            closed: false,
        }
    }
}

impl Sink for Stdout {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if self.closed {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let result = match self.format {
            Format::Csv => {
                let mut w = arrow_csv::WriterBuilder::new()
                    .with_header(!self.header_written)
                    .build(&mut bytes);
                self.header_written = true;
                w.write(batch)
            }
            _ => {
                let mut w = arrow_json::LineDelimitedWriter::new(&mut bytes);
                w.write(batch).and_then(|()| w.finish())
            }
        };
        result.map_err(|e| ConnectorError::Write {
            sink: self.name.clone(),
            message: e.to_string(),
        })?;
        let mut out = std::io::stdout().lock();
        match out.write_all(&bytes) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::warn!(sink = %self.name, "standard output was closed by its reader; dropping the rest of this sink's output");
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(ConnectorError::Write {
                sink: self.name.clone(),
                message: format!("writing to standard output: {e}"),
            }),
        }
    }

    fn recover(&mut self, _pending: Option<&serde_json::Value>) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Standard output cannot take back what it printed: after a crash, rows printed since the
    /// last checkpoint are printed again (at-least-once). Use a file sink for exactly-once.
    fn pre_commit(&mut self, _epoch: u64) -> Result<serde_json::Value, ConnectorError> {
        if !self.closed {
            std::io::stdout()
                .flush()
                .map_err(|e| ConnectorError::Write {
                    sink: self.name.clone(),
                    message: format!("flushing standard output: {e}"),
                })?;
        }
        Ok(serde_json::Value::Null)
    }

    fn commit(&mut self, _epoch: u64) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn abort(&mut self, _keep_pending: bool) {
        let _ = std::io::stdout().flush();
    }
}
