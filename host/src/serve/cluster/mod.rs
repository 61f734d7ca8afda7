//! A served cluster: several `sabot serve` replicas with the same Kafka and the same object
//! store act as one control plane, with no cluster manager of their own.
//!
//! ```text
//!   request to any replica ──► log::write ──► _sabot-C-commands (compacted, 1 partition)
//!                                                    │ every replica reads it from the beginning
//!                                                    ▼
//!                         apply: defines, starts, stops, swaps and deletes its local pipelines;
//!                         fetches module bytes from object storage (blobs)
//!                                                    │
//!   a started pipeline ──► placement: with [pipeline.scale_out], one task per partition of its
//!                          Kafka source, spread by the source's consumer group; otherwise the
//!                          whole pipeline on the one replica that owns the partition of
//!                          _sabot-C-placement in the pipeline's own group
//!                                                    │ checkpoints in object storage: a task
//!                                                    ▼ that moves resumes where it was
//!   every replica, every second ──► _sabot-C-status (compacted): what it runs  ──► GET /v1/cluster
//! ```
//!
//! - [`log`]: the command log — records, the serialized write (a transaction that fences every
//!   other writer, then checks the change against the log read to its end).
//! - [`apply`]: the thread that reads the log and makes the replica's pipelines and modules
//!   match it.
//! - [`placement`]: where a started pipeline runs.
//! - [`status`]: heartbeats, the cluster's view, consumer lag.
//!
//! A replica that dies stops heartbeating; its group memberships expire after
//! `session_timeout_ms` and Kafka gives its partitions, and its singleton pipelines, to the
//! others, which resume from the newest checkpoint in the object store. Exactly-once sinks keep
//! their `transactional.id` per pipeline (per partition when scaled out), so the new owner
//! fences whatever the old one left open.

pub mod apply;
pub mod log;
mod ops;
pub mod placement;
pub mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use serde::Deserialize;

use super::ApiError;
use super::pipelines::Pipelines;
use crate::Error;
use crate::checkpoint::{Remote, StorageSpec};
use crate::connectors::kafka::client::Diagnosis;

/// The largest module fetched from the object store, bytes.
const MAX_MODULE_BYTES: u64 = 1 << 30;

/// `[cluster]` in the server's settings.
///
/// ```toml
/// [cluster]
/// kafka = "kafka-1:9092,kafka-2:9092"   # SABOT_CLUSTER_KAFKA
/// name = "prod"                          # SABOT_CLUSTER_NAME; topics _sabot-prod-*
/// replica = "sabot-1"                    # SABOT_REPLICA; unique in the cluster
/// advertise = "http://sabot-1:8080"      # SABOT_ADVERTISE; how the others name this replica
/// session_timeout_ms = 10000             # how long a dead replica keeps its pipelines
/// properties = { "security.protocol" = "SASL_SSL" }  # librdkafka settings (TLS, SASL)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// The cluster's Kafka: its bootstrap servers.
    pub kafka: String,
    /// The cluster's name: its topics are `_sabot-NAME-commands`, `-status` and `-placement`.
    #[serde(default = "default_name")]
    pub name: String,
    /// This replica's name, unique in the cluster (default: the host name and the port).
    #[serde(default)]
    pub replica: Option<String>,
    /// The URL at which the other replicas and clients reach this one (default: the listen
    /// address).
    #[serde(default)]
    pub advertise: Option<String>,
    /// How long a replica that stopped answering keeps its pipelines before Kafka gives them
    /// to the others, ms (the consumer groups' `session.timeout.ms`).
    #[serde(default = "default_session")]
    pub session_timeout_ms: u64,
    /// librdkafka settings of every cluster client (`security.protocol`, `sasl.*`, `ssl.*`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_name() -> String {
    "sabot".into()
}

fn default_session() -> u64 {
    10_000
}

/// Properties the cluster sets itself.
const OWN_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "transactional.id",
    "isolation.level",
    "enable.auto.commit",
    "enable.partition.eof",
    "session.timeout.ms",
];

impl ClusterSpec {
    /// A spec for `kafka` with every other setting at its default.
    pub fn new(kafka: impl Into<String>) -> Self {
        ClusterSpec {
            kafka: kafka.into(),
            name: default_name(),
            replica: None,
            advertise: None,
            session_timeout_ms: default_session(),
            properties: BTreeMap::new(),
        }
    }

