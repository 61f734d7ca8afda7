//! `cargo bench -p sabot-host --bench latency`: end-to-end latency at a steady rate, as p50, p99
//! and p99.9, of
//!
//! - a generator → a pass-through Wasm agent → a blackhole sink, as the host measures it (from
//!   the due time of each batch's first row to the sink having written it:
//!   `sabot_sink_latency_seconds`),
//!   beside a plain Rust baseline measured the same way in the same run: a thread paced at the
//!   rate handing each event through a bounded channel to a second thread (the floor of any
//!   hand-over between threads on this machine);
//! - with `SABOT_KAFKA_BOOTSTRAP` set (start a broker with `. scripts/kafka.sh &&
//!   sabot_kafka_start`), Kafka → the same agent → Kafka, beside a plain rdkafka consume →
//!   produce loop measured the same way in the same run. Every producer (the bench's, the plain
//!   loop's, the Sabot sink's) waits `SABOT_BENCH_LINGER_MS` (default 5, librdkafka's; the
//!   Sabot sink's default is 1) to fill a request.
//!
//! `SABOT_BENCH_BATCH_DELAY_MS` (default 0) is the Sabot sources' `max_batch_delay_ms`.
//!
//! A producer thread writes ~100-byte raw records at `SABOT_BENCH_RATES` events/s (default
//! `1000,10000,100000`), each carrying the wall-clock time it was handed to the producer; a
//! consumer thread reads the output topic and takes the difference when a record arrives. The
//! latency is therefore all of it: producer linger and broker append on the way in, the
//! pipeline, the sink's producer and the broker on the way out, and the consumer's fetch. Each
//! rate runs `SABOT_BENCH_SECONDS` seconds (default 5) after two seconds of warm-up that are
//! not counted (a fresh producer's first records wait ~0.5 s for it to start, in both systems'
//! runs alike). Exactly-once output is read `read_committed`: it is visible when the checkpoint that
//! covers it commits, so its latency is the checkpoint interval (here 1 000 ms) plus the commit.
//! Nothing is asserted.

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{producer, producer_lingering, send};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sabot_host::wasm::{CompileCache, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

/// Warm-up before latencies count.
const WARM_UP: Duration = Duration::from_secs(2);

fn now_micros() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

fn consumer(bootstrap: &str, group: &str, topic: &str, committed: bool) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
    for (k, v) in sabot_host::connectors::kafka::SOURCE_DEFAULTS {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Writes `rate` records/s to `input` for the warm-up and `seconds`, each stamped with the time
/// it is sent; returns how many were sent and how many of those in the warm-up.
fn drive(bootstrap: &str, input: &str, rate: u64, seconds: u64, linger: u64) -> (u64, u64) {
    let p = producer_lingering(bootstrap, linger);
    let total = rate * seconds + rate * WARM_UP.as_secs();
    let started = Instant::now();
    let mut sent = 0;
    let mut warm = 0;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let payload = format!("{:020}{}", now_micros(), " ".repeat(80));
            send(&p, BaseRecord::<(), str>::to(input).payload(&payload));
            sent += 1;
            if started.elapsed() < WARM_UP {
                warm = sent;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    p.flush(Duration::from_secs(30)).unwrap();
    (sent, warm)
}

/// Reads `output` until `expected` records arrived (or a minute passed without one), counting
/// them in `arrived`; the latency of each in microseconds, in arrival order.
fn collect(consumer: &BaseConsumer, expected: &AtomicU64, arrived: &AtomicU64) -> Vec<u64> {
    let mut latencies = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(60) {
        let want = expected.load(Ordering::Acquire);
        if want > 0 && latencies.len() as u64 >= want {
            break;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(10)) {
            let at = now_micros();
            let m = m.unwrap();
            let sent: u64 = std::str::from_utf8(&m.payload().unwrap()[..20])
                .unwrap()
                .parse()
                .unwrap();
            latencies.push(at.saturating_sub(sent));
            arrived.store(latencies.len() as u64, Ordering::Release);
            last = Instant::now();
        }
    }
    latencies
}

/// The plain loop: consume `input`, produce each record to `output`, until `stop`.
fn plain_loop(bootstrap: &str, input: &str, output: &str, stop: &AtomicBool, linger: u64) {
    let consumer = consumer(bootstrap, "bench-latency-plain", input, false);
    let p = producer_lingering(bootstrap, linger);
    while !stop.load(Ordering::Relaxed) {
        if let Some(m) = consumer.poll(Duration::from_millis(10)) {
            send(
                &p,
                BaseRecord::<(), [u8]>::to(output)
                    .payload(m.unwrap().payload().unwrap_or_default()),
            );
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Kafka `input` → the pass-through agent → Kafka `output`, delivering `delivery`, until `stop`;
/// the sink lingers `linger` ms, the source holds partial batches `delay` ms.
fn sabot(
    runtime: &Arc<WasmRuntime>,
    bootstrap: &str,
    (input, output): (&str, &str),
    delivery: &str,
    stop: Arc<AtomicBool>,
    (linger, delay): (u64, u64),
) {
    let toml = format!(
        r#"edges = ["k -> echo -> out"]
[pipeline]
name = "bench-latency"
[pipeline.checkpoint]
interval_ms = 1000
[sources.k]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{input}"]
format = "raw"
max_batch_delay_ms = {delay}
[agents.echo]
module = "{plain}"
[sinks.out]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{output}"
format = "raw"
delivery = "{delivery}"
properties = {{ "linger.ms" = "{linger}" }}
"#,
        plain = sabot_test_artifacts::PLAIN
    );
    let spec = PipelineSpec::parse(&toml, std::path::Path::new("bench.toml")).unwrap();
    Pipeline::new(spec, runtime.clone())
        .unwrap()
        .run(RunOptions {
            stop,
            ..RunOptions::default()
        })
        .unwrap();
}

/// A generator → the pass-through agent → a blackhole at `rate` for `seconds`: the quantiles
/// (p50, p99, p99.9, max; ms) of the latency the host measured, and the events it counted.
fn generator(runtime: &Arc<WasmRuntime>, rate: u64, seconds: u64, delay: u64) -> ([f64; 4], u64) {
    let toml = format!(
        r#"edges = ["gen -> echo -> out"]
[pipeline]
name = "bench-latency-generator"
[sources.gen]
type = "generator"
count = {count}
rate = {rate}
max_batch_delay_ms = {delay}
[agents.echo]
module = "{plain}"
[sinks.out]
type = "blackhole"
"#,
        count = rate * seconds,
        plain = sabot_test_artifacts::PLAIN
    );
    let spec = PipelineSpec::parse(&toml, std::path::Path::new("bench.toml")).unwrap();
    let summary = Pipeline::new(spec, runtime.clone())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    let latency = summary.stats.sink_latency();
    let ms = |q| {
        latency
            .quantile(q)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    ([ms(0.5), ms(0.99), ms(0.999), ms(1.0)], latency.count())
}

/// The baseline of [`generator`]: a thread paced at `rate` (sleeping until the next event is
/// due, as the generator does) hands each event's send time through a bounded channel to a
/// second thread, which takes the difference; the quantiles as [`generator`] gives them.
fn hand_over(rate: u64, seconds: u64) -> [f64; 4] {
    let (tx, rx) = crossbeam_channel::bounded::<Instant>(16);
    let receiver = std::thread::spawn(move || {
        let mut latencies: Vec<u64> = rx
            .iter()
            .map(|sent| u64::try_from(sent.elapsed().as_micros()).unwrap())
            .collect();
        latencies.sort_unstable();
        latencies
    });
    let total = rate * seconds;
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while sent < due {
            tx.send(Instant::now()).unwrap();
            sent += 1;
        }
        let next = started + Duration::from_secs_f64(sent as f64 / rate as f64);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    drop(tx);
    let latencies = receiver.join().unwrap();
    [0.5, 0.99, 0.999, 1.0].map(|q| quantile(&latencies, q))
}

/// The `q`-quantile of sorted `v`, in milliseconds.
fn quantile(v: &[u64], q: f64) -> f64 {
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1e3
}

fn main() {
    let rates: Vec<u64> = std::env::var("SABOT_BENCH_RATES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .expect("SABOT_BENCH_RATES: events/s, comma-separated")
        })
        .collect();
    let seconds = sabot_test_artifacts::bench_setting("SABOT_BENCH_SECONDS", 5);
    let linger = sabot_test_artifacts::bench_setting("SABOT_BENCH_LINGER_MS", 5);
    let delay = sabot_test_artifacts::bench_setting("SABOT_BENCH_BATCH_DELAY_MS", 0);
    let runtime = WasmRuntime::new(CompileCache::new(CompileCache::default_dir())).unwrap();
    let run = std::process::id();
    println!(
        "generator → pass-through agent → blackhole, {seconds} s per rate, max_batch_delay_ms = {delay}; latency from the due time of each batch's first row to the sink having written it"
    );
    println!(
        "{:<40} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let row = |name: &str, rate: u64, q: [f64; 4]| {
        println!(
            "{name:<40} {rate:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            q[0], q[1], q[2], q[3]
        );
    };
    for &rate in &rates {
        row(
            "threads handing over (baseline)",
            rate,
            hand_over(rate, seconds),
        );
        let (q, counted) = generator(&runtime, rate, seconds, delay);
        assert_eq!(counted, rate * seconds, "every event is counted once");
        row("Sabot, generator → agent → blackhole", rate, q);
    }
    println!();
    let Ok(bootstrap) = std::env::var("SABOT_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "Kafka skipped: set SABOT_KAFKA_BOOTSTRAP, e.g.: . scripts/kafka.sh && sabot_kafka_start && cargo bench -p sabot-host --bench latency"
        );
        return;
    };
    println!(
        "Kafka → pass-through agent → Kafka, ~100-byte records, one partition, {seconds} s per rate after {} s of warm-up, producers' linger.ms = {linger}, Sabot's max_batch_delay_ms = {delay}; latency from the producer's send to the consumer's receipt",
        WARM_UP.as_secs()
    );
    println!(
        "{:<40} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for rate in rates {
        for system in ["plain", "at-least-once", "exactly-once"] {
            let input = format!("latency-in-{run}-{rate}-{system}");
            let output = format!("latency-out-{run}-{rate}-{system}");
            // Both topics exist before anything reads them.
            let p = producer(&bootstrap);
            let marker = format!("{:020}", 0);
            send(&p, BaseRecord::<(), str>::to(&input).payload(&marker));
            send(&p, BaseRecord::<(), str>::to(&output).payload(&marker));
            p.flush(Duration::from_secs(30)).unwrap();
            drop(p);
            let stop = Arc::new(AtomicBool::new(false));
            let pipeline = {
                let (bootstrap, input, output, stop, runtime) = (
                    bootstrap.clone(),
                    input.clone(),
                    output.clone(),
                    stop.clone(),
                    runtime.clone(),
                );
                std::thread::spawn(move || match system {
                    "plain" => plain_loop(&bootstrap, &input, &output, &stop, linger),
                    delivery => sabot(
                        &runtime,
                        &bootstrap,
                        (&input, &output),
                        delivery,
                        stop,
                        (linger, delay),
                    ),
                })
            };
            let expected = Arc::new(AtomicU64::new(0));
            let arrived = Arc::new(AtomicU64::new(0));
            let reader = {
                let (bootstrap, output, expected, arrived) = (
                    bootstrap.clone(),
                    output.clone(),
                    expected.clone(),
                    arrived.clone(),
                );
                std::thread::spawn(move || {
                    let c = consumer(
                        &bootstrap,
                        "bench-latency-read",
                        &output,
                        system == "exactly-once",
                    );
                    collect(&c, &expected, &arrived)
                })
            };
            // Ready when both markers arrived: the one written to `output`, and the one written
            // to `input` and passed through.
            while arrived.load(Ordering::Acquire) < 2 {
                std::thread::sleep(Duration::from_millis(10));
            }
            let (sent, warm) = drive(&bootstrap, &input, rate, seconds, linger);
            expected.store(sent + 2, Ordering::Release);
            let latencies = reader.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            pipeline.join().unwrap();
            // Skip the markers and the warm-up.
            let mut measured: Vec<u64> = latencies
                .iter()
                .copied()
                .skip(2 + usize::try_from(warm).unwrap())
                .collect();
            let arrived = (latencies.len() as u64).saturating_sub(2);
            measured.sort_unstable();
            let name = match system {
                "plain" => "plain rdkafka loop (at-least-once)",
                "at-least-once" => "Sabot, at-least-once",
                _ => "Sabot, exactly-once (read_committed)",
            };
            if measured.is_empty() || arrived < sent {
                println!("{name:<40} {rate:>10} only {arrived} of {sent} records arrived");
                continue;
            }
            println!(
                "{name:<40} {rate:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                quantile(&measured, 0.5),
                quantile(&measured, 0.99),
                quantile(&measured, 0.999),
                quantile(&measured, 1.0)
            );
        }
    }
}
