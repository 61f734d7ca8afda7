//! Event time end to end: watermarks from a source's timestamp column, combined across instances,
//! firing an agent's event-time timers — checked against a straightforward reference.

use std::collections::BTreeMap;

use sabot_test_artifacts::TIMED;

use crate::support::{Scratch, assert_same_lines, lit, sorted_lines};

const SIZE: i64 = 1_000;
const DELAY: i64 = 600;
const BATCH: usize = 7;

/// Rows `(key, ts)`, mostly within `DELAY` of order, some far later than that.
fn input() -> Vec<(i64, i64)> {
    let mut rng = fastrand::Rng::with_seed(17);
    (0..3_000)
        .map(|i| {
            let jitter = if rng.u8(0..50) == 0 {
                -rng.i64(1_000..4_000)
            } else {
                rng.i64(-(DELAY)..=0)
            };
            (rng.i64(0..20), 10_000 + i * 10 + jitter)
        })
        .collect()
}

struct Reference {
    windows: Vec<String>,
    late: Vec<String>,
    watermarks: Vec<i64>,
}

/// What the agent must produce: the source's watermark is the largest event time so far minus
/// the delay, minus one, after each batch; a row is late when its window's last millisecond is
/// at or before the watermark it arrives under; a window fires when the watermark passes it, and
/// every window left fires at the end of the input.
fn reference(rows: &[(i64, i64)]) -> Reference {
    let mut watermark = i64::MIN;
    let mut watermarks = Vec::new();
    let mut max_ts = i64::MIN;
    let mut open: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut windows = Vec::new();
    let mut late = Vec::new();
    let fire = |open: &mut BTreeMap<(i64, i64), i64>, wm: i64, windows: &mut Vec<String>| {
        let due: Vec<(i64, i64)> = open
            .keys()
            .filter(|(_, end)| end - 1 <= wm)
            .copied()
            .collect();
        for (key, end) in due {
            let count = open.remove(&(key, end)).unwrap();
            windows.push(format!(
                "{{\"key\":{key},\"window_end\":{end},\"count\":{count}}}"
            ));
        }
    };
    for chunk in rows.chunks(BATCH) {
        for (key, ts) in chunk {
            let end = (ts.div_euclid(SIZE) + 1) * SIZE;
            if end - 1 <= watermark {
                late.push(format!("{{\"key\":{key},\"ts\":{ts}}}"));
            } else {
                *open.entry((*key, end)).or_default() += 1;
            }
            max_ts = max_ts.max(*ts);
        }
        let next = max_ts - DELAY - 1;
        if next > watermark {
            watermark = next;
            watermarks.push(watermark);
            fire(&mut open, watermark, &mut windows);
        }
    }
    watermarks.push(i64::MAX);
    fire(&mut open, i64::MAX, &mut windows);
    Reference {
        windows: {
            windows.sort();
            windows
        },
        late: {
            late.sort();
            late
        },
        watermarks,
    }
}

fn pipeline(parallelism: usize) -> String {
    format!(
        r#"
edges = ["events -> w -> windows", "w:1 -> late", "w:2 -> watermarks"]
[pipeline]
batch_size = {BATCH}
[sources.events]
type = "file"
path = "events.jsonl"
schema = {{ key = "int64", ts = "int64" }}
event_time = {{ column = "ts", max_out_of_orderness_ms = {DELAY} }}
[agents.w]
module = {module}
parallelism = {parallelism}
key = "key"
config = {{ size_ms = {SIZE} }}
[sinks.windows]
type = "file"
path = "windows.jsonl"
[sinks.late]
type = "file"
path = "late.jsonl"
[sinks.watermarks]
type = "file"
path = "watermarks.jsonl"
"#,
        module = lit(TIMED)
    )
}

