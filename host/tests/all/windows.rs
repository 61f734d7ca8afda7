//! The built-in `window` operator against a brute-force reference: random out-of-order input,
//! every window kind, with and without allowed lateness, at one and several instances.

use std::collections::BTreeMap;

use crate::support::{Scratch, sorted_lines};

const BATCH: usize = 9;
const DELAY: i64 = 40;

/// `(key, ts, v)`: unique timestamps, shuffled locally so events arrive up to ~`DELAY` late, and
/// a few much later than that.
fn input(seed: u64) -> Vec<(i64, i64, i64)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ts: Vec<i64> = (0..1_500).map(|i| 1_000 + i * 3).collect();
    for i in 0..ts.len() {
        let j = (i + rng.usize(0..12)).min(ts.len() - 1);
        ts.swap(i, j);
    }
    for _ in 0..15 {
        let (i, j) = (rng.usize(0..ts.len()), rng.usize(0..ts.len()));
        if j > i + 60 {
            ts.swap(i, j); // far out of order: late
        }
    }
    ts.into_iter()
        .map(|t| (rng.i64(0..4), t, rng.i64(-50..100)))
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

/// Windows as sets of events, closed and emitted as the reference watermark passes them.
fn reference(rows: &[(i64, i64, i64)], kind: Kind, lateness: i64) -> (Vec<String>, Vec<String>) {
    type Events = Vec<(i64, i64)>; // (ts, v) in arrival order
    let close = |end: i64| end - 1 + lateness;
    let mut fixed: BTreeMap<(i64, i64), Events> = BTreeMap::new(); // (key, start)
    let mut sessions: BTreeMap<i64, Vec<(i64, i64, Events)>> = BTreeMap::new(); // key -> (start, end, events)
    let mut out = Vec::new();
    let mut late = Vec::new();
    let row = |key: i64, start: i64, end: i64, events: &Events| {
        let n = events.len() as i64;
        let sum: i64 = events.iter().map(|e| e.1).sum();
        let min = events.iter().map(|e| e.1).min().unwrap();
        let max = events.iter().map(|e| e.1).max().unwrap();
        let first = events.iter().min_by_key(|e| e.0).unwrap().1;
        let last = events.iter().max_by_key(|e| e.0).unwrap().1;
        format!(
            "{key} {start} {end} n={n} sum={sum} min={min} max={max} mean={:.4} first={first} last={last}",
            sum as f64 / n as f64
        )
    };
    let fire = |wm: i64,
                fixed: &mut BTreeMap<(i64, i64), Events>,
                sessions: &mut BTreeMap<i64, Vec<(i64, i64, Events)>>,
                out: &mut Vec<String>| {
        let size = match kind {
            Kind::Tumbling(s) | Kind::Sliding(s, _) => s,
            Kind::Session(_) => 0,
        };
        let due: Vec<(i64, i64)> = fixed
            .keys()
            .filter(|(_, s)| close(s + size) <= wm)
            .copied()
            .collect();
        for k in due {
            let ev = fixed.remove(&k).unwrap();
            out.push(row(k.0, k.1, k.1 + size, &ev));
        }
        for (key, list) in sessions.iter_mut() {
            list.retain(|(s, e, ev)| {
                if close(*e) <= wm {
                    out.push(row(*key, *s, *e, ev));
                    false
                } else {
                    true
                }
            });
        }
    };
    let mut watermark = i64::MIN;
    let mut max_ts = i64::MIN;
    for chunk in rows.chunks(BATCH) {
        for &(key, ts, v) in chunk {
            let mut is_late = false;
            match kind {
                Kind::Tumbling(size) | Kind::Sliding(size, _) => {
                    let slide = match kind {
                        Kind::Sliding(_, s) => s,
                        _ => size,
                    };
                    let mut start = ts.div_euclid(slide) * slide;
                    while start > ts - size {
                        if close(start + size) <= watermark {
                            is_late = true;
                        } else {
                            fixed.entry((key, start)).or_default().push((ts, v));
                        }
                        start -= slide;
                    }
                }
                Kind::Session(gap) => {
                    if close(ts + gap) <= watermark {
                        is_late = true;
                    } else {
                        // Merge every open session that overlaps or touches [ts, ts + gap).
                        let list = sessions.entry(key).or_default();
                        let (mut s, mut e, mut ev) = (ts, ts + gap, vec![(ts, v)]);
                        list.retain(|(s2, e2, ev2)| {
                            if *s2 <= e && s <= *e2 {
                                s = s.min(*s2);
                                e = e.max(*e2);
                                ev.extend(ev2.iter().copied());
                                false
                            } else {
                                true
                            }
                        });
                        list.push((s, e, ev));
                    }
                }
            }
            if is_late {
                late.push(format!("{key} {ts} {v}"));
            }
            max_ts = max_ts.max(ts);
        }
        let next = max_ts - DELAY - 1;
        if next > watermark {
            watermark = next;
            fire(watermark, &mut fixed, &mut sessions, &mut out);
        }
    }
    fire(i64::MAX, &mut fixed, &mut sessions, &mut out);
    out.sort();
    late.sort();
    (out, late)
}

