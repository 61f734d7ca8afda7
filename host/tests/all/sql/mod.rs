//! SQL pipelines through the `sabot` binary: the same results as TOML pipelines and as
//! references computed here, mistakes located by line and column, and `sabot explain`.

mod joins;

use std::collections::BTreeMap;

use crate::support::{Scratch, sabot, sabot_measured, stderr, stdout};

const TRADES: &str = "-- The golden `big-lit-trades` pipeline, in SQL.
CREATE TABLE trades (trade_id BIGINT, symbol VARCHAR, qty BIGINT, price DOUBLE, venue VARCHAR)
WITH ('connector' = 'file', 'path' = 'trades.csv');

CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');

INSERT INTO out
SELECT trade_id, symbol, qty * price AS notional
FROM trades
WHERE qty * price >= 10000 AND venue <> 'DARK';
";

/// The rows of a JSON Lines file of `s`.
pub(super) fn json_lines(s: &Scratch, file: &str) -> Vec<serde_json::Value> {
    s.read(file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn with_trades() -> Scratch {
    let s = Scratch::new();
    let csv =
        std::fs::read_to_string(sabot_test_artifacts::workspace().join("tests/data/trades.csv"))
            .unwrap();
    s.write("trades.csv", &csv);
    s
}

#[test]
fn a_sql_pipeline_writes_what_its_toml_twin_writes() {
    let s = with_trades();
    s.write("trades.sql", TRADES);
    let out = sabot(&["run", "trades.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let golden = std::fs::read_to_string(
        sabot_test_artifacts::workspace().join("tests/golden/big-lit-trades.jsonl"),
    )
    .unwrap();
    assert_eq!(s.read("out.jsonl"), golden);

    // UNION ALL: two filters that split the trades give every trade once.
    s.write(
        "union.sql",
        &format!(
            "{}INSERT INTO out SELECT trade_id FROM trades WHERE venue = 'DARK'
             UNION ALL SELECT trade_id FROM trades WHERE venue <> 'DARK';",
            TRADES
                .split("INSERT INTO")
                .next()
                .unwrap()
                .replace("out.jsonl", "union.jsonl")
        ),
    );
    let out = sabot(&["run", "union.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ids: Vec<i64> = s
        .read("union.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["trade_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=12).collect::<Vec<_>>());
}

#[test]
fn windowed_aggregates_in_sql_match_a_reference_computed_from_the_raw_rows() {
    let s = Scratch::new();
    s.write(
        "gen.sql",
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '7');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE per_minute (country VARCHAR, minute DOUBLE, n BIGINT, total DOUBLE)
         WITH ('connector' = 'file', 'path' = 'per_minute.jsonl');
         CREATE VIEW priced AS SELECT ts, UPPER(country) AS country, amount FROM transactions WHERE amount > 10;
         INSERT INTO raw SELECT country, amount, EXTRACT(EPOCH FROM ts) AS seconds FROM priced;
         INSERT INTO per_minute
         SELECT country, EXTRACT(EPOCH FROM TUMBLE_START(ts, INTERVAL '1' MINUTE)), COUNT(*), SUM(amount)
         FROM priced
         GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE)
         HAVING COUNT(*) > 400;",
    );
    let out = sabot(&["run", "gen.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));

    let rows = |file: &str| json_lines(&s, file);
    let mut expected: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
    for r in rows("raw.jsonl") {
        let minute = (r["seconds"].as_f64().unwrap() / 60.0).floor() as i64 * 60;
        let e = expected
            .entry((r["country"].as_str().unwrap().to_owned(), minute))
            .or_default();
        e.0 += 1;
        e.1 += r["amount"].as_f64().unwrap();
    }
    expected.retain(|_, (n, _)| *n > 400);
    let got: BTreeMap<(String, i64), (i64, f64)> = rows("per_minute.jsonl")
        .into_iter()
        .map(|r| {
            (
                (
                    r["country"].as_str().unwrap().to_owned(),
                    r["minute"].as_f64().unwrap() as i64,
                ),
                (r["n"].as_i64().unwrap(), r["total"].as_f64().unwrap()),
            )
        })
        .collect();
    assert!(
        expected.len() >= 5,
        "the reference has several windows: {expected:?}"
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, (n, total)) in &expected {
        let (gn, gtotal) = got[k];
        assert_eq!(gn, *n, "{k:?}");
        assert!(
            (gtotal - total).abs() <= 1e-6 * total.abs(),
            "{k:?}: {gtotal} vs {total}"
        );
    }
}

#[test]
fn windows_of_rows_match_a_reference_computed_from_the_raw_rows() {
    let s = Scratch::new();
    s.write(
        "over.sql",
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '11', 'cards' = '50');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE rows_out WITH ('connector' = 'file', 'path' = 'rows.jsonl');
         CREATE TABLE range_out WITH ('connector' = 'file', 'path' = 'range.jsonl');
         INSERT INTO raw SELECT txn_id, card_id, country, amount, EXTRACT(EPOCH FROM ts) AS seconds
         FROM transactions;
         INSERT INTO rows_out SELECT txn_id,
             AVG(amount) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS recent,
             LAG(country) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS before,
             COUNT(*) OVER (PARTITION BY card_id ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS n
         FROM transactions;
         INSERT INTO range_out SELECT txn_id,
             COUNT(*) OVER (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW) AS recent
         FROM transactions;",
    );
    let out = sabot(&["run", "over.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));

    // Each card's rows in time order (rows of one time in arrival order).
    let mut cards: BTreeMap<i64, Vec<(i64, usize, serde_json::Value)>> = BTreeMap::new();
    for (i, r) in json_lines(&s, "raw.jsonl").into_iter().enumerate() {
        let ms = (r["seconds"].as_f64().unwrap() * 1000.0).round() as i64;
        cards
            .entry(r["card_id"].as_i64().unwrap())
            .or_default()
            .push((ms, i, r));
    }
    let (mut rows, mut range) = (BTreeMap::new(), BTreeMap::new());
    for card in cards.values_mut() {
        card.sort_by_key(|(ms, i, _)| (*ms, *i));
        for (i, (ms, _, r)) in card.iter().enumerate() {
            let frame = &card[i.saturating_sub(2)..=i];
            let recent = frame
                .iter()
                .map(|f| f.2["amount"].as_f64().unwrap())
                .sum::<f64>()
                / frame.len() as f64;
            let before = i.checked_sub(1).map(|j| card[j].2["country"].clone());
            rows.insert(
                r["txn_id"].as_i64().unwrap(),
                format!(
                    "{recent:.6} {} {}",
                    before.unwrap_or(serde_json::Value::Null),
                    frame.len()
                ),
            );
            let within = card
                .iter()
                .filter(|(t, _, _)| *t >= ms - 600_000 && *t <= *ms)
                .count();
            range.insert(r["txn_id"].as_i64().unwrap(), within.to_string());
        }
    }
    let got = |file: &str, line: &dyn Fn(&serde_json::Value) -> String| {
        json_lines(&s, file)
            .iter()
            .map(|r| (r["txn_id"].as_i64().unwrap(), line(r)))
            .collect::<BTreeMap<_, _>>()
    };
    let got_rows = got("rows.jsonl", &|r| {
        format!(
            "{:.6} {} {}",
            r["recent"].as_f64().unwrap(),
            r["before"],
            r["n"]
        )
    });
    assert_eq!(got_rows.len(), 20_000, "every row once");
    assert_eq!(got_rows, rows);
    let got_range = got("range.jsonl", &|r| r["recent"].to_string());
    assert_eq!(got_range, range);
    assert!(
        range.values().any(|n| n != "1"),
        "some frames hold several rows"
    );
}

#[test]
fn sql_mistakes_exit_2_naming_the_file_line_and_column_with_a_caret() {
    let s = with_trades();
    for (sql, expected, line, caret) in [
        (
            TRADES.replace("qty * price AS notional", "qty * prce AS notional"),
            "unknown column `prce`",
            "8 | SELECT trade_id, symbol, qty * prce AS notional",
            "  |                          ^^^^^^^^^^^^^^^^^^^^^^",
        ),
        (
            TRADES.replace("FROM trades", "FROM trade"),
            "no table or view `trade` (tables and views: trades, out)",
            "9 | FROM trade",
            "  |      ^^^^^",
        ),
        (
            TRADES.replace("WHERE qty", "WHERE UPPER(qty)"),
            "argument 1 of UPPER must be text, got Int64",
            "10 | WHERE UPPER(qty) * price >= 10000 AND venue <> 'DARK';",
            "   |       ^",
        ),
        (
            TRADES.replace(
                "'connector' = 'file', 'path' = 'out.jsonl'",
                "'path' = 'out.jsonl'",
            ),
            "table `out` has no connector",
            "5 | CREATE TABLE out WITH ('path' = 'out.jsonl');",
            "  |              ^^^",
        ),
    ] {
        s.write("bad.sql", &sql);
        for command in ["validate", "run", "explain"] {
            let out = sabot(&[command, "bad.sql"], s.dir.path());
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{command}: {err}");
            assert!(
                err.contains("bad.sql:") && err.contains(expected),
                "{command}: {err}"
            );
            assert!(
                err.contains(line) && err.contains(caret),
                "{command}: {err}"
            );
        }
        assert!(!s.path("out.jsonl").exists(), "nothing ran");
    }
}

#[test]
fn a_primary_key_naming_a_column_the_connector_lacks_exits_2_pointing_at_it() {
    let s = Scratch::new();
    let q4 = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nexmark/sql/q4.sql"),
    )
    .unwrap();
    assert!(q4.contains("PRIMARY KEY (id) NOT ENFORCED"), "{q4}");
    s.write(
        "q4.sql",
        &q4.replace("PRIMARY KEY (id)", "PRIMARY KEY (ident)"),
    );
    for command in ["validate", "run", "explain"] {
        let out = sabot(&[command, "q4.sql"], s.dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains(
                "table `auction`: no column `ident` for the primary key (columns: id, item_name,"
            ) && err.contains("CREATE TABLE auction (PRIMARY KEY (ident) NOT ENFORCED,")
                && err.contains("^^^^^"),
            "{command}: {err}"
        );
    }
}

#[test]
fn explain_prints_the_operator_graph_of_sql_and_toml_pipelines() {
    let s = with_trades();
    s.write("trades.sql", TRADES);
    let out = sabot(&["explain", "trades.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "pipeline `trades`",
        "trades      file  (trade_id Int64, symbol Utf8, qty Int64, price Float64, venue Utf8)",
        "out_where   builtin:filter",
        "qty * price >= 10000 AND venue <> 'DARK'",
        "out_select  builtin:project",
        "  trades -> out_where\n  out_where -> out_select\n  out_select -> out\n",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    assert!(!s.path("out.jsonl").exists(), "explain runs nothing");

    let out = sabot(&["explain", "--json", "trades.sql"], s.dir.path());
    let graph: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        graph["agents"][0]["config"]["where"],
        "qty * price >= 10000 AND venue <> 'DARK'"
    );
    assert_eq!(graph["edges"].as_array().unwrap().len(), 3);

    // A TOML pipeline explains the same way.
    s.write(
        "p.toml",
        "edges = [\"gen -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 1\nevent_time = { column = \"ts\", max_out_of_orderness_ms = 50 }\n[sinks.out]\ntype = \"blackhole\"\n",
    );
    let out = sabot(&["explain", "p.toml"], s.dir.path());
    let text = stdout(&out);
    assert!(
        text.contains("event time `ts`, 50 ms out of order") && text.contains("gen -> out"),
        "{text}"
    );
}

#[test]
fn a_server_takes_a_pipeline_in_sql_and_answers_a_mistake_with_its_line_and_column() {
    let s = crate::serve::Server::start(&[]);
    let sql =
        "CREATE TABLE transactions WITH ('connector' = 'generator', 'count' = 5000, 'seed' = 3);
CREATE TABLE kept WITH ('connector' = 'blackhole');
INSERT INTO kept SELECT txn_id, UPPER(country) AS cc FROM transactions WHERE amount > 100;";

    let (status, body) = s.post("/v1/pipelines", "application/sql", sql.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("?name=NAME"),
        "{body}"
    );

    let bad = sql.replace("UPPER(country)", "UPPER(amount)");
    let (status, body) = s.post("/v1/pipelines?name=bad", "application/sql", bad.as_bytes());
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("bad.sql:3:33: type error in `UPPER(amount) AS cc`: argument 1 of UPPER must be text, got Float64"),
        "{error}"
    );
    assert!(error.contains("3 | INSERT INTO kept"), "{error}");

    let (status, body) = s.post(
        "/v1/pipelines?name=from-sql&start=true",
        "application/sql",
        sql.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let p = s.wait_status("from-sql", "finished", std::time::Duration::from_secs(60));
    let names: Vec<&str> = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["transactions", "kept_where", "kept_select", "kept"]);
    assert!(
        p["definition"]
            .as_str()
            .unwrap()
            .starts_with("# Compiled from SQL:\n# CREATE TABLE transactions"),
        "{p}"
    );
    let kept = p["nodes"][3]["rows_in"].as_u64().unwrap();
    assert!(kept > 0 && kept < 5000, "the filter kept some rows: {kept}");

    // `sabot submit FILE.sql` names the pipeline after the file.
    let scratch = Scratch::new();
    scratch.write("submitted.sql", sql);
    let file = scratch.path("submitted.sql");
    let out = s.cli(
        &["submit", file.to_str().unwrap(), "--start"],
        Some(crate::serve::TOKEN),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("pipeline submitted is"),
        "{}",
        stdout(&out)
    );
    s.wait_status("submitted", "finished", std::time::Duration::from_secs(60));
}

#[test]
fn the_readme_sql_example_runs_and_keeps_its_having() {
    let s = Scratch::new();
    let sql = std::fs::read_to_string(
        sabot_test_artifacts::workspace().join("examples/sql/card-activity.sql"),
    )
    .unwrap();
    s.write("card-activity.sql", &sql);
    let out = sabot(&["run", "card-activity.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = s
        .read("per_minute.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty());
    for r in &rows {
        assert!(r["n"].as_i64().unwrap() > 100, "HAVING COUNT(*) > 100: {r}");
        assert!(r["largest"].as_f64().unwrap() <= r["total_eur"].as_f64().unwrap());
    }
    // The stdout sink printed the big ones, each with an action.
    let big = stdout(&out);
    assert!(big.lines().count() > 0, "{big}");
    assert!(
        big.lines()
            .all(|l| l.contains("\"action\":\"ok\"") || l.contains("\"action\":\"review\"")),
        "{big}"
    );
}

#[test]
fn a_query_that_builds_huge_values_is_stopped_before_it_holds_them() {
    // Each value stays under the 1 MiB limit of a text function, but a batch of them would be
    // gigabytes: the expression library's budget of text per batch stops it before it builds
    // them (the built-in runs natively: no sandbox memory cap to rely on), and the host's
    // memory stays small.
    let s = Scratch::new();
    s.write(
        "huge.sql",
        "CREATE TABLE t WITH ('connector' = 'generator', 'count' = 100000);
         CREATE TABLE out WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT REPEAT(merchant_id, 100000) AS huge FROM t;",
    );
    let run = sabot_measured(&["run", "huge.sql"], s.dir.path());
    let err = stderr(&run.output);
    assert_eq!(run.output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("agent `out_select`")
            && err.contains("REPEAT would build more than 64 MiB of text for one batch"),
        "{err}"
    );
    assert!(
        run.peak_rss < 1 << 30,
        "the host stayed under 1 GiB (unbounded it would hold gigabytes): {} MiB",
        run.peak_rss >> 20
    );
}

#[test]
fn a_window_of_rows_or_a_ranking_as_wide_as_allowed_keeps_the_hosts_memory_small() {
    let s = Scratch::new();
    // One partition, a year-long RANGE frame: the frame would hold every row; the operator
    // stops at 10 000 and says so, before holding the rest.
    s.write(
        "range.sql",
        "CREATE TABLE t (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'generator', 'count' = 200000);
         CREATE TABLE out WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT txn_id,
             COUNT(*) OVER (ORDER BY ts RANGE BETWEEN INTERVAL '365' DAY PRECEDING AND CURRENT ROW) AS n
         FROM t;",
    );
    let run = sabot_measured(&["run", "range.sql"], s.dir.path());
    let err = stderr(&run.output);
    assert_eq!(run.output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("agent `out_over`")
            && err.contains("holds 10001 rows")
            && err.contains("at most 10000"),
        "{err}"
    );
    assert!(
        run.peak_rss < 1 << 30,
        "range frame: {} MiB",
        run.peak_rss >> 20
    );

    // The widest ranking (10 000 ranks) of all rows in one window, and the widest frame of
    // rows: they run, and ten times the rows cost the host no more memory.
    let wide = |rows: u64| {
        format!(
            "CREATE TABLE t (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'generator', 'count' = {rows});
             CREATE TABLE ranked WITH ('connector' = 'blackhole');
             CREATE TABLE moving WITH ('connector' = 'blackhole');
             INSERT INTO ranked SELECT txn_id, amount, r FROM (
                 SELECT txn_id, amount,
                     ROW_NUMBER() OVER (PARTITION BY TUMBLE(ts, INTERVAL '3650' DAY) ORDER BY amount DESC) AS r
                 FROM t) WHERE r <= 10000;
             INSERT INTO moving SELECT txn_id,
                 AVG(amount) OVER (ORDER BY ts ROWS BETWEEN 10000 PRECEDING AND CURRENT ROW) AS recent
             FROM t;"
        )
    };
    let mut peaks = Vec::new();
    for rows in [20_000, 200_000] {
        s.write("wide.sql", &wide(rows));
        let run = sabot_measured(&["run", "wide.sql"], s.dir.path());
        assert!(run.output.status.success(), "{}", stderr(&run.output));
        peaks.push(run.peak_rss);
    }
    assert!(
        peaks[1] < peaks[0] + (128 << 20),
        "20 000 rows: {} MiB, 200 000 rows: {} MiB",
        peaks[0] >> 20,
        peaks[1] >> 20
    );
}

/// `sabot sql` with `statements` on its standard input.
fn shell(statements: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let s = Scratch::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .arg("sql")
        .args(args)
        .current_dir(s.dir.path())
        .env("SABOT_CACHE_DIR", crate::support::cache_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(statements.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status, stdout(&out))
}

#[test]
fn the_shell_previews_a_bounded_run_of_a_query_against_an_unbounded_source_and_points_at_mistakes()
{
    let started = std::time::Instant::now();
    let (status, out) = shell(
        "CREATE TABLE t (WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
           WITH ('connector' = 'generator', 'rate' = '5000', 'cards' = '20');
         SELECT card_id, amount FROM t WHERE amount > 100;
         SELECT card_id, COUNT(*) AS n FROM t GROUP BY card_id;
         SELECT amout FROM t;
         CREATE TABLE u WITH ('connector' = 'nope');
         EXPLAIN SELECT country, COUNT(*) AS n FROM t GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);
         .quit
         SELECT 'never run' AS x FROM t;",
        &["--rows", "4", "--timeout", "2"],
    );
    assert!(status.success(), "{out}");
    // The first query: four rows of an endless source, stopped at the row limit.
    let first: Vec<&str> = out.lines().skip(1).take(7).collect();
    assert_eq!(first[0].replace(' ', ""), "card_id|amount", "{out}");
    assert!(first[1].starts_with("--"), "{out}");
    assert!(
        first[6].starts_with("(4 rows shown of ") && first[6].contains("stopped at the row limit"),
        "{out}"
    );
    for row in &first[2..6] {
        let amount: f64 = row.split('|').nth(1).unwrap().trim().parse().unwrap();
        assert!(amount > 100.0, "the WHERE applies: {row}");
    }
    // The updating query: its table as it stood at the time limit, one row per key.
    assert!(
        out.contains(
            "keys shown, the table as it stood when the run ended: stopped at the time limit"
        ),
        "{out}"
    );
    // Mistakes point at the statement as typed.
    assert!(
        out.contains("error: <shell>:5:8: unknown column `amout`"),
        "{out}"
    );
    assert!(out.contains("unknown connector 'nope'"), "{out}");
    assert!(out.contains("t -> sabot_preview_window"), "{out}");
    assert!(!out.contains("never run"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(240),
        "the previews are bounded"
    );
}

#[test]
fn aggregates_of_expressions_match_a_reference_computed_from_the_raw_rows() {
    let s = Scratch::new();
    s.write(
        "expr.sql",
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '5');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE per_minute WITH ('connector' = 'file', 'path' = 'per_minute.jsonl');
         INSERT INTO raw SELECT country, amount, EXTRACT(EPOCH FROM ts) AS seconds FROM transactions;
         INSERT INTO per_minute
         SELECT country, EXTRACT(EPOCH FROM window_start) AS minute,
                SUM(ROUND(amount * 0.92, 2)) AS eur,
                COUNT(CASE WHEN amount > 1000 THEN 1 END) AS big,
                MAX(amount * 0.92) - MIN(amount * 0.92) AS spread
         FROM transactions
         GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE);",
    );
    let out = sabot(&["run", "expr.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = |file: &str| json_lines(&s, file);
    // (eur, big, min, max) per country and minute.
    let mut expected: BTreeMap<(String, i64), (f64, i64, f64, f64)> = BTreeMap::new();
    for r in rows("raw.jsonl") {
        let minute = (r["seconds"].as_f64().unwrap() / 60.0).floor() as i64 * 60;
        let amount = r["amount"].as_f64().unwrap();
        let e = expected
            .entry((r["country"].as_str().unwrap().to_owned(), minute))
            .or_insert((0.0, 0, f64::MAX, f64::MIN));
        e.0 += (amount * 0.92 * 100.0).round() / 100.0;
        e.1 += i64::from(amount > 1000.0);
        e.2 = e.2.min(amount * 0.92);
        e.3 = e.3.max(amount * 0.92);
    }
    let got = rows("per_minute.jsonl");
    assert_eq!(got.len(), expected.len(), "one row per country and minute");
    for r in got {
        let key = (
            r["country"].as_str().unwrap().to_owned(),
            r["minute"].as_f64().unwrap() as i64,
        );
        let (eur, big, min, max) = expected[&key];
        assert!(
            (r["eur"].as_f64().unwrap() - eur).abs() < 1e-6 * eur.max(1.0),
            "{key:?}"
        );
        assert_eq!(r["big"].as_i64().unwrap(), big, "{key:?}");
        assert!(
            (r["spread"].as_f64().unwrap() - (max - min)).abs() < 1e-6,
            "{key:?}"
        );
    }
}

#[test]
fn a_group_by_of_several_columns_matches_a_reference_computed_from_the_raw_rows() {
    let s = Scratch::new();
    s.write(
        "multi.sql",
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '9');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE per_second WITH ('connector' = 'file', 'path' = 'per_second.jsonl');
         CREATE VIEW sized AS
         SELECT ts, country, amount > 1000 AS big, CASE WHEN amount > 5000 THEN NULL ELSE card_id % 3 END AS bucket, amount
         FROM transactions;
         INSERT INTO raw SELECT country, big, bucket, amount, EXTRACT(EPOCH FROM ts) AS seconds FROM sized;
         INSERT INTO per_second
         SELECT country, big, bucket, EXTRACT(EPOCH FROM window_start) AS second, COUNT(*) AS n, SUM(amount) AS total
         FROM sized
         GROUP BY country, big, bucket, TUMBLE(ts, INTERVAL '1' SECOND);",
    );
    let out = sabot(&["run", "multi.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    type Key = (String, bool, Option<i64>, i64);
    let mut expected: BTreeMap<Key, (i64, f64)> = BTreeMap::new();
    for r in json_lines(&s, "raw.jsonl") {
        let key = (
            r["country"].as_str().unwrap().to_owned(),
            r["big"].as_bool().unwrap(),
            r["bucket"].as_i64(),
            r["seconds"].as_f64().unwrap().floor() as i64,
        );
        let e = expected.entry(key).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += r["amount"].as_f64().unwrap();
    }
    assert!(
        expected.keys().any(|k| k.2.is_none()),
        "NULL is a group of its own"
    );
    let got: BTreeMap<Key, (i64, f64)> = json_lines(&s, "per_second.jsonl")
        .into_iter()
        .map(|r| {
            (
                (
                    r["country"].as_str().unwrap().to_owned(),
                    r["big"].as_bool().unwrap(),
                    r["bucket"].as_i64(),
                    r["second"].as_f64().unwrap() as i64,
                ),
                (r["n"].as_i64().unwrap(), r["total"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "one row per combination and second"
    );
    for (key, (n, total)) in &got {
        let (want_n, want_total) = expected[key];
        assert_eq!(*n, want_n, "{key:?}");
        assert!(
            (total - want_total).abs() < 1e-6 * want_total.max(1.0),
            "{key:?}"
        );
    }
}

#[test]
fn a_query_reading_a_materialized_view_gets_the_rows_the_view_keeps() {
    let s = Scratch::new();
    s.write(
        "read_view.sql",
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
         WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '4');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE busy WITH ('connector' = 'file', 'path' = 'busy.jsonl');
         CREATE MATERIALIZED VIEW per_second AS
         SELECT country, window_start, COUNT(*) AS n FROM transactions
         GROUP BY country, TUMBLE(ts, INTERVAL '1' SECOND);
         INSERT INTO raw SELECT country, EXTRACT(EPOCH FROM ts) AS seconds FROM transactions;
         INSERT INTO busy SELECT country, EXTRACT(EPOCH FROM window_start) AS second, n FROM per_second WHERE n > 60;",
    );
    let out = sabot(&["run", "read_view.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in json_lines(&s, "raw.jsonl") {
        let key = (
            r["country"].as_str().unwrap().to_owned(),
            r["seconds"].as_f64().unwrap().floor() as i64,
        );
        *counts.entry(key).or_default() += 1;
    }
    let expected: BTreeMap<(String, i64), i64> =
        counts.into_iter().filter(|(_, n)| *n > 60).collect();
    let got: BTreeMap<(String, i64), i64> = json_lines(&s, "busy.jsonl")
        .into_iter()
        .map(|r| {
            (
                (
                    r["country"].as_str().unwrap().to_owned(),
                    r["second"].as_f64().unwrap() as i64,
                ),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn a_lookup_join_against_an_updating_aggregate_sees_each_card_as_it_stands() {
    let s = Scratch::new();
    s.write(
        "lookup.sql",
        "CREATE TABLE transactions WITH ('connector' = 'generator', 'count' = '6000', 'rate' = '4000', 'cards' = '50', 'seed' = '2');
         CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
         CREATE TABLE joined WITH ('connector' = 'file', 'path' = 'joined.jsonl');
         CREATE VIEW counts AS SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id HAVING COUNT(*) < 100;
         INSERT INTO raw SELECT txn_id, card_id FROM transactions;
         INSERT INTO joined SELECT t.txn_id, t.card_id, c.n FROM transactions AS t
         JOIN counts FOR SYSTEM_TIME AS OF PROCTIME() AS c ON t.card_id = c.card_id;",
    );
    let out = sabot(&["run", "lookup.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut total: BTreeMap<i64, i64> = BTreeMap::new();
    for r in json_lines(&s, "raw.jsonl") {
        *total.entry(r["card_id"].as_i64().unwrap()).or_default() += 1;
    }
    let joined = json_lines(&s, "joined.jsonl");
    assert!(
        !joined.is_empty() && joined.len() <= 6000,
        "{}",
        joined.len()
    );
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &joined {
        assert_eq!(
            r.as_object().unwrap().len(),
            3,
            "no `_op` or other column: {r}"
        );
        let (card, n) = (r["card_id"].as_i64().unwrap(), r["n"].as_i64().unwrap());
        // The table holds each card's count as it stood, while it was under 100 (a delete
        // removes it after): never more, never less than what was seen before.
        assert!((1..100).contains(&n) && n <= total[&card], "{r}");
        let seen = last.entry(card).or_default();
        assert!(n >= *seen, "{r}: the card's count went back from {seen}");
        *seen = n;
    }
}
