//! The exactly-once Kafka sink: each checkpoint's output goes to Kafka in one transaction, when
//! the checkpoint completes, together with a record of which epoch it was.
//!
//! - `write`: batches are spilled to an Arrow IPC file under the run's data directory
//!   (`sinks/NAME/`), and, while no earlier epoch waits for its commit, also produced at once
//!   into a transaction open for the current epoch ("streamed"), so that a commit has little
//!   left to send.
//! - `pre_commit(n)`: the spill is synced and becomes epoch `n`'s; the list of epochs not yet
//!   known to be committed goes into the checkpoint. An open transaction now belongs to `n`;
//!   later batches are only spilled until it commits.
//! - `commit(n)`: for each such epoch, in order: the transaction holding its streamed records,
//!   or a new one, gets the records not streamed yet (read back from the spill) and the offset
//!   `n` of the commit topic's partition 0 for the consumer group named like the
//!   `transactional.id` (`send_offsets_to_transaction`); it commits, and the spill is deleted.
//!   Should that commit fail (the broker aborted the transaction), the transaction is aborted
//!   and the whole epoch produced again from its spill: the spill, not the open transaction,
//!   is what an epoch is.
//! - An epoch that outlasts three quarters of `transaction.timeout.ms` (the broker aborts older
//!   transactions) has its transaction aborted by the sink, and streaming stops for the rest of
//!   the run: every epoch is then produced from its spill at its commit.
//! - `recover`: that group's committed offset, read with `require_stable` (pending transactional
//!   offsets resolved first), is the last epoch whose transaction committed; epochs of the
//!   checkpoint after it are committed again from their spills. The stable `transactional.id`
//!   fences a zombie producer of an earlier run (or of a partition's previous owner).
//!
//! The lookup is one OffsetFetch of the sink's own group, so it never waits on other producers'
//! transactions, as reading a shared marker topic to its last stable offset would.
//!
//! Consumers with `isolation.level=read_committed` see each record exactly once, through any
//! crash; records become visible when their checkpoint completes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::KafkaSinkSpec;
use super::client::{self, Diagnosis};
use super::produce::TopicHandle;
use crate::connectors::{ConnectorError, Sink};

/// How long transactional calls and the epoch lookup may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long an epoch's records may be streamed into one transaction: three quarters of
/// `transaction.timeout.ms` (the sink's, else librdkafka's default of a minute), leaving the
/// rest for the checkpoint to complete. A value that does not read turns streaming off (and
/// the pipeline's validation refuses it).
fn stream_for(spec: &KafkaSinkSpec) -> Duration {
    let timeout_ms = match spec.transaction_timeout() {
        Some((_, v)) => v.trim().parse::<u64>().unwrap_or(0),
        None => 60_000,
    };
    Duration::from_millis(timeout_ms / 4 * 3)
}

/// An exactly-once Kafka sink.
pub struct TransactionalSink {
    name: String,
    spec: KafkaSinkSpec,
    commit_topic: String,
    dir: PathBuf,
    /// Before `producer`: released first.
    topic: TopicHandle,
    producer: ThreadedProducer<Diagnosis>,
    /// A consumer of the sink's epoch group (`sabot-PIPELINE-SINK`): its group metadata goes
    /// into each transaction, and it reads the group's committed epoch.
    epochs: BaseConsumer<Diagnosis>,
    /// The spill of the epoch being written: its segments (one per schema), and the open writer.
    segments: Vec<PathBuf>,
    writer: Option<(
        SchemaRef,
        arrow_ipc::writer::StreamWriter<std::io::BufWriter<std::fs::File>>,
    )>,
    /// Pre-committed epochs not yet known to be committed, with their segments.
    pending: Vec<(u64, Vec<PathBuf>)>,
    /// Batches spilled in the current epoch.
    batches: usize,
    /// The open transaction, when records are streamed into it.
    open: Option<OpenTransaction>,
    /// How long an epoch's records may be streamed into one transaction: three quarters of its
    /// `transaction.timeout.ms`; zero once streaming is off.
    stream_for: Duration,
}

