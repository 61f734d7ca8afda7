//! Sources and sinks: one folder per system.
//!
//! A [`Source`] is pulled for batches on its own thread; a [`Sink`] is pushed batches on its own
//! thread and either commits (the run succeeded: output becomes visible) or aborts (the run failed:
//! nothing half-written is left behind).

pub mod blackhole;
mod dead_letter;
pub mod file;
pub mod generator;
pub mod stdout;

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;

pub use dead_letter::DeadLetters;

use crate::Fault;

/// A source of record batches.
pub trait Source: Send {
    /// The schema of the batches, when known before the first one.
    fn schema(&self) -> Option<SchemaRef>;
    /// The next batch, or `None` at the end of a bounded input.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError>;
}

/// A destination for record batches.
pub trait Sink: Send {
    /// Accepts one batch. Output need not be visible before [`Sink::commit`].
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;
    /// Makes everything written visible, durably.
    fn commit(self: Box<Self>) -> Result<(), ConnectorError>;
    /// Discards everything written that is not yet visible.
    fn abort(self: Box<Self>);
}

/// What to do with input that cannot be processed: a row that does not parse, or a batch an
/// agent refuses or traps on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Stop the pipeline with an error naming the offending input (the default).
    #[default]
    Fail,
    /// Drop the input, count it, and log a warning.
    Skip,
    /// Write the input and the reason to the pipeline's `dead_letter` file, and go on.
    DeadLetter,
}

/// File formats shared by the file source, the file sink and stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// JSON Lines: one JSON object per line.
    #[serde(alias = "json", alias = "ndjson")]
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
    /// Arrow IPC (file or stream format).
    #[serde(alias = "ipc", alias = "arrow-ipc")]
    Arrow,
}

impl Format {
    /// The format a file name's extension implies.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "arrow" | "ipc" | "arrows" | "feather" => Some(Format::Arrow),
            _ => None,
        }
    }
}

/// A `[sources.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SourceSpec {
    /// The built-in transaction generator.
    Generator(generator::GeneratorSpec),
    /// A JSON Lines, CSV or Arrow IPC file.
    File(file::FileSourceSpec),
}

/// A `[sinks.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SinkSpec {
    /// Standard output.
    Stdout(stdout::StdoutSpec),
    /// A file, written atomically when the run succeeds.
    File(file::FileSinkSpec),
    /// Counts rows and discards them.
    Blackhole(blackhole::BlackholeSpec),
}

/// Why a source or sink failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// An I/O operation on a path failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A row of an input file does not fit the schema, and the policy is `fail`.
    #[error("source `{source_name}`: {}:{line}: {message} (set on_error = \"skip\" or \"dead-letter\" to go on past bad rows)", path.display())]
    BadRow {
        source_name: String,
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// An input file is not in the format it claims.
    #[error("source `{source_name}`: {}: {message}", path.display())]
    Format {
        source_name: String,
        path: PathBuf,
        message: String,
    },
    /// Writing output failed.
    #[error("sink `{sink}`: {message}")]
    Write { sink: String, message: String },
    /// A bug in a connector.
    #[error("internal connector error: {0}")]
    Internal(String),
}

impl ConnectorError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            ConnectorError::Io { .. } | ConnectorError::Write { .. } => Fault::External,
            ConnectorError::BadRow { .. } | ConnectorError::Format { .. } => Fault::User,
            ConnectorError::Internal(_) => Fault::Internal,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ConnectorError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
