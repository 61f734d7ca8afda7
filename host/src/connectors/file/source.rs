//! Reading files, row by row where rows can be bad.
//!
//! JSON Lines and CSV are decoded a chunk of `batch_size` rows at a time with arrow's decoders. A
//! chunk that fails to decode is decoded again one row at a time, so that the bad rows can be
//! named (file and line) and failed on, skipped, or dead-lettered, while the good rows around them
//! go on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use arrow_select::concat::concat_batches;

use super::FileSourceSpec;
use crate::connectors::{ConnectorError, DeadLetters, Format, OnError, Source};

/// Opens the file source `name`, emitting batches of up to `batch_size` rows.
pub fn open_source(
    name: &str,
    spec: &FileSourceSpec,
    batch_size: usize,
    dead_letters: Arc<DeadLetters>,
) -> Result<Box<dyn Source>, ConnectorError> {
    let path = spec.path.clone();
    let format = spec.format().ok_or_else(|| ConnectorError::Format {
        source_name: name.to_owned(),
        path: path.clone(),
        message: "unknown format (validation should have refused this)".into(),
    })?;
    let declared = spec
        .declared_schema()
        .map_err(|(field, message)| ConnectorError::Format {
            source_name: name.to_owned(),
            path: path.clone(),
            message: format!("{field}: {message}"),
        })?;
    let bad = BadRows {
        source_name: name.to_owned(),
        path: path.clone(),
        policy: spec.on_error,
        dead_letters,
    };
    let open = |p: &Path| File::open(p).map_err(|e| ConnectorError::io("open", p, e));
    match format {
        Format::Arrow => Ok(Box::new(ArrowSource::open(name, &path)?)),
        Format::Jsonl => {
            let schema = match declared {
                Some(s) => Arc::new(s),
                None => {
                    let mut reader = BufReader::new(open(&path)?);
                    let (schema, _) =
                        arrow_json::reader::infer_json_schema(&mut reader, Some(spec.infer_rows))
                            .map_err(|e| {
                            bad.format_error(format!(
                                "cannot infer a schema from the first {} lines: {e}",
                                spec.infer_rows
                            ))
                        })?;
                    Arc::new(schema)
                }
            };
            Ok(Box::new(JsonlSource {
                lines: BufReader::with_capacity(1 << 20, open(&path)?),
                line: 0,
                schema,
                batch_size,
                bad,
            }))
        }
        Format::Csv => {
            let delimiter = spec.delimiter as u8;
            let schema = match declared {
                Some(s) => {
                    if spec.header {
                        check_csv_header(&path, delimiter, &s).map_err(|m| bad.format_error(m))?;
                    }
                    Arc::new(s)
                }
                None => {
                    let mut file = open(&path)?;
                    let format = arrow_csv::reader::Format::default()
                        .with_header(spec.header)
                        .with_delimiter(delimiter);
                    let (schema, _) = format
                        .infer_schema(&mut file, Some(spec.infer_rows))
                        .map_err(|e| {
                            bad.format_error(format!(
                                "cannot infer a schema from the first {} rows: {e}",
                                spec.infer_rows
                            ))
                        })?;
                    file.rewind()
                        .map_err(|e| ConnectorError::io("rewind", &path, e))?;
                    Arc::new(schema)
                }
            };
            let records = csv::ReaderBuilder::new()
                .has_headers(spec.header)
                .delimiter(delimiter)
                .flexible(true)
                .from_reader(BufReader::with_capacity(1 << 20, open(&path)?));
            Ok(Box::new(CsvSource {
                records,
                read: 0,
                schema,
                delimiter,
                batch_size,
                bad,
            }))
        }
    }
}

fn check_csv_header(path: &Path, delimiter: u8, schema: &Schema) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        .from_path(path)
        .map_err(|e| format!("cannot read the CSV header: {e}"))?;
    let header = reader
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?;
    let found: Vec<&str> = header.iter().collect();
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if found != expected {
        return Err(format!(
            "the CSV header ({}) does not match the declared schema's columns ({}); they must be the same, in order",
            found.join(", "),
            expected.join(", ")
        ));
    }
    Ok(())
}

/// Where bad rows go.
struct BadRows {
    source_name: String,
    path: PathBuf,
    policy: OnError,
    dead_letters: Arc<DeadLetters>,
}

impl BadRows {
    fn format_error(&self, message: String) -> ConnectorError {
        ConnectorError::Format {
            source_name: self.source_name.clone(),
            path: self.path.clone(),
            message,
        }
    }

