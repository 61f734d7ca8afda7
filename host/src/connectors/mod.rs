//! Sources and sinks: one folder per system.
//!
//! A [`Source`] is pulled for batches on its own thread and can say where it is, and resume
//! there, for checkpoints. A [`Sink`] is pushed batches on its own thread and takes part in the
//! two-phase commit of checkpoints: what it was given before a barrier is *pre-committed*
//! (durable, not visible), then *committed* (visible) once the checkpoint is complete.

pub mod blackhole;
mod dead_letter;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod nexmark;
pub mod stdout;

/// Checks a generating source's `rate` setting (events per second, 0 = unlimited): the error
/// names the field and what was expected.
/// The longest a source may hold a partial batch to fill it (`max_batch_delay_ms`).
pub const MAX_BATCH_DELAY_MS: u64 = 10_000;

/// Checks a source's `max_batch_delay_ms` (and that its `event_time` would not take a source
/// holding a partial batch for idle).
fn check_batch_delay(
    ms: u64,
    event_time: Option<&crate::time::EventTimeSpec>,
) -> Result<(), (String, String)> {
    if ms > MAX_BATCH_DELAY_MS {
        return Err((
            "max_batch_delay_ms".into(),
            format!(
                "expected 0 to {MAX_BATCH_DELAY_MS} (ms a partial batch may wait for more rows), got {ms}"
            ),
        ));
    }
    if let Some(idle) = event_time.and_then(|et| et.idle_timeout_ms)
        && ms > 0
        && ms >= idle
    {
        return Err((
            "max_batch_delay_ms".into(),
            format!(
                "{ms} ms is not less than event_time.idle_timeout_ms ({idle} ms): a source holding a partial batch that long would be taken for idle and its rows come late"
            ),
        ));
    }
    Ok(())
}

fn check_rate(rate: f64) -> Result<(), (String, String)> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(())
    } else {
        Err((
            "rate".into(),
            format!("expected events per second ≥ 0 (0 = unlimited), got {rate}"),
        ))
    }
}

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
    /// The next batch, or `None` at the end of a bounded input. An empty batch means nothing is
    /// available right now.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError>;
    /// The next batch with the output port it goes out on. Sources with one output (the default)
    /// send everything on port 0.
    fn next_output(&mut self) -> Result<Option<(u32, RecordBatch)>, ConnectorError> {
        Ok(self.next_batch()?.map(|b| (0, b)))
    }
    /// When the oldest row of the batch last returned began to wait in this source — the
    /// arrival of its first record, the time its first row was due — where that is before the
    /// batch was returned (a source holding rows to fill a batch); `None`: when it was returned.
    /// End-to-end latency counts from here (see `dataflow::latency`).
    fn born(&self) -> Option<std::time::Instant> {
        None
    }
    /// Told, before the first batch, which output ports some edge takes: a source may skip
    /// producing for the others.
    fn connect(&mut self, ports: &[u32]) {
        let _ = ports;
    }
    /// Whether the batches returned so far form a whole: a source that spreads one stretch of
    /// its input over several ports says no until the last of them is out, so that no watermark
    /// passes rows it has yet to send.
    fn at_boundary(&self) -> bool {
        true
    }
    /// Whether the source tracks event time itself — per partition, with idleness (Kafka) —
    /// rather than leaving its task to bound the event times of whole batches.
    fn tracks_event_time(&self) -> bool {
        false
    }
    /// A source that [tracks event time](Source::tracks_event_time): its watermark now, after
    /// the batches returned so far (`None` before it has one).
    fn watermark(&mut self) -> Option<i64> {
        None
    }
    /// A checkpoint holding `position` (what [`Source::position`] returned at its barrier)
    /// completed: the source may tell its system, for monitoring (Kafka commits the offsets to the
    /// consumer group). Sabot resumes from its own checkpoints, never from this.
    fn checkpoint_completed(&mut self, position: &serde_json::Value) {
        let _ = position;
    }
    /// Where the source is: enough to resume right after the last batch it returned.
    fn position(&self) -> serde_json::Value;
    /// Resumes at `position`, which [`Source::position`] returned in an earlier run with the same
    /// settings. Called before the first batch.
    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError>;
}