fn shape(kind: Kind) -> String {
    match kind {
        Kind::Tumbling(size) => format!("kind = \"tumbling\", size_ms = {size}"),
        Kind::Sliding(size, slide) => {
            format!("kind = \"sliding\", size_ms = {size}, slide_ms = {slide}")
        }
        Kind::Session(gap) => format!("kind = \"session\", gap_ms = {gap}"),
    }
}

/// events.jsonl → agent `w` (`module`, `config`) → window bounds as integers → out.jsonl, late
/// events → late.jsonl.
fn windowing(module: &str, config: &str, parallelism: usize) -> String {
    format!(
        r#"
edges = ["events -> w -> flat -> out", "w:1 -> late"]
[pipeline]
batch_size = {BATCH}
[sources.events]
type = "file"
path = "events.jsonl"
schema = {{ key = "int64", ts = "int64", v = "int64" }}
event_time = {{ column = "ts", max_out_of_orderness_ms = {DELAY} }}
[agents.w]
module = {module}
parallelism = {parallelism}
key = "key"
config = {config}
[agents.flat]
module = "builtin:project"
config = {{ select = ["key", "CAST(window_start AS BIGINT) AS start", "CAST(window_end AS BIGINT) AS end", "*"] }}
[sinks.out]
type = "file"
path = "out.jsonl"
[sinks.late]
type = "file"
path = "late.jsonl"
"#
    )
}

fn pipeline(kind: Kind, lateness: i64, parallelism: usize) -> String {
    windowing(
        "\"builtin:window\"",
        &format!(
            "{{ {}, time = \"ts\", key = \"key\", allowed_lateness_ms = {lateness}, aggregates = [\"count(*) AS n\", \"sum(v) AS sum\", \"min(v)\", \"max(v)\", \"mean(v) AS mean\", \"first(v)\", \"last(v)\"] }}",
            shape(kind)
        ),
        parallelism,
    )
}

