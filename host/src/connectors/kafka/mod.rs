//! Kafka (through librdkafka, the `rdkafka` crate): a source that reads topics with its offsets
//! kept in Sabot's checkpoints, and a sink that writes a topic.
//!
//! Record values are decoded and encoded with the field's libraries: JSON (`arrow-json`),
//! MessagePack (`rmp-serde`), Avro (`arrow-avro`: bare datums, Confluent's wire format,
//! single-object encoding), Arrow IPC (`arrow-ipc`), or raw bytes.

pub(crate) mod client;
mod fetch;
pub mod format;
mod msgpack;
mod produce;
mod sink;
mod source;
mod transactional;

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;

pub use format::{AvroFraming, AvroSpec, KafkaFormat};
pub use sink::KafkaSink;
pub(crate) use source::kafka_error;
pub use source::{KafkaSource, offsets_of};
pub use transactional::TransactionalSink;

use super::OnError;

/// Where a Kafka source starts when the run does not resume from a checkpoint: `"earliest"`
/// (the default), `"latest"`, or `{ timestamp_ms = N }` (the first record at or after N ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StartAt {
    Named(Named),
    Timestamp { timestamp_ms: i64 },
}

impl Default for StartAt {
    fn default() -> Self {
        StartAt::Named(Named::Earliest)
    }
}

/// `"earliest"` or `"latest"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Named {
    Earliest,
    Latest,
}

/// `type = "kafka"` in a `[sources.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Bootstrap servers: `host:port[,host:port…]`.
    pub bootstrap: String,
    /// The topics to read, every partition of each unless `partitions` says otherwise.
    pub topics: Vec<String>,
    /// Read only these partitions of each topic (default: all of them).
    pub partitions: Option<Vec<i32>>,
    /// The consumer group the offsets are committed to after each checkpoint, for monitoring
    /// (lag); Sabot resumes from its checkpoints, not from these. With `[pipeline.scale_out]`,
    /// the group whose members share the partitions. Default: `sabot-NAME`.
    pub group: Option<String>,
    /// Commit the offsets of each completed checkpoint to `group` (default true).
    #[serde(default = "yes")]
    pub commit_offsets: bool,
    /// Where to start without a checkpoint: `"earliest"` (default), `"latest"`,
    /// `{ timestamp_ms = N }`.
    #[serde(default)]
    pub start: StartAt,
    /// How record values are encoded: `json` (default), `msgpack`, `arrow`, `raw`, `avro`.
    #[serde(default)]
    pub format: KafkaFormat,
    /// `format = "avro"`: the records' schema and framing.
    pub avro: Option<AvroSpec>,
    /// Column names and types of `json` and `msgpack` records (`card_id = "int64"`).
    pub schema: Option<IndexMap<String, String>>,
    /// Add the columns `_topic`, `_partition`, `_offset`, `_timestamp` (record time, ms) to each
    /// row (always there in `raw`, without the underscore).
    #[serde(default)]
    pub metadata: bool,
    /// Stop at the end of what the topics held when the run started (a bounded input), instead of
    /// waiting for more.
    #[serde(default)]
    pub bounded: bool,
    /// A record that does not decode: `fail` (naming topic, partition and offset), `skip`, or
    /// `dead-letter` (to `dead_letter_topic`, else to the pipeline's dead-letter file, with the
    /// reason).
    #[serde(default)]
    pub on_error: OnError,
    /// `on_error = "dead-letter"`: the topic that gets each record that does not decode, as it
    /// was, with headers `sabot.reason`, `sabot.source` and `sabot.origin` (topic/partition/offset).
    pub dead_letter_topic: Option<String>,
    /// Event time, e.g. `event_time = { column = "_timestamp" }`.
    pub event_time: Option<crate::time::EventTimeSpec>,
    /// How long the records that have arrived may wait for more to fill a batch (up to the
    /// pipeline's `batch_size`). `0` (the default) hands on what has arrived at once: the least
    /// latency, and at moderate rates the most batches (one agent call each).
    #[serde(default)]
    pub max_batch_delay_ms: u64,
    /// More librdkafka consumer properties (`"security.protocol" = "ssl"`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How a Kafka sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Each checkpoint's records in one Kafka transaction, committed when the checkpoint
    /// completes: `read_committed` consumers see every record once, through any crash.
    #[default]
    ExactlyOnce,
    /// Records sent as batches arrive, acknowledged before a checkpoint completes: lower latency;
    /// a crash can repeat records sent after the last checkpoint.
    AtLeastOnce,
}