/// A transaction records were produced into as they came.
struct OpenTransaction {
    /// The epoch it holds records of, once pre-committed (`None`: the current epoch).
    epoch: Option<u64>,
    /// How many of that epoch's first batches it holds.
    streamed: usize,
    began: std::time::Instant,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingEpoch {
    epoch: u64,
    /// Segment file names under the sink's directory.
    segments: Vec<String>,
}

impl TransactionalSink {
    /// Connects a transactional producer (fencing any earlier one of this sink) under `dir`.
    pub fn open(
        pipeline: &str,
        name: &str,
        spec: &KafkaSinkSpec,
        dir: &Path,
    ) -> Result<Self, ConnectorError> {
        let broker = |what: &str, e: &dyn std::fmt::Display| ConnectorError::Broker {
            node: format!("sink `{name}`"),
            message: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(dir).map_err(|source| ConnectorError::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        let commit_topic = spec
            .commit_topic
            .clone()
            .unwrap_or_else(|| format!("{}.sabot-commits", spec.topic));
        let id = format!("sabot-{pipeline}-{name}");
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.bootstrap)
            .set("transactional.id", &id)
            .set("linger.ms", "5");
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let diagnosis = Diagnosis::default();
        let producer: ThreadedProducer<Diagnosis> =
            config
                .create_with_context(diagnosis.clone())
                .map_err(|e| broker("cannot create a transactional producer", &e))?;
        client::connect(
            client::metadata_of(producer.client()),
            &diagnosis,
            &format!("sink `{name}`"),
            &spec.bootstrap,
            &spec.properties,
        )?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.bootstrap)
            .set("group.id", &id)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let epochs: BaseConsumer<Diagnosis> = config
            .create_with_context(diagnosis)
            .map_err(|e| broker("cannot create the epoch group's consumer", &e))?;
        producer
            .init_transactions(TIMEOUT)
            .map_err(|e| broker("cannot initialise transactions", &e))?;
        let topic =
            TopicHandle::new(&producer, &spec.topic).map_err(|e| broker("cannot produce", &e))?;
        let sink = TransactionalSink {
            name: name.to_owned(),
            spec: spec.clone(),
            commit_topic,
            epochs,
            dir: dir.to_owned(),
            topic,
            producer,
            segments: Vec::new(),
            writer: None,
            pending: Vec::new(),
            batches: 0,
            open: None,
            stream_for: stream_for(spec),
        };
        sink.ensure_commit_topic()?;
        Ok(sink)
    }

    fn broker(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Broker {
            node: format!("sink `{}`", self.name),
            message: format!("{what}: {e}"),
        }
    }

