//! Scale-out against the loopback Kafka broker: two `sabot` processes in one consumer group
//! share a topic's partitions; one is killed, the other takes its partitions over from the
//! shared checkpoints, and a `read_committed` consumer still sees every result exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::{SCHEMA, bootstrap, create_topic, kcat_consume, kcat_produce, topic};
use crate::support::Scratch;

/// A `sabot run` process whose stderr lines are collected as they come.
struct Member {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Member {
    fn start(dir: &std::path::Path, data: &str) -> Self {
        Self::start_file(dir, "scale.toml", data)
    }

    fn start_file(dir: &std::path::Path, file: &str, data: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["run", file, "--data-dir", data, "--no-progress"])
            .current_dir(dir)
            .env("SABOT_CACHE_DIR", crate::support::cache_dir())
            .env(
                "SABOT_LOG",
                std::env::var("SCALE_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Member { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The partitions assigned here and not released since.
    fn partitions(&self) -> BTreeSet<String> {
        let mut held = BTreeSet::new();
        for line in self.lines.lock().unwrap().iter() {
            let Some(rest) = line.strip_prefix("sabot: partition ") else {
                continue;
            };
            let tp = rest.split(' ').next().unwrap().to_owned();
            if rest.contains(" assigned here") {
                held.insert(tp);
            } else if rest.contains(" released") {
                held.remove(&tp);
            }
        }
        held
    }

    fn wait_for(&mut self, what: &str, until: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !until(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sabot exited ({status}) waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` transactions keyed by card (`card<TAB>json`), so each card's records share a partition.
pub(crate) fn keyed(range: std::ops::Range<u64>) -> Vec<String> {
    range
        .map(|i| {
            let card = i % 41;
            let row = serde_json::json!({"txn_id": i, "card_id": card, "merchant_id": "m", "amount": 1.0});
            format!("{card}\t{row}")
        })
        .collect()
}

/// Each card's newest count in the output, checking that counts only ever grow (a repeated or
/// replayed result would not).
pub(crate) fn counts(output: &str) -> BTreeMap<i64, u64> {
    let mut last: BTreeMap<i64, u64> = BTreeMap::new();
    let rows = kcat_consume(output);
    for (_, value) in &rows {
        let row: Value = serde_json::from_str(value).unwrap();
        let card = row["card_id"].as_i64().unwrap();
        let seen = row["seen"].as_u64().unwrap();
        let before = last.insert(card, seen).unwrap_or(0);
        assert!(
            seen > before,
            "card {card}: count went from {before} to {seen}: a result repeated or replayed"
        );
    }
    last
}

#[test]
fn a_killed_members_partitions_move_to_the_other_with_their_state_and_output_stays_exactly_once() {
    let (input, output) = (topic("scale-in"), topic("scale-out"));
    create_topic(&input, 4);
    let s = Scratch::new();
    s.write(
        "scale.toml",
        &format!(
            r#"edges = ["txns -> m -> out"]
[pipeline]
name = "scaled"
batch_size = 200
[pipeline.checkpoint]
interval_ms = 200
[pipeline.scale_out]
shared_dir = "shared"
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
group = "group-{input}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
{SCHEMA}
[agents.m]
module = "{m}"
key = "card_id"
config = {{ mode = "state" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
"#,
            b = bootstrap(),
            m = sabot_test_artifacts::MISBEHAVE
        ),
    );
    let all_partitions = |m: &Member| m.partitions().len() == 4;

    // A alone: every partition.
    kcat_produce(&input, &keyed(0..3_000), true);
    let mut a = Member::start(s.dir.path(), "a");
    a.wait_for("the first member to get all 4 partitions", all_partitions);

    // B joins: the group moves some partitions to it, A releases them after a checkpoint.
    let mut b = Member::start(s.dir.path(), "b");
    b.wait_for("the second member to get partitions", |m| {
        !m.partitions().is_empty()
    });
    a.wait_for("the first member to release them", |m| {
        m.partitions().len() < 4
    });
    assert!(
        a.log().contains("released after checkpoint"),
        "A hands its partitions over after a final checkpoint:\n{}",
        a.log()
    );
    let moved = b.partitions();
    assert!(
        a.partitions().is_disjoint(&moved),
        "a partition runs on one member at a time: A {:?}, B {moved:?}",
        a.partitions()
    );

    // Both run while more input comes; then A dies mid-stream.
    for chunk in keyed(3_000..9_000).chunks(1_000) {
        kcat_produce(&input, chunk, true);
        std::thread::sleep(Duration::from_millis(200));
    }
    let a_had = a.partitions();
    assert!(!a_had.is_empty(), "A still has partitions:\n{}", a.log());
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    kcat_produce(&input, &keyed(9_000..12_000), true);

    // B gets A's partitions once A's session times out, and resumes them from the shared
    // checkpoints: every result arrives, once.
    b.wait_for("the survivor to take over every partition", all_partitions);
    let events = 12_000u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = counts(&output);
        if last.values().sum::<u64>() == events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {events} results after the takeover:\n{}\n--- the killed member:\n{}",
            last.values().sum::<u64>(),
            b.log(),
            a.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // B stops cleanly on SIGTERM, with a final checkpoint of each partition.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGTERM) };
    let status = b.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(status.code(), Some(130), "{}", b.log());
    assert!(b.log().contains("stopped after"), "{}", b.log());

    let last = counts(&output);
    assert_eq!(
        last.values().sum::<u64>(),
        events,
        "every event counted once"
    );
    for tp in &a_had {
        assert!(
            b.log().contains(&format!("partition {tp} assigned here")),
            "B took over {tp}:\n{}",
            b.log()
        );
    }

    // The group's committed offsets follow the checkpoints: the whole topic, once stopped.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("group-{input}"))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition(&input, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(
        total, events as i64,
        "the final checkpoints' offsets, committed: {committed:?}"
    );
}

#[test]
fn a_source_reads_only_the_partitions_it_names_and_refuses_one_the_topic_lacks() {
    let input = topic("parts");
    create_topic(&input, 2);
    kcat_produce(&input, &keyed(0..400), true);
    let s = Scratch::new();
    let pipeline = |partitions: &str| {
        format!(
            r#"edges = ["txns -> out"]
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
partitions = {partitions}
bounded = true
metadata = true
{SCHEMA}
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
            b = bootstrap(),
        )
    };
    let one = s
        .pipeline(&pipeline("[1]"))
        .unwrap()
        .run(Default::default());
    let one = one.unwrap();
    let rows: Vec<Value> = std::fs::read_to_string(s.path("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty() && rows.len() < 400, "{} rows", rows.len());
    assert_eq!(one.events_in as usize, rows.len());
    assert!(rows.iter().all(|r| r["_partition"] == 1), "{rows:?}");

    let err = s
        .pipeline(&pipeline("[0, 7]"))
        .unwrap()
        .run(Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("topic `{input}` has no partition 7"))
            && err.contains("it has 2 partition(s), 0 to 1; fix `partitions`"),
        "{err}"
    );
}

#[test]
fn a_member_that_does_not_see_the_groups_checkpoints_refuses_to_start_the_partition_over() {
    let input = topic("scale-shared");
    create_topic(&input, 1);
    kcat_produce(&input, &keyed(0..100), true);
    let s = Scratch::new();
    let pipeline = |shared: &str| {
        format!(
            r#"edges = ["txns -> out"]
[pipeline]
name = "shared"
[pipeline.checkpoint]
interval_ms = 100
[pipeline.scale_out]
shared_dir = "{shared}"
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
group = "group-{input}"
{SCHEMA}
[sinks.out]
type = "blackhole"
"#,
            b = bootstrap(),
        )
    };
    s.write("a.toml", &pipeline("shared-a"));
    s.write("b.toml", &pipeline("shared-b"));
    let mut first = Member::start_file(s.dir.path(), "a.toml", "a");
    first.wait_for("the partition", |m| m.partitions().len() == 1);
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        first.child.wait().unwrap().code(),
        Some(130),
        "{}",
        first.log()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        first.log().contains("released after checkpoint"),
        "{}",
        first.log()
    );

    // The same group, another shared directory: the partition's offsets are committed, its
    // checkpoints are not there.
    let mut second = Member::start_file(s.dir.path(), "b.toml", "b");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{}", second.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    let log = second.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "partition {input}/0: consumer group `group-{input}` committed offset "
        )) && log.contains("holds no checkpoint of it: every member must see the same checkpoints"),
        "{log}"
    );
}
