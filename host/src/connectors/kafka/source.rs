//! The Kafka source: every partition of its topics assigned to it, read with
//! `isolation.level = read_committed`; its position (the next offset of each partition) is kept in
//! Sabot's checkpoints, so a resumed run reads each record once whatever Kafka's committed
//! offsets say.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::client::{self, Diagnosis};
use super::fetch::{FetchQueue, Fetched};
use super::format::{self, Origin, Record};
use super::{KafkaSourceSpec, Named, StartAt};
use crate::connectors::{ConnectorError, DeadLetters, OnError, Source};
use crate::time::{BoundedOutOfOrderness, WatermarkTracker};

/// How long broker metadata and offset lookups may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one poll waits for the first record of a batch.
const POLL: Duration = Duration::from_millis(100);

/// A partition: topic and number.
type Tp = (String, i32);

/// A partition assigned to the source, with where reading it stands.
struct Partition {
    topic: Arc<str>,
    number: i32,
    /// The next offset to read (once read from, or sought to).
    next: Option<i64>,
    /// For a bounded source: the end offset when it started.
    end: Option<i64>,
}

impl Partition {
    fn is(&self, topic: &str, number: i32) -> bool {
        self.number == number && &*self.topic == topic
    }
}

/// A running Kafka source.
pub struct KafkaSource {
    name: String,
    spec: KafkaSourceSpec,
    batch_size: usize,
    schema: Option<SchemaRef>,
    /// The consumer's queue, read a batch at a time (dropped before the consumer).
    queue: FetchQueue,
    consumer: BaseConsumer<Diagnosis>,
    /// What librdkafka reported about the consumer's connections.
    diagnosis: Diagnosis,
    /// The partitions assigned, in a fixed order: a record's [`Record::slot`] indexes it.
    partitions: Vec<Partition>,
    /// Checkpointed offsets of partitions not assigned (topics or partitions no longer read),
    /// carried on in every position.
    elsewhere: BTreeMap<Tp, i64>,
    /// For a bounded source: whether the end offsets are known (after it started).
    bounded_from_start: bool,
    dead_letters: Arc<DeadLetters>,
    /// When the first record of the batch last returned arrived (see [`Source::born`]).
    born: Option<Instant>,
    started: bool,
    /// With event time: a watermark per partition, combined with idleness.
    watermarks: Option<PartitionWatermarks>,
    /// With `dead_letter_topic`: the producer of dead letters.
    dead_letter_producer: Option<ThreadedProducer<Diagnosis>>,
    /// Records read but not yet in a batch (after a schema change split a poll), first in the
    /// next batch; the position counts them as unread.
    pending: Vec<Record>,
}

/// Per-partition watermarks: each partition's bounded out-of-orderness, combined (the minimum
/// over partitions that are not idle) by a [`WatermarkTracker`].
struct PartitionWatermarks {
    column: String,
    /// One per assigned partition, by slot.
    generators: Vec<BoundedOutOfOrderness>,
    tracker: WatermarkTracker,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Each row's event time in ms (an integer of ms, or a timestamp of any unit).
fn event_millis(batch: &RecordBatch, column: &str) -> Result<Vec<Option<i64>>, String> {
    use arrow_schema::{DataType, TimeUnit};
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| format!("has no event-time column `{column}`"))?;
    let ms = match array.data_type() {
        DataType::Timestamp(_, tz) => arrow_cast::cast(
            array,
            &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        )
        .and_then(|a| arrow_cast::cast(&a, &DataType::Int64)),
        _ => arrow_cast::cast(array, &DataType::Int64),
    }
    .map_err(|e| format!("event-time column `{column}` is not a time: {e}"))?;
    let ms = ms
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .expect("cast to int64");
    Ok(ms.iter().collect())
}

/// A broker error of source `source`.
pub(crate) fn kafka_error(source: &str, what: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Broker {
        node: format!("source `{source}`"),
        message: format!("{what}: {e}"),
    }
}

