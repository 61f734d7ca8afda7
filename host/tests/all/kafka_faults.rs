//! Broker faults during an exactly-once Kafka → stateful agent → Kafka run: a broker of its own
//! (the shared one keeps serving the other tests) killed with SIGKILL mid-run and started again
//! on the same data; the run carries on by itself and the output is still exactly once.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::{SCHEMA, topic, transactions};
use crate::kafka_security::{consume_with, produce_with};
use crate::support::{Scratch, free_port};

/// A single-node KRaft broker on loopback, restartable on its data.
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// The classpath of the Kafka that `scripts/kafka.sh` fetched.
fn kafka_lib() -> String {
    let home = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sabot/kafka");
    let version = std::fs::read_dir(&home)
        .expect("scripts/kafka.sh fetched Kafka")
        .filter_map(Result::ok)
        .find(|e| e.path().join("lib/.complete").exists())
        .expect("a complete Kafka download");
    format!("{}/lib/*", version.path().display())
}

impl Broker {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, controller) = (free_port(), free_port());
        std::fs::write(
            dir.path().join("server.properties"),
            format!(
                "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\ncontroller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                 log.dirs={}/data\nnum.partitions=1\noffsets.topic.replication.factor=1\noffsets.topic.num.partitions=2\n\
                 transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
                 transaction.state.log.num.partitions=2\ngroup.initial.rebalance.delay.ms=0\nauto.create.topics.enable=true\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let format = Command::new("java")
            .args(["-cp", &kafka_lib(), "kafka.tools.StorageTool", "format"])
            .args(["-t", "c2Fib3QtZmF1bHQtdGVzdA", "-c"])
            .arg(dir.path().join("server.properties"))
            .output()
            .unwrap();
        assert!(
            format.status.success(),
            "{}",
            String::from_utf8_lossy(&format.stderr)
        );
        let mut broker = Broker {
            dir,
            port,
            child: None,
        };
        broker.launch();
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process and waits until it answers metadata requests.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        self.child = Some(
            Command::new("java")
                .args(["-Xms256m", "-Xmx512m", "-cp", &kafka_lib(), "kafka.Kafka"])
                .arg(self.dir.path().join("server.properties"))
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        loop {
            let up = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Command::new("kcat")
                    .args(["-b", &self.bootstrap(), "-L", "-m", "2"])
                    .output()
                    .is_ok_and(|o| o.status.success());
            if up {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the broker did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: no clean shutdown, the way a machine dies.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// kcat against `bootstrap`.
fn kcat(bootstrap: &str) -> Command {
    let mut c = Command::new("kcat");
    c.args(["-b", bootstrap]);
    c
}

#[test]
fn a_broker_killed_and_restarted_mid_run_leaves_the_output_exactly_once() {
    let mut broker = Broker::start();
    let (input, output) = (topic("fault-in"), topic("fault-out"));
    let events: u64 = 30_000;
    produce_with(kcat(&broker.bootstrap()), &input, &transactions(events));
    let s = Scratch::new();
    // A slow agent first (20 ms a batch of 100: about 6 s of work), then the counting one.
    s.write(
        "p.toml",
        &format!(
            r#"edges = ["txns -> slow -> m -> out"]
[pipeline]
name = "kafka-fault"
batch_size = 100
[pipeline.checkpoint]
interval_ms = 200
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = true
{SCHEMA}
[agents.slow]
module = "{m}"
config = {{ mode = "sleep", count = 20 }}
[agents.m]
module = "{m}"
key = "card_id"
config = {{ mode = "state" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
"#,
            b = broker.bootstrap(),
            m = sabot_test_artifacts::MISBEHAVE
        ),
    );
    let mut run = Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["run", "p.toml", "--data-dir", "data", "--no-progress"])
        .current_dir(s.dir.path())
        .env("SABOT_CACHE_DIR", crate::support::cache_dir())
        .env("SABOT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run ended before the broker was killed: the test would test nothing"
    );
    broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    let down = Instant::now();
    broker.launch();
    eprintln!(
        "the broker was down for {:.1} s",
        (down.elapsed() + Duration::from_secs(2)).as_secs_f64()
    );
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run ended while the broker was down"
    );
    let out = run.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the run did not carry on: {log}");

    let mut last: BTreeMap<i64, u64> = BTreeMap::new();
    for value in consume_with(kcat(&broker.bootstrap()), &output) {
        let row: Value = serde_json::from_str(&value).unwrap();
        let card = row["card_id"].as_i64().unwrap();
        let seen = row["seen"].as_u64().unwrap();
        if let Some(before) = last.insert(card, seen) {
            assert!(
                seen > before,
                "card {card}: seen went from {before} to {seen}"
            );
        }
    }
    assert_eq!(
        last.values().sum::<u64>(),
        events,
        "every event counted once"
    );
}
