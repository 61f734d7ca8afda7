//! The built-in `join` operator against brute-force references: random out-of-order input for
//! both sides, every join kind, at one and several instances. Both inputs come from one upstream
//! instance (the test guest's `split` mode), so the order in which the join sees them is known.

use std::collections::{BTreeMap, HashMap};

use sabot_test_artifacts::MISBEHAVE;

use crate::support::{Scratch, assert_same_lines, lit};

const BATCH: usize = 7;
const DELAY: i64 = 30;

#[derive(Clone, Debug)]
struct In {
    right: bool,
    key: i64,
    ts: i64,
    v: i64,
    delete: bool,
}

fn input(seed: u64) -> Vec<In> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ts: Vec<i64> = (0..1_200).map(|i| 1_000 + i * 4).collect();
    for i in 0..ts.len() {
        let j = (i + rng.usize(0..8)).min(ts.len() - 1);
        ts.swap(i, j);
    }
    for _ in 0..12 {
        let (i, j) = (rng.usize(0..ts.len()), rng.usize(0..ts.len()));
        if j > i + 40 {
            ts.swap(i, j);
        }
    }
    ts.into_iter()
        .map(|t| {
            let right = rng.u8(0..10) < 4;
            In {
                right,
                key: rng.i64(0..4),
                ts: t,
                v: rng.i64(0..1_000),
                delete: right && rng.u8(0..10) == 0,
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Lookup,
    Temporal,
    Interval(i64, i64),
    Window(i64),
}

fn pair(l: &In, r: &In) -> String {
    format!("{} {} {} {} {}", l.key, l.ts, l.v, r.ts, r.v)
}

fn row(x: &In) -> String {
    format!("{} {} {}", x.key, x.ts, x.v)
}

/// `(pairs, late left, late right)` as the operator must produce them: per batch, the right
/// rows first, then the left ones, then the watermark (largest time so far − delay − 1).
fn reference(rows: &[In], kind: Kind) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut out, mut late_l, mut late_r) = (Vec::new(), Vec::new(), Vec::new());
    let mut table: HashMap<i64, In> = HashMap::new();
    let mut versions: HashMap<i64, Vec<In>> = HashMap::new();
    let mut left: BTreeMap<i64, Vec<In>> = BTreeMap::new();
    let mut right: BTreeMap<i64, Vec<In>> = BTreeMap::new();
    let mut wm = i64::MIN;
    let mut max_ts = i64::MIN;
    let window_end = |ts: i64, size: i64| (ts.div_euclid(size) + 1) * size;
    let fire = |wm: i64,
                left: &mut BTreeMap<i64, Vec<In>>,
                right: &mut BTreeMap<i64, Vec<In>>,
                versions: &HashMap<i64, Vec<In>>,
                out: &mut Vec<String>| match kind {
        Kind::Temporal => {
            for (key, rows) in left.iter_mut() {
                rows.retain(|l| {
                    if l.ts > wm {
                        return true;
                    }
                    let latest = versions
                        .get(key)
                        .and_then(|vs| vs.iter().rfind(|v| v.ts <= l.ts));
                    if let Some(r) = latest.filter(|r| !r.delete) {
                        out.push(pair(l, r));
                    }
                    false
                });
            }
        }
        Kind::Window(size) => {
            for (key, ls) in left.iter_mut() {
                let rs = right.entry(*key).or_default();
                for l in ls.iter().filter(|l| window_end(l.ts, size) - 1 <= wm) {
                    for r in rs
                        .iter()
                        .filter(|r| r.ts.div_euclid(size) == l.ts.div_euclid(size))
                    {
                        out.push(pair(l, r));
                    }
                }
            }
            for rows in left.values_mut().chain(right.values_mut()) {
                rows.retain(|x| window_end(x.ts, size) - 1 > wm);
            }
        }
        Kind::Interval(lower, upper) => {
            for rows in left.values_mut() {
                rows.retain(|l| l.ts + upper > wm);
            }
            for rows in right.values_mut() {
                rows.retain(|r| r.ts - lower > wm);
            }
        }
        Kind::Lookup => {}
    };
    for chunk in rows.chunks(BATCH) {
        for x in chunk
            .iter()
            .filter(|x| x.right)
            .chain(chunk.iter().filter(|x| !x.right))
        {
            match kind {
                Kind::Lookup if x.right => {
                    if x.delete {
                        table.remove(&x.key);
                    } else {
                        table.insert(x.key, x.clone());
                    }
                }
                Kind::Lookup => {
                    if let Some(r) = table.get(&x.key) {
                        out.push(pair(x, r));
                    }
                }
                Kind::Temporal if x.right => {
                    let vs = versions.entry(x.key).or_default();
                    let at = vs.partition_point(|v| v.ts <= x.ts);
                    vs.insert(at, x.clone());
                }
                Kind::Temporal => {
                    if x.ts <= wm {
                        late_l.push(row(x));
                    } else {
                        left.entry(x.key).or_default().push(x.clone());
                    }
                }
                Kind::Interval(lower, upper) => {
                    if x.ts <= wm {
                        if x.right {
                            late_r.push(row(x))
                        } else {
                            late_l.push(row(x))
                        }
                    } else if x.right {
                        for l in left.entry(x.key).or_default().iter() {
                            if l.ts + lower <= x.ts && x.ts <= l.ts + upper {
                                out.push(pair(l, x));
                            }
                        }
                        right.entry(x.key).or_default().push(x.clone());
                    } else {
                        for r in right.entry(x.key).or_default().iter() {
                            if x.ts + lower <= r.ts && r.ts <= x.ts + upper {
                                out.push(pair(x, r));
                            }
                        }
                        left.entry(x.key).or_default().push(x.clone());
                    }
                }
                Kind::Window(size) => {
                    if window_end(x.ts, size) - 1 <= wm {
                        if x.right {
                            late_r.push(row(x))
                        } else {
                            late_l.push(row(x))
                        }
                    } else if x.right {
                        right.entry(x.key).or_default().push(x.clone());
                    } else {
                        left.entry(x.key).or_default().push(x.clone());
                    }
                }
            }
            max_ts = max_ts.max(x.ts);
        }
        let next = max_ts - DELAY - 1;
        if next > wm {
            wm = next;
            fire(wm, &mut left, &mut right, &versions, &mut out);
        }
    }
    fire(i64::MAX, &mut left, &mut right, &versions, &mut out);
    out.sort();
    late_l.sort();
    late_r.sort();
    (out, late_l, late_r)
}