/// The consumer settings of source `name`: Sabot's own, then [`super::SOURCE_DEFAULTS`], then
/// the pipeline's `properties` (which may override the defaults, and were checked not to touch
/// Sabot's own).
fn consumer_config(name: &str, spec: &KafkaSourceSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap)
        .set("group.id", spec.group_of(name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false");
    for (k, v) in super::SOURCE_DEFAULTS {
        config.set(*k, *v);
    }
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
}

impl KafkaSource {
    /// Connects and finds the topics' partitions (reading starts at the first batch).
    pub fn open(
        name: &str,
        spec: &KafkaSourceSpec,
        batch_size: usize,
        dead_letters: Arc<DeadLetters>,
    ) -> Result<Self, ConnectorError> {
        let schema = format::schema_of(spec).map_err(|(field, m)| {
            ConnectorError::Internal(format!("[sources.{name}] field `{field}`: {m}"))
        })?;
        let diagnosis = Diagnosis::default();
        let consumer: BaseConsumer<Diagnosis> = consumer_config(name, spec)
            .create_with_context(diagnosis.clone())
            .map_err(|e| kafka_error(name, "cannot create a Kafka consumer", e))?;
        client::connect(
            client::metadata_of_consumer(&consumer),
            &diagnosis,
            &format!("source `{name}`"),
            &spec.bootstrap,
            &spec.properties,
        )?;
        let mut partitions = Vec::new();
        for topic in &spec.topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map_err(|e| {
                    kafka_error(
                        name,
                        &format!(
                            "cannot read the metadata of topic `{topic}` from {}",
                            spec.bootstrap
                        ),
                        e,
                    )
                })?;
            let t = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .ok_or_else(|| {
                    kafka_error(
                        name,
                        &format!("topic `{topic}` does not exist on {}", spec.bootstrap),
                        "create it first, or list an existing topic in `topics`",
                    )
                })?;
            let all: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            match &spec.partitions {
                None => partitions.extend(all.iter().map(|p| (topic.as_str(), *p))),
                Some(wanted) => {
                    for p in wanted {
                        if !all.contains(p) {
                            return Err(kafka_error(
                                name,
                                &format!("topic `{topic}` has no partition {p}"),
                                format_args!(
                                    "it has {} partition(s), 0 to {}; fix `partitions`",
                                    all.len(),
                                    all.len().saturating_sub(1)
                                ),
                            ));
                        }
                        partitions.push((topic.as_str(), *p));
                    }
                }
            }
        }
        let queue = FetchQueue::of(&consumer).ok_or_else(|| {
            kafka_error(name, "cannot read from Kafka", "the consumer has no queue")
        })?;
        let dead_letter_producer =
            match &spec.dead_letter_topic {
                Some(_) => {
                    let mut config = ClientConfig::new();
                    config
                        .set("bootstrap.servers", &spec.bootstrap)
                        .set("enable.idempotence", "true");
                    for (k, v) in &spec.properties {
                        config.set(k, v);
                    }
                    Some(config.create_with_context(diagnosis.clone()).map_err(|e| {
                        kafka_error(name, "cannot create the dead-letter producer", e)
                    })?)
                }
                None => None,
            };
        Ok(KafkaSource {
            dead_letter_producer,
            pending: Vec::new(),
            name: name.to_owned(),
            spec: spec.clone(),
            batch_size,
            schema,
            queue,
            consumer,
            diagnosis,
            partitions: assigned(&partitions),
            elsewhere: BTreeMap::new(),
            bounded_from_start: false,
            born: None,
            dead_letters,
            started: false,
            watermarks: spec.event_time.as_ref().map(|et| PartitionWatermarks {
                column: et.column.clone(),
                generators: Vec::new(),
                tracker: WatermarkTracker::new(0, et.idle_timeout_ms, now_ms()),
            }),
        })
    }

    /// Assigns every partition, at its checkpointed offset or the start position.
    fn start(&mut self) -> Result<(), ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        for p in &self.partitions {
            let offset = match (p.next, self.spec.start) {
                (Some(o), _) => Offset::Offset(o),
                (None, StartAt::Named(Named::Earliest)) => Offset::Beginning,
                (None, StartAt::Named(Named::Latest)) => Offset::End,
                (None, StartAt::Timestamp { timestamp_ms }) => Offset::Offset(timestamp_ms),
            };
            tpl.add_partition_offset(&p.topic, p.number, offset)
                .map_err(|e| kafka_error(&self.name, "cannot assign a partition", e))?;
        }
        if let StartAt::Timestamp { .. } = self.spec.start {
            // Offsets by time for the partitions without a checkpointed offset.
            let mut by_time = TopicPartitionList::new();
            for e in tpl.elements() {
                let sought = self
                    .partitions
                    .iter()
                    .any(|p| p.is(e.topic(), e.partition()) && p.next.is_some());
                if !sought {
                    by_time
                        .add_partition_offset(e.topic(), e.partition(), e.offset())
                        .map_err(|e| kafka_error(&self.name, "cannot look up offsets", e))?;
                }
            }
            if by_time.count() > 0 {
                let found = self
                    .consumer
                    .offsets_for_times(by_time, METADATA_TIMEOUT)
                    .map_err(|e| kafka_error(&self.name, "cannot look up offsets by time", e))?;
                for e in found.elements() {
                    tpl.set_partition_offset(e.topic(), e.partition(), e.offset())
                        .map_err(|e| kafka_error(&self.name, "cannot look up offsets", e))?;
                }
            }
        }
        if self.spec.bounded {
            for p in &mut self.partitions {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&p.topic, p.number, METADATA_TIMEOUT)
                    .map_err(|e| {
                        kafka_error(&self.name, "cannot read the end of a partition", e)
                    })?;
                p.end = Some(high);
            }
            self.bounded_from_start = true;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_error(&self.name, "cannot assign the partitions", e))?;
        if let (Some(w), Some(et)) = (&mut self.watermarks, &self.spec.event_time) {
            w.generators =
                vec![BoundedOutOfOrderness::new(et.max_out_of_orderness_ms); self.partitions.len()];
            w.tracker = WatermarkTracker::new(self.partitions.len(), et.idle_timeout_ms, now_ms());
        }
        Ok(())
    }

    /// Advances the partitions' watermarks past the rows of `batch`, decoded from `records`
    /// (`rows[i]` rows from record `i`).
    fn observe(
        &mut self,
        batch: &RecordBatch,
        records: &[Record],
        rows: &[usize],
    ) -> Result<(), ConnectorError> {
        let Some(w) = &mut self.watermarks else {
            return Ok(());
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = event_millis(batch, &w.column).map_err(|m| {
            ConnectorError::Internal(format!(
                "source `{}`: a batch {m}; fix `event_time.column`",
                self.name
            ))
        })?;
        let now = now_ms();
        let mut row = 0;
        let mut touched = std::collections::BTreeSet::new();
        for (record, n) in records.iter().zip(rows) {
            let p = record.slot;
            for t in times[row..row + n].iter().flatten() {
                w.generators[p].observe(*t);
            }
            touched.insert(p);
            row += n;
        }
        for p in touched {
            match w.generators[p].watermark() {
                Some(wm) => {
                    w.tracker.update(p, wm, now);
                }
                None => w.tracker.activity(p, now),
            }
        }
        Ok(())
    }

    /// Whether a bounded source has read everything it was bounded to; with `markers`, also
    /// counting where the consumer stands past transaction markers (after a quiet poll).
    fn done(&self, markers: bool) -> bool {
        self.bounded_from_start
            && self.partitions.iter().all(|p| {
                let high = p.end.unwrap_or(0);
                let read = p.next.is_some_and(|o| o >= high);
                read || high == 0 || (markers && self.position(p).is_some_and(|o| o >= high))
            })
    }

    /// Where the consumer is in a partition (past transaction markers too).
    fn position(&self, p: &Partition) -> Option<i64> {
        let assignment = self.consumer.position().ok()?;
        let e = assignment.find_partition(&p.topic, p.number)?;
        match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Applies the `on_error` policy to a record that does not decode.
    fn undecodable(&self, record: &Record, reason: &str) -> Result<(), ConnectorError> {
        let location = record.origin.to_string();
        match self.spec.on_error {
            OnError::Fail => Err(ConnectorError::BadRecord {
                source_name: self.name.clone(),
                at: location,
                message: format!("expected {:?}: {reason}", self.spec.format),
            }),
            OnError::Skip => {
                tracing::warn!(source = %self.name, at = %location, %reason, "skipped a record that does not decode");
                Ok(())
            }
            OnError::DeadLetter => match (&self.dead_letter_producer, &self.spec.dead_letter_topic)
            {
                (Some(producer), Some(topic)) => {
                    let reason = crate::connectors::dead_letter::cut(reason);
                    let payload = record.value.as_deref().unwrap_or_default();
                    let size = payload.len()
                        + record.key.as_ref().map_or(0, Vec::len)
                        + reason.len()
                        + self.name.len()
                        + location.len();
                    self.dead_letters.charge_topic(topic, size as u64)?;
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "sabot.reason",
                            value: Some(reason.as_str()),
                        })
                        .insert(Header {
                            key: "sabot.source",
                            value: Some(self.name.as_str()),
                        })
                        .insert(Header {
                            key: "sabot.origin",
                            value: Some(location.as_str()),
                        });
                    let mut out = BaseRecord::<[u8], [u8]>::to(topic)
                        .payload(payload)
                        .headers(headers);
                    if let Some(k) = &record.key {
                        out = out.key(k.as_slice());
                    }
                    producer.send(out).map_err(|(e, _)| {
                        kafka_error(
                            &self.name,
                            &format!("cannot dead-letter to topic `{topic}`"),
                            e,
                        )
                    })
                }
                _ => self.dead_letters.raw(
                    &self.name,
                    &location,
                    reason,
                    &String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()),
                ),
            },
        }
    }
}