#[test]
fn event_time_timers_fire_as_the_watermark_passes_them_like_the_reference() {
    let rows = input();
    let expected = reference(&rows);
    assert!(expected.late.len() > 20, "the input has late rows");
    for parallelism in [1, 3] {
        let s = Scratch::new();
        let text: String = rows
            .iter()
            .map(|(k, t)| format!("{{\"key\":{k},\"ts\":{t}}}\n"))
            .collect();
        s.write("events.jsonl", &text);
        s.run(&pipeline(parallelism)).unwrap();
        assert_same_lines(
            &sorted_lines(&s.read("windows.jsonl")),
            &expected.windows,
            "windows.jsonl",
        );
        assert_same_lines(
            &sorted_lines(&s.read("late.jsonl")),
            &expected.late,
            "late.jsonl",
        );

        // Every instance sees every watermark, in order.
        let seen: Vec<i64> = s
            .read("watermarks.jsonl")
            .lines()
            .map(|l| {
                l.trim_start_matches("{\"watermark\":")
                    .trim_end_matches('}')
                    .parse()
                    .unwrap()
            })
            .collect();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for w in &seen {
            *counts.entry(*w).or_default() += 1;
        }
        assert_eq!(counts.len(), expected.watermarks.len());
        assert!(counts.values().all(|n| *n == parallelism), "{counts:?}");
        if parallelism == 1 {
            assert_eq!(
                seen, expected.watermarks,
                "one instance: exactly the reference's order"
            );
        }

        // Per key, windows fire in time order.
        let mut last: BTreeMap<i64, i64> = BTreeMap::new();
        for line in s.read("windows.jsonl").lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (key, end) = (
                v["key"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
            );
            assert!(
                last.insert(key, end).is_none_or(|prev| prev < end),
                "key {key}: {end} after a later window"
            );
        }
    }
}

#[test]
fn a_source_without_event_time_leaves_timers_to_the_end_of_input() {
    let s = Scratch::new();
    s.write(
        "events.jsonl",
        "{\"key\":1,\"ts\":10}\n{\"key\":1,\"ts\":5000}\n{\"key\":2,\"ts\":20}\n",
    );
    let toml = pipeline(1).replace(
        &format!("event_time = {{ column = \"ts\", max_out_of_orderness_ms = {DELAY} }}\n"),
        "",
    );
    s.run(&toml).unwrap();
    assert_eq!(
        sorted_lines(&s.read("windows.jsonl")),
        [
            "{\"key\":1,\"window_end\":1000,\"count\":1}",
            "{\"key\":1,\"window_end\":6000,\"count\":1}",
            "{\"key\":2,\"window_end\":1000,\"count\":1}",
        ]
    );
    assert_eq!(
        s.read("watermarks.jsonl"),
        format!("{{\"watermark\":{}}}\n", i64::MAX)
    );
}

#[test]
fn an_event_time_column_that_is_missing_is_named_before_or_while_running() {
    let s = Scratch::new();
    s.write("events.jsonl", "{\"key\":1,\"when\":10}\n");
    // With a declared schema, the pipeline is refused before it runs.
    let toml = pipeline(1)
        .replace("ts = \"int64\"", "when = \"int64\"")
        .replace("column = \"ts\"", "column = \"stamp\"");
    let e = s.run(&toml).unwrap_err().to_string();
    assert!(
        e.contains("[sources.events] field `event_time.column`")
            && e.contains("there is no column `stamp` (columns: key, when)"),
        "{e}"
    );
    // With an inferred one, the first batch stops the run.
    let toml = toml.replace("schema = { key = \"int64\", when = \"int64\" }\n", "");
    let e = s.run(&toml).unwrap_err().to_string();
    assert!(
        e.contains("source `events`")
            && e.contains("no event-time column `stamp` (its columns: key, when)"),
        "{e}"
    );
}

fn run_for(s: &Scratch, toml: &str, millis: u64) -> sabot_host::RunSummary {
    run_until(s, toml, |_| false, std::time::Duration::from_millis(millis))
}

