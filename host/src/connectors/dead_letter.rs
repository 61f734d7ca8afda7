//! The dead-letter file: input that could not be processed, with the reason, one JSON object per
//! line. Written as it happens (not at commit): it is a diagnostic, kept even when a run fails.
//!
//! A batch an agent could not process is one `{"pipeline", "node", "batch", "reason", "rows"}`
//! line followed by one `{"pipeline", "node", "batch", "row"}` line per row: the reason is stored
//! once, and the rows refer to it by `batch`. A record a source could not decode is one line with
//! its `reason` and `raw` text. The file has a size budget (`[pipeline] dead_letter_mb`): a dead
//! letter that would take it past the budget fails the run instead, naming the file.

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
    /// The open file, and its length.
    writer: Mutex<Option<(BufWriter<File>, u64)>>,
    count: AtomicU64,
    batches: AtomicU64,
    budget: u64,
    /// Bytes sent to dead-letter topics by this run (they share the budget of the file).
    topic_bytes: AtomicU64,
}

/// The longest `reason` a dead letter keeps, in bytes. An agent's message is already cut to its
/// `limits.max_error_bytes` (4 KiB by default); this bounds every other reason too.
pub const MAX_REASON: usize = 64 * 1024;

impl DeadLetters {
    /// Dead letters of `pipeline`, appended to `path` (none configured: `None`), which may grow
    /// to `budget` bytes.
    pub fn new(pipeline: &str, path: Option<PathBuf>, budget: u64) -> Self {
        DeadLetters {
            path,
            pipeline: pipeline.to_owned(),
            writer: Mutex::new(None),
            count: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            budget,
            topic_bytes: AtomicU64::new(0),
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

    /// Charges `bytes` sent to the dead-letter topic `topic` by this run against the budget, or
    /// refuses them (and sends nothing) when they would take it past.
    pub fn charge_topic(&self, topic: &str, bytes: u64) -> Result<(), ConnectorError> {
        let before = self.topic_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.budget {
            self.topic_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return Err(ConnectorError::Budget(format!(
                "dead letters sent to topic `{topic}` would reach {} bytes in this run, over their budget of {} MiB ([pipeline] dead_letter_mb); fix the records upstream or raise the budget",
                before.saturating_add(bytes),
                self.budget >> 20
            )));
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Records raw input (a line of a file) that could not be decoded.
    pub fn raw(
        &self,
        node: &str,
        location: &str,
        reason: &str,
        raw: &str,
    ) -> Result<(), ConnectorError> {
        self.write(
            &[json!({
                "pipeline": self.pipeline,
                "node": node,
                "location": location,
                "reason": cut(reason),
                "raw": raw,
            })],
            1,
        )
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
        let id = format!(
            "{node}#{}",
            self.batches.fetch_add(1, Ordering::Relaxed) + 1
        );
        let mut records = Vec::with_capacity(rows.len() + 1);
        records.push(json!({
            "pipeline": self.pipeline, "node": node, "batch": id,
            "reason": cut(reason), "rows": rows.len(),
        }));
        let count = rows.len() as u64;
        records.extend(rows.into_iter().map(
            |row| json!({ "pipeline": self.pipeline, "node": node, "batch": id, "row": row }),
        ));
        self.write(&records, count)
    }

    /// Appends `records` (`count` of them dead letters) as lines, or none of them when they
    /// would take the file past its budget.
    fn write(&self, records: &[Value], count: u64) -> Result<(), ConnectorError> {
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
            let len = file
                .metadata()
                .map_err(|e| ConnectorError::io("stat dead-letter file", path, e))?
                .len();
            *guard = Some((BufWriter::new(file), len));
        }
        let mut text = Vec::new();
        for record in records {
            serde_json::to_writer(&mut text, record)
                .map_err(|e| ConnectorError::io("write dead letter to", path, e.into()))?;
            text.push(b'\n');
        }
        let (writer, len) = guard.as_mut().expect("opened above");
        let after = *len + text.len() as u64;
        if after > self.budget {
            return Err(ConnectorError::Budget(format!(
                "the dead-letter file {} would grow to {after} bytes, over its budget of {} MiB ([pipeline] dead_letter_mb): {count} more dead letters refused; move the file away or raise the budget",
                path.display(),
                self.budget >> 20
            )));
        }
        writer
            .write_all(&text)
            .and_then(|()| writer.flush())
            .map_err(|e| ConnectorError::io("write dead letter to", path, e))?;
        *len = after;
        self.count.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }
}

/// A reason cut to [`MAX_REASON`] bytes, with a marker.
pub fn cut(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &reason[..end], reason.len())
}
