//! Agents as SQL functions (`CREATE FUNCTION risk AS 'MODULE'`): the same rows from modules of
//! the four SDKs (Rust, JavaScript, Python, Go) as from a reference computed here, calls type-checked by asking the module
//! before anything runs, and uploaded modules named `NAME@VERSION` on a server.

use std::collections::BTreeMap;
use std::path::Path;

use sabot_test_artifacts::languages::{self, Language};
use sabot_test_artifacts::{PLAIN, SQL_FUNCTIONS};

use crate::support::{Scratch, sabot, stderr};

/// `examples/sql/functions` built with each SDK: Rust first, then JavaScript, Python and Go.
fn function_modules() -> Vec<(&'static str, String)> {
    let mut modules = vec![("Rust", SQL_FUNCTIONS.to_owned())];
    let sabot = Path::new(env!("CARGO_BIN_EXE_sabot"));
    for language in languages::ALL {
        let name = match language {
            Language::JavaScript => "JavaScript",
            Language::Python => "Python",
            Language::Go => "Go",
        };
        let module = languages::sql_functions(language, sabot);
        modules.push((name, module.to_str().unwrap().to_owned()));
    }
    modules
}

/// Scores transactions with `risk` and tiers their merchants with `tier`, keeping the risky
/// ones; `raw` keeps every transaction for the reference.
fn scoring(module: &str) -> String {
    format!(
        "CREATE TABLE transactions WITH ('connector' = 'generator', 'count' = '30000', 'seed' = '11', 'fraud_rate' = '0.05');
CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
CREATE TABLE scored WITH ('connector' = 'file', 'path' = 'scored.jsonl');
CREATE FUNCTION risk AS '{module}';
CREATE FUNCTION tier AS '{module}';

INSERT INTO raw SELECT txn_id, amount, country, merchant_id FROM transactions;

INSERT INTO scored
SELECT txn_id, risk(amount, country) AS score, UPPER(tier(merchant_id)) AS tier
FROM transactions
WHERE risk(amount, country) > 1.5;
"
    )
}

/// `examples/sql/functions`' risk score, written again here.
fn risk(amount: f64, country: &str) -> f64 {
    amount / 1000.0
        + if ["KP", "IR", "SY"].contains(&country) {
            2.0
        } else {
            0.0
        }
        + if amount > 5000.0 { 0.5 } else { 0.0 }
}

fn tier(merchant: &str) -> &'static str {
    match merchant.strip_prefix('m').map(str::parse::<u64>) {
        Some(Ok(n)) if n < 100 => "GOLD",
        Some(Ok(n)) if n < 1000 => "SILVER",
        Some(Ok(_)) => "BRONZE",
        _ => "UNKNOWN",
    }
}

