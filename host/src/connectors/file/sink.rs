//! Writing a file exactly once, with two-phase commit.
//!
//! Rows written between two checkpoints go to a *part* file in a hidden directory beside the
//! target (`.NAME.sabot-pending/epoch-N`). Pre-committing an epoch closes and syncs its part and
//! records where it goes in the target (its offset and length); committing appends it there (the
//! first part is renamed into place) and removes it. Committing a part is idempotent — the target's
//! length tells whether it is already there — so a recovery can finish commits a crash
//! interrupted, and truncating the target to the checkpoint's length removes anything committed
//! after the checkpoint it resumes from. A reader never sees a row that a later recovery takes back.
//!
//! Arrow IPC files cannot be appended to: with checkpoints, the file sink writes JSON Lines or
//! CSV (the pipeline validation says so); without, the whole run is one epoch.
//!
//! An epoch's part may grow to a budget (`[pipeline] file_sink_mb`): a write past it fails the
//! run, naming the sink, before the bytes reach the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::FileSinkSpec;
use crate::connectors::{ConnectorError, Format, Sink};

/// A pre-committed part: epoch `epoch`'s rows, `len` bytes to go at `offset` in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    epoch: u64,
    offset: u64,
    len: u64,
}

/// What a checkpoint keeps for a file sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    /// The target's length once every part below is committed.
    length: u64,
    /// Pre-committed parts not known to be committed, in order.
    parts: Vec<Part>,
}

/// A file being written.
pub struct FileSink {
    name: String,
    format: Format,
    target: PathBuf,
    pending_dir: PathBuf,
    /// The epoch being written, if anything was written since the last pre-commit.
    open: Option<(PathBuf, Writer)>,
    /// The target's length once every pre-committed part is committed.
    length: u64,
    parts: Vec<Part>,
    /// The schema of CSV and Arrow output, fixed by the first batch.
    schema: Option<SchemaRef>,
    /// Whether the target holds this run's lineage yet (a fresh run replaces an old file).
    initialized: bool,
    /// The most bytes one epoch's part may take.
    budget: u64,
    /// Bytes written to parts so far, all epochs.
    written: Arc<AtomicU64>,
    /// Set when a part refused a write over the budget.
    over: Arc<AtomicBool>,
}

/// A part file that refuses to grow past its epoch's budget.
struct Budgeted {
    file: File,
    epoch: u64,
    budget: u64,
    written: Arc<AtomicU64>,
    over: Arc<AtomicBool>,
}

impl Write for Budgeted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.epoch.saturating_add(buf.len() as u64) > self.budget {
            self.over.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(
                "over the sink's budget per checkpoint",
            ));
        }
        let n = self.file.write(buf)?;
        self.epoch += n as u64;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("length", &self.length)
            .field("parts", &self.parts)
            .finish()
    }
}

enum Writer {
    Jsonl(arrow_json::LineDelimitedWriter<BufWriter<Budgeted>>),
    Csv(arrow_csv::Writer<BufWriter<Budgeted>>),
    Arrow(arrow_ipc::writer::FileWriter<BufWriter<Budgeted>>),
}

