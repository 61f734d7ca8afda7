//! A served cluster: three `sabot serve` replicas on loopback with the test's Kafka broker and
//! an S3Proxy bucket as their only shared services. A change asked of one replica takes effect
//! on all; partitions spread over the replicas; a replica SIGKILLed loses nothing: its work
//! resumes elsewhere from the bucket, and a `read_committed` consumer sees every result once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::{SCHEMA, bootstrap, create_topic, kcat_consume, kcat_produce, topic, txn_ids};
use crate::object_store::{BUCKET, S3Server};
use crate::scaleout::{counts, keyed};
use crate::serve::{Server, module};

/// Three replicas of one cluster, named `r0`, `r1`, `r2`; a killed one is `None`.
struct Replicas {
    s3: S3Server,
    name: String,
    servers: Vec<Option<Server>>,
}

impl Replicas {
    fn start(n: usize) -> Self {
        let s3 = S3Server::start();
        // A cluster of its own per test: its topics and bucket prefix are new.
        let name = topic("cluster").replace('.', "-").to_ascii_lowercase();
        let mut replicas = Replicas {
            s3,
            name,
            servers: Vec::new(),
        };
        for i in 0..n {
            let server = replicas.launch(i);
            replicas.servers.push(Some(server));
        }
        replicas
    }

