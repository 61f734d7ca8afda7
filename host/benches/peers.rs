//! `cargo bench -p sabot-host --bench peers`, against the broker of `SABOT_KAFKA_BOOTSTRAP`
//! (start one with `. scripts/kafka.sh && sabot_kafka_start`): the same Kafka workloads on
//! **Kafka Streams** (the broker's version, fetched once from Maven Central with Maven and
//! compiled with `javac`: `peers/pom.xml`, `peers/PeerBench.java`) and on the `sabot` binary,
//! on the same broker and input in the same run, plus a plain rdkafka consume → produce loop.
//!
//! Input: `SABOT_BENCH_EVENTS` JSON card transactions (default 2 000 000; ~110 bytes, keyed by
//! `card_id`, 2 000 cards, the record timestamp equal to `ts`) on a topic of two partitions.
//! Workloads, both exactly-once with a commit (checkpoint) every second and two threads' worth
//! of parallelism (two stream threads; Sabot's window agent ×2, its source, filter and project
//! each on a thread):
//!
//! - **filter**: keep `amount > 500` (half the rows), project `txn_id`, `card_id`, `amount`, JSON
//!   out;
//! - **window**: per `card_id`, `count` and `sum(amount)` over 10-second tumbling event-time
//!   windows, in RocksDB (Kafka Streams' window store with its record cache; Sabot's keyed
//!   state), JSON out. Sabot emits each window once when the watermark passes its end; Kafka
//!   Streams emits updates as its cache flushes, so its output has more rows.
//!
//! Each system runs as its own process, from start to exit (the JVM's and Sabot's start-up
//! included; Sabot's compile cache warmed by a first run that is not measured); the bench reports events/s, the CPU seconds (user + system) and the peak RSS of
//! that process (`wait4`), and the committed output records it left (read back
//! `read_committed`; the filter's must be equal). Nothing is asserted about speed.
//! `SABOT_BENCH_ROUNDS` (default 1) repeats every run; figures are medians.

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{create_topic, producer, send};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Partitions of the input topic (and threads each system may use).
const PARTITIONS: i32 = 2;
/// Cards in the input: the window workload's keys.
const CARDS: u64 = 2_000;

/// What one process spent.
#[derive(Clone, Copy)]
struct Spent {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_mb: f64,
}

/// Runs `command` to its end (its output in `log`), measuring its wall time, CPU and peak RSS.
fn measure(mut command: Command, log: &Path) -> Spent {
    let out = std::fs::File::create(log).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let started = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by `wait4` below, which also gives its resource usage"
    )]
    let child = command.spawn().unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; `status` and `usage` outlive the call.
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        panic!(
            "{command:?} failed ({status}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Spent {
        seconds,
        cpu_seconds: cpu(usage.ru_utime) + cpu(usage.ru_stime),
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// Writes the input; returns how many rows pass the filter workload.
fn produce_input(bootstrap: &str, topic: &str, events: u64) -> u64 {
    let p = producer(bootstrap);
    let start = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let mut passing = 0;
    for i in 0..events {
        let card = (i * 7_919) % CARDS;
        let cents = i * 7_919 % 100_000;
        passing += u64::from(cents > 50_000);
        let ts = start + i64::try_from(i / 10).unwrap();
        let value = format!(
            "{{\"txn_id\":{i},\"card_id\":{card},\"merchant_id\":\"m{}\",\"amount\":{}.{:02},\"country\":\"FR\",\"ts\":{ts}}}",
            i % 97,
            cents / 100,
            cents % 100
        );
        let key = card.to_string();
        send(
            &p,
            BaseRecord::<str, str>::to(topic)
                .key(&key)
                .payload(&value)
                .timestamp(ts),
        );
    }
    p.flush(Duration::from_secs(120)).unwrap();
    passing
}

/// The committed records of `topic` (all partitions), read back to its end.
fn committed_records(bootstrap: &str, topic: &str) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-peers-count")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut n, mut quiet) = (0, 0);
    while quiet < 3 {
        match consumer.poll(Duration::from_millis(500)) {
            Some(m) => {
                m.unwrap();
                n += 1;
                quiet = 0;
            }
            None => quiet += 1,
        }
    }
    n
}

