//! The dead-letter file: input that could not be processed, with the reason, one JSON object per
//! line. Written as it happens (not at commit): it is a diagnostic, kept even when a run fails.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use serde_json::{Value, json};

use super::ConnectorError;

/// The dead-letter file of one run, shared by every task.
#[derive(Debug)]
pub struct DeadLetters {
    path: Option<PathBuf>,
    pipeline: String,
    writer: Mutex<Option<BufWriter<File>>>,
    count: AtomicU64,
}

impl DeadLetters {
    /// Dead letters of `pipeline`, appended to `path` (none configured: `None`).
    pub fn new(pipeline: &str, path: Option<PathBuf>) -> Self {
        DeadLetters {
            path,
            pipeline: pipeline.to_owned(),
            writer: Mutex::new(None),
            count: AtomicU64::new(0),
        }
    }

    /// Where dead letters go, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many records were dead-lettered so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Records raw input (a line of a file) that could not be decoded.
    pub fn raw(
        &self,
        node: &str,
        location: &str,
        reason: &str,
        raw: &str,
    ) -> Result<(), ConnectorError> {
        self.write(&[json!({
            "pipeline": self.pipeline,
            "node": node,
            "location": location,
            "reason": reason,
            "raw": raw,
        })])
    }

    /// Records every row of a batch that an agent could not process.
    pub fn batch(
        &self,
        node: &str,
        reason: &str,
        batch: &RecordBatch,
    ) -> Result<(), ConnectorError> {
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        let rows: Vec<Value> = writer
            .write(batch)
            .and_then(|()| writer.finish())
            .map_err(|e| e.to_string())
            .and_then(|()| serde_json::from_slice(&writer.into_inner()).map_err(|e| e.to_string()))
            .map_err(|e| {
                ConnectorError::Internal(format!(
                    "cannot render a dead-lettered batch as JSON: {e}"
                ))
            })?;
        let records: Vec<Value> = rows
            .into_iter()
            .map(|row| json!({ "pipeline": self.pipeline, "node": node, "reason": reason, "row": row }))
            .collect();
        self.write(&records)
    }

    fn write(&self, records: &[Value]) -> Result<(), ConnectorError> {
        let Some(path) = &self.path else {
            return Err(ConnectorError::Internal(
                "dead-letter policy without a dead_letter path (validation should refuse this)"
                    .into(),
            ));
        };
        let mut guard = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ConnectorError::io("create directory", parent, e))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ConnectorError::io("open dead-letter file", path, e))?;
            *guard = Some(BufWriter::new(file));
        }
        let writer = guard.as_mut().expect("opened above");
        for record in records {
            serde_json::to_writer(&mut *writer, record)
                .map_err(|e| ConnectorError::io("write dead letter to", path, e.into()))?;
            writer
                .write_all(b"\n")
                .map_err(|e| ConnectorError::io("write dead letter to", path, e))?;
        }
        writer
            .flush()
            .map_err(|e| ConnectorError::io("write dead letter to", path, e))?;
        self.count
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