fn rows(s: &Scratch, file: &str) -> Vec<serde_json::Value> {
    s.read(file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The scored rows of a run, by transaction, and the reference from its raw rows.
type Scored = BTreeMap<i64, (f64, String)>;

fn scored_and_expected(s: &Scratch) -> (Scored, Scored) {
    let mut expected = BTreeMap::new();
    for r in rows(s, "raw.jsonl") {
        let amount = r["amount"].as_f64().unwrap();
        let score = risk(amount, r["country"].as_str().unwrap());
        if score > 1.5 {
            let tier = tier(r["merchant_id"].as_str().unwrap()).to_owned();
            expected.insert(r["txn_id"].as_i64().unwrap(), (score, tier));
        }
    }
    let got = rows(s, "scored.jsonl")
        .into_iter()
        .map(|r| {
            (
                r["txn_id"].as_i64().unwrap(),
                (
                    r["score"].as_f64().unwrap(),
                    r["tier"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    (got, expected)
}

/// The same transactions, tiers and scores (within what reading JSON numbers back loses:
/// serde_json's default float parsing is not always correctly rounded).
fn assert_close(got: &Scored, expected: &Scored) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the transactions kept"
    );
    for (txn, (score, tier)) in got {
        let (want, want_tier) = &expected[txn];
        assert!(
            (score - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{txn}: {score} vs {want}"
        );
        assert_eq!(tier, want_tier, "{txn}");
    }
}

#[test]
fn functions_from_modules_of_every_sdk_give_the_rows_of_a_reference() {
    let rust = Scratch::new();
    rust.write("scoring.sql", &scoring(SQL_FUNCTIONS));
    let out = sabot(&["run", "scoring.sql"], rust.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let (got, expected) = scored_and_expected(&rust);
    assert_eq!(rows(&rust, "raw.jsonl").len(), 30_000);
    assert!(
        expected.len() > 100 && expected.len() < 29_000,
        "the filter keeps some rows: {}",
        expected.len()
    );
    let tiers: std::collections::BTreeSet<&str> =
        expected.values().map(|(_, t)| t.as_str()).collect();
    assert!(tiers.len() >= 2, "{tiers:?}");
    assert_close(&got, &expected);

    // The other SDKs' modules, given on the command line for both functions.
    for (language, module) in function_modules().into_iter().skip(1) {
        let s = Scratch::new();
        s.write("scoring.sql", &scoring("not-built-yet.wasm"));
        let out = sabot(
            &[
                "run",
                "scoring.sql",
                "--module",
                &format!("risk={module}"),
                "--module",
                &format!("tier={module}"),
            ],
            s.dir.path(),
        );
        assert!(out.status.success(), "{language}: {}", stderr(&out));
        let (got_other, _) = scored_and_expected(&s);
        // Both outputs are read back alike, so equal text reads as equal numbers.
        assert_eq!(
            got_other, got,
            "{language} module: the same rows, bit for bit"
        );
    }
}

#[test]
fn calls_are_type_checked_by_their_module_before_anything_runs() {
    for (_, module) in function_modules() {
        let module = module.as_str();
        let s = Scratch::new();
        let cases = [
            (
                scoring(module).replace(
                    "risk(amount, country) AS score",
                    "risk(card_id, country) AS score",
                ),
                "risk(Float64, Utf8) -> Float64: argument 1 (`card_id`) is Int64, expected Float64 (CAST it)",
                "scoring.sql:10:",
            ),
            (
                scoring(module).replace("risk(amount, country) > 1.5", "risk(amount) > 1.5"),
                "risk takes 2 argument(s)",
                "scoring.sql:12:",
            ),
            (
                format!(
                    "{}CREATE FUNCTION nope AS '{module}';\nINSERT INTO scored SELECT nope(country) AS n FROM transactions;",
                    scoring(module)
                ),
                "this module has no function `nope` (functions: risk, tier, median)",
                "scoring.sql:14:",
            ),
            (
                // What reads a result is checked against its type.
                scoring(module).replace("UPPER(tier(merchant_id))", "UPPER(risk(amount, country))"),
                "argument 1 of UPPER must be text, got Float64",
                "scoring.sql:10:",
            ),
            (scoring("no-such.wasm"), "no-such.wasm", "scoring.sql:"),
            (
                // A module that is not a function module is found out.
                scoring(PLAIN),
                "a function module returns",
                "scoring.sql:",
            ),
        ];
        for (sql, expected, at) in cases {
            s.write("scoring.sql", &sql);
            let out = sabot(&["validate", "scoring.sql"], s.dir.path());
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{module}: {expected}: {err}");
            assert!(
                err.contains(expected),
                "{module}: expected {expected:?} in: {err}"
            );
            assert!(err.contains(at), "{module}: expected {at:?} in: {err}");
            let run = sabot(&["run", "scoring.sql"], s.dir.path());
            assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
            assert!(!Path::new(&s.path("scored.jsonl")).exists(), "nothing ran");
        }
    }
}

#[test]
fn a_server_runs_functions_of_uploaded_modules_and_refuses_unknown_ones() {
    let s = crate::serve::Server::start(&[]);
    let bytes = std::fs::read(SQL_FUNCTIONS).unwrap();
    let (status, body) = s.upload("fx", "1.0.0", &bytes);
    assert_eq!(status, 201, "{body}");

    let sql = scoring("fx@1.0.0").replace("'count' = '30000'", "'count' = '5000'");
    let (status, body) = s.post(
        "/v1/pipelines?name=scoring&start=true",
        "application/sql",
        sql.as_bytes(),
    );
    // 202 while the function agents' instances are compiled for the run.
    assert!(status == 201 || status == 202, "{body}");
    let p = s.wait_status("scoring", "finished", std::time::Duration::from_secs(120));
    let node = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "risk")
        .unwrap_or_else(|| panic!("{p}"));
    assert_eq!(node["rows_in"].as_u64(), Some(5000), "{node}");
    let dir = s.data().join("pipelines/scoring");
    let scored = std::fs::read_to_string(dir.join("scored.jsonl")).unwrap();
    let raw = std::fs::read_to_string(dir.join("raw.jsonl")).unwrap();
    let expected = raw
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| {
            risk(
                r["amount"].as_f64().unwrap(),
                r["country"].as_str().unwrap(),
            ) > 1.5
        })
        .count();
    assert_eq!(scored.lines().count(), expected);

    for (module, expected) in [
        ("fx@2.0.0", "no module fx@2.0.0"),
        (
            "fx.wasm",
            "on a server, a function's module is NAME@VERSION",
        ),
    ] {
        let (status, body) = s.post(
            "/v1/pipelines?name=other",
            "application/sql",
            scoring(module).as_bytes(),
        );
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("other.sql:12:"), "{error}");
    }
    // A module that is in use cannot be deleted.
    assert_eq!(s.delete("/v1/modules/fx/1.0.0").0, 409);
}

#[test]
fn the_scoring_example_runs_with_its_module_given_on_the_command_line() {
    let s = Scratch::new();
    let sql =
        std::fs::read_to_string(sabot_test_artifacts::workspace().join("examples/sql/scoring.sql"))
            .unwrap();
    s.write("scoring.sql", &sql);
    let out = sabot(
        &[
            "run",
            "scoring.sql",
            "--module",
            &format!("risk={SQL_FUNCTIONS}"),
            "--module",
            &format!("tier={SQL_FUNCTIONS}"),
        ],
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = crate::support::stdout(&out);
    let rows: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty(), "{printed}");
    for r in &rows {
        let (amount, country) = (
            r["amount"].as_f64().unwrap(),
            r["country"].as_str().unwrap(),
        );
        let score = r["score"].as_f64().unwrap();
        assert!((score - risk(amount, country)).abs() < 1e-9 * score, "{r}");
        assert!(risk(amount, country) > 2.5, "{r}");
        assert_eq!(
            r["tier"].as_str().unwrap().to_ascii_uppercase(),
            tier(r["merchant_id"].as_str().unwrap()),
            "{r}"
        );
    }
}

/// The median per country and second, by a user-defined aggregate of `module`; `raw` keeps
/// every transaction for the reference.
fn medians(module: &str) -> String {
    format!(
        "CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '5');
CREATE TABLE raw WITH ('connector' = 'file', 'path' = 'raw.jsonl');
CREATE TABLE medians WITH ('connector' = 'file', 'path' = 'medians.jsonl');
CREATE AGGREGATE median AS '{module}';
INSERT INTO raw SELECT country, amount, EXTRACT(EPOCH FROM ts) AS seconds FROM transactions;
INSERT INTO medians
SELECT country, EXTRACT(EPOCH FROM window_start) AS second, median(amount) AS m, COUNT(*) AS n
FROM transactions
GROUP BY country, TUMBLE(ts, INTERVAL '1' SECOND);
"
    )
}

/// (median, count) per country and second.
type Medians = BTreeMap<(String, i64), (f64, i64)>;

fn medians_of(s: &Scratch) -> (Medians, Medians) {
    let mut values: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for r in rows(s, "raw.jsonl") {
        let second = r["seconds"].as_f64().unwrap().floor() as i64;
        values
            .entry((r["country"].as_str().unwrap().to_owned(), second))
            .or_default()
            .push(r["amount"].as_f64().unwrap());
    }
    let expected = values
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let m = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            (k, (m, n as i64))
        })
        .collect();
    let got = rows(s, "medians.jsonl")
        .into_iter()
        .map(|r| {
            (
                (
                    r["country"].as_str().unwrap().to_owned(),
                    r["second"].as_f64().unwrap() as i64,
                ),
                (r["m"].as_f64().unwrap(), r["n"].as_i64().unwrap()),
            )
        })
        .collect();
    (got, expected)
}

#[test]
fn a_user_defined_aggregate_from_every_sdk_gives_the_median_of_each_window() {
    let mut outputs = Vec::new();
    for (_, module) in function_modules() {
        let module = module.as_str();
        let s = Scratch::new();
        s.write("medians.sql", &medians(module));
        let out = sabot(&["run", "medians.sql"], s.dir.path());
        assert!(out.status.success(), "{module}: {}", stderr(&out));
        let (got, expected) = medians_of(&s);
        assert!(expected.len() > 50, "{} windows", expected.len());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{module}: one row per country and second"
        );
        for (key, (m, n)) in &got {
            let (want, want_n) = expected[key];
            assert_eq!(*n, want_n, "{module}: {key:?}");
            assert!(
                (m - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{module}: {key:?}: {m} vs {want}"
            );
        }
        outputs.push(got);
    }
    for other in &outputs[1..] {
        assert_eq!(&outputs[0], other, "every SDK agrees with Rust exactly");
    }

    // Without a window, a user-defined aggregate is refused where it is called.
    let s = Scratch::new();
    s.write(
        "medians.sql",
        &medians(SQL_FUNCTIONS)
            .replace(", TUMBLE(ts, INTERVAL '1' SECOND)", "")
            .replace("EXTRACT(EPOCH FROM window_start) AS second, ", ""),
    );
    let out = sabot(&["validate", "medians.sql"], s.dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the user-defined aggregate `median` needs a window"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_function_module_that_spins_or_hogs_when_asked_for_types_is_stopped_and_bounded() {
    let s = crate::serve::Server::start(&[]);
    let pid = s.child.id();
    let bytes = std::fs::read(languages::hostile_function_js()).unwrap();
    let (status, body) = s.upload("hostile", "1.0.0", &bytes);
    assert_eq!(status, 201, "{body}");
    let sql = |function: &str| {
        format!(
            "CREATE TABLE transactions WITH ('connector' = 'generator', 'count' = '10');
CREATE TABLE out WITH ('connector' = 'blackhole');
CREATE FUNCTION {function} AS 'hostile@1.0.0';
INSERT INTO out SELECT {function}(amount) AS x FROM transactions;"
        )
    };
    // The module behaves when it is not told to attack.
    let (status, body) = s.post(
        "/v1/pipelines?name=fine",
        "application/sql",
        sql("fine").as_bytes(),
    );
    assert!(status == 201 || status == 202, "{body}");
    let before = crate::control_plane::proc_status(pid, "VmRSS");

    let started = std::time::Instant::now();
    let (status, body) = s.post(
        "/v1/pipelines?name=spin",
        "application/sql",
        sql("spin").as_bytes(),
    );
    let took = started.elapsed();
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("deadline of 2000 ms") && error.contains("spin.sql:4:"),
        "{error}"
    );
    assert!(
        took < std::time::Duration::from_secs(20),
        "answered after {took:?}"
    );

    // Six hogs at once: at most `validations` (2) run together, each stopped at its cap.
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (s, text) = (&s, sql("hog"));
                scope.spawn(move || {
                    s.post(
                        &format!("/v1/pipelines?name=hog{i}"),
                        "application/sql",
                        text.as_bytes(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &answers {
        // 400 at the cap (a trap naming it, or the JavaScript engine's own out-of-memory error
        // when the cap refuses it more memory), or at the deadline when a loaded machine makes
        // the hog slower than its 2 s; or 503 for one that waited too long for its turn.
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            (*status == 400
                && (error.contains("memory cap of 256 MiB")
                    || error.contains("out of memory")
                    || error.contains("deadline of 2000 ms")))
                || *status == 503,
            "{status} {body}"
        );
    }
    let peak = crate::control_plane::proc_status(pid, "VmHWM");
    const MIB: u64 = 1 << 20;
    eprintln!(
        "six hogs planned: server RSS {} MiB before, peak {} MiB; the spin answered in {took:?}",
        before / MIB,
        peak / MIB
    );
    assert!(
        peak < before + 5 * 128 * MIB,
        "peak RSS {} MiB, {} MiB before: more than two hogs ran at once",
        peak / MIB,
        before / MIB
    );
    assert_eq!(s.get("/healthz").0, 200);
    let (_, list) = s.get("/v1/pipelines");
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["fine"], "{list}");
}

#[test]
fn an_agent_called_as_a_table_function_is_checked_by_validate_and_runs_keyed() {
    let s = Scratch::new();
    let rules = sabot_test_artifacts::FRAUD_RULES;
    let pipeline = |settings: &str| {
        format!(
            "SET parallelism = 2;
CREATE TABLE transactions (WATERMARK FOR ts AS ts)
WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '3', 'fraud_rate' = '0.01', 'cards' = '200');
CREATE FUNCTION rules AS '{rules}';
CREATE TABLE flagged WITH ('connector' = 'file', 'path' = 'flagged.jsonl');
INSERT INTO flagged
SELECT txn_id, card_id, reason FROM rules(TABLE transactions PARTITION BY card_id, {settings})
WHERE reason <> 'blacklisted_merchant';
"
        )
    };
    let cases = [
        (
            "over_limit_factor => 0",
            "table function `rules`",
            "over_limit_factor must be a positive number, got 0",
        ),
        (
            "over_limit_facto => 2",
            "table function `rules`",
            "unknown field `over_limit_facto`",
        ),
        (
            "velocity => JSON '{\"max_transactions\": 0, \"within_ms\": 10}'",
            "table function `rules`",
            "velocity needs max_transactions ≥ 1 and within_ms > 0",
        ),
        (
            "over_limit_factor => 2.0, velocity => 5",
            "table function `rules`",
            "velocity",
        ),
    ];
    for (settings, object, expected) in cases {
        s.write("rules.sql", &pipeline(settings));
        let out = sabot(&["validate", "rules.sql"], s.dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{settings}: {err}");
        assert!(err.contains(object), "{settings}: {err}");
        assert!(err.contains(expected), "{settings}: {err}");
        assert!(err.contains("rules.sql:7:"), "{settings}: located: {err}");
        assert!(!Path::new(&s.path("flagged.jsonl")).exists(), "nothing ran");
    }

    // What the agent returns is typed from its answer: a column it does not return is named.
    s.write(
        "rules.sql",
        &pipeline("over_limit_factor => 2.0").replace("reason <> ", "verdict <> "),
    );
    let out = sabot(&["validate", "rules.sql"], s.dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`verdict`"), "{}", stderr(&out));

    s.write("rules.sql", &pipeline("over_limit_factor => 2.0"));
    let out = sabot(&["explain", "rules.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let graph = crate::support::stdout(&out);
    assert!(graph.contains("×2"), "two instances: {graph}");
    assert!(graph.contains("card_id"), "keyed by card: {graph}");
    let out = sabot(&["run", "rules.sql"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let flagged = rows(&s, "flagged.jsonl");
    assert!(!flagged.is_empty());
    for row in &flagged {
        assert_eq!(row.as_object().unwrap().len(), 3, "{row}");
        assert_ne!(row["reason"], "blacklisted_merchant", "{row}");
    }
}
