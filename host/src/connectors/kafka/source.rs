//! The Kafka source: every partition of its topics assigned to it, read with
//! `isolation.level = read_committed`; its position (the next offset of each partition) is kept in
//! Sabot's checkpoints, so a resumed run reads each record once whatever Kafka's committed
//! offsets say.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::format::{self, Origin, Record};
use super::{KafkaSourceSpec, Named, StartAt};
use crate::connectors::{ConnectorError, DeadLetters, OnError, Source};

/// How long broker metadata and offset lookups may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one poll waits for the first record of a batch.
const POLL: Duration = Duration::from_millis(100);

/// A partition: topic and number.
type Tp = (String, i32);

/// A running Kafka source.
pub struct KafkaSource {
    name: String,
    spec: KafkaSourceSpec,
    batch_size: usize,
    schema: Option<SchemaRef>,
    consumer: BaseConsumer,
    partitions: Vec<Tp>,
    /// The next offset of each partition (only those read from, or sought to).
    next: BTreeMap<Tp, i64>,
    /// For a bounded source: the end offsets when it started.
    end: Option<BTreeMap<Tp, i64>>,
    dead_letters: Arc<DeadLetters>,
    started: bool,
}

fn kafka_error(source: &str, what: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Broker {
        node: format!("source `{source}`"),
        message: format!("{what}: {e}"),
    }
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
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.bootstrap)
            .set("group.id", format!("sabot-{name}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false");
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| kafka_error(name, "cannot create a Kafka consumer", e))?;
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
            for p in t.partitions() {
                partitions.push((topic.clone(), p.id()));
            }
        }
        Ok(KafkaSource {
            name: name.to_owned(),
            spec: spec.clone(),
            batch_size,
            schema,
            consumer,
            partitions,
            next: BTreeMap::new(),
            end: None,
            dead_letters,
            started: false,
        })
    }

    /// Assigns every partition, at its checkpointed offset or the start position.
    fn start(&mut self) -> Result<(), ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        for tp in &self.partitions {
            let offset = match (self.next.get(tp), self.spec.start) {
                (Some(o), _) => Offset::Offset(*o),
                (None, StartAt::Named(Named::Earliest)) => Offset::Beginning,
                (None, StartAt::Named(Named::Latest)) => Offset::End,
                (None, StartAt::Timestamp { timestamp_ms }) => Offset::Offset(timestamp_ms),
            };
            tpl.add_partition_offset(&tp.0, tp.1, offset)
                .map_err(|e| kafka_error(&self.name, "cannot assign a partition", e))?;
        }
        if let StartAt::Timestamp { .. } = self.spec.start {
            // Offsets by time for the partitions without a checkpointed offset.
            let mut by_time = TopicPartitionList::new();
            for e in tpl.elements() {
                if !self
                    .next
                    .contains_key(&(e.topic().to_owned(), e.partition()))
                {
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
            let mut end = BTreeMap::new();
            for tp in &self.partitions {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&tp.0, tp.1, METADATA_TIMEOUT)
                    .map_err(|e| {
                        kafka_error(&self.name, "cannot read the end of a partition", e)
                    })?;
                end.insert(tp.clone(), high);
            }
            self.end = Some(end);
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_error(&self.name, "cannot assign the partitions", e))?;
        Ok(())
    }

    /// Whether a bounded source has read everything it was bounded to; with `markers`, also
    /// counting where the consumer stands past transaction markers (after a quiet poll).
    fn done(&self, markers: bool) -> bool {
        let Some(end) = &self.end else { return false };
        end.iter().all(|(tp, high)| {
            let read = self.next.get(tp).is_some_and(|o| o >= high);
            read || *high == 0 || (markers && self.position(tp).is_some_and(|o| o >= *high))
        })
    }

    /// Where the consumer is in a partition (past transaction markers too).
    fn position(&self, tp: &Tp) -> Option<i64> {
        let assignment = self.consumer.position().ok()?;
        let e = assignment.find_partition(&tp.0, tp.1)?;
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
            OnError::DeadLetter => self.dead_letters.raw(
                &self.name,
                &location,
                reason,
                &String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()),
            ),
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
        if self.done(false) {
            return Ok(None);
        }
        let mut records: Vec<Record> = Vec::new();
        while records.len() < self.batch_size {
            let wait = if records.is_empty() {
                POLL
            } else {
                Duration::ZERO
            };
            let Some(message) = self.consumer.poll(wait) else {
                if records.is_empty() && self.done(true) {
                    return Ok(None);
                }
                break;
            };
            let m = message.map_err(|e| kafka_error(&self.name, "cannot read from Kafka", e))?;
            let tp = (m.topic().to_owned(), m.partition());
            self.next.insert(tp, m.offset() + 1);
            records.push(Record {
                origin: Origin {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                },
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            });
            if self.done(false) {
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
                &records,
            ) {
                Ok(batch) => return Ok(Some(batch)),
                Err(bad) => {
                    let record = records.remove(bad.index);
                    self.undecodable(&record, &bad.reason)?;
                }
            }
        }
    }

    fn position(&self) -> serde_json::Value {
        let mut offsets: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for ((topic, partition), next) in &self.next {
            offsets
                .entry(topic.clone())
                .or_default()
                .insert(partition.to_string(), *next);
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
                self.next.insert((topic.clone(), p), n);
            }
        }
        Ok(())
    }
}