/// The plain loop, in a child process: consume every record of `input`, produce it to
/// `output`, at least once, with the consumer settings a Sabot source starts from.
fn plain_loop(bootstrap: &str, input: &str, output: &str, events: u64) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-peers-plain")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in sabot_host::connectors::kafka::SOURCE_DEFAULTS {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[input]).unwrap();
    let p = producer(bootstrap);
    let mut n = 0;
    while n < events {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let mut record =
                BaseRecord::<[u8], [u8]>::to(output).payload(m.payload().unwrap_or_default());
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            send(&p, record);
            n += 1;
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// The Sabot pipeline of `workload`.
fn sabot_pipeline(workload: &str, bootstrap: &str, input: &str, output: &str) -> String {
    let (edges, agents, event_time, key) = match workload {
        "filter" => (
            "k -> keep -> shape -> out",
            r#"[agents.keep]
module = "builtin:filter"
config = { where = "amount > 500" }
[agents.shape]
module = "builtin:project"
config = { select = ["txn_id", "card_id", "amount"] }"#,
            "",
            "",
        ),
        _ => (
            "k -> windows -> out",
            r#"[agents.windows]
module = "builtin:window"
parallelism = 2
key = "card_id"
config = { kind = "tumbling", size_ms = 10000, time = "ts", key = "card_id", aggregates = ["count(*) AS n", "sum(amount) AS total"] }"#,
            r#"event_time = { column = "ts" }"#,
            r#"key = "card_id""#,
        ),
    };
    format!(
        r#"edges = ["{edges}"]
[pipeline]
name = "peers-{workload}"
[pipeline.checkpoint]
interval_ms = 1000
[sources.k]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{input}"]
format = "json"
schema = {{ txn_id = "int64", card_id = "int64", merchant_id = "string", amount = "float64", country = "string", ts = "int64" }}
bounded = true
{event_time}
{agents}
[sinks.out]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{output}"
format = "json"
{key}
delivery = "exactly-once"
"#
    )
}

/// Kafka Streams' class path: its jars (fetched once) and `PeerBench` compiled into `dir`.
fn kafka_streams(repo: &Path, dir: &Path) -> String {
    let fetched = Command::new("bash")
        .arg("-c")
        .arg(
            ". scripts/maven.sh && sabot_maven_fetch kafka-streams host/benches/peers/pom.xml kafka.version 'Kafka Streams'",
        )
        .current_dir(repo)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(fetched.status.success(), "cannot fetch Kafka Streams");
    let home = PathBuf::from(String::from_utf8(fetched.stdout).unwrap().trim());
    let classpath = format!("{}/lib/*", home.display());
    let classes = dir.join("classes");
    let compiled = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(&classpath)
        .arg(repo.join("host/benches/peers/PeerBench.java"))
        .status()
        .unwrap();
    assert!(compiled.success(), "javac failed on PeerBench.java");
    format!("{}:{classpath}", classes.display())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of each measure over `runs`.
fn medians(runs: &[(Spent, u64)]) -> (Spent, u64) {
    let pick = |f: fn(&Spent) -> f64| median(runs.iter().map(|(s, _)| f(s)).collect());
    (
        Spent {
            seconds: pick(|s| s.seconds),
            cpu_seconds: pick(|s| s.cpu_seconds),
            peak_rss_mb: pick(|s| s.peak_rss_mb),
        },
        runs[0].1,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os("SABOT_PEERS_PLAIN_LOOP").is_some() {
        plain_loop(&args[1], &args[2], &args[3], args[4].parse().unwrap());
        return;
    }
    let Ok(bootstrap) = std::env::var("SABOT_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "set SABOT_KAFKA_BOOTSTRAP, e.g.: . scripts/kafka.sh && sabot_kafka_start && cargo bench -p sabot-host --bench peers"
        );
        std::process::exit(2);
    };
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 2_000_000);
    let rounds = sabot_test_artifacts::bench_setting("SABOT_BENCH_ROUNDS", 1).max(1);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let classpath = kafka_streams(repo, dir.path());
    let run = std::process::id();
    let input = format!("peers-in-{run}");
    create_topic(&bootstrap, &input, PARTITIONS);
    let passing = produce_input(&bootstrap, &input, events);

    let mut table: Vec<(&str, &str, Spent, u64)> = Vec::new();
    for workload in ["filter", "window"] {
        let systems: &[&str] = if workload == "filter" {
            &["plain", "sabot", "kafka-streams"]
        } else {
            &["sabot", "kafka-streams"]
        };
        for system in systems {
            let mut runs = Vec::new();
            // Sabot's first run compiles the built-in operators into the compile cache: not measured.
            let warm_up = u64::from(*system == "sabot");
            for r in 0..rounds + warm_up {
                let output = format!("peers-{workload}-{system}-{run}-{r}");
                create_topic(&bootstrap, &output, PARTITIONS);
                let log = dir.path().join(format!("{output}.log"));
                let command = match *system {
                    "plain" => {
                        let mut c = Command::new(std::env::current_exe().unwrap());
                        c.env("SABOT_PEERS_PLAIN_LOOP", "1").args([
                            bootstrap.as_str(),
                            &input,
                            &output,
                            &events.to_string(),
                        ]);
                        c
                    }
                    "sabot" => {
                        let file = dir.path().join(format!("{output}.toml"));
                        std::fs::write(
                            &file,
                            sabot_pipeline(workload, &bootstrap, &input, &output),
                        )
                        .unwrap();
                        let mut c = Command::new(env!("CARGO_BIN_EXE_sabot"));
                        c.arg("run")
                            .arg(&file)
                            .arg("--no-progress")
                            .arg("--data-dir")
                            .arg(dir.path().join(format!("{output}.data")));
                        c
                    }
                    _ => {
                        let mut c = Command::new("java");
                        c.args(["-cp", &classpath, "PeerBench", workload, &bootstrap])
                            .args([&input, &output, &events.to_string()])
                            .arg(dir.path().join(format!("{output}.state")))
                            .arg(PARTITIONS.to_string());
                        c
                    }
                };
                let spent = measure(command, &log);
                if r >= warm_up {
                    runs.push((spent, committed_records(&bootstrap, &output)));
                }
            }
            let (spent, out) = medians(&runs);
            table.push((workload, system, spent, out));
        }
    }

    println!(
        "{events} JSON records on {PARTITIONS} partitions, exactly-once, one commit per second, median of {rounds}; the filter passes {passing}"
    );
    println!(
        "{:<8} {:<36} {:>10} {:>8} {:>12} {:>9} {:>10}",
        "workload", "", "events/s", "CPU s", "events/CPU s", "peak RSS", "output"
    );
    for (workload, system, s, out) in &table {
        let name = match *system {
            "plain" => "plain rdkafka loop (at-least-once)",
            "sabot" => "Sabot",
            _ => "Kafka Streams",
        };
        println!(
            "{workload:<8} {name:<36} {:>9.0}K {:>8.2} {:>11.0}K {:>6.0} MB {:>10}",
            events as f64 / s.seconds / 1e3,
            s.cpu_seconds,
            events as f64 / s.cpu_seconds / 1e3,
            s.peak_rss_mb,
            out
        );
    }
    for workload in ["filter", "window"] {
        let find = |system: &str| {
            table
                .iter()
                .find(|(w, s, ..)| *w == workload && *s == system)
                .map(|(_, _, spent, _)| *spent)
                .unwrap()
        };
        let (sabot, streams) = (find("sabot"), find("kafka-streams"));
        println!(
            "{workload}: Sabot ÷ Kafka Streams: {:.2}× the events/s, {:.2}× the events per CPU second, {:.2}× the peak RSS",
            streams.seconds / sabot.seconds,
            streams.cpu_seconds / sabot.cpu_seconds,
            sabot.peak_rss_mb / streams.peak_rss_mb
        );
        if workload == "filter" {
            println!(
                "filter: Sabot ÷ plain loop: {:.2}× the events/s",
                find("plain").seconds / sabot.seconds
            );
        }
    }
}