fn pipeline(kind: Kind, parallelism: usize) -> String {
    let shape = match kind {
        Kind::Lookup => "kind = \"lookup\"".to_owned(),
        Kind::Temporal => "kind = \"temporal\", time = \"ts\"".to_owned(),
        Kind::Interval(lower, upper) => {
            format!("kind = \"interval\", time = \"ts\", lower_ms = {lower}, upper_ms = {upper}")
        }
        Kind::Window(size) => format!("kind = \"window\", time = \"ts\", size_ms = {size}"),
    };
    format!(
        r#"
edges = ["rows -> split -> j -> out", "split:1 -> j", "j:1 -> late_left", "j:2 -> late_right"]
[pipeline]
batch_size = {BATCH}
[sources.rows]
type = "file"
path = "rows.jsonl"
schema = {{ side = "string", key = "int64", ts = "int64", v = "int64", op = "string" }}
event_time = {{ column = "ts", max_out_of_orderness_ms = {DELAY} }}
[agents.split]
module = {misbehave}
config = {{ mode = "split", column = "side" }}
[agents.j]
module = "builtin:join"
parallelism = {parallelism}
key = "key"
config = {{ {shape}, key = "key", op = "op" }}
[sinks.out]
type = "file"
path = "out.jsonl"
[sinks.late_left]
type = "file"
path = "late_left.jsonl"
[sinks.late_right]
type = "file"
path = "late_right.jsonl"
"#,
        misbehave = lit(MISBEHAVE)
    )
}