/// A destination for record batches, with two-phase commit.
pub trait Sink: Send {
    /// Called once, before anything else. `pending` is what the checkpoint the run resumes from
    /// holds for this sink (what [`Sink::pre_commit`] returned), `None` on a fresh start: the
    /// sink finishes committing it and discards anything pre-committed after it.
    fn recover(&mut self, pending: Option<&serde_json::Value>) -> Result<(), ConnectorError>;
    /// Accepts one batch. Output need not be visible before [`Sink::commit`].
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;
    /// Makes everything written since the last pre-commit durable as epoch `epoch`, not yet
    /// visible. Returns what a recovery needs to commit every pre-committed epoch not yet known
    /// to be committed; it is kept in the checkpoint.
    fn pre_commit(&mut self, epoch: u64) -> Result<serde_json::Value, ConnectorError>;
    /// Makes every pre-committed epoch up to `epoch` visible, durably.
    fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError>;
    /// The files under the run's data directory that committing the pre-committed epochs needs
    /// (spills), named in what [`Sink::pre_commit`] returned. When checkpoints go to an object
    /// store they travel with the checkpoint, and are put back before [`Sink::recover`].
    fn spill_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Discards what was written and not pre-committed; with `keep_pending` false, pre-committed
    /// epochs not yet committed too (nothing will resume them).
    fn abort(&mut self, keep_pending: bool);
    /// Bytes the sink has written so far, for metrics (0 where it does not count them).
    fn bytes_written(&self) -> u64 {
        0
    }
}

/// Reads field `field` of a position as a `u64`, for [`Source::seek`].
pub(crate) fn position_u64(
    position: &serde_json::Value,
    field: &str,
    source: &str,
) -> Result<u64, ConnectorError> {
    position
        .get(field)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            ConnectorError::Internal(format!(
                "source `{source}`: the checkpointed position {position} has no `{field}` count"
            ))
        })
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

/// A `[sources.NAME]` table (its `type` says which).
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// The built-in transaction generator.
    Generator(generator::GeneratorSpec),
    /// A JSON Lines, CSV or Arrow IPC file.
    File(file::FileSourceSpec),
    /// The Nexmark benchmark's events: people, auctions and bids on ports 0, 1 and 2.
    Nexmark(nexmark::NexmarkSpec),
    /// Kafka topics.
    Kafka(kafka::KafkaSourceSpec),
}

impl SourceSpec {
    /// The source's event-time settings.
    pub fn event_time(&self) -> Option<&crate::time::EventTimeSpec> {
        match self {
            SourceSpec::Generator(g) => g.event_time.as_ref(),
            SourceSpec::File(f) => f.event_time.as_ref(),
            SourceSpec::Nexmark(n) => n.event_time.as_ref(),
            SourceSpec::Kafka(k) => k.event_time.as_ref(),
        }
    }

    /// How many output ports the source has.
    pub fn outputs(&self) -> u32 {
        match self {
            SourceSpec::Nexmark(_) => 3,
            _ => 1,
        }
    }

    /// The schema of the source's rows, when the settings alone tell it.
    fn known_schema(&self) -> Option<arrow_schema::Schema> {
        match self {
            SourceSpec::Generator(_) => Some(generator::GeneratorSpec::schema().as_ref().clone()),
            SourceSpec::File(f) => f.declared_schema().ok().flatten(),
            SourceSpec::Nexmark(_) => Some(nexmark::schema(2).as_ref().clone()),
            SourceSpec::Kafka(k) => kafka::format::schema_of(k)
                .ok()
                .flatten()
                .map(|s| s.as_ref().clone()),
        }
    }

