//! SQL joins against references computed here from the raw rows.

use std::collections::{BTreeMap, BTreeSet};

use super::json_lines;
use crate::support::{Scratch, sabot, sabot_measured, stderr, stdout};

/// Two queries of distinct groups per window (composite keys, NULL among the values), joined on
/// the card and the window, as a join of the rows then one window of the distinct groups plans
/// them: every pair of a left group and a right group of one card and window, each once.
#[test]
fn a_join_of_two_queries_of_distinct_groups_matches_a_reference_computed_from_the_raw_rows() {
    let s = Scratch::new();
    s.write(
        "pairs.sql",
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '11');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE pairs WITH ('connector' = 'file', 'path' = 'pairs.jsonl');
         CREATE VIEW sized AS
         SELECT ts, card_id % 40 AS card, country,
                CASE WHEN amount > 4000 THEN NULL ELSE card_id % 3 END AS bucket, amount
         FROM transactions;
         INSERT INTO raw SELECT card, country, bucket, amount, EXTRACT(EPOCH FROM ts) AS seconds
         FROM sized;
         CREATE VIEW big AS
         SELECT card, country, TUMBLE_START(ts, INTERVAL '10' SECOND) AS s,
                TUMBLE_END(ts, INTERVAL '10' SECOND) AS e
         FROM sized WHERE amount > 1000
         GROUP BY card, country, TUMBLE(ts, INTERVAL '10' SECOND);
         CREATE VIEW small AS
         SELECT card, bucket, TUMBLE_START(ts, INTERVAL '10' SECOND) AS s,
                TUMBLE_END(ts, INTERVAL '10' SECOND) AS e
         FROM sized WHERE amount < 3000 OR amount > 4000
         GROUP BY card, bucket, TUMBLE(ts, INTERVAL '10' SECOND);
         INSERT INTO pairs
         SELECT b.card, b.country, m.bucket, EXTRACT(EPOCH FROM b.s) AS start,
                EXTRACT(EPOCH FROM m.e) AS finish
         FROM big AS b JOIN small AS m ON b.card = m.card AND b.s = m.s AND b.e = m.e;",
    );
    // Planned as the rows' join and one window of its groups.
    let explained = sabot(&["explain", "pairs.sql"], s.dir.path());
    assert!(explained.status.success(), "{}", stderr(&explained));
    let graph = stdout(&explained);
    assert_eq!(graph.matches("builtin:window").count(), 1, "{graph}");
    assert_eq!(graph.matches("builtin:join").count(), 1, "{graph}");

    let out = sabot(&["run", "pairs.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    type Left = (i64, String);
    type Right = (i64, Option<i64>);
    let mut left: BTreeMap<i64, BTreeSet<Left>> = BTreeMap::new();
    let mut right: BTreeMap<i64, BTreeSet<Right>> = BTreeMap::new();
    for r in json_lines(&s, "raw.jsonl") {
        let window = (r["seconds"].as_f64().unwrap() / 10.0).floor() as i64 * 10;
        let card = r["card"].as_i64().unwrap();
        let amount = r["amount"].as_f64().unwrap();
        if amount > 1000.0 {
            let country = r["country"].as_str().unwrap().to_owned();
            left.entry(window).or_default().insert((card, country));
        }
        if !(3000.0..=4000.0).contains(&amount) {
            right
                .entry(window)
                .or_default()
                .insert((card, r["bucket"].as_i64()));
        }
    }
    let mut expected = Vec::new();
    for (window, groups) in &left {
        for (card, country) in groups {
            for (c, bucket) in right.get(window).into_iter().flatten() {
                if c == card {
                    expected.push(format!(
                        "{card} {country} {bucket:?} {window} {}",
                        window + 10
                    ));
                }
            }
        }
    }
    expected.sort();
    assert!(
        expected.iter().any(|l| l.contains(" None ")),
        "NULL is a group of its own"
    );
    let mut got: Vec<String> = json_lines(&s, "pairs.jsonl")
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {} {}",
                r["card"],
                r["country"].as_str().unwrap(),
                r["bucket"].as_i64(),
                r["start"].as_f64().unwrap() as i64,
                r["finish"].as_f64().unwrap() as i64,
            )
        })
        .collect();
    got.sort();
    // Each pair once: a group seen in several rows of a window is still one group.
    assert_eq!(got.len(), expected.len(), "one row per pair of groups");
    assert_eq!(got, expected);
}

/// A file of as many rewritten joins as a pipeline may declare is planned in about the memory
/// the same joins planned as written take: the rewrite keeps no more than a description of
/// each side's rows, and what it stops reading is removed (each edge read once).
#[test]
fn a_file_of_hundreds_of_joins_of_distinct_groups_plans_in_the_memory_of_the_plain_plan() {
    let s = Scratch::new();
    let sub = |i: usize, aggregate: &str| {
        format!(
            "(SELECT card_id, country, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS s,
                     TUMBLE_END(ts, INTERVAL '1' MINUTE) AS e{aggregate}
              FROM transactions WHERE amount > {i}
              GROUP BY card_id, country, TUMBLE(ts, INTERVAL '1' MINUTE))"
        )
    };
    let joins = 490;
    let file = |aggregate: &str| {
        let mut sql = "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
                       WITH ('connector' = 'generator', 'count' = '100');\n"
            .to_owned();
        for i in 0..joins {
            sql += &format!(
                "CREATE TABLE o{i} WITH ('connector' = 'blackhole');
                 INSERT INTO o{i} SELECT b.card_id, b.country, c.country AS other, b.s
                 FROM {} AS b JOIN {} AS c
                 ON b.card_id = c.card_id AND b.s = c.s AND b.e = c.e;\n",
                sub(i, aggregate),
                sub(i + 1, aggregate)
            );
        }
        sql
    };
    s.write("rewritten.sql", &file(""));
    s.write("plain.sql", &file(", COUNT(*) AS n"));
    let mut peak = Vec::new();
    // The least of three runs each: a process's peak also depends on when its allocator's
    // threads return memory, which a busy machine delays.
    for (name, windows) in [("rewritten.sql", joins), ("plain.sql", 2 * joins)] {
        let mut least = u64::MAX;
        for _ in 0..3 {
            let run = sabot_measured(&["explain", name], s.dir.path());
            assert!(run.output.status.success(), "{}", stderr(&run.output));
            let graph = stdout(&run.output);
            assert_eq!(graph.matches("builtin:window").count(), windows, "{name}");
            assert_eq!(graph.matches("builtin:join").count(), joins, "{name}");
            least = least.min(run.peak_rss);
        }
        peak.push(least);
    }
    assert!(
        peak[0] < peak[1] * 13 / 10,
        "planning the rewritten joins peaked at {} MiB, as written at {} MiB",
        peak[0] >> 20,
        peak[1] >> 20
    );
}