impl Source for KafkaSource {
    fn schema(&self) -> Option<SchemaRef> {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.started {
            self.start()?;
            self.started = true;
        }
        if self.pending.is_empty() && self.done(false) {
            return Ok(None);
        }
        let mut records: Vec<Record> = std::mem::take(&mut self.pending);
        // A partial batch leaves at once, or once its first record has waited
        // `max_batch_delay_ms` for more.
        let hold = Duration::from_millis(self.spec.max_batch_delay_ms);
        let mut first: Option<Instant> = (!records.is_empty()).then(Instant::now);
        self.born = None;
        let mut slot = 0;
        let mut fetched = Fetched::default();
        while records.len() < self.batch_size && !self.done(false) {
            let (wait, max) = match first {
                // Waiting for a batch's first record: back with the first that comes.
                None => (POLL, 1),
                // Then as many as are there, or arrive while the first may wait.
                Some(_) if hold.is_zero() => (Duration::ZERO, self.batch_size - records.len()),
                Some(at) => (
                    (at + hold).saturating_duration_since(Instant::now()),
                    self.batch_size - records.len(),
                ),
            };
            fetched.clear();
            if self.queue.fetch(wait, max, &mut fetched) == 0 {
                if let Some(reason) = self.diagnosis.final_failure() {
                    return Err(kafka_error(&self.name, "cannot read from Kafka", reason));
                }
                if records.is_empty() && self.done(true) {
                    return Ok(None);
                }
                if records.is_empty() {
                    break;
                }
                // Held long enough (or nothing more came in time).
                if first.is_some_and(|at| at.elapsed() >= hold) {
                    break;
                }
                continue;
            }
            first.get_or_insert_with(Instant::now);
            self.born = first;
            let mut reported = false;
            for m in fetched.iter() {
                let m = match m {
                    Ok(m) => m,
                    Err(e) if client::gives_up(&e) => {
                        return Err(kafka_error(&self.name, "cannot read from Kafka", e));
                    }
                    Err(e) => {
                        // librdkafka reconnects by itself (a broker restarting, a leader moving).
                        // One line per fetch, as it was one per poll, however many errors came.
                        if !reported {
                            tracing::warn!(source = %self.name, error = %e, "Kafka reported an error; reading on");
                        }
                        reported = true;
                        continue;
                    }
                };
                // Records come in runs from one partition: the last one's slot is checked first.
                if !self
                    .partitions
                    .get(slot)
                    .is_some_and(|p| p.is(m.topic(), m.partition()))
                {
                    let Some(found) = self
                        .partitions
                        .iter()
                        .position(|p| p.is(m.topic(), m.partition()))
                    else {
                        tracing::warn!(source = %self.name, topic = m.topic(), partition = m.partition(), "skipped a record of a partition not assigned to the source");
                        continue;
                    };
                    slot = found;
                }
                let partition = &mut self.partitions[slot];
                partition.next = Some(m.offset() + 1);
                let at_end = partition.end.is_some_and(|end| m.offset() + 1 >= end);
                records.push(Record {
                    slot,
                    origin: Origin {
                        topic: partition.topic.clone(),
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp(),
                    },
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
                // A bounded source stops at its end offsets: what was fetched past them is
                // not read (and not counted in its position).
                if at_end && self.done(false) {
                    break;
                }
            }
            if reported {
                break;
            }
        }
        loop {
            if records.is_empty() {
                return Ok(Some(RecordBatch::new_empty(
                    self.schema
                        .clone()
                        .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty())),
                )));
            }
            match format::decode(
                self.spec.format,
                self.schema.as_ref(),
                self.spec.metadata,
                self.spec.avro.as_ref(),
                &records,
            ) {
                Ok((batch, rows)) => {
                    self.observe(&batch, &records, &rows)?;
                    return Ok(Some(batch));
                }
                Err(bad) if bad.split => {
                    // A new schema starts here: this batch ends before it.
                    self.pending = records.split_off(bad.index);
                }
                Err(bad) => {
                    // Only the bad record is taken out; the others are decoded again.
                    let record = records.remove(bad.index);
                    self.undecodable(&record, &bad.reason)?;
                }
            }
        }
    }