    /// Checks the settings: `Err((field, what was expected))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.kafka.trim().is_empty() {
            return Err((
                "kafka".into(),
                "expected the cluster's Kafka bootstrap servers, such as kafka:9092".into(),
            ));
        }
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !name_ok(&self.name) {
            return Err((
                "name".into(),
                format!(
                    "{:?} is not a cluster name: expected 1 to 64 of a-z, 0-9, `-` and `_`",
                    self.name
                ),
            ));
        }
        if let Some(r) = &self.replica
            && !name_ok(r)
        {
            return Err((
                "replica".into(),
                format!("{r:?} is not a replica name: expected 1 to 64 of a-z, 0-9, `-` and `_`"),
            ));
        }
        if let Some(a) = &self.advertise
            && !(a.starts_with("http://") || a.starts_with("https://"))
        {
            return Err((
                "advertise".into(),
                format!("{a:?} is not a URL: expected http://HOST:PORT or https://HOST:PORT"),
            ));
        }
        if !(6_000..=300_000).contains(&self.session_timeout_ms) {
            return Err((
                "session_timeout_ms".into(),
                format!(
                    "{} is out of range: expected 6000 to 300000 (Kafka's default group.min/max.session.timeout.ms)",
                    self.session_timeout_ms
                ),
            ));
        }
        if let Some(own) = self
            .properties
            .keys()
            .find(|k| OWN_PROPERTIES.contains(&k.as_str()))
        {
            return Err((
                format!("properties.{own}"),
                "is set by the cluster itself: remove it".into(),
            ));
        }
        Ok(())
    }

    /// The topic of the command log.
    pub fn commands_topic(&self) -> String {
        format!("_sabot-{}-commands", self.name)
    }

    /// The topic of the replicas' heartbeats.
    pub fn status_topic(&self) -> String {
        format!("_sabot-{}-status", self.name)
    }

    /// The topic whose one partition elects the replica of a singleton pipeline.
    pub fn placement_topic(&self) -> String {
        format!("_sabot-{}-placement", self.name)
    }
}

/// Where an applied offset is awaited.
#[derive(Default)]
struct Applied {
    /// The offset after the last record applied; `None` until the log was read to its end once.
    next: Mutex<Option<i64>>,
    changed: Condvar,
}

/// This replica's membership of the cluster.
pub struct Cluster {
    pub spec: ClusterSpec,
    /// This replica's name.
    pub replica: String,
    /// Its URL for the others.
    pub advertise: String,
    /// Module bytes, by sha256, under `PREFIX/_modules/` of the object store.
    blobs: Remote,
    /// The object store of the cluster's checkpoints.
    pub storage: StorageSpec,
    applied: Applied,
    /// The replicas' latest heartbeats.
    pub board: status::Board,
    /// Swap ids handed out by this replica: its start time, then a count.
    next_swap: std::sync::atomic::AtomicU64,
    /// Set when the server stops: nothing more is applied or announced.
    leaving: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.spec.name)
            .field("replica", &self.replica)
            .finish()
    }
}

