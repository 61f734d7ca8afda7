//! Kafka sources and sinks against a real Apache Kafka broker on loopback (`scripts/test` starts
//! one with `scripts/kafka.sh` and exports `SABOT_KAFKA_BOOTSTRAP`), with `kcat` as the client
//! that is not Sabot.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::support::{Scratch, sabot, stderr};

/// The broker's address.
pub(crate) fn bootstrap() -> String {
    std::env::var("SABOT_KAFKA_BOOTSTRAP").expect(
        "SABOT_KAFKA_BOOTSTRAP is not set: run the tests with scripts/test, which starts a Kafka broker (scripts/kafka.sh)",
    )
}

/// A topic name no other test or run uses.
pub(crate) fn topic(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Produces `lines` to `topic` with kcat, one record each (`key<TAB>value` when `keyed`).
pub(crate) fn kcat_produce(topic: &str, lines: &[String], keyed: bool) {
    let mut args = vec![
        "-b".to_owned(),
        bootstrap(),
        "-t".into(),
        topic.into(),
        "-P".into(),
    ];
    if keyed {
        args.extend(["-K".into(), "\t".into()]);
    }
    let mut child = Command::new("kcat")
        .args(&args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run kcat (Debian package kcat; scripts/setup installs it)");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "kcat could not produce to {topic}"
    );
}

/// Every record of `topic` read by kcat with `isolation.level=read_committed`: (key, value).
pub(crate) fn kcat_consume(topic: &str) -> Vec<(String, String)> {
    kcat_read(topic, "%k\t%s\n")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or(("", l));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Every record of `topic`, read committed, printed by kcat's `-f` `format`.
pub(crate) fn kcat_read(topic: &str, format: &str) -> String {
    let out = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-t",
            topic,
            "-C",
            "-e",
            "-o",
            "beginning",
            "-q",
            "-X",
            "isolation.level=read_committed",
            "-f",
            format,
        ])
        .output()
        .expect("run kcat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn transactions(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({"txn_id": i, "card_id": i % 37, "merchant_id": format!("m{}", i % 13), "amount": (i * 7919 % 1000) as f64 / 10.0})
                .to_string()
        })
        .collect()
}

