//! Updating aggregates and materialized views: a `GROUP BY` without a window into Kafka read back
//! as a compacted table equal to a reference, refused where it can only be appended, and kept
//! in a view queried over HTTP while it runs and after a crash and resume.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::serve::{Server, TOKEN};
use crate::support::{Scratch, sabot, stderr};

/// The generated transactions both the query and its reference read.
fn generator(count: u64, rate: Option<u64>) -> String {
    let rate = rate.map_or(String::new(), |r| format!(", 'rate' = '{r}'"));
    format!(
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '{count}', 'seed' = '11', 'cards' = '200'{rate});\n"
    )
}

/// The raw rows of [`generator`], written by a pipeline of their own.
fn raw_rows(count: u64) -> Vec<Value> {
    let s = Scratch::new();
    s.write(
        "raw.sql",
        &format!(
            "{}CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
             INSERT INTO raw SELECT card_id, amount, country, EXTRACT(EPOCH FROM ts) AS seconds FROM transactions;",
            generator(count, None)
        ),
    );
    let out = sabot(&["run", "raw.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    s.read("raw.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Per card: how many transactions and their sum.
fn per_card(rows: &[Value]) -> BTreeMap<i64, (i64, f64)> {
    let mut out: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for r in rows {
        let e = out.entry(r["card_id"].as_i64().unwrap()).or_default();
        e.0 += 1;
        e.1 += r["amount"].as_f64().unwrap();
    }
    out
}

#[track_caller]
fn assert_close(got: f64, expected: f64, what: &str) {
    assert!(
        (got - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: {got} vs {expected}"
    );
}

/// Every record of `topic` as (key, value), `None` for a tombstone.
fn records(topic: &str) -> Vec<(String, Option<String>)> {
    crate::kafka::kcat_read(topic, "%k\t%S\t%s\n")
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let key = parts.next().unwrap().to_owned();
            let size: i64 = parts.next().unwrap().parse().unwrap();
            let value = parts.next().unwrap_or_default().to_owned();
            (key, (size >= 0).then_some(value))
        })
        .collect()
}

#[test]
fn updating_aggregates_into_kafka_read_back_as_a_compacted_table_equal_to_a_reference() {
    const COUNT: u64 = 30_000;
    const LIMIT: f64 = 30_000.0;
    let topic = crate::kafka::topic("card-totals");
    let s = Scratch::new();
    s.write(
        "totals.sql",
        &format!(
            "{}SET checkpoint.interval_ms = 300;
             CREATE TABLE totals WITH ('connector' = 'kafka', 'bootstrap' = '{}', 'topic' = '{topic}', 'key' = 'card_id');
             INSERT INTO totals
             SELECT card_id, COUNT(*) AS n, SUM(amount) AS total
             FROM transactions
             GROUP BY card_id
             HAVING SUM(amount) < {LIMIT};",
            generator(COUNT, None),
            crate::kafka::bootstrap()
        ),
    );
    let out = sabot(&["run", "totals.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));

    // Compacted: the last record of each key wins; a tombstone removes the key.
    let records = records(&topic);
    let mut table: BTreeMap<i64, Value> = BTreeMap::new();
    let mut tombstones = 0;
    for (key, value) in &records {
        let card: i64 = key.parse().unwrap();
        match value {
            Some(v) => {
                let row: Value = serde_json::from_str(v).unwrap();
                assert_eq!(row["card_id"], card, "the record's key is its group");
                assert!(row.get("_op").is_none(), "`_op` is not written: {row}");
                table.insert(card, row);
            }
            None => {
                tombstones += 1;
                assert!(
                    table.remove(&card).is_some(),
                    "a tombstone only for a key that was written: {card}"
                );
            }
        }
    }
    let mut expected = per_card(&raw_rows(COUNT));
    let crossed = expected.values().filter(|(_, t)| *t >= LIMIT).count();
    expected.retain(|_, (_, total)| *total < LIMIT);
    assert!(
        crossed > 0 && !expected.is_empty(),
        "the reference has cards on both sides of the HAVING: {crossed} crossed"
    );
    // A tombstone only for a card that qualified, then crossed the limit (checked above as it
    // happened); a card already over it when first emitted was never written.
    assert!(
        tombstones > 0 && tombstones <= crossed,
        "{tombstones} tombstones for {crossed} cards over the limit"
    );
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (card, (n, total)) in &expected {
        assert_eq!(table[card]["n"], *n, "card {card}");
        assert_close(
            table[card]["total"].as_f64().unwrap(),
            *total,
            &format!("card {card}"),
        );
    }
    assert!(
        records.len() > table.len() + tombstones,
        "keys were updated, not written once"
    );
}

#[test]
fn an_updating_query_into_an_append_only_sink_is_refused_at_validation() {
    let s = Scratch::new();
    s.write(
        "file.sql",
        &format!(
            "{}CREATE TABLE totals WITH ('connector' = 'file', 'path' = 'totals.jsonl');
INSERT INTO totals SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id;",
            generator(100, None)
        ),
    );
    for command in ["validate", "run"] {
        let out = sabot(&[command, "file.sql"], s.dir.path());
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("file.sql:4:13: table `totals` (connector 'file') can only append, and the query is updating"),
            "{err}"
        );
        assert!(err.contains("4 | INSERT INTO totals"), "{err}");
    }
    assert!(!s.path("totals.jsonl").exists(), "nothing was written");

    // The same pipeline in TOML: refused by the pipeline check, naming the sink.
    s.write(
        "file.toml",
        r#"edges = ["gen -> totals -> out"]
[sources.gen]
type = "generator"
count = 100
[agents.totals]
module = "builtin:aggregate"
key = "card_id"
config = { key = "card_id", aggregates = ["count(*) AS n"] }
[sinks.out]
type = "file"
path = "out.jsonl"
"#,
    );
    let out = sabot(&["validate", "file.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[sinks.out]: a file sink can only append, and agent `totals` (builtin:aggregate) sends it a changelog"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_aggregate_of_a_changelog_names_its_key_and_takes_each_change_back() {
    let s = Scratch::new();
    // An aggregate of the changelog must say what it is keyed by, to take changes back.
    let again = |config: &str| {
        format!(
            r#"edges = ["gen -> totals -> again -> out"]
[sources.gen]
type = "generator"
count = 100
[agents.totals]
module = "builtin:aggregate"
key = "card_id"
config = {{ key = "card_id", aggregates = ["count(*) AS n"] }}
[agents.again]
module = "builtin:aggregate"
key = "n"
config = {{ key = "n", aggregates = ["count(*) AS cards"]{config} }}
[sinks.out]
type = "stdout"
"#
        )
    };
    s.write("again.toml", &again(""));
    let out = sabot(&["validate", "again.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[agents.again] field `config`: has no `changelog_key`"),
        "{}",
        stderr(&out)
    );
    s.write("again.toml", &again(", changelog_key = \"card_id\""));
    let out = sabot(&["run", "again.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // How many cards have made each number of transactions, as it stood at the end: each card
    // counted once, in its last group.
    let mut last: BTreeMap<i64, i64> = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let n = row["n"].as_i64().unwrap();
        if row["_op"] == "delete" {
            last.remove(&n);
        } else {
            last.insert(n, row["cards"].as_i64().unwrap());
        }
    }
    let cards: i64 = last.values().sum();
    let transactions: i64 = last.iter().map(|(n, c)| n * c).sum();
    assert_eq!(transactions, 100, "{last:?}");
    assert!(cards > 0 && cards <= 100, "{last:?}");
}

/// A batch that touches a group without changing its result (a `MAX` it does not beat, a
/// `MIN` it does not undercut) emits nothing for it: no change is said twice, and the last row
/// of each key is still its result over every row.
#[test]
fn an_updating_aggregate_emits_a_group_only_when_its_result_changes() {
    let count = 4_000;
    let s = Scratch::new();
    s.write(
        "top.sql",
        &format!(
            "SET batch_size = 64;
             {}CREATE TABLE out WITH ('connector' = 'stdout');
             INSERT INTO out
             SELECT card_id, MAX(amount) AS top, MIN(amount) AS bottom
             FROM transactions GROUP BY card_id;",
            generator(count, None)
        ),
    );
    let out = sabot(&["run", "top.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut last: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    let mut emitted = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let card = row["card_id"].as_i64().unwrap();
        let now = (
            row["top"].as_f64().unwrap(),
            row["bottom"].as_f64().unwrap(),
        );
        assert_ne!(
            last.insert(card, now),
            Some(now),
            "card {card} said twice: {row}"
        );
        emitted += 1;
    }
    let mut expected: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for r in raw_rows(count) {
        let amount = r["amount"].as_f64().unwrap();
        let e = expected
            .entry(r["card_id"].as_i64().unwrap())
            .or_insert((amount, amount));
        *e = (e.0.max(amount), e.1.min(amount));
    }
    assert_eq!(last, expected);
    // 200 cards of 20 rows each: a record and a low are set ever more rarely.
    assert!(
        emitted < count as usize / 2,
        "{emitted} changes of {count} rows"
    );
}

/// The rows of a view, paged through with `limit` and `after`.
fn scan(s: &Server, view: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/views/{view}?limit={limit}&after={a}"),
            None => format!("/v1/views/{view}?limit={limit}"),
        };
        let (status, body) = s.get(&path);
        assert_eq!(status, 200, "{body}");
        let page = body["rows"].as_array().unwrap();
        assert!(page.len() <= limit);
        rows.extend(page.iter().cloned());
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return rows,
        }
    }
}

fn by_card(rows: &[Value]) -> BTreeMap<i64, (i64, f64)> {
    rows.iter()
        .map(|r| {
            (
                r["card_id"].as_i64().unwrap(),
                (r["n"].as_i64().unwrap(), r["total"].as_f64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_materialized_view_is_queried_while_it_runs_and_after_a_crash_and_resume() {
    const COUNT: u64 = 60_000;
    let s = Server::start(&[]);
    let sql = format!(
        "{}CREATE MATERIALIZED VIEW card_totals AS
         SELECT card_id, COUNT(*) AS n, SUM(amount) AS total FROM transactions GROUP BY card_id;
         CREATE MATERIALIZED VIEW per_minute AS
         SELECT country, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS window_start, COUNT(*) AS n
         FROM transactions GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);",
        generator(COUNT, Some(6_000))
    );
    let (status, body) = s.post(
        "/v1/pipelines?name=views&start=true",
        "application/sql",
        sql.as_bytes(),
    );
    assert!(status == 201 || status == 202, "{body}");

    // While it runs: every page is a consistent read of some rows, and counts only grow.
    // The first create compiles the built-in view and aggregate operators (202, then running).
    s.wait_for("rows in the view", Duration::from_secs(300), || {
        s.get("/v1/views/card_totals?limit=1").1["rows"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    let first = by_card(&scan(&s, "card_totals", 37));
    std::thread::sleep(Duration::from_millis(1500));
    let second = by_card(&scan(&s, "card_totals", 1000));
    assert!(!first.is_empty());
    for (card, (n, _)) in &first {
        assert!(
            second[card].0 >= *n,
            "card {card} went back: {n} → {}",
            second[card].0
        );
    }
    let seen: i64 = second.values().map(|(n, _)| n).sum();
    assert!(
        seen < COUNT as i64,
        "read while running: {seen} events so far"
    );
    // One key, and the list of views.
    let card = *second.keys().next().unwrap();
    let (status, one) = s.get(&format!("/v1/views/card_totals?key={card}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["found"], true, "{one}");
    assert_eq!(one["rows"][0]["card_id"], card, "{one}");
    let (_, missing) = s.get("/v1/views/card_totals?key=999999");
    assert_eq!(missing["found"], false, "{missing}");
    let (_, views) = s.get("/v1/views");
    let names: Vec<&str> = views
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["card_totals", "per_minute"], "{views}");
    // Mistakes name what is wrong.
    let (status, body) = s.get("/v1/views/nope");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no view `nope` (views: card_totals, per_minute)"),
        "{body}"
    );
    let (status, body) = s.get("/v1/views/card_totals?limit=0");
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.get("/v1/views/card_totals?limit=5&after=zz");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not a cursor"),
        "{body}"
    );

    // A crash mid-run: the view resumes from the newest checkpoint, and ends exactly right.
    let s = Server::start_in(s.crash(), &[]);
    let done = s.wait_status("views", "finished", Duration::from_secs(120));
    assert_eq!(done["restarts"], 0, "{done}");
    let raw = raw_rows(COUNT);
    let expected = per_card(&raw);
    let got = by_card(&scan(&s, "card_totals", 64));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (card, (n, total)) in &expected {
        assert_eq!(got[card].0, *n, "card {card}: each event counted once");
        assert_close(got[card].1, *total, &format!("card {card}"));
    }
    // The windowed view: one row per country and minute.
    let mut windows: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in &raw {
        let minute = (r["seconds"].as_f64().unwrap() / 60.0).floor() as i64;
        *windows
            .entry((r["country"].as_str().unwrap().to_owned(), minute))
            .or_default() += 1;
    }
    let rows = scan(&s, "per_minute", 500);
    assert_eq!(rows.len(), windows.len(), "one row per window");
    let country = rows[0]["country"].as_str().unwrap().to_owned();
    let (_, of_country) = s.get(&format!("/v1/views/per_minute?key={country}"));
    let of_country = of_country["rows"].as_array().unwrap();
    assert_eq!(
        of_country.len(),
        windows.keys().filter(|(c, _)| *c == country).count(),
        "a key's rows, one per window"
    );
    let starts: Vec<&str> = of_country
        .iter()
        .map(|r| r["window_start"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted, "in window order");
    let total: i64 = rows.iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert_eq!(total, COUNT as i64);

    // From the command line: one key, a first page, and a view that is not there.
    let (card, (n, _)) = expected.iter().next().unwrap();
    let out = s.cli(
        &["view", "card_totals", "--key", &card.to_string()],
        Some(TOKEN),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut lines = text.lines();
    assert_eq!(
        lines
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["CARD_ID", "N", "TOTAL"]),
        "{text}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..2], [card.to_string(), n.to_string()], "{text}");
    assert!(
        text.contains("(1 rows for key") && text.contains("in view card_totals of pipeline views"),
        "{text}"
    );
    let out = s.cli(&["view", "per_minute", "--limit", "3"], Some(TOKEN));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        5,
        "a header, 3 rows, a footer: {text}"
    );
    assert!(text.contains("more follow"), "{text}");
    let out = s.cli(&["view", "nope"], Some(TOKEN));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no view `nope`"), "{}", stderr(&out));
}

#[test]
fn an_over_aggregate_of_a_changelog_names_its_key_and_emits_a_changelog_itself() {
    let s = Scratch::new();
    let pipeline = |config: &str, sink: &str| {
        format!(
            r#"edges = ["gen -> totals -> nearby -> out"]
[sources.gen]
type = "generator"
count = 2000
[agents.totals]
module = "builtin:aggregate"
key = "card_id"
config = {{ key = "card_id", aggregates = ["count(*) AS n", "max(ts) AS latest"] }}
[agents.nearby]
module = "builtin:over"
config = {{ order = "latest", preceding = 1, functions = ["lag(card_id) AS before"]{config} }}
[sinks.out]
{sink}
"#
        )
    };
    s.write("over.toml", &pipeline("", "type = \"stdout\""));
    let out = sabot(&["validate", "over.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[agents.nearby] field `config`: has no `changelog_key`")
            && stderr(&out).contains("(builtin:over)"),
        "{}",
        stderr(&out)
    );
    let keyed = ", changelog_key = \"card_id\"";
    s.write(
        "over.toml",
        &pipeline(keyed, "type = \"file\"\npath = \"out.jsonl\""),
    );
    let out = sabot(&["validate", "over.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "[sinks.out]: a file sink can only append, and agent `nearby` (builtin:over) sends it a changelog"
        ),
        "{}",
        stderr(&out)
    );

    // Applied, the changelog is every card once, beside the card whose latest transaction came
    // just before its own.
    s.write("over.toml", &pipeline(keyed, "type = \"stdout\""));
    let out = sabot(&["run", "over.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut last: BTreeMap<i64, (String, String)> = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        assert_ne!(row["_op"], "delete", "nothing is deleted: {row}");
        last.insert(
            row["card_id"].as_i64().unwrap(),
            (row["latest"].to_string(), row["before"].to_string()),
        );
    }
    // Order the cards by their latest time (then id): each one's `before` is the previous card.
    let mut by_time: Vec<(String, i64, String)> = last
        .into_iter()
        .map(|(card, (latest, before))| (latest, card, before))
        .collect();
    by_time.sort();
    assert!(by_time.len() > 100, "{}", by_time.len());
    assert_eq!(by_time[0].2, "null");
    for pair in by_time.windows(2) {
        assert_eq!(pair[1].2, pair[0].1.to_string(), "{pair:?}");
    }
}
