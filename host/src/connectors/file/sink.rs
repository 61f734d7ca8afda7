//! Writing a file atomically: batches go to a hidden partial file beside the target, which is
//! renamed into place only when the run commits. A failed run leaves the target untouched and no
//! partial file behind.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};

use super::FileSinkSpec;
use crate::connectors::{ConnectorError, Format, Sink};

/// A file being written.
pub struct FileSink {
    name: String,
    target: PathBuf,
    partial: PathBuf,
    writer: Writer,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish()
    }
}

enum Writer {
    Jsonl(arrow_json::LineDelimitedWriter<BufWriter<File>>),
    Csv(arrow_csv::Writer<BufWriter<File>>, Option<SchemaRef>),
    /// Created with the first batch, which gives the schema.
    Arrow(
        Option<BufWriter<File>>,
        Option<arrow_ipc::writer::FileWriter<BufWriter<File>>>,
    ),
}

/// The hidden partial file for `target`.
pub(crate) fn partial_path(target: &Path) -> PathBuf {
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{file_name}.sabot-partial"))
}

impl FileSink {
    /// Opens the sink `name`: creates the target's directory and the partial file.
    pub fn open(name: &str, spec: &FileSinkSpec) -> Result<Self, ConnectorError> {
        let target = spec.path.clone();
        let format = spec.format().ok_or_else(|| ConnectorError::Write {
            sink: name.to_owned(),
            message: "unknown format (validation should have refused this)".into(),
        })?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ConnectorError::io("create directory", dir, e))?;
        }
        let partial = partial_path(&target);
        let file = File::create(&partial).map_err(|e| ConnectorError::io("create", &partial, e))?;
        let out = BufWriter::with_capacity(1 << 20, file);
        let writer = match format {
            Format::Jsonl => Writer::Jsonl(arrow_json::LineDelimitedWriter::new(out)),
            Format::Csv => Writer::Csv(
                arrow_csv::WriterBuilder::new().with_header(true).build(out),
                None,
            ),
            Format::Arrow => Writer::Arrow(Some(out), None),
        };
        Ok(FileSink {
            name: name.to_owned(),
            target,
            partial,
            writer,
        })
    }

    fn write_error(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Write {
            sink: self.name.clone(),
            message: format!("writing {}: {e}", self.partial.display()),
        }
    }

    fn same_schema(&self, expected: &SchemaRef, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if expected.fields() != batch.schema().fields() {
            return Err(ConnectorError::Write {
                sink: self.name.clone(),
                message: format!(
                    "a batch's schema ({}) differs from the first batch's ({}); CSV and Arrow files hold one schema",
                    batch.schema(),
                    expected
                ),
            });
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let result: Result<(), ArrowError> = match &mut self.writer {
            Writer::Jsonl(w) => w.write(batch),
            Writer::Csv(_, Some(schema)) => {
                let schema = schema.clone();
                self.same_schema(&schema, batch)?;
                let Writer::Csv(w, _) = &mut self.writer else {
                    unreachable!()
                };
                w.write(batch)
            }
            Writer::Csv(w, schema @ None) => {
                *schema = Some(batch.schema());
                w.write(batch)
            }
            Writer::Arrow(_, Some(w)) => {
                let schema = w.schema().clone();
                self.same_schema(&schema, batch)?;
                let Writer::Arrow(_, Some(w)) = &mut self.writer else {
                    unreachable!()
                };
                w.write(batch)
            }
            Writer::Arrow(out, w @ None) => {
                let out = out
                    .take()
                    .expect("the output is kept until the writer is created");
                arrow_ipc::writer::FileWriter::try_new(out, &batch.schema()).and_then(
                    |mut created| {
                        let r = created.write(batch);
                        *w = Some(created);
                        r
                    },
                )
            }
        };
        result.map_err(|e| self.write_error(e))
    }

    fn commit(self: Box<Self>) -> Result<(), ConnectorError> {
        let FileSink {
            name,
            target,
            partial,
            writer,
        } = *self;
        let fail = |e: &dyn std::fmt::Display| ConnectorError::Write {
            sink: name.clone(),
            message: format!("finishing {}: {e}", partial.display()),
        };
        let out = match writer {
            Writer::Jsonl(mut w) => w.finish().map_err(|e| fail(&e)).map(|()| w.into_inner())?,
            Writer::Csv(w, _) => w.into_inner(),
            Writer::Arrow(Some(out), None) => {
                // No batch arrived: an Arrow file with an empty schema.
                let mut w = arrow_ipc::writer::FileWriter::try_new(out, &Schema::empty())
                    .map_err(|e| fail(&e))?;
                w.finish().map_err(|e| fail(&e))?;
                w.into_inner().map_err(|e| fail(&e))?
            }
            Writer::Arrow(_, Some(mut w)) => {
                w.finish().map_err(|e| fail(&e))?;
                w.into_inner().map_err(|e| fail(&e))?
            }
            Writer::Arrow(None, None) => {
                unreachable!("the output is kept until the writer is created")
            }
        };
        let file = out.into_inner().map_err(|e| fail(&e.error().to_string()))?;
        file.sync_all()
            .map_err(|e| ConnectorError::io("sync", &partial, e))?;
        drop(file);
        std::fs::rename(&partial, &target)
            .map_err(|e| ConnectorError::io("rename into place", &target, e))?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn abort(self: Box<Self>) {
        let FileSink {
            partial, writer, ..
        } = *self;
        drop(writer);
        if let Err(e) = std::fs::remove_file(&partial) {
            tracing::warn!(path = %partial.display(), error = %e, "could not remove a partial output file");
        }
    }
}