/// `type = "kafka"` in a `[sinks.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// Bootstrap servers: `host:port[,host:port…]`.
    pub bootstrap: String,
    /// The topic to write.
    pub topic: String,
    /// How record values are encoded: `json` (default, one object per row), `msgpack` (one map
    /// per row), `arrow` (one IPC stream per batch), `raw` (the `value` column's bytes), `avro`
    /// (one datum per row).
    #[serde(default)]
    pub format: KafkaFormat,
    /// `format = "avro"`: the records' schema and framing.
    pub avro: Option<AvroSpec>,
    /// The column whose value (as text) is each record's key.
    pub key: Option<String>,
    /// The column (an integer) whose value is each record's partition.
    pub partition: Option<String>,
    /// Columns written as record headers (as text), besides the value.
    #[serde(default)]
    pub headers: Vec<String>,
    /// `exactly-once` (default) or `at-least-once`.
    #[serde(default)]
    pub delivery: Delivery,
    /// Exactly-once: the topic against whose partition 0 each transaction records its epoch,
    /// as the offset of the consumer group named like the `transactional.id`
    /// (`sabot-PIPELINE-SINK`); created with one partition when missing, it holds no records.
    /// Default: `TOPIC.sabot-commits`.
    pub commit_topic: Option<String>,
    /// More librdkafka producer properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// Consumer settings a source starts from, which its `properties` may override. librdkafka
/// stops fetching a partition for `fetch.queue.backoff.ms` (1 000 ms by default) whenever its
/// local queue holds `queued.min.messages`; a source that drains that queue in a fraction of a
/// second then sits idle for the rest. At 10 ms, Kafka → agent → Kafka moves 1.9× the events/s
/// (`cargo bench -p sabot-host --bench kafka`, README "Performance"); the pause only happens
/// while the queue is full, so an idle source does not poll more.
pub const SOURCE_DEFAULTS: &[(&str, &str)] = &[("fetch.queue.backoff.ms", "10")];

/// Consumer properties Sabot sets itself, and why a pipeline may not: each one would break
/// exactly-once reading.
const SOURCE_OWNED: &[(&str, &str)] = &[
    (
        "group.id",
        "Sabot sets the consumer group: use `group = \"…\"`",
    ),
    (
        "enable.auto.commit",
        "offsets are committed by Sabot when a checkpoint completes (`commit_offsets`); auto-commit would move them past rows not yet checkpointed",
    ),
    (
        "enable.auto.offset.store",
        "offsets are stored by Sabot when a checkpoint completes",
    ),
    (
        "isolation.level",
        "a source reads `read_committed`, so that records of aborted transactions are never read",
    ),
    (
        "enable.partition.eof",
        "Sabot uses the end of a partition to bound a `bounded` source",
    ),
];

/// Producer properties Sabot sets itself on a sink, and why a pipeline may not.
const SINK_OWNED: &[(&str, &str)] = &[
    (
        "transactional.id",
        "Sabot gives each exactly-once sink a stable id (`sabot-PIPELINE-SINK`) that fences a zombie producer after a crash",
    ),
    (
        "enable.idempotence",
        "Sabot's producers are idempotent: without it a retried send is written twice",
    ),
];

/// The first property of `properties` in `owned`, as `Err((field, message))`.
fn refuse_owned(
    properties: &BTreeMap<String, String>,
    owned: &[(&str, &str)],
) -> Result<(), (String, String)> {
    for key in properties.keys() {
        // librdkafka also takes some names with `_` for `.`.
        let name = key.to_ascii_lowercase().replace('_', ".");
        if let Some((_, why)) = owned.iter().find(|(k, _)| *k == name) {
            return Err((
                format!("properties.\"{key}\""),
                format!("cannot be set by a pipeline: {why}"),
            ));
        }
    }
    Ok(())
}