impl Cluster {
    /// Joins the cluster of `spec`: its topics exist when this returns (made when missing).
    pub fn connect(
        spec: ClusterSpec,
        storage: StorageSpec,
        listen: std::net::SocketAddr,
        https: bool,
    ) -> Result<Arc<Self>, Error> {
        spec.validate()
            .map_err(|(field, m)| Error::Usage(format!("server setting `cluster.{field}`: {m}")))?;
        let replica = spec.replica.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_ascii_lowercase())
                .unwrap_or_else(|_| "sabot".into());
            let host: String = host
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("{host}-{}", listen.port())
        });
        let advertise = spec
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{}://{listen}", if https { "https" } else { "http" }));
        let blobs = Remote::open(&storage, "_modules").map_err(Error::Checkpoint)?;
        create_topics(&spec)?;
        let now = super::now_unix_ms();
        Ok(Arc::new(Cluster {
            board: status::Board::default(),
            spec,
            replica,
            advertise,
            blobs,
            storage,
            applied: Applied::default(),
            next_swap: std::sync::atomic::AtomicU64::new(now.saturating_mul(1_000)),
            leaving: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Starts reading the log and heartbeating, for `pipelines`; returns once the log was read
    /// to its end and applied (or `wait` passed).
    pub fn join(self: &Arc<Self>, pipelines: &Arc<Pipelines>, wait: Duration) {
        apply::spawn(self.clone(), Arc::downgrade(pipelines));
        status::spawn(self.clone(), Arc::downgrade(pipelines));
        let started = Instant::now();
        let mut next = self.applied.next.lock().unwrap_or_else(|p| p.into_inner());
        while next.is_none() && started.elapsed() < wait {
            next = self
                .applied
                .changed
                .wait_timeout(next, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn set_applied(&self, next: i64) {
        *self.applied.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
        self.applied.changed.notify_all();
    }

    /// Waits until this replica applied the record at `offset`.
    fn wait_applied(&self, offset: i64, timeout: Duration) -> Result<(), ApiError> {
        let started = Instant::now();
        let mut next = self.applied.next.lock().unwrap_or_else(|p| p.into_inner());
        while next.is_none_or(|n| n <= offset) {
            if started.elapsed() >= timeout {
                return Err(ApiError::unavailable(format!(
                    "the change was written to the command log (offset {offset}) but this replica has not applied it within {} s: it will; follow GET /v1/cluster",
                    timeout.as_secs()
                )));
            }
            next = self
                .applied
                .changed
                .wait_timeout(next, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Writes the changes `decide` makes to the log and waits until this replica applied them.
    pub fn submit(&self, decide: &mut log::Decide<'_>, timeout: Duration) -> Result<(), ApiError> {
        if let Some(offset) = log::write(&self.spec, &self.spec.commands_topic(), decide)? {
            self.wait_applied(offset, timeout)?;
        }
        Ok(())
    }

    /// A swap id unique in the cluster (this replica's start time in ms × 1000, counted up).
    pub fn next_swap_id(&self) -> u64 {
        self.next_swap
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Puts a module's bytes in the object store (a no-op when they are there).
    pub fn put_module(&self, sha256: &str, bytes: Vec<u8>) -> Result<(), ApiError> {
        self.blobs
            .put_once(&format!("sha256/{sha256}.wasm"), bytes)
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// The bytes of a module from the object store.
    pub fn get_module(&self, sha256: &str) -> Result<Vec<u8>, String> {
        match self
            .blobs
            .get_bounded(&format!("sha256/{sha256}.wasm"), MAX_MODULE_BYTES)
        {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!(
                "{}/sha256/{sha256}.wasm is missing",
                self.blobs.url()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The server stops: from now on no record is applied and no heartbeat sent.
    pub fn set_leaving(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the server stops.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Makes the cluster's topics when they are missing: the command log and the heartbeats
/// compacted, the placement topic with its one partition.
fn create_topics(spec: &ClusterSpec) -> Result<(), Error> {
    let admin: AdminClient<Diagnosis> = log::client_config(spec)
        .create_with_context(Diagnosis::default())
        .map_err(|e| {
            Error::Usage(format!(
                "cannot reach the cluster's Kafka at {}: {e}",
                spec.kafka
            ))
        })?;
    let (commands, status, placement) = (
        spec.commands_topic(),
        spec.status_topic(),
        spec.placement_topic(),
    );
    let topics = [
        NewTopic::new(&commands, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact"),
        NewTopic::new(&status, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact")
            .set("segment.ms", "600000"),
        NewTopic::new(&placement, 1, TopicReplication::Fixed(-1)),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("no runtime for the admin client: {e}")))?;
    let results = runtime
        .block_on(admin.create_topics(
            &topics,
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        ))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot create the cluster's topics on Kafka at {}: {e}",
                spec.kafka
            ))
        })?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Usage(format!(
                    "cannot create the cluster's topic `{topic}` on Kafka at {}: {code}",
                    spec.kafka
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_what_is_wrong() {
        let ok = ClusterSpec::new("127.0.0.1:9092");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.commands_topic(), "_sabot-sabot-commands");
        let bad = |f: &dyn Fn(&mut ClusterSpec)| {
            let mut s = ClusterSpec::new("k:9092");
            f(&mut s);
            s.validate().unwrap_err()
        };
        assert_eq!(bad(&|s| s.kafka = " ".into()).0, "kafka");
        assert_eq!(bad(&|s| s.name = "Prod".into()).0, "name");
        assert_eq!(bad(&|s| s.replica = Some("a/b".into())).0, "replica");
        assert_eq!(
            bad(&|s| s.advertise = Some("sabot-1:8080".into())).0,
            "advertise"
        );
        assert_eq!(bad(&|s| s.session_timeout_ms = 10).0, "session_timeout_ms");
        let (field, m) = bad(&|s| {
            s.properties.insert("group.id".into(), "mine".into());
        });
        assert_eq!(field, "properties.group.id");
        assert!(m.contains("set by the cluster"), "{m}");
    }
}
