//! The command log: the cluster's definitions as records of a compacted, one-partition Kafka
//! topic (`_sabot-CLUSTER-commands`), written one change at a time.
//!
//! Each record's key names a thing and its value is the whole of it — `module/NAME@VERSION` →
//! the module's tag, `pipeline/NAME` → the pipeline's definition, whether it should run, the
//! agents' swapped versions and its recent swaps — and a record without a value (a tombstone)
//! deletes it. Compaction keeps the newest value of each key, which is all a replica needs: the
//! cluster's state is the log read from the beginning.
//!
//! Writes are serialized through Kafka's transactions, the way ksqlDB's servers share their
//! command topic: every replica's writer uses the same `transactional.id`, so beginning a write
//! fences any other writer (its open transaction is aborted), then the writer reads the log to
//! its end, checks the change against that state, and commits. A writer fenced in between fails
//! its commit and tries again on the newer state. Every record in the log was therefore checked
//! against everything before it: two creates of one name cannot both land.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::ClusterSpec;
use crate::connectors::kafka::client::Diagnosis;
use crate::serve::ApiError;
use crate::serve::modules::ModuleInfo;

/// How long one step of a write (fencing, reading the log, committing) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times a write fenced by another replica's is tried again.
const ATTEMPTS: usize = 6;
/// The most swaps a pipeline's record keeps.
pub const KEPT_SWAPS: usize = 16;

/// A thing the cluster knows, as its record's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    /// An uploaded module's tag; its bytes are in object storage, by sha256.
    Module(ModuleInfo),
    Pipeline(PipelineRecord),
}

/// A pipeline, as every replica should have it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// The definition (TOML), with its `${…}` references as written.
    pub text: String,
    /// Whether it should run.
    pub running: bool,
    /// Counts starts: each replica runs the pipeline anew when it changes.
    #[serde(default)]
    pub starts: u64,
    /// How it ended, when it ended by itself (its input ended, or it failed).
    #[serde(default)]
    pub ended: Option<Ended>,
    /// Agents running another module than the definition's: agent → module and config.
    #[serde(default)]
    pub versions: BTreeMap<String, VersionRecord>,
    /// Its most recent swaps, oldest first (at most [`KEPT_SWAPS`]).
    #[serde(default)]
    pub swaps: Vec<SwapRecord>,
}

/// How a pipeline ended by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Ended {
    /// Its bounded input ended and everything was committed (on `replica`).
    Finished { replica: String },
    /// It failed on `replica`.
    Failed { replica: String, error: String },
}

/// An agent's version: a module reference and the config its `init` gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub module: String,
    pub config: String,
}

/// A swap asked of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapRecord {
    pub id: u64,
    pub agent: String,
    pub from: VersionRecord,
    pub to: VersionRecord,
    pub requested_unix_ms: u64,
    /// Why it was rolled back, once a replica rolled it back (then `from` runs everywhere).
    #[serde(default)]
    pub rolled_back: Option<String>,
}

/// The cluster's state: the newest record of every key.
pub type State = BTreeMap<String, Record>;

/// The key of module `name@version`.
pub fn module_key(reference: &str) -> String {
    format!("module/{reference}")
}

/// The key of pipeline `name`.
pub fn pipeline_key(name: &str) -> String {
    format!("pipeline/{name}")
}

/// The pipeline `name` in `state`.
pub fn pipeline<'a>(state: &'a State, name: &str) -> Option<&'a PipelineRecord> {
    match state.get(&pipeline_key(name)) {
        Some(Record::Pipeline(p)) => Some(p),
        _ => None,
    }
}

/// A change to write: a key and its new value, `None` to delete it.
pub type Change = (String, Option<Record>);

/// A record as it comes out of the log, decoded; `None` for a tombstone.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, Option<Record>)> {
    let key = std::str::from_utf8(key?).ok()?.to_owned();
    match value {
        None => Some((key, None)),
        Some(bytes) => match serde_json::from_slice(bytes) {
            Ok(record) => Some((key, Some(record))),
            Err(e) => {
                // A record this version cannot read is left alone, not applied half.
                tracing::error!(%key, error = %e, "a command-log record does not decode; skipped");
                None
            }
        },
    }
}

/// The client settings every cluster client shares: the bootstrap servers and the
/// properties of `[cluster]` (TLS, SASL).
pub fn client_config(spec: &ClusterSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &spec.kafka);
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
}