/// The hidden directory of `target`'s pending parts.
pub(crate) fn pending_dir(target: &Path) -> PathBuf {
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{file_name}.sabot-pending"))
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

impl FileSink {
    /// Opens the sink `name`: creates the target's directory. Nothing is written before
    /// [`Sink::recover`].
    pub fn open(name: &str, spec: &FileSinkSpec) -> Result<Self, ConnectorError> {
        let target = spec.path.clone();
        let format = spec.format().ok_or_else(|| ConnectorError::Write {
            sink: name.to_owned(),
            message: "unknown format (validation should have refused this)".into(),
        })?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| ConnectorError::io("create directory", dir, e))?;
        }
        Ok(FileSink {
            name: name.to_owned(),
            format,
            pending_dir: pending_dir(&target),
            target,
            open: None,
            length: 0,
            parts: Vec::new(),
            schema: None,
            initialized: false,
            budget: u64::MAX,
            written: Arc::default(),
            over: Arc::default(),
        })
    }

    /// The sink with each epoch's part limited to `bytes`.
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = bytes;
        self
    }

    fn error(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Write {
            sink: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Creates the pending file of the next epoch, under a temporary name (the epoch is not known
    /// until pre-commit), written through the sink's budget.
    fn open_part(&self) -> Result<(PathBuf, BufWriter<Budgeted>), ConnectorError> {
        fs::create_dir_all(&self.pending_dir)
            .map_err(|e| ConnectorError::io("create directory", &self.pending_dir, e))?;
        let path = self.pending_dir.join("open");
        let file = File::create(&path).map_err(|e| ConnectorError::io("create", &path, e))?;
        let out = BufWriter::with_capacity(
            1 << 20,
            Budgeted {
                file,
                epoch: 0,
                budget: self.budget,
                written: self.written.clone(),
                over: self.over.clone(),
            },
        );
        Ok((path, out))
    }

    fn part_path(&self, epoch: u64) -> PathBuf {
        self.pending_dir.join(format!("epoch-{epoch:010}"))
    }

    fn target_len(&self) -> Result<Option<u64>, ConnectorError> {
        match fs::metadata(&self.target) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConnectorError::io("stat", &self.target, e)),
        }
    }

    /// Puts `part` into the target, unless it is there already.
    fn apply(&self, part: Part) -> Result<(), ConnectorError> {
        let path = self.part_path(part.epoch);
        let end = part.offset + part.len;
        let have = self.target_len()?;
        if !path.exists() {
            if have.unwrap_or(0) >= end {
                return Ok(()); // committed before a crash
            }
            return Err(self.error(format!(
                "cannot commit epoch {}: its pending file {} is gone and {} holds {} bytes, not the {end} it should; the output cannot be completed",
                part.epoch,
                path.display(),
                self.target.display(),
                have.unwrap_or(0)
            )));
        }
        if part.offset == 0 {
            fs::rename(&path, &self.target)
                .map_err(|e| ConnectorError::io("rename into place", &self.target, e))?;
            sync_parent(&self.target);
            return Ok(());
        }
        match have {
            Some(len) if len >= part.offset => {
                let mut out = OpenOptions::new()
                    .write(true)
                    .open(&self.target)
                    .map_err(|e| ConnectorError::io("open", &self.target, e))?;
                out.set_len(part.offset)
                    .map_err(|e| ConnectorError::io("truncate", &self.target, e))?;
                let mut input =
                    File::open(&path).map_err(|e| ConnectorError::io("open", &path, e))?;
                use std::io::Seek;
                out.seek(std::io::SeekFrom::End(0))
                    .and_then(|_| std::io::copy(&mut input, &mut out))
                    .and_then(|_| out.sync_all())
                    .map_err(|e| ConnectorError::io("append to", &self.target, e))?;
            }
            _ => {
                return Err(self.error(format!(
                    "cannot commit epoch {}: {} holds {} bytes, less than the {} already committed before it; was it changed by something else?",
                    part.epoch,
                    self.target.display(),
                    have.unwrap_or(0),
                    part.offset
                )));
            }
        }
        fs::remove_file(&path).map_err(|e| ConnectorError::io("remove", &path, e))
    }

    /// Makes the target exist and hold exactly `self.length` committed bytes when nothing was
    /// committed yet in this lineage.
    fn initialize(&mut self) -> Result<(), ConnectorError> {
        if !self.initialized && self.length == 0 {
            File::create(&self.target)
                .map_err(|e| ConnectorError::io("create", &self.target, e))?;
            sync_parent(&self.target);
        }
        self.initialized = true;
        Ok(())
    }

    fn writer(&mut self, batch: &RecordBatch) -> Result<&mut Writer, ConnectorError> {
        if let Some(schema) = &self.schema
            && self.format != Format::Jsonl
            && schema.fields() != batch.schema().fields()
        {
            return Err(self.error(format!(
                "a batch's schema ({}) differs from the first batch's ({schema}); CSV and Arrow files hold one schema",
                batch.schema()
            )));
        }
        if self.open.is_none() {
            let (path, out) = self.open_part()?;
            let writer = match self.format {
                Format::Jsonl => Writer::Jsonl(arrow_json::LineDelimitedWriter::new(out)),
                Format::Csv => Writer::Csv(
                    arrow_csv::WriterBuilder::new()
                        .with_header(self.length == 0)
                        .build(out),
                ),
                Format::Arrow => {
                    if self.length > 0 {
                        return Err(self.error(
                            "an Arrow IPC file cannot be appended to: an exactly-once file sink with checkpoints writes jsonl or csv",
                        ));
                    }
                    Writer::Arrow(
                        arrow_ipc::writer::FileWriter::try_new(out, &batch.schema())
                            .map_err(|e| self.error(e))?,
                    )
                }
            };
            self.schema.get_or_insert_with(|| batch.schema());
            self.open = Some((path, writer));
        }
        Ok(&mut self.open.as_mut().expect("opened above").1)
    }

    /// Finishes the open part and returns its file and length.
    fn close(&mut self) -> Result<Option<(PathBuf, u64)>, ConnectorError> {
        let Some((path, writer)) = self.open.take() else {
            return Ok(None);
        };
        let fail = |e: &dyn std::fmt::Display| ConnectorError::Write {
            sink: self.name.clone(),
            message: format!("finishing {}: {e}", path.display()),
        };
        let out = match writer {
            Writer::Jsonl(mut w) => w.finish().map_err(|e| fail(&e)).map(|()| w.into_inner())?,
            Writer::Csv(w) => w.into_inner(),
            Writer::Arrow(mut w) => {
                w.finish().map_err(|e| fail(&e))?;
                w.into_inner().map_err(|e| fail(&e))?
            }
        };
        let file = out
            .into_inner()
            .map_err(|e| {
                self.over_budget()
                    .unwrap_or_else(|| fail(&e.error().to_string()))
            })?
            .file;
        file.sync_all()
            .map_err(|e| ConnectorError::io("sync", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ConnectorError::io("stat", &path, e))?
            .len();
        Ok(Some((path, len)))
    }

    /// The error of a write refused over the budget, if that is what failed.
    fn over_budget(&self) -> Option<ConnectorError> {
        self.over.load(Ordering::Relaxed).then(|| {
            ConnectorError::Budget(format!(
                "sink `{}`: writing {} would take this checkpoint's output past its budget of {} MiB ([pipeline] file_sink_mb); nothing past it was written",
                self.name,
                self.target.display(),
                self.budget >> 20
            ))
        })
    }

    fn pending(&self) -> serde_json::Value {
        serde_json::to_value(Pending {
            length: self.length,
            parts: self.parts.clone(),
        })
        .expect("serializes")
    }
}

impl Sink for FileSink {
    fn recover(&mut self, pending: Option<&serde_json::Value>) -> Result<(), ConnectorError> {
        let state = match pending {
            None => None,
            Some(v) => Some(serde_json::from_value::<Pending>(v.clone()).map_err(|e| {
                self.error(format!(
                    "the checkpoint's record of this sink ({v}) does not parse: {e}"
                ))
            })?),
        };
        match state {
            None => {
                // A fresh start: the target is replaced at the first commit.
                if self.pending_dir.exists() {
                    fs::remove_dir_all(&self.pending_dir)
                        .map_err(|e| ConnectorError::io("remove", &self.pending_dir, e))?;
                }
                self.length = 0;
                self.initialized = false;
            }
            Some(state) => {
                for part in &state.parts {
                    self.apply(*part)?;
                }
                self.length = state.length;
                self.initialized = true;
                match self.target_len()? {
                    Some(len) if len > state.length => {
                        // Committed after the checkpoint we resume from: it will be produced again.
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&self.target)
                            .map_err(|e| ConnectorError::io("open", &self.target, e))?;
                        f.set_len(state.length)
                            .and_then(|()| f.sync_all())
                            .map_err(|e| ConnectorError::io("truncate", &self.target, e))?;
                        tracing::info!(sink = %self.name, from = len, to = state.length, "took back output committed after the restored checkpoint");
                    }
                    Some(len) if len < state.length => {
                        return Err(self.error(format!(
                            "{} holds {len} bytes, less than the {} the checkpoint says were committed; was it changed by something else?",
                            self.target.display(),
                            state.length
                        )));
                    }
                    None if state.length > 0 => {
                        return Err(self.error(format!(
                            "{} is gone, but the checkpoint says {} bytes were committed to it",
                            self.target.display(),
                            state.length
                        )));
                    }
                    _ => {}
                }
                // Parts pre-committed after the checkpoint will be written again.
                if self.pending_dir.exists() {
                    fs::remove_dir_all(&self.pending_dir)
                        .map_err(|e| ConnectorError::io("remove", &self.pending_dir, e))?;
                }
            }
        }
        if self.format == Format::Csv && self.length > 0 {
            // Later parts carry no header; their schema is the file's.
            self.schema = None;
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let result: Result<(), ArrowError> = match self.writer(batch)? {
            Writer::Jsonl(w) => w.write(batch),
            Writer::Csv(w) => w.write(batch),
            Writer::Arrow(w) => w.write(batch),
        };
        result.map_err(|e| {
            self.over_budget()
                .unwrap_or_else(|| self.error(format!("writing {}: {e}", self.target.display())))
        })
    }

    fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<serde_json::Value, ConnectorError> {
        if self.format == Format::Arrow
            && self.open.is_none()
            && self.length == 0
            && !self.initialized
        {
            // No batch at all: an Arrow file with an empty schema, like any empty Arrow output.
            let (path, out) = self.open_part()?;
            let w = arrow_ipc::writer::FileWriter::try_new(out, &Schema::empty())
                .map_err(|e| self.error(e))?;
            self.open = Some((path, Writer::Arrow(w)));
        }
        if let Some((path, len)) = self.close()? {
            let part = Part {
                epoch,
                offset: self.length,
                len,
            };
            let dest = self.part_path(epoch);
            fs::rename(&path, &dest).map_err(|e| ConnectorError::io("rename", &path, e))?;
            sync_parent(&dest);
            self.length += len;
            self.parts.push(part);
        }
        Ok(self.pending())
    }

    fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError> {
        let due: Vec<Part> = self
            .parts
            .iter()
            .filter(|p| p.epoch <= epoch)
            .copied()
            .collect();
        if due.first().is_some_and(|p| p.offset == 0) {
            self.initialized = true;
        }
        self.initialize()?;
        for part in due {
            self.apply(part)?;
            self.parts.remove(0);
        }
        Ok(())
    }

    fn abort(&mut self, keep_pending: bool) {
        if let Some((path, writer)) = self.open.take() {
            drop(writer);
            let _ = fs::remove_file(&path);
        }
        if !keep_pending {
            self.parts.clear();
        }
        if self.parts.is_empty()
            && self.pending_dir.exists()
            && let Err(e) = fs::remove_dir_all(&self.pending_dir)
        {
            tracing::warn!(path = %self.pending_dir.display(), error = %e, "could not remove pending output");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(values.to_vec())) as arrow_array::ArrayRef,
        )])
        .unwrap()
    }

    fn sink(dir: &Path, format: &str) -> FileSink {
        let spec: FileSinkSpec = toml::from_str(&format!(
            "path = {:?}\nformat = {format:?}",
            dir.join("out").display().to_string()
        ))
        .unwrap();
        FileSink::open("out", &spec).unwrap()
    }

    fn read(dir: &Path) -> String {
        fs::read_to_string(dir.join("out")).unwrap_or_default()
    }

    #[test]
    fn rows_become_visible_only_when_their_epoch_commits() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("out"), "old run\n").unwrap();
        let mut s = sink(tmp.path(), "jsonl");
        s.recover(None).unwrap();
        s.write(&batch(&[1, 2])).unwrap();
        s.pre_commit(1).unwrap();
        s.write(&batch(&[3])).unwrap();
        s.pre_commit(2).unwrap();
        assert_eq!(read(tmp.path()), "old run\n", "nothing committed yet");
        s.commit(1).unwrap();
        assert_eq!(read(tmp.path()), "{\"n\":1}\n{\"n\":2}\n");
        s.write(&batch(&[4])).unwrap();
        s.commit(2).unwrap();
        assert_eq!(read(tmp.path()), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
        s.pre_commit(3).unwrap();
        s.commit(3).unwrap();
        assert_eq!(
            read(tmp.path()),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n"
        );
        assert!(
            !pending_dir(&tmp.path().join("out"))
                .join("epoch-0000000003")
                .exists()
        );
    }

    #[test]
    fn recovery_finishes_interrupted_commits_and_takes_back_later_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = sink(tmp.path(), "csv");
        s.recover(None).unwrap();
        s.write(&batch(&[1])).unwrap();
        s.pre_commit(1).unwrap();
        s.commit(1).unwrap();
        s.write(&batch(&[2])).unwrap();
        // Checkpoint 2 completes with this record, then the process dies before committing.
        let at_2 = s.pre_commit(2).unwrap();
        s.write(&batch(&[3])).unwrap();
        drop(s);

        let mut s = sink(tmp.path(), "csv");
        s.recover(Some(&at_2)).unwrap();
        assert_eq!(
            read(tmp.path()),
            "n\n1\n2\n",
            "epoch 2 committed by the recovery"
        );
        // Recovering from the same checkpoint again changes nothing.
        let mut again = sink(tmp.path(), "csv");
        again.recover(Some(&at_2)).unwrap();
        assert_eq!(read(tmp.path()), "n\n1\n2\n");
        s.write(&batch(&[3])).unwrap();
        s.pre_commit(3).unwrap();
        s.commit(3).unwrap();
        assert_eq!(read(tmp.path()), "n\n1\n2\n3\n", "no second header");

        // Falling back to an older checkpoint truncates what was committed after it.
        let at_1 = serde_json::json!({ "length": 4, "parts": [] });
        let mut s = sink(tmp.path(), "csv");
        s.recover(Some(&at_1)).unwrap();
        assert_eq!(read(tmp.path()), "n\n1\n");
    }

    #[test]
    fn a_failed_run_without_checkpoints_leaves_the_old_file_alone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("out"), "old\n").unwrap();
        let mut s = sink(tmp.path(), "jsonl");
        s.recover(None).unwrap();
        s.write(&batch(&[1])).unwrap();
        s.abort(false);
        assert_eq!(read(tmp.path()), "old\n");
        assert!(!pending_dir(&tmp.path().join("out")).exists());
    }

    #[test]
    fn an_empty_run_leaves_an_empty_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("out"), "old\n").unwrap();
        let mut s = sink(tmp.path(), "jsonl");
        s.recover(None).unwrap();
        s.pre_commit(1).unwrap();
        s.commit(1).unwrap();
        assert_eq!(read(tmp.path()), "");
    }

    #[test]
    fn a_missing_pending_part_is_an_error_not_silent_loss() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = sink(tmp.path(), "jsonl");
        s.recover(None).unwrap();
        s.write(&batch(&[1])).unwrap();
        let at_1 = s.pre_commit(1).unwrap();
        fs::remove_dir_all(pending_dir(&tmp.path().join("out"))).unwrap();
        let e = sink(tmp.path(), "jsonl")
            .recover(Some(&at_1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pending file") && e.contains("is gone"), "{e}");
    }
}