    fn checkpoint_completed(&mut self, position: &serde_json::Value) {
        if !self.spec.commit_offsets {
            return;
        }
        let tpl = offsets_of(position);
        if tpl.count() > 0
            && let Err(e) = self
                .consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Async)
        {
            tracing::warn!(source = %self.name, error = %e, "cannot commit offsets to the consumer group (monitoring only)");
        }
    }

    fn tracks_event_time(&self) -> bool {
        self.watermarks.is_some()
    }

    fn born(&self) -> Option<Instant> {
        self.born
    }

    fn watermark(&mut self) -> Option<i64> {
        let w = self.watermarks.as_mut()?;
        w.tracker.check_idle(now_ms());
        w.tracker.current()
    }

    fn position(&self) -> serde_json::Value {
        // Dead letters are acknowledged before a checkpoint covers the records they replace.
        if let Some(p) = &self.dead_letter_producer
            && !client::acknowledged(p, METADATA_TIMEOUT)
        {
            tracing::error!(source = %self.name, timeout_s = METADATA_TIMEOUT.as_secs(), "dead letters were not acknowledged");
        }
        // Records held for the next batch are not read yet.
        let mut next: Vec<Option<i64>> = self.partitions.iter().map(|p| p.next).collect();
        for r in &self.pending {
            let n = &mut next[r.slot];
            *n = Some(n.map_or(r.origin.offset, |n| n.min(r.origin.offset)));
        }
        let mut offsets: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        let assigned = self
            .partitions
            .iter()
            .zip(next)
            .filter_map(|(p, n)| Some((&*p.topic, p.number, n?)));
        let elsewhere = self
            .elsewhere
            .iter()
            .map(|((t, p), n)| (t.as_str(), *p, *n));
        for (topic, partition, next) in assigned.chain(elsewhere) {
            offsets
                .entry(topic.to_owned())
                .or_default()
                .insert(partition.to_string(), next);
        }
        serde_json::json!({ "offsets": offsets })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        let offsets = position
            .get("offsets")
            .and_then(|o| o.as_object())
            .ok_or_else(|| {
                ConnectorError::Internal(format!(
                    "source `{}`: the checkpointed position {position} has no `offsets`",
                    self.name
                ))
            })?;
        for (topic, partitions) in offsets {
            for (partition, next) in partitions.as_object().into_iter().flatten() {
                let (Ok(p), Some(n)) = (partition.parse::<i32>(), next.as_i64()) else {
                    return Err(ConnectorError::Internal(format!(
                        "source `{}`: the checkpointed offset {topic}/{partition} = {next} is not valid",
                        self.name
                    )));
                };
                match self.partitions.iter_mut().find(|a| a.is(topic, p)) {
                    Some(assigned) => assigned.next = Some(n),
                    None => {
                        self.elsewhere.insert((topic.clone(), p), n);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The partitions `(topic, number)`, none read yet.
fn assigned(partitions: &[(&str, i32)]) -> Vec<Partition> {
    let mut topics: Vec<Arc<str>> = Vec::new();
    partitions
        .iter()
        .map(|&(topic, number)| {
            let topic = match topics.iter().find(|t| &***t == topic) {
                Some(t) => t.clone(),
                None => {
                    topics.push(topic.into());
                    topics.last().expect("pushed").clone()
                }
            };
            Partition {
                topic,
                number,
                next: None,
                end: None,
            }
        })
        .collect()
}

/// The next offsets in a source position (`{"offsets": {TOPIC: {PARTITION: NEXT}}}`), as a list
/// to commit to a consumer group.
pub fn offsets_of(position: &serde_json::Value) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in position
        .get("offsets")
        .and_then(|o| o.as_object())
        .into_iter()
        .flatten()
    {
        for (partition, next) in partitions.as_object().into_iter().flatten() {
            if let (Ok(p), Some(n)) = (partition.parse::<i32>(), next.as_i64()) {
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(n));
            }
        }
    }
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(properties: &str) -> KafkaSourceSpec {
        toml::from_str(&format!(
            "bootstrap = \"127.0.0.1:9\"\ntopics = [\"t\"]\nformat = \"raw\"\n{properties}"
        ))
        .unwrap()
    }

    #[test]
    fn a_source_starts_from_its_consumer_defaults_and_its_properties_override_them() {
        let config = consumer_config("k", &spec(""));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(config.get("isolation.level"), Some("read_committed"));
        assert_eq!(config.get("group.id"), Some("sabot-k"));
        let config = consumer_config(
            "k",
            &spec(
                "properties = { \"fetch.queue.backoff.ms\" = \"1000\", \"fetch.min.bytes\" = \"1\" }",
            ),
        );
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("1000"));
        assert_eq!(config.get("fetch.min.bytes"), Some("1"));
    }

    #[test]
    fn a_batch_delay_past_the_limit_or_the_idle_timeout_is_refused_naming_the_field() {
        assert!(spec("max_batch_delay_ms = 10000").validate().is_ok());
        let (field, message) = spec("max_batch_delay_ms = 60000").validate().unwrap_err();
        assert_eq!(field, "max_batch_delay_ms");
        assert!(message.contains("expected 0 to 10000"), "{message}");
        let (field, message) = spec(
            "max_batch_delay_ms = 2000\nevent_time = { column = \"timestamp\", idle_timeout_ms = 1000 }",
        )
        .validate()
        .unwrap_err();
        assert_eq!(field, "max_batch_delay_ms");
        assert!(message.contains("would be taken for idle"), "{message}");
    }
}