    /// Checks `event_time` against the schema, when it is known before reading.
    pub fn check_event_time(&self) -> Result<(), (String, String)> {
        let Some(et) = self.event_time() else {
            return Ok(());
        };
        if et.max_out_of_orderness_ms < 0 {
            return Err((
                "event_time.max_out_of_orderness_ms".into(),
                format!("expected ≥ 0, got {}", et.max_out_of_orderness_ms),
            ));
        }
        let Some(schema) = self.known_schema() else {
            return Ok(());
        };
        let columns = || {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match schema.field_with_name(&et.column) {
            Err(_) => Err((
                "event_time.column".into(),
                format!(
                    "there is no column `{}` (columns: {})",
                    et.column,
                    columns()
                ),
            )),
            Ok(f)
                if matches!(
                    f.data_type(),
                    arrow_schema::DataType::Int64 | arrow_schema::DataType::Timestamp(..)
                ) =>
            {
                Ok(())
            }
            Ok(f) => Err((
                "event_time.column".into(),
                format!(
                    "column `{}` is {}; expected a timestamp or an int64 of milliseconds since the Unix epoch",
                    et.column,
                    f.data_type()
                ),
            )),
        }
    }
}

/// A `[sinks.NAME]` table (its `type` says which).
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// Standard output.
    Stdout(stdout::StdoutSpec),
    /// A file, written atomically when the run succeeds.
    File(file::FileSinkSpec),
    /// Counts rows and discards them.
    Blackhole(blackhole::BlackholeSpec),
    /// A Kafka topic (at-least-once).
    Kafka(Box<kafka::KafkaSinkSpec>),
}

/// The `type` of a `[sources.NAME]` or `[sinks.NAME]` table, taken out of it.
fn take_type(table: &mut toml::Table) -> Result<String, String> {
    match table.remove("type") {
        Some(toml::Value::String(kind)) => Ok(kind),
        Some(other) => Err(format!(
            "field `type`: expected text, got a {}",
            other.type_str()
        )),
        None => Err("missing field `type`".into()),
    }
}

/// The rest of a source or sink table as the spec of its type. A mistake names its field:
/// serde's own tagged enums buffer the table and lose the path (`invalid value: integer -1,
/// expected u64` of the table, not of `rate`).
fn typed<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let inner = inner.message().trim_end();
        if path == "." {
            inner.to_owned()
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

/// A source or sink table deserialized by its `type`: `build` makes the spec of a known kind
/// from the rest of the table, and says `None` for a kind that is not one of `kinds`.
fn by_type<'de, D, S>(
    d: D,
    kinds: &'static [&'static str],
    build: impl FnOnce(&str, toml::Table) -> Option<Result<S, String>>,
) -> Result<S, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let mut table = toml::Table::deserialize(d)?;
    let kind = take_type(&mut table).map_err(D::Error::custom)?;
    match build(&kind, table) {
        Some(spec) => spec.map_err(D::Error::custom),
        None => Err(D::Error::unknown_variant(&kind, kinds)),
    }
}

impl<'de> Deserialize<'de> for SourceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_type(d, &["generator", "file", "nexmark", "kafka"], |kind, t| {
            Some(match kind {
                "generator" => typed(t).map(SourceSpec::Generator),
                "file" => typed(t).map(SourceSpec::File),
                "nexmark" => typed(t).map(SourceSpec::Nexmark),
                "kafka" => typed(t).map(SourceSpec::Kafka),
                _ => return None,
            })
        })
    }
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_type(d, &["stdout", "file", "blackhole", "kafka"], |kind, t| {
            Some(match kind {
                "stdout" => typed(t).map(SinkSpec::Stdout),
                "file" => typed(t).map(SinkSpec::File),
                "blackhole" => typed(t).map(SinkSpec::Blackhole),
                "kafka" => typed(t).map(|k| SinkSpec::Kafka(Box::new(k))),
                _ => return None,
            })
        })
    }
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
    /// A message broker (Kafka) failed or refused.
    #[error("{node}: {message}")]
    Broker { node: String, message: String },
    /// A record does not decode, and the policy is `fail`.
    #[error(
        "source `{source_name}`: the record at {at} does not decode: {message} (set on_error = \"skip\" or \"dead-letter\" to go on past bad records)"
    )]
    BadRecord {
        source_name: String,
        at: String,
        message: String,
    },
    /// Output would go over one of the pipeline's output budgets (dead letters, file sinks).
    #[error("{0}")]
    Budget(String),
    /// A bug in a connector.
    #[error("internal connector error: {0}")]
    Internal(String),
}

impl ConnectorError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            ConnectorError::Io { .. }
            | ConnectorError::Write { .. }
            | ConnectorError::Broker { .. } => Fault::External,
            ConnectorError::BadRow { .. }
            | ConnectorError::Format { .. }
            | ConnectorError::BadRecord { .. }
            | ConnectorError::Budget(_) => Fault::User,
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