/// A consumer of one of the cluster's topics, reading committed records from the beginning.
pub fn reader(spec: &ClusterSpec, topic: &str) -> Result<BaseConsumer<Diagnosis>, ApiError> {
    let mut config = client_config(spec);
    config
        .set("group.id", format!("_sabot-{}-reader", spec.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<Diagnosis> = config
        .create_with_context(Diagnosis::default())
        .map_err(|e| unavailable(spec, &format!("cannot read `{topic}`"), e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| unavailable(spec, &format!("cannot read `{topic}`"), e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| unavailable(spec, &format!("cannot read `{topic}`"), e))?;
    Ok(consumer)
}

/// A 503 naming the cluster's Kafka and what failed.
pub fn unavailable(spec: &ClusterSpec, what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!(
        "{what}: the cluster's Kafka at {} answered: {e}",
        spec.kafka
    ))
}

/// The log, read from the beginning to its end, as a state.
fn read_all(spec: &ClusterSpec, topic: &str) -> Result<State, ApiError> {
    let consumer = reader(spec, topic)?;
    let started = Instant::now();
    let mut state = State::new();
    loop {
        if started.elapsed() > STEP_TIMEOUT {
            return Err(ApiError::unavailable(format!(
                "cannot read the command log `{topic}` to its end within {} s from the cluster's Kafka at {}",
                STEP_TIMEOUT.as_secs(),
                spec.kafka
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                if let Some((key, record)) = decode(m.key(), m.payload()) {
                    match record {
                        Some(r) => state.insert(key, r),
                        None => state.remove(&key),
                    };
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(state),
            Some(Err(e)) => tracing::debug!(error = %e, "reading the command log"),
        }
    }
}

/// The writer's librdkafka context: the offset of the last record the broker acknowledged.
#[derive(Default)]
struct Acks {
    diagnosis: Diagnosis,
    last: Mutex<Option<Result<i64, String>>>,
}

impl ClientContext for Acks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.diagnosis.log(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.diagnosis.error(error, reason);
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let ack = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.to_string()),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(ack);
    }
}

/// What a change function decides, seeing the cluster's state.
pub type Decide<'a> = dyn FnMut(&State) -> Result<Vec<Change>, ApiError> + 'a;

/// Writes `decide`'s changes (decided on the log read to its end, with every other writer
/// fenced) in one transaction; returns the offset of the last record written, `None` when
/// `decide` changed nothing. An `Err` from `decide` is returned as it is, nothing written.
pub fn write(
    spec: &ClusterSpec,
    topic: &str,
    decide: &mut Decide<'_>,
) -> Result<Option<i64>, ApiError> {
    let mut last_error = None;
    let started = Instant::now();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Apart, so that two replicas fencing each other do not keep colliding.
            let jitter = fastrand::u64(0..100);
            std::thread::sleep(Duration::from_millis((100 << attempt.min(4)) + jitter));
        }
        match write_once(spec, topic, decide) {
            Ok(offset) => {
                tracing::debug!(
                    attempts = attempt + 1,
                    ms = started.elapsed().as_millis() as u64,
                    ?offset,
                    "command-log write"
                );
                return Ok(offset);
            }
            Err(Attempt::Refused(e)) => return Err(e),
            Err(Attempt::Fenced(why)) => {
                tracing::debug!(attempt, %why, "a command-log write was fenced by another replica's; trying again");
                last_error = Some(why);
            }
        }
    }
    Err(ApiError::unavailable(format!(
        "cannot write to the command log `{topic}`: {ATTEMPTS} attempts were each overtaken by another replica's write (last: {})",
        last_error.unwrap_or_default()
    )))
}

enum Attempt {
    /// Final: `decide` refused, or Kafka cannot be reached.
    Refused(ApiError),
    /// Another writer came in between: try again.
    Fenced(String),
}

fn write_once(
    spec: &ClusterSpec,
    topic: &str,
    decide: &mut Decide<'_>,
) -> Result<Option<i64>, Attempt> {
    let mut config = client_config(spec);
    config
        .set("transactional.id", format!("_sabot-{}-commands", spec.name))
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "0");
    let producer: ThreadedProducer<Acks> =
        config.create_with_context(Acks::default()).map_err(|e| {
            Attempt::Refused(unavailable(spec, "cannot create the command-log writer", e))
        })?;
    // Fences every other replica's writer: its open transaction is aborted.
    producer
        .init_transactions(STEP_TIMEOUT)
        .map_err(|e| Attempt::Refused(unavailable(spec, "cannot begin a command-log write", e)))?;
    let state = read_all(spec, topic).map_err(Attempt::Refused)?;
    let changes = decide(&state).map_err(Attempt::Refused)?;
    if changes.is_empty() {
        return Ok(None);
    }
    // After the fence, any failure is most likely another writer's fence: try again.
    let fenced = |e: KafkaError| Attempt::Fenced(e.to_string());
    producer.begin_transaction().map_err(fenced)?;
    for (key, record) in &changes {
        let payload = record
            .as_ref()
            .map(|r| serde_json::to_vec(r).expect("a record encodes"));
        let mut message = BaseRecord::<String, Vec<u8>>::to(topic).key(key);
        if let Some(p) = &payload {
            message = message.payload(p);
        }
        producer.send(message).map_err(|(e, _)| {
            Attempt::Refused(unavailable(spec, "cannot write to the command log", e))
        })?;
    }
    producer.flush(STEP_TIMEOUT).map_err(fenced)?;
    producer.commit_transaction(STEP_TIMEOUT).map_err(fenced)?;
    let ack = producer
        .context()
        .last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match ack {
        Some(Ok(offset)) => Ok(Some(offset)),
        Some(Err(e)) => Err(Attempt::Fenced(e)),
        None => Err(Attempt::Fenced("the broker acknowledged no record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tombstones_delete() {
        let record = Record::Pipeline(PipelineRecord {
            text: "[pipeline]\nname = \"p\"\n".into(),
            running: true,
            starts: 2,
            ..PipelineRecord::default()
        });
        let bytes = serde_json::to_vec(&record).unwrap();
        let (key, decoded) = decode(Some(b"pipeline/p"), Some(&bytes)).unwrap();
        assert_eq!(key, "pipeline/p");
        assert_eq!(decoded, Some(record));
        assert_eq!(
            decode(Some(b"pipeline/p"), None),
            Some(("pipeline/p".into(), None))
        );
        // A value this version cannot read is skipped, not applied.
        assert_eq!(
            decode(Some(b"pipeline/p"), Some(b"{\"kind\":\"table\"}")),
            None
        );
        assert_eq!(decode(None, Some(&bytes)), None);
    }
}