    /// Creates the commit topic (one partition, compacted) unless it exists.
    fn ensure_commit_topic(&self) -> Result<(), ConnectorError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.spec.bootstrap);
        for (k, v) in &self.spec.properties {
            config.set(k, v);
        }
        let admin: AdminClient<Diagnosis> = config
            .create_with_context(Diagnosis::default())
            .map_err(|e| self.broker("cannot create an admin client", e))?;
        let topic = NewTopic::new(&self.commit_topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.broker("cannot start a runtime for the admin client", e))?;
        let results = runtime
            .block_on(admin.create_topics(
                [&topic],
                &AdminOptions::new().request_timeout(Some(TIMEOUT)),
            ))
            .map_err(|e| {
                self.broker(
                    &format!("cannot create the commit topic `{}`", self.commit_topic),
                    e,
                )
            })?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(self.broker(&format!("cannot create the commit topic `{t}`"), code));
                }
            }
        }
        Ok(())
    }

    /// The last epoch this sink committed: its epoch group's committed offset, stable (any
    /// transaction still deciding it resolved first).
    fn last_committed(&self) -> Result<Option<u64>, ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.commit_topic, 0);
        let committed = self
            .epochs
            .committed_offsets(tpl, TIMEOUT)
            .map_err(|e| self.broker("cannot read the last committed epoch", e))?;
        Ok(
            match committed
                .find_partition(&self.commit_topic, 0)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(n)) if n > 0 => Some(n as u64),
                _ => None,
            },
        )
    }

    fn io(action: &'static str, path: &Path, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// Ends the open segment, synced.
    fn close_segment(&mut self) -> Result<(), ConnectorError> {
        if let Some((_, mut writer)) = self.writer.take() {
            let path = self.segments.last().cloned().unwrap_or_default();
            writer.finish().map_err(|e| ConnectorError::Write {
                sink: self.name.clone(),
                message: e.to_string(),
            })?;
            let file = writer
                .into_inner()
                .map_err(|e| ConnectorError::Write {
                    sink: self.name.clone(),
                    message: e.to_string(),
                })?
                .into_inner()
                .map_err(|e| Self::io("write", &path, e.into_error()))?;
            file.sync_all().map_err(|e| Self::io("sync", &path, e))?;
        }
        Ok(())
    }

    /// Produces one epoch's records, and the epoch as its group's offset, in one transaction:
    /// the open one when it holds the epoch's first batches (only the rest are sent), else a
    /// new one. A streamed transaction that fails to commit is aborted, and the epoch produced
    /// again in full.
    fn commit_epoch(&mut self, epoch: u64, segments: &[PathBuf]) -> Result<(), ConnectorError> {
        let _span = tracing::debug_span!("kafka.commit", sink = %self.name, epoch).entered();
        let streamed = match &self.open {
            Some(open) if open.epoch == Some(epoch) => {
                let streamed = open.streamed;
                self.open = None;
                Some(streamed)
            }
            Some(_) => {
                // Records of another epoch: never committed with this one.
                self.abort_open();
                None
            }
            None => None,
        };
        if let Some(streamed) = streamed {
            match self.finish_transaction(epoch, segments, streamed) {
                Ok(sent) => {
                    self.committed(epoch, segments, streamed + sent);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(sink = %self.name, epoch, error = %e, "the epoch's transaction did not commit; producing the epoch again from its spill");
                    self.producer.abort_transaction(TIMEOUT).map_err(|abort| {
                        self.broker(
                            &format!("cannot abort the failed transaction of epoch {epoch} ({e})"),
                            abort,
                        )
                    })?;
                }
            }
        }
        self.producer
            .begin_transaction()
            .map_err(|e| self.broker("cannot begin a transaction", e))?;
        let sent = self.finish_transaction(epoch, segments, 0)?;
        self.committed(epoch, segments, sent);
        Ok(())
    }

    /// Sends an epoch's batches after the first `skip` and the epoch's offset into the open
    /// transaction, and commits it. Returns how many records it sent.
    fn finish_transaction(
        &self,
        epoch: u64,
        segments: &[PathBuf],
        skip: usize,
    ) -> Result<usize, ConnectorError> {
        let mut sent = 0usize;
        self.read_spill(segments, skip, |batch| {
            sent += self.send(batch)?;
            Ok(())
        })?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.commit_topic, 0, Offset::Offset(epoch as i64))
            .map_err(|e| self.broker("cannot record the epoch", e))?;
        let group = self
            .epochs
            .group_metadata()
            .ok_or_else(|| self.broker("cannot record the epoch", "no group metadata"))?;
        self.producer
            .send_offsets_to_transaction(&offsets, &group, TIMEOUT)
            .map_err(|e| {
                self.broker(
                    &format!("cannot record epoch {epoch} in the transaction"),
                    e,
                )
            })?;
        self.producer.commit_transaction(TIMEOUT).map_err(|e| {
            self.broker(
                &format!("cannot commit the transaction of epoch {epoch}"),
                e,
            )
        })?;
        Ok(sent)
    }

    fn committed(&self, epoch: u64, segments: &[PathBuf], records: usize) {
        for segment in segments {
            let _ = std::fs::remove_file(segment);
        }
        tracing::debug!(sink = %self.name, epoch, records, "committed an epoch to Kafka");
    }

    /// Hands the batches of `segments` after the first `skip` to `each`, in order.
    fn read_spill(
        &self,
        segments: &[PathBuf],
        mut skip: usize,
        mut each: impl FnMut(&RecordBatch) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        for segment in segments {
            let file = std::fs::File::open(segment).map_err(|e| Self::io("open", segment, e))?;
            let reader =
                arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)
                    .map_err(|e| ConnectorError::Write {
                        sink: self.name.clone(),
                        message: format!("{}: {e}", segment.display()),
                    })?;
            for batch in reader {
                let batch = batch.map_err(|e| ConnectorError::Write {
                    sink: self.name.clone(),
                    message: format!("{}: {e}", segment.display()),
                })?;
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                each(&batch)?;
            }
        }
        Ok(())
    }

    /// Aborts the open transaction, if any: what it held is in the spills.
    fn abort_open(&mut self) {
        if self.open.take().is_some()
            && let Err(e) = self.producer.abort_transaction(TIMEOUT)
        {
            tracing::warn!(sink = %self.name, error = %e, "cannot abort the open transaction; the next producer of this sink fences it");
        }
    }

    /// Aborts the current epoch's transaction once it has lived three quarters of `transaction.timeout.ms`
    /// (before the broker does), and turns streaming off: an epoch that long is produced from
    /// its spill at its commit, and so are the rest of the run's.
    fn expire_open(&mut self) {
        if self
            .open
            .as_ref()
            .is_some_and(|open| open.epoch.is_none() && open.began.elapsed() >= self.stream_for)
        {
            tracing::info!(sink = %self.name, stream_for = ?self.stream_for, "an epoch outlasted three quarters of transaction.timeout.ms: its transaction is aborted, and records are no longer produced before their checkpoint completes");
            self.abort_open();
            self.stream_for = Duration::ZERO;
        }
    }

    /// Opens a transaction for the current epoch when none is open and no earlier epoch waits
    /// for its commit, and sends it the epoch's batches spilled so far. Returns whether the
    /// next batch is to be streamed.
    fn stream(&mut self) -> Result<bool, ConnectorError> {
        self.expire_open();
        if let Some(open) = &self.open {
            return Ok(open.epoch.is_none() && open.streamed == self.batches);
        }
        if !self.pending.is_empty() || self.stream_for.is_zero() {
            return Ok(false);
        }
        self.producer
            .begin_transaction()
            .map_err(|e| self.broker("cannot begin a transaction", e))?;
        self.open = Some(OpenTransaction {
            epoch: None,
            streamed: 0,
            began: std::time::Instant::now(),
        });
        if self.batches > 0 {
            // The epoch's batches so far, from its spill (the open segment closed for it).
            self.close_segment()?;
            let segments = self.segments.clone();
            self.read_spill(&segments, 0, |batch| self.send(batch).map(drop))?;
            if let Some(open) = &mut self.open {
                open.streamed = self.batches;
            }
        }
        Ok(true)
    }

    fn send(&self, batch: &RecordBatch) -> Result<usize, ConnectorError> {
        let records = self
            .spec
            .encode(batch)
            .map_err(|message| ConnectorError::Write {
                sink: self.name.clone(),
                message,
            })?;
        super::produce::send_all(&self.producer, &self.topic, &records)
            .map_err(|e| self.broker(&format!("cannot send to topic `{}`", self.spec.topic), e))?;
        Ok(records.len())
    }

    fn pending_value(&self) -> serde_json::Value {
        let list: Vec<PendingEpoch> = self
            .pending
            .iter()
            .map(|(epoch, segments)| PendingEpoch {
                epoch: *epoch,
                segments: segments
                    .iter()
                    .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect(),
            })
            .collect();
        serde_json::to_value(list).unwrap_or_default()
    }

    /// Removes spill files no pending epoch holds.
    fn sweep(&self) {
        let keep: Vec<&PathBuf> = self.pending.iter().flat_map(|(_, s)| s).collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let path = e.path();
                if !keep.contains(&&path) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

impl Sink for TransactionalSink {
    fn recover(&mut self, pending: Option<&serde_json::Value>) -> Result<(), ConnectorError> {
        let epochs: Vec<PendingEpoch> = match pending {
            Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| {
                ConnectorError::Internal(format!(
                    "sink `{}`: the checkpoint's pending epochs {v} do not read: {e}",
                    self.name
                ))
            })?,
            _ => Vec::new(),
        };
        self.pending = epochs
            .into_iter()
            .map(|p| {
                (
                    p.epoch,
                    p.segments.iter().map(|s| self.dir.join(s)).collect(),
                )
            })
            .collect();
        self.sweep();
        if self.pending.is_empty() {
            return Ok(());
        }
        let last = self.last_committed()?;
        for (epoch, segments) in std::mem::take(&mut self.pending) {
            if last.is_some_and(|l| l >= epoch) {
                tracing::info!(sink = %self.name, epoch, "the checkpoint's epoch was committed before the restart");
                continue;
            }
            tracing::info!(sink = %self.name, epoch, "committing the checkpoint's epoch again after a restart");
            self.commit_epoch(epoch, &segments)?;
        }
        self.sweep();
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Before the batch is spilled: opening a transaction sends the epoch's spill so far.
        let streaming = self.stream()?;
        if self
            .writer
            .as_ref()
            .is_some_and(|(s, _)| *s != batch.schema())
        {
            self.close_segment()?;
        }
        if self.writer.is_none() {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self
                .dir
                .join(format!("spill-{}-{n}.arrows", std::process::id()));
            let file = std::fs::File::create(&path).map_err(|e| Self::io("create", &path, e))?;
            let writer = arrow_ipc::writer::StreamWriter::try_new(
                std::io::BufWriter::new(file),
                &batch.schema(),
            )
            .map_err(|e| ConnectorError::Write {
                sink: self.name.clone(),
                message: e.to_string(),
            })?;
            self.segments.push(path);
            self.writer = Some((batch.schema(), writer));
        }
        let (_, writer) = self.writer.as_mut().expect("opened above");
        writer.write(batch).map_err(|e| ConnectorError::Write {
            sink: self.name.clone(),
            message: e.to_string(),
        })?;
        if streaming {
            self.send(batch)?;
            if let Some(open) = &mut self.open {
                open.streamed += 1;
            }
        }
        self.batches += 1;
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<serde_json::Value, ConnectorError> {
        self.expire_open();
        self.close_segment()?;
        let segments = std::mem::take(&mut self.segments);
        self.pending.push((epoch, segments));
        self.batches = 0;
        if let Some(open) = &mut self.open
            && open.epoch.is_none()
        {
            open.epoch = Some(epoch);
        }
        Ok(self.pending_value())
    }

    fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError> {
        while let Some((e, _)) = self.pending.first() {
            if *e > epoch {
                break;
            }
            let (e, segments) = self.pending.remove(0);
            self.commit_epoch(e, &segments)?;
        }
        Ok(())
    }

    fn spill_files(&self) -> Vec<PathBuf> {
        self.pending.iter().flat_map(|(_, s)| s.clone()).collect()
    }

    fn abort(&mut self, keep_pending: bool) {
        self.abort_open();
        self.batches = 0;
        self.writer = None;
        for s in self.segments.drain(..) {
            let _ = std::fs::remove_file(s);
        }
        if !keep_pending {
            for (_, segments) in self.pending.drain(..) {
                for s in segments {
                    let _ = std::fs::remove_file(s);
                }
            }
        }
    }
}