    fn launch(&self, i: usize) -> Server {
        let replica = format!("r{i}");
        let url = format!("s3://{BUCKET}/{}", self.name);
        let endpoint = self.s3.endpoint();
        Server::start(&[
            ("SABOT_CLUSTER_KAFKA", &bootstrap()),
            ("SABOT_CLUSTER_NAME", &self.name),
            ("SABOT_REPLICA", &replica),
            ("SABOT_CHECKPOINT_URL", &url),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "sabot-test"),
            ("AWS_SECRET_ACCESS_KEY", "sabot-test-secret"),
            ("SABOT_LOG", "warn,sabot_host::serve::cluster=info"),
        ])
    }

    fn replica(&self, i: usize) -> &Server {
        self.servers[i].as_ref().expect("a live replica")
    }

    /// Any live replica.
    fn any(&self) -> &Server {
        self.servers
            .iter()
            .flatten()
            .next()
            .expect("a live replica")
    }

    /// SIGKILLs replica `i`.
    fn kill(&mut self, i: usize) {
        if let Some(server) = self.servers[i].take() {
            server.crash();
        }
    }

    /// `GET /v1/cluster` from a live replica.
    fn view(&self) -> Value {
        let (status, body) = self.any().get("/v1/cluster");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Task → replica of `pipeline`, as the live replicas' heartbeats say.
    fn tasks(&self, pipeline: &str) -> BTreeMap<String, String> {
        self.view()["pipelines"][pipeline]["tasks"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(t, r)| (t.clone(), r.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[track_caller]
    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the cluster: {:#}",
                self.view()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The definition of a scaled-out pipeline: per card, how many of its transactions were seen
/// (kept in host state), to an exactly-once Kafka sink.
fn scaled(input: &str, output: &str, module: &str) -> String {
    format!(
        r#"edges = ["txns -> m -> out"]
[pipeline]
name = "scaled"
batch_size = 200
[pipeline.checkpoint]
interval_ms = 300
[pipeline.scale_out]
source = "txns"
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
group = "group-{input}"
{SCHEMA}
[agents.m]
module = "{module}"
key = "card_id"
config = {{ mode = "state" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
"#,
        b = bootstrap()
    )
}

#[test]
fn three_replicas_share_partitions_swap_together_and_lose_nothing_when_one_is_killed() {
    let (input, output) = (topic("cluster-in"), topic("cluster-out"));
    create_topic(&input, 6);
    let mut cluster = Replicas::start(3);
    let wasm = module(sabot_test_artifacts::MISBEHAVE);

    // A module uploaded to one replica reaches every replica (bytes through the bucket).
    let (status, body) = cluster.replica(0).upload("counter", "1", &wasm);
    assert_eq!(status, 201, "{body}");
    let v2 = sabot_test_artifacts::component_variant(&wasm, "v2");
    let (status, body) = cluster.replica(2).upload("counter", "2", &v2);
    assert_eq!(status, 201, "{body}");
    cluster.wait_for(
        "every replica to hold both modules",
        Duration::from_secs(20),
        |c| {
            c.servers.iter().flatten().all(|s| {
                let list = s.get("/v1/modules").1;
                list.as_array().is_some_and(|m| m.len() == 2)
            })
        },
    );
    // The same tag with other bytes is refused, whichever replica is asked.
    let (status, body) = cluster.replica(1).upload("counter", "1", &v2);
    assert_eq!(status, 409, "{body}");

    // Created on r1, started on r2: defined on all three.
    kcat_produce(&input, &keyed(0..3_000), true);
    cluster
        .replica(1)
        .create(&scaled(&input, &output, "counter@1"), false);
    let (status, body) = cluster
        .replica(2)
        .post("/v1/pipelines/scaled/start", "text/plain", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    cluster.wait_for("every replica to run it", Duration::from_secs(20), |c| {
        c.servers
            .iter()
            .flatten()
            .all(|s| s.get("/v1/pipelines/scaled").1["status"] == "running")
    });

    // The source's six partitions spread over the three replicas.
    cluster.wait_for(
        "the six partitions to run, spread over three replicas",
        Duration::from_secs(90),
        |c| {
            let tasks = c.tasks("scaled");
            let replicas: BTreeSet<&String> = tasks.values().collect();
            tasks.len() == 6 && replicas.len() == 3
        },
    );

    // A swap asked of r0 reaches every partition task on every replica.
    let (status, swap) = cluster.replica(0).post(
        "/v1/pipelines/scaled/agents/m/swap",
        "application/json",
        br#"{"module": "counter@2"}"#,
    );
    assert_eq!(status, 202, "{swap}");
    let id = swap["id"].as_u64().unwrap().to_string();
    for chunk in keyed(3_000..6_000).chunks(1_000) {
        kcat_produce(&input, chunk, true);
    }
    cluster.wait_for(
        "the swap to be active on every replica",
        Duration::from_secs(60),
        |c| {
            let view = c.view();
            let replicas = view["replicas"].as_array().cloned().unwrap_or_default();
            replicas.len() == 3
                && replicas
                    .iter()
                    .all(|r| r["pipelines"]["scaled"]["swaps"][&id] == "active")
        },
    );
    for s in cluster.servers.iter().flatten() {
        let agents = s.get("/v1/pipelines/scaled/agents").1;
        assert!(
            agents.to_string().contains("counter@2"),
            "every replica runs the new version: {agents}"
        );
    }

    // r1 dies: its partitions resume on r0 and r2 from the bucket.
    let r1_had: Vec<String> = cluster
        .tasks("scaled")
        .into_iter()
        .filter(|(_, r)| r == "r1")
        .map(|(t, _)| t)
        .collect();
    assert!(!r1_had.is_empty(), "r1 ran partitions");
    cluster.kill(1);
    kcat_produce(&input, &keyed(6_000..9_000), true);
    cluster.wait_for(
        "r1's partitions to move to the survivors",
        Duration::from_secs(90),
        |c| {
            let tasks = c.tasks("scaled");
            tasks.len() == 6 && tasks.values().all(|r| r != "r1")
        },
    );
    let events = 9_000u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen: u64 = counts(&output).values().sum();
        if seen == events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {events} results after r1 died: {:#}",
            cluster.view()
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Stopped through one replica, stopped on all; then deleted, with its checkpoints.
    let (status, body) =
        cluster
            .replica(2)
            .post("/v1/pipelines/scaled/stop?wait=true", "text/plain", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        counts(&output).values().sum::<u64>(),
        events,
        "every event counted once"
    );
    // The source's lag per partition, from the group's committed offsets: all caught up.
    let lag = cluster.view()["pipelines"]["scaled"]["lag"].clone();
    let lag = lag
        .as_object()
        .unwrap_or_else(|| panic!("lag per partition: {lag}"));
    assert_eq!(lag.len(), 6, "{lag:?}");
    assert!(
        lag.values().all(|l| l == 0),
        "nothing left unread once stopped: {lag:?}"
    );
    let (status, body) = cluster.replica(0).delete("/v1/pipelines/scaled");
    assert_eq!(status, 204, "{body}");
    cluster.wait_for(
        "every replica to forget the pipeline",
        Duration::from_secs(20),
        |c| {
            c.servers
                .iter()
                .flatten()
                .all(|s| s.get("/v1/pipelines/scaled").0 == 404)
        },
    );
    // Objects, that is files: the store's filesystem backend may keep empty folders.
    fn files(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .flat_map(|e| {
                        if e.path().is_dir() {
                            files(&e.path())
                        } else {
                            vec![e.path().display().to_string()]
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    let leftovers: Vec<String> = files(&cluster.s3.object(&cluster.name))
        .into_iter()
        .filter(|f| f.contains("/scaled"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the pipeline's checkpoints left the bucket: {leftovers:?}"
    );
}

#[test]
fn a_singleton_pipeline_moves_when_its_replica_dies_and_creates_of_one_name_race_to_one() {
    let output = topic("singleton-out");
    let mut cluster = Replicas::start(3);

    // Two creates of one name on two replicas at once: exactly one wins.
    let definition = |name: &str| {
        format!(
            r#"edges = ["gen -> out"]
[pipeline]
name = "{name}"
batch_size = 100
[pipeline.checkpoint]
interval_ms = 300
[sources.gen]
type = "generator"
count = 1000000
rate = 2000
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
"#,
            b = bootstrap()
        )
    };
    let race = definition("race");
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = [0, 1]
            .iter()
            .map(|&i| {
                let server = cluster.replica(i);
                let race = race.clone();
                scope.spawn(move || {
                    server
                        .post("/v1/pipelines", "application/toml", race.as_bytes())
                        .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = answers.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![201, 409],
        "one create wins, the other is refused: {answers:?}"
    );
    let (status, body) = cluster.replica(2).delete("/v1/pipelines/race");
    assert_eq!(status, 204, "{body}");

    // A pipeline without a Kafka source runs whole, on one replica.
    cluster.replica(0).create(&definition("ticker"), true);
    cluster.wait_for(
        "the singleton to run on one replica",
        Duration::from_secs(60),
        |c| c.tasks("ticker").contains_key("whole"),
    );
    let owner = cluster.tasks("ticker")["whole"].clone();
    let owner_index: usize = owner.trim_start_matches('r').parse().unwrap();
    let before = cluster.view();
    let runners = before["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["pipelines"]["ticker"]["tasks"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert_eq!(runners, 1, "exactly one replica runs it: {before:#}");
    std::thread::sleep(Duration::from_secs(2));

    // Its replica dies: another takes it over, from the newest checkpoint in the bucket.
    cluster.kill(owner_index);
    cluster.wait_for("the singleton to move", Duration::from_secs(90), |c| {
        c.tasks("ticker").get("whole").is_some_and(|r| *r != owner)
    });
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) =
        cluster
            .any()
            .post("/v1/pipelines/ticker/stop?wait=true", "text/plain", b"");
    assert_eq!(status, 200, "{body}");

    // Every generated transaction once, none skipped: 0..n without a gap or a repeat.
    let mut ids = txn_ids(kcat_consume(&output).iter().map(|(_, v)| v.as_str()));
    let n = ids.len();
    assert!(
        n > 2_000,
        "{n} rows: the pipeline ran before and after the move"
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no transaction twice");
    assert_eq!(
        (ids[0], ids[n - 1]),
        (0, n as i64 - 1),
        "no transaction skipped"
    );
}

#[test]
fn cluster_settings_are_checked_before_anything_starts() {
    // A cluster without object storage is refused, naming what is missing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("SABOT_TOKEN", crate::serve::TOKEN)
        .env("SABOT_CLUSTER_KAFKA", bootstrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`cluster` needs `checkpoint_storage`"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("SABOT_TOKEN", crate::serve::TOKEN)
        .env("SABOT_REPLICA", "r9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SABOT_REPLICA needs a cluster"), "{err}");
    // A server alone says it is not in a cluster.
    let server = Server::start(&[]);
    let (status, body) = server.get("/v1/cluster");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.to_string().contains("not a replica of a cluster"),
        "{body}"
    );
}
