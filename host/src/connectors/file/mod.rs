//! Files: a source reading JSON Lines, CSV or Arrow IPC, and an exactly-once sink writing them.

mod sink;
mod source;

use std::path::PathBuf;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use indexmap::IndexMap;
use serde::Deserialize;

pub use sink::FileSink;
pub use source::open_source;

use super::{Format, OnError};

/// `type = "file"` in a `[sources.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceSpec {
    /// The file to read, relative to the pipeline file.
    pub path: PathBuf,
    /// `jsonl`, `csv` or `arrow`; from the file's extension when absent.
    pub format: Option<Format>,
    /// Column names and types, in order (`txn_id = "int64"`). Inferred from the first
    /// `infer_rows` rows when absent (JSON Lines and CSV; Arrow files carry their schema).
    pub schema: Option<IndexMap<String, String>>,
    /// What to do with a row that does not fit the schema.
    #[serde(default)]
    pub on_error: OnError,
    /// CSV: whether the first line is a header (default true).
    #[serde(default = "default_header")]
    pub header: bool,
    /// CSV: the field delimiter (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// How many rows schema inference reads.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Event time, e.g. `event_time = { column = "ts", max_out_of_orderness_ms = 5000 }`.
    pub event_time: Option<crate::time::EventTimeSpec>,
}

fn default_header() -> bool {
    true
}
fn default_delimiter() -> char {
    ','
}
fn default_infer_rows() -> usize {
    1000
}

/// `type = "file"` in a `[sinks.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSpec {
    /// The file to write, relative to the pipeline file. Rows appear in it only when the
    /// checkpoint that covers them completes (or, without checkpoints, when the run succeeds).
    pub path: PathBuf,
    /// `jsonl`, `csv` or `arrow`; from the file's extension when absent.
    pub format: Option<Format>,
}

/// Type names accepted in a declared schema.
pub const TYPE_NAMES: &str = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, \
     float32, float64, string, binary, date, timestamp (= timestamp[ms]), timestamp[s|ms|us|ns]";

/// Parses a declared column type such as `int64` or `timestamp[ms]`.
pub fn parse_type(name: &str) -> Option<DataType> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" | "int" => DataType::Int32,
        "int64" | "long" | "bigint" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" | "float" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "string" | "utf8" | "text" => DataType::Utf8,
        "binary" | "bytes" => DataType::Binary,
        "date" | "date32" => DataType::Date32,
        "timestamp" | "timestamp[ms]" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp[s]" => DataType::Timestamp(TimeUnit::Second, None),
        "timestamp[us]" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp[ns]" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        _ => return None,
    })
}

impl FileSourceSpec {
    /// The format to read: declared, or implied by the extension.
    pub fn format(&self) -> Option<Format> {
        self.format.or_else(|| Format::from_path(&self.path))
    }

    /// The declared schema, if any; `Err((field, message))` names a bad column type.
    pub fn declared_schema(&self) -> Result<Option<Schema>, (String, String)> {
        let Some(columns) = &self.schema else {
            return Ok(None);
        };
        if columns.is_empty() {
            return Err(("schema".into(), "expected at least one column".into()));
        }
        let fields = columns
            .iter()
            .map(|(name, ty)| {
                parse_type(ty)
                    .map(|t| Field::new(name, t, true))
                    .ok_or_else(|| {
                        (
                            format!("schema.{name}"),
                            format!("unknown type {ty:?} (expected one of: {TYPE_NAMES})"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Schema::new(fields)))
    }

    /// Checks the settings; `Err((field, message))` names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let Some(format) = self.format() else {
            return Err((
                "format".into(),
                format!(
                    "cannot tell the format of {} from its extension: set format = \"jsonl\", \"csv\" or \"arrow\"",
                    self.path.display()
                ),
            ));
        };
        if !self.path.is_file() {
            return Err((
                "path".into(),
                format!("no such file: {}", self.path.display()),
            ));
        }
        let schema = self.declared_schema()?;
        if format == Format::Arrow && schema.is_some() {
            return Err((
                "schema".into(),
                "Arrow IPC files carry their own schema: remove `schema`".into(),
            ));
        }
        if !self.delimiter.is_ascii() {
            return Err((
                "delimiter".into(),
                format!("expected one ASCII character, got {:?}", self.delimiter),
            ));
        }
        if self.infer_rows == 0 {
            return Err(("infer_rows".into(), "expected at least 1".into()));
        }
        Ok(())
    }
}

impl FileSinkSpec {
    /// The format to write: declared, or implied by the extension.
    pub fn format(&self) -> Option<Format> {
        self.format.or_else(|| Format::from_path(&self.path))
    }

    /// Checks the settings; `Err((field, message))` names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.format().is_none() {
            return Err((
                "format".into(),
                format!(
                    "cannot tell the format of {} from its extension: set format = \"jsonl\", \"csv\" or \"arrow\"",
                    self.path.display()
                ),
            ));
        }
        if self.path.is_dir() {
            return Err((
                "path".into(),
                format!(
                    "{} is a directory, expected a file path",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }
}