    /// Applies the policy to one bad row: an error for `fail`, nothing otherwise.
    fn handle(&self, line: u64, message: String, raw: &[u8]) -> Result<(), ConnectorError> {
        match self.policy {
            OnError::Fail => Err(ConnectorError::BadRow {
                source_name: self.source_name.clone(),
                path: self.path.clone(),
                line,
                message,
            }),
            OnError::Skip => {
                tracing::warn!(source = %self.source_name, path = %self.path.display(), line, reason = %message, "skipped a bad row");
                Ok(())
            }
            OnError::DeadLetter => {
                let location = format!("{}:{line}", self.path.display());
                self.dead_letters.raw(
                    &self.source_name,
                    &location,
                    &message,
                    &String::from_utf8_lossy(raw),
                )
            }
        }
    }
}

/// Decodes rows (each with its line number) into one batch, isolating bad rows if any.
fn decode_rows(
    rows: &[(u64, Vec<u8>)],
    schema: &SchemaRef,
    bad: &BadRows,
    decode: impl Fn(&[&[u8]]) -> Result<Option<RecordBatch>, ArrowError>,
) -> Result<Option<RecordBatch>, ConnectorError> {
    let all: Vec<&[u8]> = rows.iter().map(|(_, r)| r.as_slice()).collect();
    if let Ok(batch) = decode(&all) {
        return Ok(batch);
    }
    // Slow path: one row at a time, to name the bad ones and keep the good ones.
    let mut good = Vec::new();
    for (line, raw) in rows {
        match decode(&[raw.as_slice()]) {
            Ok(Some(batch)) => good.push(batch),
            Ok(None) => {}
            Err(e) => bad.handle(*line, e.to_string(), raw)?,
        }
    }
    if good.is_empty() {
        return Ok(None);
    }
    concat_batches(schema, &good)
        .map(Some)
        .map_err(|e| ConnectorError::Internal(format!("joining decoded rows: {e}")))
}

struct JsonlSource {
    lines: BufReader<File>,
    line: u64,
    schema: SchemaRef,
    batch_size: usize,
    bad: BadRows,
}

impl Source for JsonlSource {
    fn schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "lines": self.line })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        let lines = crate::connectors::position_u64(position, "lines", &self.bad.source_name)?;
        let mut raw = Vec::new();
        while self.line < lines {
            raw.clear();
            let n = self
                .lines
                .read_until(b'\n', &mut raw)
                .map_err(|e| ConnectorError::io("read", &self.bad.path, e))?;
            if n == 0 {
                return Err(self.bad.format_error(format!(
                    "the checkpoint resumes after line {lines}, but the file has only {} lines now: was it replaced?",
                    self.line
                )));
            }
            self.line += 1;
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            let mut rows = Vec::with_capacity(self.batch_size);
            while rows.len() < self.batch_size {
                let mut raw = Vec::new();
                let n = self
                    .lines
                    .read_until(b'\n', &mut raw)
                    .map_err(|e| ConnectorError::io("read", &self.bad.path, e))?;
                if n == 0 {
                    break;
                }
                self.line += 1;
                if raw.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                rows.push((self.line, raw));
            }
            if rows.is_empty() {
                return Ok(None);
            }
            let schema = self.schema.clone();
            let capacity = rows.len() + 1;
            let decoded = decode_rows(&rows, &self.schema, &self.bad, |chunk| {
                let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
                    .with_batch_size(capacity)
                    .build_decoder()?;
                for row in chunk {
                    let used = decoder.decode(row)?;
                    if used != row.len() {
                        return Err(ArrowError::JsonError(
                            "a line held more than one row".into(),
                        ));
                    }
                }
                decoder.flush()
            })?;
            if let Some(batch) = decoded {
                return Ok(Some(batch));
            }
        }
    }
}

struct CsvSource {
    records: csv::Reader<BufReader<File>>,
    /// Records read so far, good or bad.
    read: u64,
    schema: SchemaRef,
    delimiter: u8,
    batch_size: usize,
    bad: BadRows,
}