/// The `txn_id` of each JSON record, in order.
pub(crate) fn txn_ids<'a>(records: impl IntoIterator<Item = &'a str>) -> Vec<i64> {
    records
        .into_iter()
        .map(|r| {
            serde_json::from_str::<Value>(r).unwrap()["txn_id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

pub(crate) const SCHEMA: &str = "schema = { txn_id = \"int64\", card_id = \"int64\", merchant_id = \"utf8\", amount = \"float64\" }";

#[test]
fn records_from_kcat_go_through_an_agent_and_kcat_reads_the_output_read_committed() {
    let (input, output) = (topic("in"), topic("out"));
    kcat_produce(&input, &transactions(5_000), false);
    let s = Scratch::new();
    let summary = s
        .run(&format!(
            r#"edges = ["txns -> big -> out"]
[pipeline]
name = "kafka-interop"
batch_size = 700
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = true
{SCHEMA}
[agents.big]
module = "builtin:filter"
config = {{ where = "amount >= 50.0" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
key = "card_id"
"#,
            b = bootstrap()
        ))
        .unwrap();
    assert_eq!(summary.events_in, 5_000);
    let got = kcat_consume(&output);
    let expected: Vec<Value> = transactions(5_000)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["amount"].as_f64().unwrap() >= 50.0)
        .collect();
    assert_eq!(got.len(), expected.len());
    let mut by_id: BTreeMap<i64, (String, Value)> = BTreeMap::new();
    for (key, value) in got {
        let v: Value = serde_json::from_str(&value).unwrap();
        by_id.insert(v["txn_id"].as_i64().unwrap(), (key, v));
    }
    for e in &expected {
        let (key, v) = &by_id[&e["txn_id"].as_i64().unwrap()];
        assert_eq!(v, e);
        assert_eq!(key, &e["card_id"].to_string(), "the record key is the card");
    }
}

#[test]
fn a_stopped_run_resumes_from_the_offsets_in_its_checkpoint_exactly_once() {
    let input = topic("resume");
    kcat_produce(&input, &transactions(60_000), false);
    let s = Scratch::new();
    let pipeline = s
        .pipeline(&format!(
            r#"edges = ["txns -> m -> out"]
[pipeline]
name = "kafka-resume"
batch_size = 500
[pipeline.checkpoint]
interval_ms = 50
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
group = "group-{input}"
bounded = true
{SCHEMA}
[agents.m]
module = "{m}"
config = {{ mode = "pass" }}
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
            b = bootstrap(),
            m = sabot_test_artifacts::MISBEHAVE
        ))
        .unwrap();
    let data = s.path("data");
    // Stop the first run part-way; the second resumes from its final checkpoint.
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(sabot_host::dataflow::RunStats::for_pipeline(
        pipeline.spec(),
    ));
    let watcher = {
        let (stop, stats) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            while stats.events_in() < 20_000 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let first = pipeline
        .run(sabot_host::RunOptions {
            stop,
            stats: Some(stats),
            data_dir: Some(data.clone()),
            ..Default::default()
        })
        .unwrap();
    watcher.join().unwrap();
    assert!(first.interrupted && first.events_in < 60_000, "{first:?}");
    let second = pipeline
        .run(sabot_host::RunOptions {
            data_dir: Some(data),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first.events_in + second.events_in, 60_000);
    let mut ids = txn_ids(s.read("out.jsonl").lines());
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..60_000).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

#[test]
fn a_record_that_does_not_decode_fails_naming_it_or_is_skipped() {
    let input = topic("bad");
    let mut lines = transactions(10);
    lines.insert(4, "{not json".into());
    kcat_produce(&input, &lines, false);
    let s = Scratch::new();
    let toml = |policy: &str| {
        format!(
            "edges = [\"txns -> out\"]\n[pipeline]\nname = \"kafka-bad\"\n[sources.txns]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{input}\"]\nbounded = true\non_error = \"{policy}\"\n{SCHEMA}\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n",
            bootstrap()
        )
    };
    let e = s.run(&toml("fail")).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "the record at topic {input} partition 0 offset 4 does not decode"
        )) && e.contains("not JSON"),
        "{e}"
    );
    let summary = s.run(&toml("skip")).unwrap();
    assert_eq!(summary.events_out, 10);
    // Dead-lettered to a topic, as it was, with the reason and origin in headers.
    let dlq = topic("dlq");
    let summary = s
        .run(&toml("dead-letter").replace(
            "on_error = \"dead-letter\"",
            &format!("on_error = \"dead-letter\"\ndead_letter_topic = \"{dlq}\""),
        ))
        .unwrap();
    assert_eq!(summary.events_out, 10);
    let out = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-t",
            &dlq,
            "-C",
            "-e",
            "-q",
            "-f",
            "%h|%s\n",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("{not json") && text.contains("not JSON"),
        "{text}"
    );
    assert!(
        text.contains(&format!("sabot.origin=topic {input} partition 0 offset 4")),
        "{text}"
    );
    // A topic that does not exist is named.
    let e = s
        .run(&toml("fail").replace(&input, "no-such-topic-sabot"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("topic `no-such-topic-sabot` does not exist"),
        "{e}"
    );
}

#[test]
fn every_format_round_trips_through_a_topic() {
    for format in ["json", "msgpack", "arrow"] {
        let t = topic(&format!("fmt-{format}"));
        let s = Scratch::new();
        let input = s.write("in.jsonl", &transactions(3_000).join("\n"));
        s.run(&format!(
            "edges = [\"file -> out\"]\n[pipeline]\nname = \"to-kafka\"\n[sources.file]\ntype = \"file\"\npath = \"{}\"\n{SCHEMA}\n[sinks.out]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"{t}\"\nformat = \"{format}\"\n",
            input.display(),
            bootstrap()
        ))
        .unwrap();
        let schema = if format == "arrow" { "" } else { SCHEMA };
        s.run(&format!(
            "edges = [\"k -> out\"]\n[pipeline]\nname = \"from-kafka\"\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{t}\"]\nbounded = true\nformat = \"{format}\"\n{schema}\n[sinks.out]\ntype = \"file\"\npath = \"back.jsonl\"\n",
            bootstrap()
        ))
        .unwrap();
        let mut back: Vec<Value> = s
            .read("back.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        back.sort_by_key(|v| v["txn_id"].as_i64().unwrap());
        let expected: Vec<Value> = transactions(3_000)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, expected, "{format}");
    }
}

/// The crash test of the Kafka path: Kafka → an agent with keyed state → Kafka (exactly-once),
/// the real `sabot` binary killed with SIGKILL at random points while kcat keeps producing the
/// input; a `read_committed` consumer then finds every result exactly once.
#[test]
fn killed_at_random_points_kafka_to_kafka_output_is_exactly_once() {
    kafka_to_kafka_through_kills("crash", "", false);
}

/// The same with checkpoints in an object store and a new, empty data directory after every
/// kill (a new machine): state, offsets and the pending transactions' spills come from the
/// bucket alone.
#[test]
fn killed_at_random_points_with_only_the_object_store_kafka_output_is_exactly_once() {
    let server = crate::object_store::S3Server::start();
    kafka_to_kafka_through_kills("crash-s3", &server.storage_toml("kafka"), true);
}

/// Kafka → keyed state → exactly-once Kafka, SIGKILLed `SABOT_CRASH_ROUNDS` (20) times;
/// `storage` is appended to the pipeline; with `new_machine`, every run gets a new data directory.
fn kafka_to_kafka_through_kills(name: &str, storage: &str, new_machine: bool) {
    let rounds: usize = std::env::var("SABOT_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let (input, output) = (topic(&format!("{name}-in")), topic(&format!("{name}-out")));
    let events: u64 = 40_000;
    let all = transactions(events);
    kcat_produce(&input, &all[..2_000], false);
    let producer = {
        let (input, rest) = (input.clone(), all[2_000..].to_vec());
        std::thread::spawn(move || {
            for chunk in rest.chunks(1_000) {
                kcat_produce(&input, chunk, false);
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        })
    };
    let s = Scratch::new();
    let pipeline = |bounded: bool| {
        format!(
            r#"edges = ["txns -> m -> out"]
[pipeline]
name = "kafka-{name}"
batch_size = 500
[pipeline.checkpoint]
interval_ms = 100
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = {bounded}
{SCHEMA}
[agents.m]
module = "{m}"
key = "card_id"
parallelism = 2
config = {{ mode = "state" }}
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
{storage}"#,
            b = bootstrap(),
            m = sabot_test_artifacts::MISBEHAVE
        )
    };
    s.write("unbounded.toml", &pipeline(false));
    s.write("bounded.toml", &pipeline(true));
    let mut rng = fastrand::Rng::with_seed(rounds as u64 + 5);
    let round = std::cell::Cell::new(0);
    let run = |file: &str| {
        let data = if new_machine {
            round.set(round.get() + 1);
            format!("data-{}", round.get())
        } else {
            "data".to_owned()
        };
        Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["run", file, "--data-dir", &data, "--no-progress"])
            .current_dir(s.dir.path())
            .env("SABOT_CACHE_DIR", crate::support::cache_dir())
            .env_remove("SABOT_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    while kills < rounds {
        let mut child = run("unbounded.toml");
        std::thread::sleep(std::time::Duration::from_millis(rng.u64(200..1_200)));
        match child.try_wait().unwrap() {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "an unbounded run ended by itself ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    producer.join().unwrap();
    // Everything is in the topic now: a last run reads to its end.
    let done = run("bounded.toml").wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "after {kills} kills: {}",
        String::from_utf8_lossy(&done.stderr)
    );

    let mut last: BTreeMap<i64, u64> = BTreeMap::new();
    for (_, value) in kcat_consume(&output) {
        let row: Value = serde_json::from_str(&value).unwrap();
        let card = row["card_id"].as_i64().unwrap();
        let seen = row["seen"].as_u64().unwrap();
        if let Some(before) = last.insert(card, seen) {
            assert!(
                seen > before,
                "card {card}: seen went from {before} to {seen}: a duplicated or replayed result"
            );
        }
    }
    assert_eq!(
        last.values().sum::<u64>(),
        events,
        "every event counted once across {kills} kills"
    );
}

/// Creates `topic` with `partitions` partitions.
pub(crate) fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
}

/// Produces `{"ts": t}` records with the given event times to one partition.
fn produce_times(topic: &str, partition: i32, times: impl Iterator<Item = i64>) {
    let mut child = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-t",
            topic,
            "-P",
            "-p",
            &partition.to_string(),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = child.stdin.as_mut().unwrap();
        for t in times {
            writeln!(stdin, "{{\"ts\": {t}}}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
}

/// Runs a Kafka source over `topic` with event time until its watermark reaches `until` (or
/// `wait` passes); returns the watermark it sent.
fn watermark_of(
    topic: &str,
    idle_timeout_ms: Option<u64>,
    until: i64,
    wait: std::time::Duration,
) -> i64 {
    let s = Scratch::new();
    let idle = idle_timeout_ms.map_or(String::new(), |ms| format!(", idle_timeout_ms = {ms}"));
    let pipeline = s
        .pipeline(&format!(
            "edges = [\"k -> out\"]\n[pipeline]\nname = \"kafka-watermarks\"\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{topic}\"]\nschema = {{ ts = \"int64\" }}\nevent_time = {{ column = \"ts\"{idle} }}\n[sinks.out]\ntype = \"blackhole\"\n",
            bootstrap()
        ))
        .unwrap();
    // A little longer than `until`: a watermark past it would show.
    let stats = run_until(
        pipeline,
        wait,
        std::time::Duration::from_millis(300),
        move |stats| stats.nodes["k"].watermark.load(Ordering::Relaxed) >= until,
    );
    stats.nodes["k"].watermark.load(Ordering::Relaxed)
}

/// Runs `pipeline` until `done` says so of its counters (or `wait` passes), then `linger` more,
/// and stops it; its counters.
fn run_until(
    pipeline: sabot_host::Pipeline,
    wait: std::time::Duration,
    linger: std::time::Duration,
    done: impl Fn(&sabot_host::dataflow::RunStats) -> bool + Send + 'static,
) -> Arc<sabot_host::dataflow::RunStats> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(sabot_host::dataflow::RunStats::for_pipeline(
        pipeline.spec(),
    ));
    let watcher = {
        let (stop, stats) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + wait;
            while !done(&stats) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            std::thread::sleep(linger);
            stop.store(true, Ordering::SeqCst);
        })
    };
    pipeline
        .run(sabot_host::RunOptions {
            stop,
            stats: Some(stats.clone()),
            ..Default::default()
        })
        .unwrap();
    watcher.join().unwrap();
    stats
}

#[test]
fn the_watermark_is_the_slowest_partitions_and_an_idle_partition_stops_holding_it_back() {
    let t = topic("wm");
    create_topic(&t, 2);
    produce_times(&t, 0, (0..1_000).map(|i| i * 10));
    produce_times(&t, 1, (0..201).map(|i| i * 10));
    assert_eq!(
        watermark_of(&t, None, 1_999, std::time::Duration::from_secs(15)),
        1_999,
        "partition 1 (at 2 000: watermark 1 999) holds back partition 0 (at 9 990)"
    );
    let idle = topic("wm-idle");
    create_topic(&idle, 2);
    produce_times(&idle, 0, (0..501).map(|i| i * 10));
    assert_eq!(
        watermark_of(&idle, None, 4_999, std::time::Duration::from_secs(2)),
        i64::MIN,
        "without idleness, the empty partition 1 holds the watermark back"
    );
    // Partition 0 stays active (more records at 5 000, which keep its watermark at 4 999) while
    // partition 1 goes idle; were both idle, neither would move the watermark.
    let active = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (idle, active) = (idle.clone(), active.clone());
        std::thread::spawn(move || {
            while active.load(Ordering::Relaxed) {
                produce_times(&idle, 0, std::iter::once(5_000));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let watermark = watermark_of(&idle, Some(300), 4_999, std::time::Duration::from_secs(15));
    active.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
    assert_eq!(watermark, 4_999, "partition 1 is idle after 300 ms");
}

#[test]
fn a_batch_delay_holds_arrived_records_for_more_and_the_latency_counts_the_wait() {
    let t = topic("held");
    create_topic(&t, 1);
    // Twenty records, one every 25 ms or more (each its own kcat).
    let feeder = {
        let t = t.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                produce_times(&t, 0, std::iter::once(i));
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        })
    };
    let s = Scratch::new();
    let pipeline = s
        .pipeline(&format!(
            "edges = [\"k -> out\"]\n[pipeline]\nname = \"kafka-held\"\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{t}\"]\nschema = {{ ts = \"int64\" }}\nmax_batch_delay_ms = 400\n[sinks.out]\ntype = \"blackhole\"\n",
            bootstrap()
        ))
        .unwrap();
    let stats = run_until(
        pipeline,
        std::time::Duration::from_secs(60),
        std::time::Duration::ZERO,
        |stats| stats.events_out() >= 20,
    );
    feeder.join().unwrap();
    assert_eq!(stats.events_out(), 20);
    // No batch filled up, so each left once its first record had waited 400 ms: every event's
    // latency counts that wait (within the histogram's 5 %).
    let latency = stats.sink_latency();
    assert_eq!(latency.count(), 20);
    let fastest = latency.quantile(0.0).unwrap();
    assert!(
        fastest >= std::time::Duration::from_millis(380),
        "{fastest:?}"
    );
}

#[test]
fn the_kafka_example_flags_fraud_from_a_topic_into_a_topic() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kafka");
    let (transactions, alerts) = (topic("example-txns"), topic("example-alerts"));
    let adapt = |file: &str| {
        std::fs::read_to_string(examples.join(file))
            .unwrap()
            .replace("kafka:9092", &bootstrap())
            .replace(
                "topic = \"transactions\"",
                &format!("topic = \"{transactions}\""),
            )
            .replace(
                "topics = [\"transactions\"]",
                &format!("topics = [\"{transactions}\"]"),
            )
            .replace("topic = \"alerts\"", &format!("topic = \"{alerts}\""))
            .replace("transactions.dlq", &format!("{transactions}.dlq"))
            .replace("fraud@1", sabot_test_artifacts::FRAUD_RULES)
    };
    let s = Scratch::new();
    // The generator bounded and at full speed; the fraud pipeline bounded to what is there.
    let produced = s
        .run(&adapt("transactions.toml").replace("rate = 1000", "count = 50000"))
        .unwrap();
    assert_eq!(produced.events_out, 50_000);
    let flagged = s
        .run(&adapt("fraud.toml").replace("group = ", "bounded = true\ngroup = "))
        .unwrap();
    assert_eq!(flagged.events_in, 50_000);
    let out = Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-t",
            &alerts,
            "-C",
            "-e",
            "-q",
            "-X",
            "isolation.level=read_committed",
            "-f",
            "%k|%h|%s\n",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "no alerts");
    assert_eq!(lines.len() as u64, flagged.events_out);
    for line in lines {
        let mut parts = line.splitn(3, '|');
        let (key, headers, value) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let v: Value = serde_json::from_str(value).unwrap();
        assert_eq!(key, v["card_id"].to_string());
        assert!(headers.starts_with("reason="), "{line}");
        assert_eq!(
            headers.trim_start_matches("reason="),
            v["reason"].as_str().unwrap()
        );
    }
}

/// Runs Python (the `$SABOT_VENV` that `scripts/languages.sh` makes, with fastavro) on `script`,
/// feeding `input`; its stdout.
fn fastavro(script: &str, input: &str) -> String {
    let venv = std::env::var("SABOT_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/sabot/venv", std::env::var("HOME").unwrap()));
    let mut child = Command::new(format!("{venv}/bin/python"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Python of $SABOT_VENV (scripts/languages.sh makes it, with fastavro)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const TXN_AVSC: &str = r#"{"type": "record", "name": "Txn", "namespace": "sabot.test", "fields": [
  {"name": "card_id", "type": "long"},
  {"name": "merchant", "type": "string"},
  {"name": "amount", "type": ["null", "double"], "default": null}]}"#;

#[test]
fn avro_from_fastavro_in_confluent_framing_goes_through_sabot_and_fastavro_reads_it_back() {
    let (input, output) = (topic("avro-in"), topic("avro-out"));
    let s = Scratch::new();
    s.write("txn.avsc", TXN_AVSC);
    // fastavro writes Confluent-framed records (schema id 7), hex, one per line.
    let produced = fastavro(
        r#"
import io, json, struct, sys, fastavro
schema = fastavro.parse_schema(json.load(open(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")))
for i in range(300):
    out = io.BytesIO()
    out.write(b"\x00" + struct.pack(">I", 7))
    fastavro.schemaless_writer(out, schema, {"card_id": i % 7, "merchant": "m%d" % i, "amount": None if i % 10 == 0 else i * 1.5})
    print(out.getvalue().hex())
"#,
        TXN_AVSC,
    );
    let mut values: Vec<Vec<u8>> = produced.lines().map(|l| hex::decode(l).unwrap()).collect();
    assert_eq!(values.len(), 300);
    // A record of a schema id the pipeline does not know.
    values.insert(150, b"\x00\x00\x00\x00\x09garbage".to_vec());
    {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .create()
            .unwrap();
        for v in &values {
            producer
                .send(BaseRecord::<(), _>::to(&input).payload(v))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(std::time::Duration::from_secs(30)).unwrap();
    }
    let pipeline = |on_error: &str| {
        format!(
            r#"edges = ["txns -> out"]
[sources.txns]
type = "kafka"
bootstrap = "{b}"
topics = ["{input}"]
bounded = true
format = "avro"
avro = {{ schema_file = "txn.avsc", framing = "confluent", schema_id = 7 }}
on_error = "{on_error}"
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
format = "avro"
avro = {{ schema_file = "txn.avsc" }}
key = "merchant"
"#,
            b = bootstrap()
        )
    };
    let err = s.run(&pipeline("fail")).unwrap_err().to_string();
    assert!(
        err.contains(&format!("topic {input} partition 0 offset 150"))
            && err.contains("expected Avro"),
        "{err}"
    );
    let summary = s.run(&pipeline("skip")).unwrap();
    assert_eq!(summary.events_out, 300);

    // fastavro reads the bare datums Sabot wrote, read_committed.
    let records = consume_hex(&output);
    assert_eq!(records.len(), 300);
    let lines: String = records.iter().map(|(_, v)| format!("{v}\n")).collect();
    let decoded = fastavro(
        &format!(
            r#"
import io, json, sys, fastavro
schema = fastavro.parse_schema(json.loads('''{TXN_AVSC}'''))
for line in sys.stdin:
    print(json.dumps(fastavro.schemaless_reader(io.BytesIO(bytes.fromhex(line.strip())), schema, None), sort_keys=True))
"#
        ),
        &lines,
    );
    let rows: Vec<Value> = decoded
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let i = i as i64;
        let amount = if i % 10 == 0 {
            Value::Null
        } else {
            serde_json::json!(i as f64 * 1.5)
        };
        assert_eq!(
            row,
            &serde_json::json!({"card_id": i % 7, "merchant": format!("m{i}"), "amount": amount}),
        );
        assert_eq!(records[i as usize].0, format!("m{i}"), "the key column");
    }
}

/// Every record of `topic`, read_committed: (key as text, value as hex).
fn consume_hex(topic: &str) -> Vec<(String, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("read-{topic}"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                hex::encode(m.payload().unwrap_or_default()),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    out
}

/// Records are produced into an epoch's transaction as they come; an epoch that outlives three
/// quarters of `transaction.timeout.ms` has its transaction aborted by the sink, which then
/// produces every epoch from its spill at commit. Either way, each record once, read committed.
#[test]
fn an_epoch_longer_than_the_transaction_timeout_allows_is_produced_from_its_spill_exactly_once() {
    let output = topic("long-epochs");
    let s = Scratch::new();
    s.write(
        "p.toml",
        &format!(
            r#"edges = ["gen -> out"]
[pipeline]
name = "long-epochs"
batch_size = 50
[pipeline.checkpoint]
interval_ms = 1900
[sources.gen]
type = "generator"
count = 3000
rate = 1000
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
properties = {{ "transaction.timeout.ms" = "2000" }}
"#,
            b = bootstrap()
        ),
    );
    let out = sabot(
        &["run", "p.toml", "--log-level", "sabot_host=info"],
        &s.path(""),
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("outlasted three quarters of transaction.timeout.ms"),
        "a 1.9 s epoch outlives 1.5 s of streaming: {log}"
    );
    let mut ids = txn_ids(kcat_consume(&output).iter().map(|(_, v)| v.as_str()));
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..3000).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

#[test]
fn a_bounded_source_stops_at_the_ends_it_found_while_a_producer_keeps_writing() {
    let t = topic("bounded-flood");
    create_topic(&t, 2);
    // In each partition 15 000 records (ts 0, 1, …), then records of ts = -1 in bursts of
    // 2 000: one before the run, more all through it (the source's batch fetches take some of
    // them with the last records before its ends).
    for partition in 0..2 {
        produce_times(&t, partition, 0..15_000);
        produce_times(&t, partition, std::iter::repeat_n(-1, 2_000));
    }
    /// Ends the flood when the test ends, whether it passes or not.
    struct Flooding(Arc<AtomicBool>);
    impl Drop for Flooding {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    let flooding = Arc::new(AtomicBool::new(true));
    let stop = Flooding(flooding.clone());
    let feeder = {
        let (t, flooding) = (t.clone(), flooding.clone());
        std::thread::spawn(move || {
            while flooding.load(Ordering::Relaxed) {
                for partition in 0..2 {
                    produce_times(&t, partition, std::iter::repeat_n(-1, 2_000));
                }
            }
        })
    };
    let s = Scratch::new();
    let started = std::time::Instant::now();
    s.run(&format!(
        "edges = [\"k -> out\"]\n[pipeline]\nname = \"kafka-bounded-flood\"\nbatch_size = 1000\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopics = [\"{t}\"]\nschema = {{ ts = \"int64\" }}\nmetadata = true\nbounded = true\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n",
        bootstrap()
    ))
    .unwrap();
    let took = started.elapsed();
    drop(stop);
    feeder.join().unwrap();
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    // Each partition's records were read once each, in offset order, from offset 0 without a
    // gap: every record written before the run, and only a prefix of those written during it.
    let mut offsets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut times: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for line in s.read("out.jsonl").lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let p = row["_partition"].as_i64().unwrap();
        offsets
            .entry(p)
            .or_default()
            .push(row["_offset"].as_i64().unwrap());
        times
            .entry(p)
            .or_default()
            .push(row["ts"].as_i64().unwrap());
    }
    for p in 0..2 {
        let read = &offsets[&p];
        assert!(read.len() > 15_000, "partition {p}: {} records", read.len());
        assert!(
            read.iter().enumerate().all(|(i, o)| *o == i as i64),
            "partition {p}: the offsets read are not 0, 1, 2, …"
        );
        let before: Vec<i64> = times[&p].iter().copied().filter(|t| *t >= 0).collect();
        assert_eq!(before, (0..15_000).collect::<Vec<_>>(), "partition {p}");
    }
}

/// A sink hands librdkafka a batch's records at once. With librdkafka's local queue made far
/// smaller than a batch, most hand-overs stop at a full queue: the sink waits for deliveries
/// and hands over the rest, so every record arrives once, each key's records in order, in both
/// delivery modes.
#[test]
fn a_sink_whose_local_queue_fills_mid_batch_waits_and_writes_every_record_once_in_order() {
    for delivery in ["at-least-once", "exactly-once"] {
        let output = topic("small-queue");
        let s = Scratch::new();
        s.write(
            "p.toml",
            &format!(
                r#"edges = ["gen -> out"]
[pipeline]
name = "small-queue"
batch_size = 4096
[sources.gen]
type = "generator"
count = 20000
[sinks.out]
type = "kafka"
bootstrap = "{b}"
topic = "{output}"
key = "card_id"
delivery = "{delivery}"
properties = {{ "queue.buffering.max.messages" = "64" }}
"#,
                b = bootstrap()
            ),
        );
        let out = sabot(&["run", "p.toml"], &s.path(""));
        assert!(out.status.success(), "{delivery}: {}", stderr(&out));
        let records = kcat_consume(&output);
        let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (key, value) in &records {
            per_key
                .entry(key.clone())
                .or_default()
                .extend(txn_ids([value.as_str()]));
        }
        for (key, ids) in &per_key {
            assert!(
                ids.is_sorted(),
                "{delivery}: key {key}'s records out of order"
            );
        }
        let mut ids: Vec<i64> = per_key.into_values().flatten().collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..20000).collect::<Vec<_>>(),
            "{delivery}: every record exactly once"
        );
    }
}
