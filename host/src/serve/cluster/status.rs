//! Heartbeats: every replica says, once a second, what it runs, as the record of its name in
//! the compacted topic `_sabot-CLUSTER-status`; every replica reads them all. That board is
//! what `GET /v1/cluster` shows, with the consumer lag of each Kafka source.
//!
//! A replica whose heartbeat is older than [`DEAD_AFTER`] is shown as not alive (its groups
//! give its work away after `session_timeout_ms`); one that stops cleanly deletes its record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::log;
use crate::connectors::SourceSpec;
use crate::connectors::kafka::client::Diagnosis;
use crate::serve::pipelines::Pipelines;

/// How often a replica says what it runs.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica silent for longer is shown as not alive.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);
/// How long a consumer-lag lookup may take.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

/// What a replica runs, as its heartbeat says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub replica: String,
    pub advertise: String,
    pub started_unix_ms: u64,
    pub unix_ms: u64,
    /// Its pipelines, by name.
    pub pipelines: BTreeMap<String, Here>,
}

/// A pipeline on one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Here {
    /// The replica's status of it (`running` on every replica of a running pipeline: each is a
    /// member of its placement group).
    pub status: String,
    /// What runs here: `whole` (a singleton), `TOPIC/PARTITION` (partition tasks), or nothing.
    pub tasks: Vec<String>,
    pub events_in: u64,
    pub events_out: u64,
    /// The swaps this replica took part in, by id: `pending`, `probation`, `active`,
    /// `rolled-back`.
    #[serde(default)]
    pub swaps: BTreeMap<u64, String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The heartbeats read, by replica.
#[derive(Debug, Default)]
pub struct Board(Mutex<BTreeMap<String, (Heartbeat, Instant)>>);

impl Board {
    /// Keeps `heartbeat`, sent `age` ago (by the sender's clock).
    fn put(&self, heartbeat: Heartbeat, age: Duration) {
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(heartbeat.replica.clone(), (heartbeat, at));
    }

    fn remove(&self, replica: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(replica);
    }

    /// Every replica's last heartbeat, with how long ago it was sent.
    pub fn replicas(&self) -> Vec<(Heartbeat, Duration)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(h, at)| (h.clone(), at.elapsed()))
            .collect()
    }

    /// The live replicas' views of `pipeline`.
    pub fn pipeline(&self, pipeline: &str) -> Vec<(String, Here)> {
        self.replicas()
            .into_iter()
            .filter(|(_, age)| *age < DEAD_AFTER)
            .filter_map(|(h, _)| {
                let here = h.pipelines.get(pipeline)?.clone();
                Some((h.replica, here))
            })
            .collect()
    }
}

