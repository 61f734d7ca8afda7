//! `cargo bench -p sabot-host --bench kafka`, against the broker of `SABOT_KAFKA_BOOTSTRAP`
//! (start one with `. scripts/kafka.sh && sabot_kafka_start`): Kafka → a pass-through agent →
//! Kafka, in events/s, beside a plain rdkafka consume → produce loop on the same broker and input
//! in the same run (the baseline, with the consumer settings a Sabot source starts from), with
//! the sink exactly-once and at-least-once. Records are raw bytes (a 100-byte JSON
//! transaction), so both sides move the same bytes. Nothing is asserted.
//!
//! `SABOT_BENCH_EVENTS` sets the input size (default 1 000 000); figures are the median of
//! `SABOT_BENCH_ROUNDS` rounds (default 3), interleaved.

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::time::{Duration, Instant};

use common::{producer, send};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sabot_host::wasm::{CompileCache, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

/// The baseline: consume every record of `input` and produce its value to `output`, with the
/// consumer settings a Sabot source starts from.
fn plain_loop(bootstrap: &str, input: &str, output: &str, events: u64) -> f64 {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false");
    for (k, v) in sabot_host::connectors::kafka::SOURCE_DEFAULTS {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(input, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let p = producer(bootstrap);
    let started = Instant::now();
    let mut n = 0;
    while n < events {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            send(
                &p,
                BaseRecord::<(), [u8]>::to(output).payload(m.payload().unwrap_or_default()),
            );
            n += 1;
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    events as f64 / started.elapsed().as_secs_f64()
}

fn sabot(
    runtime: &std::sync::Arc<WasmRuntime>,
    bootstrap: &str,
    input: &str,
    output: &str,
    delivery: &str,
    events: u64,
) -> f64 {
    let toml = format!(
        r#"edges = ["k -> echo -> out"]
[pipeline]
name = "bench-kafka"
[pipeline.checkpoint]
interval_ms = 1000
[sources.k]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{input}"]
format = "raw"
bounded = true
[agents.echo]
module = "{plain}"
[sinks.out]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{output}"
format = "raw"
delivery = "{delivery}"
"#,
        plain = sabot_test_artifacts::PLAIN
    );
    let spec = PipelineSpec::parse(&toml, std::path::Path::new("bench.toml")).unwrap();
    let summary = Pipeline::new(spec, runtime.clone())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert_eq!(summary.events_in, events);
    events as f64 / summary.elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Ok(bootstrap) = std::env::var("SABOT_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "set SABOT_KAFKA_BOOTSTRAP, e.g.: . scripts/kafka.sh && sabot_kafka_start && cargo bench -p sabot-host --bench kafka"
        );
        std::process::exit(2);
    };
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 1_000_000);
    let rounds = sabot_test_artifacts::bench_setting("SABOT_BENCH_ROUNDS", 3) as usize;
    let run = std::process::id();
    let input = format!("bench-in-{run}");
    let p = producer(&bootstrap);
    for i in 0..events {
        let value = format!(
            "{{\"txn_id\":{i},\"card_id\":{},\"merchant_id\":\"m{}\",\"amount\":{:.2},\"country\":\"FR\"}}",
            i % 2000,
            i % 97,
            (i * 7919 % 100_000) as f64 / 100.0
        );
        send(&p, BaseRecord::<(), str>::to(&input).payload(&value));
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let runtime = WasmRuntime::new(CompileCache::new(CompileCache::default_dir())).unwrap();
    let (mut plain, mut eos, mut alo) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        plain.push(plain_loop(
            &bootstrap,
            &input,
            &format!("bench-plain-{run}-{r}"),
            events,
        ));
        eos.push(sabot(
            &runtime,
            &bootstrap,
            &input,
            &format!("bench-eos-{run}-{r}"),
            "exactly-once",
            events,
        ));
        alo.push(sabot(
            &runtime,
            &bootstrap,
            &input,
            &format!("bench-alo-{run}-{r}"),
            "at-least-once",
            events,
        ));
    }
    let base = median(plain);
    println!(
        "Kafka → pass-through agent → Kafka, {events} records of ~100 bytes, one partition, median of {rounds}"
    );
    println!("{:<44} {:>12} {:>8}", "", "events/s", "ratio");
    println!(
        "{:<44} {:>10.0}K {:>7.2}×",
        "plain rdkafka consume → produce loop",
        base / 1e3,
        1.0
    );
    for (name, v) in [
        ("sabot, exactly-once (transactions)", eos),
        ("sabot, at-least-once", alo),
    ] {
        let m = median(v);
        println!("{name:<44} {:>10.0}K {:>7.2}×", m / 1e3, m / base);
    }
}