impl KafkaSourceSpec {
    /// The consumer group of source `name`.
    pub fn group_of(&self, name: &str) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("sabot-{name}"))
    }

    /// Checks the settings; `Err((field, message))` names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.bootstrap.trim().is_empty() {
            return Err((
                "bootstrap".into(),
                "expected host:port of a Kafka broker".into(),
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(("topics".into(), "expected one or more topic names".into()));
        }
        if let Some(partitions) = &self.partitions {
            if partitions.is_empty() {
                return Err((
                    "partitions".into(),
                    "expected one or more partition numbers (or no `partitions` for all)".into(),
                ));
            }
            if let Some(p) = partitions.iter().find(|p| **p < 0) {
                return Err((
                    "partitions".into(),
                    format!("expected partition numbers from 0, got {p}"),
                ));
            }
        }
        refuse_owned(&self.properties, SOURCE_OWNED)?;
        super::check_batch_delay(self.max_batch_delay_ms, self.event_time.as_ref())?;
        format::schema_of(self).map(|_| ())
    }
}

impl KafkaSinkSpec {
    /// `batch` as the records this sink writes: value in its format, key, partition, headers.
    /// A changelog batch (one with an `_op` column) writes its upserts without `_op` and its
    /// deletes as tombstones: the key and no value.
    pub(crate) fn encode(
        &self,
        batch: &arrow_array::RecordBatch,
    ) -> Result<Vec<format::Outgoing>, String> {
        use sabot_sdk::changelog;
        let encode = |batch: &arrow_array::RecordBatch| {
            format::encode(
                self.format,
                self.avro.as_ref(),
                batch,
                self.key.as_deref(),
                self.partition.as_deref(),
                &self.headers,
            )
        };
        let Some((op, _)) = batch.schema().column_with_name(changelog::OP_COLUMN) else {
            return encode(batch);
        };
        if self.key.is_none() || self.format == KafkaFormat::Arrow {
            return Err(format!(
                "the batch is a changelog (it has an `{}` column), which this sink can write only \
                 with a `key` and a per-row format",
                changelog::OP_COLUMN
            ));
        }
        let deletes = changelog::deletes(batch)?;
        let mut rows = batch.clone();
        rows.remove_column(op);
        let mut records = encode(&rows)?;
        for (record, deleted) in records.iter_mut().zip(deletes) {
            if deleted {
                record.value = None;
            }
        }
        Ok(records)
    }

    /// Checks the settings; `Err((field, message))` names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.bootstrap.trim().is_empty() {
            return Err((
                "bootstrap".into(),
                "expected host:port of a Kafka broker".into(),
            ));
        }
        if self.topic.trim().is_empty() {
            return Err(("topic".into(), "expected a topic name".into()));
        }
        if self.format == KafkaFormat::Avro && self.avro.is_none() {
            return Err(("avro".into(), "format = \"avro\" needs the records' schema: avro = { schema_file = \"FILE.avsc\" }".into()));
        }
        if self.format == KafkaFormat::Arrow
            && (self.key.is_some() || self.partition.is_some() || !self.headers.is_empty())
        {
            return Err((
                "format".into(),
                "`arrow` writes one record per batch, so it takes no per-row `key`, `partition` or `headers`: use json, msgpack or raw".into(),
            ));
        }
        refuse_owned(&self.properties, SINK_OWNED)
    }

    /// The `transaction.timeout.ms` of `properties`, however it is spelled: `(key, value)`.
    pub(crate) fn transaction_timeout(&self) -> Option<(&String, &String)> {
        self.properties
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase().replace('_', ".") == "transaction.timeout.ms")
    }

    /// Checks what depends on the checkpoint interval: an exactly-once sink's transaction
    /// stays open from one checkpoint to the next, so its timeout must outlast the interval.
    pub fn validate_with_checkpoints(&self, interval_ms: u64) -> Result<(), (String, String)> {
        if self.delivery != Delivery::ExactlyOnce {
            return Ok(());
        }
        let Some((key, value)) = self.transaction_timeout() else {
            return Ok(());
        };
        match value.trim().parse::<u64>() {
            Ok(ms) if ms > interval_ms => Ok(()),
            Ok(ms) => Err((
                format!("properties.\"{key}\""),
                format!(
                    "{ms} ms is not longer than the checkpoint interval ({interval_ms} ms): each transaction stays open until the next checkpoint completes, so the broker would abort it; expected more than {interval_ms}"
                ),
            )),
            Err(_) => Err((
                format!("properties.\"{key}\""),
                format!("{value:?} is not a number of milliseconds"),
            )),
        }
    }
}