/// Starts the heartbeat thread of `cluster`; it deletes the replica's record when the
/// pipelines are gone (the server stopped).
pub(super) fn spawn(cluster: Arc<Cluster>, pipelines: Weak<Pipelines>) {
    let spawned = std::thread::Builder::new()
        .name("cluster-status".into())
        .spawn(move || {
            let _span = tracing::info_span!("cluster.status", replica = %cluster.replica).entered();
            while pipelines.strong_count() > 0 {
                if let Err(e) = beat(&cluster, &pipelines) {
                    tracing::warn!(error = %e, "lost the status topic; trying again");
                    std::thread::sleep(HEARTBEAT);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the cluster's heartbeat");
    }
}

fn beat(cluster: &Cluster, pipelines: &Weak<Pipelines>) -> Result<(), String> {
    let topic = cluster.spec.status_topic();
    let mut config = log::client_config(&cluster.spec);
    config.set("linger.ms", "0");
    let producer: ThreadedProducer<Diagnosis> = config
        .create_with_context(Diagnosis::default())
        .map_err(|e| e.to_string())?;
    let reader = log::reader(&cluster.spec, &topic).map_err(|e| e.message)?;
    let started_unix_ms = crate::serve::now_unix_ms();
    let mut last = Instant::now() - HEARTBEAT;
    loop {
        let Some(p) = pipelines.upgrade() else {
            // The server stops: the others need not wait for this replica's silence.
            let _ = producer.send(BaseRecord::<String, Vec<u8>>::to(&topic).key(&cluster.replica));
            let _ = producer.flush(Duration::from_secs(2));
            return Ok(());
        };
        if last.elapsed() >= HEARTBEAT && !cluster.is_leaving() {
            last = Instant::now();
            let heartbeat = Heartbeat {
                replica: cluster.replica.clone(),
                advertise: cluster.advertise.clone(),
                started_unix_ms,
                unix_ms: crate::serve::now_unix_ms(),
                pipelines: p.here(),
            };
            cluster.board.put(heartbeat.clone(), Duration::ZERO);
            let bytes = serde_json::to_vec(&heartbeat).map_err(|e| e.to_string())?;
            if let Err((e, _)) =
                producer.send(BaseRecord::to(&topic).key(&cluster.replica).payload(&bytes))
            {
                tracing::debug!(error = %e, "cannot send a heartbeat");
            }
        }
        drop(p);
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                if key == cluster.replica {
                    continue;
                }
                match m.payload().map(serde_json::from_slice::<Heartbeat>) {
                    None => cluster.board.remove(key),
                    Some(Ok(h)) => {
                        // Old heartbeats of a replica long gone are read too: only recent
                        // ones count as alive.
                        let age = crate::serve::now_unix_ms().saturating_sub(h.unix_ms);
                        if age < DEAD_AFTER.as_millis() as u64 * 12 {
                            cluster.board.put(h, Duration::from_millis(age));
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(%key, error = %e, "a heartbeat does not decode")
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) if crate::connectors::kafka::client::gives_up(&e) => {
                return Err(e.to_string());
            }
            Some(Err(e)) => tracing::debug!(error = %e, "reading the heartbeats"),
        }
    }
}

/// The consumer lag of a scaled-out pipeline's source: partition → records not yet
/// checkpointed (the group's committed offset behind the partition's end).
pub fn lag(source: &SourceSpec, name: &str) -> Result<BTreeMap<String, i64>, String> {
    let SourceSpec::Kafka(k) = source else {
        return Ok(BTreeMap::new());
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &k.bootstrap)
        .set("group.id", k.group_of(name))
        .set("enable.auto.commit", "false");
    for (key, value) in &k.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer<Diagnosis> = config
        .create_with_context(Diagnosis::default())
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for topic in &k.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), LAG_TIMEOUT)
            .map_err(|e| e.to_string())?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(tpl, LAG_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut lag = BTreeMap::new();
    for e in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), LAG_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let behind = match e.offset() {
            Offset::Offset(n) => (high - n).max(0),
            _ => high,
        };
        lag.insert(format!("{}/{}", e.topic(), e.partition()), behind);
    }
    Ok(lag)
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The cluster's name.
    pub cluster: String,
    /// The replica that answered.
    pub replica: String,
    pub kafka: String,
    pub replicas: Vec<ReplicaView>,
    /// Each pipeline: where its work runs, and the lag of its scaled-out source.
    pub pipelines: BTreeMap<String, PipelineView>,
}

/// A replica, as its last heartbeat says.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub replica: String,
    pub advertise: String,
    /// Whether its last heartbeat is recent (within [`DEAD_AFTER`]).
    pub alive: bool,
    /// How long ago its last heartbeat was read, ms.
    pub heartbeat_age_ms: u64,
    pub started_unix_ms: u64,
    pub pipelines: BTreeMap<String, Here>,
}

/// A pipeline across the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineView {
    /// Task (`whole`, `TOPIC/PARTITION`) → the live replica running it.
    pub tasks: BTreeMap<String, String>,
    /// Partition → records of the scaled-out source not yet covered by a checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<BTreeMap<String, i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_error: Option<String>,
}

impl Cluster {
    /// What `GET /v1/cluster` shows.
    pub fn view(&self, pipelines: &Pipelines) -> View {
        let mut replicas: Vec<ReplicaView> = self
            .board
            .replicas()
            .into_iter()
            .map(|(h, age)| ReplicaView {
                alive: age < DEAD_AFTER,
                heartbeat_age_ms: age.as_millis() as u64,
                replica: h.replica,
                advertise: h.advertise,
                started_unix_ms: h.started_unix_ms,
                pipelines: h.pipelines,
            })
            .collect();
        replicas.sort_by(|a, b| a.replica.cmp(&b.replica));
        let mut views = BTreeMap::new();
        for entry in pipelines.list() {
            let mut tasks = BTreeMap::new();
            for r in replicas.iter().filter(|r| r.alive) {
                if let Some(here) = r.pipelines.get(&entry.name) {
                    for t in &here.tasks {
                        tasks.insert(t.clone(), r.replica.clone());
                    }
                }
            }
            let (lag, lag_error) = match &entry.spec().scale_out {
                Some(scale) => match entry
                    .spec()
                    .sources
                    .get(&scale.source)
                    .map(|s| lag(s, &scale.source))
                {
                    Some(Ok(lag)) => (Some(lag), None),
                    Some(Err(e)) => (None, Some(e)),
                    None => (None, None),
                },
                None => (None, None),
            };
            views.insert(
                entry.name.clone(),
                PipelineView {
                    tasks,
                    lag,
                    lag_error,
                },
            );
        }
        View {
            cluster: self.spec.name.clone(),
            replica: self.replica.clone(),
            kafka: self.spec.kafka.clone(),
            replicas,
            pipelines: views,
        }
    }

    /// Says this replica leaves (the server stops): its heartbeat record is deleted, so the
    /// others show it gone at once.
    pub fn leave(&self) {
        let mut config = log::client_config(&self.spec);
        config.set("linger.ms", "0");
        let producer: Result<ThreadedProducer<Diagnosis>, _> =
            config.create_with_context(Diagnosis::default());
        if let Ok(producer) = producer {
            let topic = self.spec.status_topic();
            let _ = producer.send(BaseRecord::<String, Vec<u8>>::to(&topic).key(&self.replica));
            let _ = producer.flush(Duration::from_secs(5));
        }
    }
}