/// `rows` as the file source reads them.
fn jsonl(rows: &[In]) -> String {
    rows.iter()
        .map(|x| {
            format!(
                "{{\"side\":\"{}\",\"key\":{},\"ts\":{},\"v\":{},\"op\":\"{}\"}}\n",
                if x.right { "right" } else { "left" },
                x.key,
                x.ts,
                x.v,
                if x.delete { "delete" } else { "upsert" }
            )
        })
        .collect()
}

/// The late rows a run wrote are `late_l` (left) and `late_r` (right).
fn assert_late(s: &Scratch, late_l: &[String], late_r: &[String], context: &str) {
    let row = |r: &serde_json::Value| format!("{} {} {}", r["key"], r["ts"], r["v"]);
    assert_same_lines(
        &read(s, "late_left.jsonl", row),
        late_l,
        &format!("late left, {context}"),
    );
    assert_same_lines(
        &read(s, "late_right.jsonl", row),
        late_r,
        &format!("late right, {context}"),
    );
}

fn read(s: &Scratch, file: &str, f: impl Fn(&serde_json::Value) -> String) -> Vec<String> {
    let mut v: Vec<String> = s
        .read(file)
        .lines()
        .map(|l| f(&serde_json::from_str(l).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_join_kind_matches_a_brute_force_reference_on_out_of_order_input() {
    for (i, kind) in [
        Kind::Lookup,
        Kind::Temporal,
        Kind::Interval(-40, 30),
        Kind::Window(100),
    ]
    .into_iter()
    .enumerate()
    {
        let rows = input(40 + i as u64);
        let (expected, late_l, late_r) = reference(&rows, kind);
        assert!(expected.len() > 100, "{kind:?}: {} pairs", expected.len());
        if kind != Kind::Lookup {
            assert!(!late_l.is_empty(), "{kind:?}: the input has late left rows");
        }
        for parallelism in [1, 2] {
            let s = Scratch::new();
            s.write("rows.jsonl", &jsonl(&rows));
            s.run(&pipeline(kind, parallelism)).unwrap();
            let context = format!("{kind:?} at parallelism {parallelism}");
            let got = read(&s, "out.jsonl", |r| {
                format!(
                    "{} {} {} {} {}",
                    r["key"], r["ts"], r["v"], r["right_ts"], r["right_v"]
                )
            });
            assert_same_lines(&got, &expected, &context);
            assert_late(&s, &late_l, &late_r, &context);
        }
    }
}

#[test]
fn join_settings_are_checked_when_the_agent_starts() {
    let s = Scratch::new();
    s.write(
        "rows.jsonl",
        "{\"side\":\"left\",\"key\":1,\"ts\":1,\"v\":1,\"op\":\"upsert\"}\n",
    );
    for (shape, says) in [
        ("kind = \"outer\"", "unknown join kind `outer`"),
        (
            "kind = \"interval\", time = \"ts\", lower_ms = 5",
            "`interval` joins need upper_ms",
        ),
        (
            "kind = \"interval\", time = \"ts\", lower_ms = 5, upper_ms = 1",
            "lower_ms (5) must not exceed upper_ms (1)",
        ),
        (
            "kind = \"temporal\"",
            "`temporal` joins are in event time: set `time`",
        ),
    ] {
        let toml = pipeline(Kind::Lookup, 1).replace("kind = \"lookup\"", shape);
        let e = s.run(&toml).unwrap_err().to_string();
        assert!(e.contains(says), "{shape}: {e}");
    }
}

/// The aggregates the grouped join is given, and each key's result computed from `pairs`
/// (`key lts lv rts rv` lines, as [`pair`] writes them): `n`, `total`, `best`, `low`, `first`.
const GROUPED: &str = r#"aggregates = ["count(*) AS n", "sum(right.v) AS total", "max(right.v) AS best", "min(left.v) AS low", "first(left.v) AS opening"]"#;

fn grouped_reference(pairs: &[String]) -> Vec<String> {
    // key -> (n, total, best, low, (earliest left time, its v))
    type Group = (i64, i64, i64, i64, (i64, i64));
    let mut groups: BTreeMap<i64, Group> = BTreeMap::new();
    for p in pairs {
        let f: Vec<i64> = p.split(' ').map(|x| x.parse().unwrap()).collect();
        let (key, lts, lv, rv) = (f[0], f[1], f[2], f[4]);
        let g = groups
            .entry(key)
            .or_insert((0, 0, i64::MIN, i64::MAX, (i64::MAX, 0)));
        g.0 += 1;
        g.1 += rv;
        g.2 = g.2.max(rv);
        g.3 = g.3.min(lv);
        if lts < g.4.0 {
            g.4 = (lts, lv);
        }
    }
    groups
        .iter()
        .map(|(k, g)| format!("{k} {} {} {} {} {}", g.0, g.1, g.2, g.3, g.4.1))
        .collect()
}

/// Rows for the grouped join: many keys, each with left rows far apart in time, so that a key's
/// intervals end (and it is emitted) several times, and is reopened by a later left row.
fn sparse_input(seed: u64) -> Vec<In> {
    let mut rows = input(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    for x in &mut rows {
        x.key = rng.i64(0..12);
        x.delete = false;
    }
    rows
}

#[test]
fn an_interval_join_with_aggregates_emits_each_keys_aggregates_of_its_pairs_when_its_intervals_end()
{
    let (lower, upper) = (-40, 30);
    let rows = sparse_input(7);
    let (pairs, late_l, late_r) = reference(&rows, Kind::Interval(lower, upper));
    let expected = grouped_reference(&pairs);
    assert_eq!(expected.len(), 12, "every key has pairs");
    for parallelism in [1, 2] {
        let s = Scratch::new();
        s.write("rows.jsonl", &jsonl(&rows));
        // A file only appends: the changelog reaches it through an agent that passes it on.
        let toml = pipeline(Kind::Interval(lower, upper), parallelism)
            .replace(", op = \"op\"", &format!(", {GROUPED}"))
            .replace("j -> out", "j -> pass -> out")
            .replace(
                "[agents.j]",
                &format!(
                    "[agents.pass]\nmodule = {}\nconfig = {{ mode = \"pass\" }}\n[agents.j]",
                    lit(MISBEHAVE)
                ),
            );
        s.run(&toml).unwrap();
        let context = format!("grouped interval join at parallelism {parallelism}");
        // The output is a changelog keyed by `key`: each row replaces the key's earlier one.
        let mut last: BTreeMap<i64, String> = BTreeMap::new();
        let mut emitted: BTreeMap<i64, usize> = BTreeMap::new();
        for line in s.read("out.jsonl").lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(r["_op"], "upsert", "{context}: {line}");
            let key = r["key"].as_i64().unwrap();
            *emitted.entry(key).or_default() += 1;
            last.insert(
                key,
                format!(
                    "{key} {} {} {} {} {}",
                    r["n"], r["total"], r["best"], r["low"], r["opening"]
                ),
            );
        }
        assert_same_lines(&last.into_values().collect::<Vec<_>>(), &expected, &context);
        // Once per closing of a key's intervals, not once per pair: each row follows a pair
        // whose left row arrived after the key's previous row, so there are at most as many
        // rows as left rows with pairs.
        let rows_out: usize = emitted.values().sum();
        let left_rows: std::collections::BTreeSet<(&str, &str)> = pairs
            .iter()
            .map(|p| {
                let mut f = p.split(' ');
                (f.next().unwrap(), f.next().unwrap())
            })
            .collect();
        assert!(
            rows_out <= left_rows.len() && rows_out < pairs.len(),
            "{context}: {rows_out} rows for {} pairs of {} left rows",
            pairs.len(),
            left_rows.len()
        );
        assert!(
            emitted.values().any(|n| *n > 1),
            "{context}: some key is reopened by a later left row and emitted again: {emitted:?}"
        );
        assert_late(&s, &late_l, &late_r, &context);
    }
}

/// Rows whose left rows all have different keys, each right row taking the key of one of the
/// left rows nearest it in the input (before or after it, so some wait for their left row).
/// Times are a little out of order, within the watermark's delay but for a few far-off rows
/// that come late.
fn unique_left_input(seed: u64) -> Vec<In> {
    let mut rows = input(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    for (i, x) in rows.iter_mut().enumerate() {
        x.ts = 1_000 + i as i64 * 4 + rng.i64(-12..12);
    }
    for _ in 0..5 {
        let i = rng.usize(100..rows.len());
        rows[i].ts -= 400;
    }
    let lefts: Vec<usize> = (0..rows.len()).filter(|i| !rows[*i].right).collect();
    for (key, i) in lefts.iter().enumerate() {
        rows[*i].key = key as i64;
    }
    for (i, x) in rows.iter_mut().enumerate() {
        if x.right {
            let near = lefts.partition_point(|l| *l < i);
            let pick = (near + rng.usize(0..4))
                .saturating_sub(2)
                .min(lefts.len() - 1);
            x.key = pick as i64;
            x.delete = false;
        }
    }
    rows
}

#[test]
fn an_interval_join_with_aggregates_over_unique_left_keys_emits_each_key_once_to_an_append_only_sink()
 {
    let (lower, upper) = (-40, 30);
    let rows = unique_left_input(11);
    let (pairs, late_l, late_r) = reference(&rows, Kind::Interval(lower, upper));
    let expected = grouped_reference(&pairs);
    assert!(
        expected.len() > 300,
        "many keys have pairs: {}",
        expected.len()
    );
    assert!(
        !late_l.is_empty() || !late_r.is_empty(),
        "some rows come late"
    );
    for parallelism in [1, 2] {
        let s = Scratch::new();
        s.write("rows.jsonl", &jsonl(&rows));
        // Straight into a file: the output is append-only, one final row per key.
        let toml = pipeline(Kind::Interval(lower, upper), parallelism)
            .replace(", op = \"op\"", &format!(", {GROUPED}, left_unique = true"));
        s.run(&toml).unwrap();
        let context =
            format!("grouped interval join over unique left keys at parallelism {parallelism}");
        let mut out: BTreeMap<i64, String> = BTreeMap::new();
        for line in s.read("out.jsonl").lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                r.get("_op").is_none(),
                "{context}: no changelog column: {line}"
            );
            let key = r["key"].as_i64().unwrap();
            let result = format!(
                "{key} {} {} {} {} {}",
                r["n"], r["total"], r["best"], r["low"], r["opening"]
            );
            // Every key once, with the aggregates of all its pairs.
            assert!(
                out.insert(key, result).is_none(),
                "{context}: key {key} emitted twice"
            );
        }
        assert_same_lines(&out.into_values().collect::<Vec<_>>(), &expected, &context);
        assert_late(&s, &late_l, &late_r, &context);
    }
}

#[test]
fn left_unique_on_a_join_of_pairs_is_refused_naming_what_it_applies_to() {
    let s = Scratch::new();
    s.write(
        "rows.jsonl",
        "{\"side\":\"left\",\"key\":1,\"ts\":1,\"v\":1,\"op\":\"upsert\"}\n",
    );
    let toml = pipeline(Kind::Interval(0, 10), 1).replace(", op = \"op\"", ", left_unique = true");
    let e = s.run(&toml).unwrap_err().to_string();
    assert!(
        e.contains("`left_unique` applies to a join with `aggregates` (a grouped interval join)"),
        "{e}"
    );
}

#[test]
fn a_join_with_aggregates_names_the_setting_it_cannot_take() {
    let s = Scratch::new();
    s.write(
        "rows.jsonl",
        "{\"side\":\"left\",\"key\":1,\"ts\":1,\"v\":1,\"op\":\"upsert\"}\n",
    );
    for (shape, says) in [
        (
            r#"kind = "window", time = "ts", size_ms = 10, aggregates = ["count(*)"]"#,
            "`aggregates` group the pairs of an interval join, not of a `window` join",
        ),
        (
            r#"kind = "interval", time = "ts", lower_ms = 0, upper_ms = 5, aggregates = ["max(v)"]"#,
            "aggregate `max(v)`: name its column as left.NAME or right.NAME",
        ),
        (
            r#"kind = "interval", time = "ts", lower_ms = 0, upper_ms = 5, aggregates = []"#,
            "aggregates is empty",
        ),
        (
            r#"kind = "interval", time = "ts", lower_ms = 0, upper_ms = 5, aggregates = ["median(right.v)"]"#,
            "unknown function `median`",
        ),
        (
            r#"kind = "interval", time = "ts", lower_ms = 0, upper_ms = 5, aggregates = ["sum(right.op)"]"#,
            "aggregate `sum_op` needs a numeric column; `op` is Utf8",
        ),
        (
            r#"kind = "interval", time = "ts", lower_ms = 0, upper_ms = 5, aggregates = ["max(right.nope)"]"#,
            "reads column `nope` of the right input, which it lacks",
        ),
    ] {
        // A left and a right row of one key, so that both inputs' columns are read.
        s.write(
            "rows.jsonl",
            "{\"side\":\"left\",\"key\":1,\"ts\":1,\"v\":1,\"op\":\"upsert\"}\n{\"side\":\"right\",\"key\":1,\"ts\":2,\"v\":1,\"op\":\"upsert\"}\n",
        );
        let toml = pipeline(Kind::Lookup, 1)
            .replace("kind = \"lookup\"", shape)
            .replace(", op = \"op\"", "")
            .replace(
                "\"rows -> split -> j -> out\", \"split:1 -> j\", \"j:1 -> late_left\", \"j:2 -> late_right\"",
                "\"rows -> split -> j -> out\", \"split:1 -> j\"",
            )
            .replace("type = \"file\"\npath = \"out.jsonl\"", "type = \"stdout\"");
        let toml = &toml[..toml.find("[sinks.late_left]").unwrap()];
        let e = s.run(toml).unwrap_err().to_string();
        assert!(e.contains(says), "{shape}: {e}");
    }
}

#[test]
fn a_join_with_aggregates_into_an_append_only_file_is_refused_before_it_runs() {
    let s = Scratch::new();
    s.write(
        "rows.jsonl",
        "{\"side\":\"left\",\"key\":1,\"ts\":1,\"v\":1,\"op\":\"upsert\"}\n",
    );
    let toml = pipeline(Kind::Interval(0, 10), 1).replace(", op = \"op\"", &format!(", {GROUPED}"));
    let e = s.run(&toml).unwrap_err().to_string();
    assert!(
        e.contains("[sinks.out]: a file sink can only append, and agent `j` (builtin:join) sends it a changelog")
            && e.contains("an interval join with aggregates emits each key's result when its intervals end"),
        "{e}"
    );
    assert!(!s.files().contains(&"out.jsonl".to_owned()), "nothing ran");
}

#[test]
fn window_and_interval_joins_keep_no_state_for_a_key_once_nothing_can_match_it() {
    // 2 000 keys, each with a left and a right row close together in time, once.
    let rows: Vec<In> = (0..2_000)
        .flat_map(|k| {
            let ts = 1_000 + k * 10;
            [false, true].map(|right| In {
                right,
                key: k,
                ts: ts + i64::from(right),
                v: k,
                delete: false,
            })
        })
        .collect();
    for kind in [Kind::Window(100), Kind::Interval(-40, 30)] {
        let s = Scratch::new();
        s.write("rows.jsonl", &jsonl(&rows));
        let toml = pipeline(kind, 2).replace("[pipeline]\n", "[pipeline]\nstate = \"memory\"\n");
        let summary = s.run(&toml).unwrap();
        assert_eq!(
            s.read("out.jsonl").lines().count(),
            2_000,
            "{kind:?}: every pair"
        );
        // The metric is measured before each call's writes, so the clears of the last call (a
        // few keys of the last windows) are not in it. A key kept once its rows expired holds
        // about 55 bytes: 2 000 of them were 110 KB here.
        let kept = summary.agent_metrics["j"].sandbox.state_bytes();
        assert!(
            kept < 4_096,
            "{kind:?}: {kept} bytes of state kept after every key's rows expired"
        );
    }
}