impl Source for CsvSource {
    fn schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "records": self.read })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        let records = crate::connectors::position_u64(position, "records", &self.bad.source_name)?;
        let mut record = csv::ByteRecord::new();
        while self.read < records {
            match self.records.read_byte_record(&mut record) {
                Ok(false) => {
                    return Err(self.bad.format_error(format!(
                        "the checkpoint resumes after record {records}, but the file has only {} records now: was it replaced?",
                        self.read
                    )));
                }
                Ok(true) | Err(_) => self.read += 1,
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            let mut rows = Vec::with_capacity(self.batch_size);
            let mut record = csv::ByteRecord::new();
            while rows.len() < self.batch_size {
                let next = self.records.read_byte_record(&mut record);
                if !matches!(next, Ok(false)) {
                    self.read += 1;
                }
                match next {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map_or(0, csv::Position::line);
                        // Re-encode the record as one canonical CSV line for arrow's decoder.
                        let mut w = csv::WriterBuilder::new()
                            .delimiter(self.delimiter)
                            .terminator(csv::Terminator::Any(b'\n'))
                            .from_writer(Vec::new());
                        w.write_byte_record(&record).map_err(|e| {
                            ConnectorError::Internal(format!("re-encoding a CSV record: {e}"))
                        })?;
                        let raw = w.into_inner().map_err(|e| {
                            ConnectorError::Internal(format!("re-encoding a CSV record: {e}"))
                        })?;
                        rows.push((line, raw));
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        self.bad.handle(line, e.to_string(), b"")?;
                    }
                }
            }
            if rows.is_empty() {
                return Ok(None);
            }
            let schema = self.schema.clone();
            let delimiter = self.delimiter;
            let capacity = rows.len() + 1;
            let decoded = decode_rows(&rows, &self.schema, &self.bad, |chunk| {
                let mut decoder = arrow_csv::ReaderBuilder::new(schema.clone())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(capacity)
                    .build_decoder();
                for row in chunk {
                    let mut rest = *row;
                    while !rest.is_empty() {
                        let used = decoder.decode(rest)?;
                        if used == 0 {
                            return Err(ArrowError::CsvError(
                                "the CSV decoder made no progress".into(),
                            ));
                        }
                        rest = &rest[used..];
                    }
                }
                decoder.flush()
            })?;
            if let Some(batch) = decoded {
                return Ok(Some(batch));
            }
        }
    }
}

/// Arrow IPC, file format (`ARROW1` magic) or stream format, and how many batches were read.
struct ArrowSource {
    reader: ArrowReader,
    batches: u64,
}

enum ArrowReader {
    File(
        arrow_ipc::reader::FileReader<BufReader<File>>,
        String,
        PathBuf,
    ),
    Stream(
        arrow_ipc::reader::StreamReader<BufReader<File>>,
        String,
        PathBuf,
    ),
}

impl ArrowSource {
    fn open(name: &str, path: &Path) -> Result<Self, ConnectorError> {
        let mut file = File::open(path).map_err(|e| ConnectorError::io("open", path, e))?;
        let mut magic = [0u8; 6];
        let is_file = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
        file.rewind()
            .map_err(|e| ConnectorError::io("rewind", path, e))?;
        let format_error = |e: ArrowError| ConnectorError::Format {
            source_name: name.to_owned(),
            path: path.to_owned(),
            message: format!("not a readable Arrow IPC file or stream: {e}"),
        };
        let reader = BufReader::with_capacity(1 << 20, file);
        let reader = if is_file {
            ArrowReader::File(
                arrow_ipc::reader::FileReader::try_new(reader, None).map_err(format_error)?,
                name.to_owned(),
                path.to_owned(),
            )
        } else {
            ArrowReader::Stream(
                arrow_ipc::reader::StreamReader::try_new(reader, None).map_err(format_error)?,
                name.to_owned(),
                path.to_owned(),
            )
        };
        Ok(ArrowSource { reader, batches: 0 })
    }
}

impl Source for ArrowSource {
    fn schema(&self) -> Option<SchemaRef> {
        Some(match &self.reader {
            ArrowReader::File(r, ..) => r.schema(),
            ArrowReader::Stream(r, ..) => r.schema(),
        })
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let (next, name, path) = match &mut self.reader {
            ArrowReader::File(r, n, p) => (r.next(), n, p),
            ArrowReader::Stream(r, n, p) => (r.next(), n, p),
        };
        let batch = next.transpose().map_err(|e| ConnectorError::Format {
            source_name: name.clone(),
            path: path.clone(),
            message: format!("a batch does not decode: {e}"),
        })?;
        self.batches += u64::from(batch.is_some());
        Ok(batch)
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "batches": self.batches })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        let (name, path) = match &self.reader {
            ArrowReader::File(_, n, p) | ArrowReader::Stream(_, n, p) => (n.clone(), p.clone()),
        };
        let batches = crate::connectors::position_u64(position, "batches", &name)?;
        while self.batches < batches {
            if self.next_batch()?.is_none() {
                return Err(ConnectorError::Format {
                    source_name: name,
                    path,
                    message: format!(
                        "the checkpoint resumes after batch {batches}, but the file has only {} batches now: was it replaced?",
                        self.batches
                    ),
                });
            }
        }
        Ok(())
    }
}