/// Runs `toml` until `out.jsonl` satisfies `done` (checked every 50 ms; then 300 ms more) or
/// `limit` passes. The file sink may hold its output until the end, so `limit` must leave a
/// loaded machine ample time.
fn run_until(
    s: &Scratch,
    toml: &str,
    done: impl Fn(&str) -> bool + Send + 'static,
    limit: std::time::Duration,
) -> sabot_host::RunSummary {
    let pipeline = s.pipeline(toml).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let out = s.path("out.jsonl");
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while started.elapsed() < limit
            && !std::fs::read_to_string(&out).is_ok_and(|text| done(&text))
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // A little longer, for anything that should not happen (a second firing) to show.
        std::thread::sleep(std::time::Duration::from_millis(300));
        stopper.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    pipeline
        .run(sabot_host::RunOptions {
            stop,
            ..Default::default()
        })
        .unwrap()
}

#[test]
fn processing_time_timers_fire_by_the_wall_clock_once_each() {
    let s = Scratch::new();
    let toml = format!(
        r#"
edges = ["gen -> w -> out"]
[sources.gen]
type = "generator"
rate = 2000
cards = 20
[agents.w]
module = {module}
parallelism = 2
key = "card_id"
config = {{ size_ms = 1000, key_column = "card_id", processing_ms = 100 }}
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
        module = lit(TIMED)
    );
    let expected: Vec<String> = (0..20)
        .map(|k| format!("{{\"key\":{k},\"window_end\":-1,\"count\":0}}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let all = expected.clone();
    // Until every key's timer has fired (and a little longer, for any second firing to show).
    let summary = run_until(
        &s,
        &toml,
        move |out| all.iter().all(|line| out.contains(line.as_str())),
        std::time::Duration::from_secs(4),
    );
    assert!(summary.interrupted);
    let fired: Vec<String> = sorted_lines(&s.read("out.jsonl"))
        .into_iter()
        .filter(|l| l.contains("\"window_end\":-1"))
        .collect();
    assert_eq!(
        fired, expected,
        "each key's timer fired once, while the run went on"
    );
}

/// Two generators feed one agent; `quiet` produces one event, then nothing for a long while.
fn two_inputs(idle: &str) -> String {
    format!(
        r#"
edges = ["busy -> w -> out", "quiet -> w"]
[pipeline]
batch_size = 100
[sources.busy]
type = "generator"
rate = 5000
cards = 10
event_time = {{ column = "ts" }}
[sources.quiet]
type = "generator"
rate = 0.1
cards = 10
event_time = {{ column = "ts"{idle} }}
[agents.w]
module = {module}
config = {{ size_ms = 100, key_column = "card_id" }}
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
        module = lit(TIMED)
    )
}

#[test]
fn an_idle_input_stops_holding_back_the_watermark() {
    // Without an idle timeout, the quiet input's first event holds the watermark: no window
    // closes while the run goes on.
    let s = Scratch::new();
    run_for(&s, &two_inputs(""), 1_000);
    assert_eq!(s.read("out.jsonl"), "", "held back by the quiet input");

    // With one, the busy input's windows close as its watermark passes them.
    let s = Scratch::new();
    run_for(&s, &two_inputs(", idle_timeout_ms = 100"), 1_000);
    let windows = s.read("out.jsonl").lines().count();
    assert!(windows > 10, "{windows} windows closed");
}

#[test]
fn an_agent_of_the_plain_world_runs_in_an_event_time_pipeline_without_hooks() {
    let s = Scratch::new();
    s.write(
        "events.jsonl",
        "{\"key\":1,\"ts\":10}\n{\"key\":2,\"ts\":5000}\n",
    );
    let toml = pipeline(2)
        .replace(&lit(TIMED), &lit(sabot_test_artifacts::PLAIN))
        .replace("config = { size_ms = 1000 }\n", "")
        .replace(", \"w:1 -> late\", \"w:2 -> watermarks\"", "")
        .replace("[sinks.late]\ntype = \"file\"\npath = \"late.jsonl\"\n", "")
        .replace(
            "[sinks.watermarks]\ntype = \"file\"\npath = \"watermarks.jsonl\"\n",
            "",
        );
    s.run(&toml).unwrap();
    assert_eq!(
        sorted_lines(&s.read("windows.jsonl")),
        ["{\"key\":1,\"ts\":10}", "{\"key\":2,\"ts\":5000}"]
    );
}
