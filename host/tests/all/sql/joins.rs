//! SQL joins against references computed here from the raw rows.

use std::collections::{BTreeMap, BTreeSet};

use super::json_lines;
use crate::support::{Scratch, sabot, stderr, stdout};

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