fn lines(s: &Scratch, file: &str, format: impl Fn(&serde_json::Value) -> String) -> Vec<String> {
    let mut out: Vec<String> = s
        .read(file)
        .lines()
        .map(|l| format(&serde_json::from_str(l).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_window_kind_matches_a_brute_force_reference_on_out_of_order_input() {
    let kinds = [
        Kind::Tumbling(100),
        Kind::Sliding(100, 25),
        // A size that is not a multiple of the slide: panes of gcd(100, 40) = 20 ms.
        Kind::Sliding(100, 40),
        Kind::Session(20),
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        for lateness in [0, 50] {
            let rows = input(i as u64 * 7 + lateness as u64);
            let (expected, expected_late) = reference(&rows, kind, lateness);
            assert!(
                !expected_late.is_empty(),
                "{kind:?}: the input has late events"
            );
            for parallelism in [1, 2] {
                let s = Scratch::new();
                let text: String = rows
                    .iter()
                    .map(|(k, t, v)| format!("{{\"key\":{k},\"ts\":{t},\"v\":{v}}}\n"))
                    .collect();
                s.write("events.jsonl", &text);
                s.run(&pipeline(kind, lateness, parallelism)).unwrap();
                let got = lines(&s, "out.jsonl", |r| {
                    format!(
                        "{} {} {} n={} sum={} min={} max={} mean={:.4} first={} last={}",
                        r["key"],
                        r["start"],
                        r["end"],
                        r["n"],
                        r["sum"],
                        r["min_v"],
                        r["max_v"],
                        r["mean"].as_f64().unwrap(),
                        r["first_v"],
                        r["last_v"]
                    )
                });
                let context = format!("{kind:?}, lateness {lateness}, parallelism {parallelism}");
                crate::support::assert_same_lines(&got, &expected, &context);
                let got_late = lines(&s, "late.jsonl", |r| {
                    format!("{} {} {}", r["key"], r["ts"], r["v"])
                });
                crate::support::assert_same_lines(
                    &got_late,
                    &expected_late,
                    &format!("late, {context}"),
                );
            }
        }
    }
}

#[test]
fn window_settings_are_checked_when_the_agent_starts() {
    let s = Scratch::new();
    s.write("events.jsonl", "{\"key\":1,\"ts\":1,\"v\":1}\n");
    for (bad, says) in [
        (
            "kind = \"hopping\", size_ms = 10",
            "unknown window kind `hopping`",
        ),
        (
            "kind = \"sliding\", size_ms = 10",
            "sliding windows need slide_ms",
        ),
        (
            "kind = \"sliding\", size_ms = 10, slide_ms = 20",
            "slide_ms (20) must not exceed size_ms (10)",
        ),
        ("kind = \"session\", gap_ms = 0", "gap_ms must be positive"),
    ] {
        let toml =
            pipeline(Kind::Tumbling(10), 0, 1).replace("kind = \"tumbling\", size_ms = 10", bad);
        let e = s.run(&toml).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let toml = pipeline(Kind::Tumbling(10), 0, 1).replace("\"count(*) AS n\"", "\"median(v)\"");
    let e = s.run(&toml).unwrap_err().to_string();
    assert!(
        e.contains("aggregate `median(v)`: unknown function `median`"),
        "{e}"
    );
    let toml =
        pipeline(Kind::Tumbling(10), 0, 1).replace("\"sum(v) AS sum\"", "\"sum(nope) AS sum\"");
    let e = s.run(&toml).unwrap_err().to_string();
    assert!(
        e.contains("reads column `nope`, which the input lacks"),
        "{e}"
    );
}

#[test]
fn a_window_run_stopped_and_resumed_from_a_checkpoint_gives_the_same_windows() {
    let toml = |rate: u64| {
        format!(
            r#"
edges = ["gen -> w -> out", "w:1 -> late"]
[pipeline]
batch_size = 500
[pipeline.checkpoint]
interval_ms = 50
[sources.gen]
type = "generator"
count = 60000
rate = {rate}
cards = 20
event_time = {{ column = "ts", max_out_of_orderness_ms = 0 }}
[agents.w]
module = "builtin:window"
parallelism = 2
key = "card_id"
config = {{ kind = "sliding", size_ms = 2000, slide_ms = 500, time = "ts", key = "card_id", aggregates = ["count(*) AS n", "sum(amount) AS total", "last(country)"] }}
[sinks.out]
type = "file"
path = "out.jsonl"
[sinks.late]
type = "file"
path = "late.jsonl"
"#
        )
    };
    let clean = Scratch::new();
    clean.run(&toml(0)).unwrap();
    let expected = sorted_lines(&clean.read("out.jsonl"));
    assert_eq!(
        expected.len(),
        20 * (60 * 2 + 3),
        "every card, every 500 ms slide"
    );

    let s = Scratch::new();
    let first = crate::checkpoint::run_in(&s, &toml(30_000), Some(3), false).unwrap();
    assert!(first.events_in < 60_000, "stopped part-way");
    let second = crate::checkpoint::run_in(&s, &toml(30_000), None, false).unwrap();
    assert_eq!(first.events_in + second.events_in, 60_000);
    crate::support::assert_same_lines(&sorted_lines(&s.read("out.jsonl")), &expected, "windows");
    assert_eq!(s.read("late.jsonl"), "");
}

#[test]
fn a_user_agent_windows_with_the_library_and_a_user_defined_aggregate() {
    // Sliding windows with a user-defined aggregate are kept per window, not as panes.
    for kind in [
        Kind::Tumbling(100),
        Kind::Sliding(100, 25),
        Kind::Session(20),
    ] {
        let rows = input(99);
        let (reference_rows, expected_late) = reference(&rows, kind, 0);
        // `key start end n=… sum=… min=… max=… …` → `key start end n min max spread`.
        let expected: Vec<String> = {
            let mut v: Vec<String> = reference_rows
                .iter()
                .map(|line| {
                    let f: Vec<&str> = line.split(' ').collect();
                    let field = |name: &str| -> i64 {
                        f.iter()
                            .find_map(|x| x.strip_prefix(name))
                            .unwrap()
                            .parse()
                            .unwrap()
                    };
                    let (min, max) = (field("min="), field("max="));
                    format!(
                        "{} {} {} {} {min} {max} {}",
                        f[0],
                        f[1],
                        f[2],
                        field("n="),
                        max - min
                    )
                })
                .collect();
            v.sort();
            v
        };
        let toml = windowing(
            &crate::support::lit(sabot_test_artifacts::TIMED),
            &format!(
                "{{ library = {{ {}, time = \"ts\", key = \"key\", aggregates = [\"count(*) AS n\", \"min(v)\", \"max(v)\"] }} }}",
                shape(kind)
            ),
            2,
        );
        let s = Scratch::new();
        let text: String = rows
            .iter()
            .map(|(k, t, v)| format!("{{\"key\":{k},\"ts\":{t},\"v\":{v}}}\n"))
            .collect();
        s.write("events.jsonl", &text);
        s.run(&toml).unwrap();
        let got = lines(&s, "out.jsonl", |r| {
            format!(
                "{} {} {} {} {} {} {}",
                r["key"], r["start"], r["end"], r["n"], r["min_v"], r["max_v"], r["spread"]
            )
        });
        crate::support::assert_same_lines(
            &got,
            &expected,
            &format!("{kind:?} through the library"),
        );
        let got_late = lines(&s, "late.jsonl", |r| {
            format!("{} {} {}", r["key"], r["ts"], r["v"])
        });
        crate::support::assert_same_lines(&got_late, &expected_late, "late, through the library");
    }
}
