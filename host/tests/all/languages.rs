//! Agents in JavaScript, Python and Go, built from source with their SDKs, against the Rust agent:
//! the same fraud rules (`examples/fraud-detection/agents/`) on the same input flag the same
//! transactions, and the SDKs carry configuration and input errors to the host as errors.
//!
//! The toolchains come from `scripts/languages.sh` (run by `scripts/test`): `guest-sdk/js`'s npm
//! dependencies, a Python virtual environment at `$SABOT_VENV` with componentize-py, and Go.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sabot_test_artifacts::FRAUD_RULES;
use sabot_test_artifacts::languages::{self, Language};

use crate::support::{Scratch, assert_same_lines, sabot, sorted_lines, stderr};

fn repo() -> PathBuf {
    sabot_test_artifacts::workspace()
}

fn module(language: Language) -> &'static Path {
    languages::fraud_rules(language, Path::new(env!("CARGO_BIN_EXE_sabot")))
}

/// `examples/fraud-detection/languages.toml`, writing into `scratch`, `count` events.
fn pipeline(scratch: &Scratch, count: u64, config_override: Option<&str>) -> PathBuf {
    let mut toml = std::fs::read_to_string(repo().join("examples/fraud-detection/languages.toml"))
        .expect("read languages.toml")
        .replace(
            "path = \"out/flagged-languages.jsonl\"",
            "path = \"flagged.jsonl\"",
        )
        .replace("count = 200_000", &format!("count = {count}"));
    if let Some(config) = config_override {
        let start = toml
            .find("[agents.rules.config]")
            .expect("the example has a config table");
        let end = toml[start..].find("[sinks").expect("sinks follow") + start;
        toml.replace_range(start..end, &format!("[agents.rules.config]\n{config}\n\n"));
    }
    scratch.write("languages.toml", &toml)
}

/// `sabot run FILE --module AGENT=MODULE` in `scratch`.
fn run_with(scratch: &Scratch, file: &Path, agent: &str, module: &Path) -> std::process::Output {
    sabot(
        &[
            "run",
            file.to_str().unwrap(),
            "--module",
            &format!("{agent}={}", module.display()),
        ],
        scratch.dir.path(),
    )
}

/// What the Rust agent flags on the example's input.
fn rust_flagged() -> &'static [String] {
    static FLAGGED: OnceLock<Vec<String>> = OnceLock::new();
    FLAGGED.get_or_init(|| {
        let scratch = Scratch::new();
        let file = pipeline(&scratch, 200_000, None);
        let out = run_with(&scratch, &file, "rules", Path::new(FRAUD_RULES));
        assert!(out.status.success(), "the Rust agent: {}", stderr(&out));
        let flagged = sorted_lines(&scratch.read("flagged.jsonl"));
        assert!(
            flagged.len() > 40,
            "the example input should flag transactions of every rule, got {} lines",
            flagged.len()
        );
        for reason in [
            "over_limit",
            "blacklisted_merchant",
            "high_risk_country",
            "velocity",
        ] {
            assert!(
                flagged
                    .iter()
                    .any(|l| l.contains(&format!("\"reason\":\"{reason}\""))),
                "no transaction flagged for {reason}"
            );
        }
        flagged
    })
}

#[track_caller]
fn flags_what_rust_flags(module: &Path, language: Language) {
    let scratch = Scratch::new();
    let file = pipeline(&scratch, 200_000, None);
    let out = run_with(&scratch, &file, "rules", module);
    assert!(
        out.status.success(),
        "the {language} agent: {}",
        stderr(&out)
    );
    assert_same_lines(
        &sorted_lines(&scratch.read("flagged.jsonl")),
        rust_flagged(),
        &format!("{language} agent vs the Rust agent"),
    );
}

#[test]
fn the_javascript_agent_flags_exactly_what_the_rust_agent_flags() {
    flags_what_rust_flags(module(Language::JavaScript), Language::JavaScript);
}

#[test]
fn the_python_agent_flags_exactly_what_the_rust_agent_flags() {
    flags_what_rust_flags(module(Language::Python), Language::Python);
}

#[test]
fn the_go_agent_flags_exactly_what_the_rust_agent_flags() {
    flags_what_rust_flags(module(Language::Go), Language::Go);
}

/// Runs the example on a few events with `config` and returns the failed run's error output.
fn refused(module: &Path, config: &str, language: Language) -> String {
    let scratch = Scratch::new();
    let file = pipeline(&scratch, 1_000, Some(config));
    let out = run_with(&scratch, &file, "rules", module);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the {language} agent accepted {config}: {}",
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn every_language_refuses_a_bad_config_as_invalid_config_naming_the_field() {
    for language in languages::ALL {
        let err = refused(module(language), "over_limit_factor = -1.0", language);
        assert!(
            err.contains("invalid-config")
                && err.contains("over_limit_factor must be a positive number"),
            "{language}: {err}"
        );
    }
}

#[test]
fn every_language_reports_a_batch_without_a_needed_column_as_invalid_input() {
    for language in languages::ALL {
        let module = module(language);
        let scratch = Scratch::new();
        let toml = std::fs::read_to_string(pipeline(&scratch, 1_000, None))
            .unwrap()
            .replace(
                "edges = [\"transactions -> rules -> flagged\"]",
                "edges = [\"transactions -> drop -> rules -> flagged\"]\n\n[agents.drop]\nmodule = \"builtin:project\"\nconfig = { select = [\"txn_id\", \"ts\", \"card_id\", \"card_limit\", \"merchant_id\", \"country\"] }",
            );
        let file = scratch.write("languages.toml", &toml);
        let out = run_with(&scratch, &file, "rules", module);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{language}: {err}");
        assert!(
            err.contains("invalid-input") && err.contains("needs a column `amount`"),
            "{language}: {err}"
        );
        assert!(
            !scratch.path("flagged.jsonl").exists() || scratch.read("flagged.jsonl").is_empty(),
            "{language}: nothing was flagged from a batch that failed"
        );
    }
}

#[test]
fn sabot_new_agent_builds_and_runs_in_every_language_with_the_same_output() {
    let root = Scratch::new();
    let mut outputs: Vec<(String, Vec<String>)> = Vec::new();
    for lang in ["rust", "js", "python", "go"] {
        let dir = root.path(lang);
        let out = sabot(
            &[
                "new",
                "agent",
                "big-spenders",
                "--lang",
                lang,
                "--dir",
                dir.to_str().unwrap(),
            ],
            root.dir.path(),
        );
        assert!(out.status.success(), "sabot new ({lang}): {}", stderr(&out));
        let built = std::process::Command::new(dir.join("build.sh"))
            .current_dir(&dir)
            .env("SABOT", env!("CARGO_BIN_EXE_sabot"))
            .output()
            .expect("run build.sh");
        assert!(
            built.status.success(),
            "{lang}: build.sh failed:\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let ran = sabot(&["run", "pipeline.toml"], &dir);
        assert!(ran.status.success(), "{lang}: {}", stderr(&ran));
        let lines = sorted_lines(&std::fs::read_to_string(dir.join("out/big.jsonl")).unwrap());
        assert!(
            lines.len() > 1_000 && lines.iter().all(|l| l.contains("\"big_count\":")),
            "{lang}: {} lines",
            lines.len()
        );
        outputs.push((lang.to_owned(), lines));
    }
    for (lang, lines) in &outputs[1..] {
        assert_same_lines(
            lines,
            &outputs[0].1,
            &format!("{lang} scaffold vs rust scaffold"),
        );
    }
}

#[test]
fn sabot_new_refuses_a_directory_that_is_not_empty_and_a_bad_name() {
    let root = Scratch::new();
    std::fs::create_dir(root.path("taken")).unwrap();
    root.write("taken/file.txt", "mine");
    let out = sabot(
        &["new", "agent", "x", "--lang", "go", "--dir", "taken"],
        root.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already exists and is not empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        root.read("taken/file.txt"),
        "mine",
        "the directory was left alone"
    );

    let out = sabot(
        &["new", "agent", "Bad Name", "--lang", "js"],
        root.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("agent name `Bad Name`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sabot_componentize_refuses_what_is_not_a_core_module_of_the_agent_world() {
    let root = Scratch::new();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "text.wasm",
            b"hello, not wasm",
            "is not a core WebAssembly module",
        ),
        (
            // An empty core module: valid, but it exports none of the agent's functions.
            "empty.core.wasm",
            b"\0asm\x01\0\0\0",
            "does not fit the `timed-agent` world",
        ),
        ("component.wasm", b"", "is already a component"),
    ];
    for (name, bytes, expected) in cases {
        let path = if name == "component.wasm" {
            PathBuf::from(FRAUD_RULES)
        } else {
            root.path(name)
        };
        if name != "component.wasm" {
            std::fs::write(&path, bytes).unwrap();
        }
        let out = sabot(
            &[
                "componentize",
                path.to_str().unwrap(),
                "-o",
                root.path("out.wasm").to_str().unwrap(),
            ],
            root.dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert!(
            !root.path("out.wasm").exists(),
            "{name}: nothing is written"
        );
    }
}

/// The (card, end of its 10 s window) pairs of the transactions `transactions.jsonl` holds.
fn expected_timers(transactions: &str) -> Vec<String> {
    let mut pairs: Vec<(i64, i64)> = transactions
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let card = row["card_id"].as_i64().unwrap();
            let ts = chrono_free_millis(row["ts"].as_str().unwrap());
            (card, (ts / 10_000 + 1) * 10_000)
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut lines: Vec<String> = pairs
        .into_iter()
        .map(|(card, at)| format!("{{\"card\":{card},\"fired_at\":{at}}}"))
        .collect();
    lines.sort();
    lines
}

/// Milliseconds since the epoch of a `2026-01-01T00:01:40.010` timestamp (the generator's days,
/// all in January 2026).
fn chrono_free_millis(ts: &str) -> i64 {
    let (date, time) = ts.split_once('T').unwrap();
    let day: i64 = date[8..10].parse().unwrap();
    assert_eq!(
        &date[..8],
        "2026-01-",
        "the generator's timestamps start on 2026-01-01"
    );
    let mut parts = time.split(':');
    let h: i64 = parts.next().unwrap().parse().unwrap();
    let m: i64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    let jan_1_2026 = 1_767_225_600_000;
    jan_1_2026 + (day - 1) * 86_400_000 + h * 3_600_000 + m * 60_000 + (s * 1000.0).round() as i64
}

#[test]
fn timers_log_and_metrics_work_from_every_language() {
    let scratch = Scratch::new();
    let toml = r#"
edges = ["transactions -> timed -> fired", "transactions -> seen"]

[sources.transactions]
type = "generator"
count = 20_000
cards = 300
interval_ms = 10
seed = 3
event_time = { column = "ts" }

[agents.timed]
module = "timed.wasm"
parallelism = 2
key = "card_id"

[sinks.fired]
type = "file"
path = "fired.jsonl"

[sinks.seen]
type = "file"
path = "transactions.jsonl"
"#;
    let file = scratch.write("timed.toml", toml);
    let mut expected: Option<Vec<String>> = None;
    for language in languages::ALL {
        let module = languages::timed(language, Path::new(env!("CARGO_BIN_EXE_sabot")));
        let _ = std::fs::remove_file(scratch.path("fired.jsonl"));
        let _ = std::fs::remove_file(scratch.path("transactions.jsonl"));
        let out = run_with(&scratch, &file, "timed", module);
        assert!(out.status.success(), "{language}: {}", stderr(&out));
        let expected =
            expected.get_or_insert_with(|| expected_timers(&scratch.read("transactions.jsonl")));
        assert!(expected.len() > 1_000, "{} timers expected", expected.len());
        assert_same_lines(
            &sorted_lines(&scratch.read("fired.jsonl")),
            expected,
            &format!("{language}: every timer fires once, at its time"),
        );
    }
}

/// A keyed pipeline runs the Rust `misbehave` agent (`state` mode: every state primitive) and
/// is swapped under load to the same logic in JavaScript, then Python, then Go, then back to Rust:
/// each version reads the state the previous language wrote (JSON, the encoding every SDK
/// shares), so every card's count, sum, mean, list and map carry on across all four swaps,
/// exactly once.
#[test]
fn a_hot_swap_between_languages_keeps_every_kind_of_state_rust_js_python_go_rust() {
    use crate::serve::{Server, assert_exactly_once, module, stateful};
    use sabot_test_artifacts::{MISBEHAVE, component_variant};
    use std::time::Duration;

    const EVENTS: u64 = 200_000;
    let sabot_bin = Path::new(env!("CARGO_BIN_EXE_sabot"));
    let s = Server::start(&[]);
    let rust = module(MISBEHAVE);
    assert_eq!(s.upload("mis", "1", &rust).0, 201);
    assert_eq!(s.upload("mis", "2", &component_variant(&rust, "v2")).0, 201);
    for (name, language) in [
        ("js", Language::JavaScript),
        ("py", Language::Python),
        ("go", Language::Go),
    ] {
        let bytes = std::fs::read(languages::keep_state(language, sabot_bin)).unwrap();
        assert_eq!(s.upload(name, "1", &bytes).0, 201, "{language}");
    }
    s.create(&stateful("polyglot", "mis@1", EVENTS, 20_000), true);
    let rows_in = || {
        s.pipeline("polyglot")["nodes"][1]["rows_in"]
            .as_u64()
            .unwrap_or(0)
    };
    let chain = ["mis@1", "js@1", "py@1", "go@1", "mis@2"];
    for (i, pair) in chain.windows(2).enumerate() {
        let (from, to) = (pair[0], pair[1]);
        let at = 25_000 * (i as u64 + 1);
        s.wait_for("rows through the agent", Duration::from_secs(90), || {
            rows_in() > at
        });
        s.swap_running("polyglot", "m", from, to);
    }
    let done = s.wait_status("polyglot", "finished", Duration::from_secs(180));
    assert_eq!(
        done["restarts"], 0,
        "no version failed on another's state: {done:#}"
    );
    let swaps = done["swaps"].as_array().unwrap();
    assert!(
        swaps.len() == 4 && swaps.iter().all(|w| w["state"] == "active"),
        "{swaps:#?}"
    );
    let output = s.data().join("pipelines/polyglot/out/result.jsonl");
    assert_exactly_once(&output, EVENTS);
    // Each card's last row: the list holds every amount, the map at least one merchant, and the
    // mean is the sum over the count — whichever language wrote which part of them.
    let mut last = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(&output).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        last.insert(row["card_id"].as_i64().unwrap(), row);
    }
    assert!(last.len() > 400, "{} cards", last.len());
    for (card, row) in &last {
        let seen = row["seen"].as_u64().unwrap();
        assert_eq!(row["amounts"].as_u64(), Some(seen), "card {card}: {row}");
        let merchants = row["merchants"].as_u64().unwrap();
        assert!((1..=seen).contains(&merchants), "card {card}: {row}");
        let (sum, mean) = (row["sum"].as_f64().unwrap(), row["mean"].as_f64().unwrap());
        assert!(
            (mean - sum / seen as f64).abs() <= 1e-9 * sum.abs().max(1.0),
            "card {card}: {row}"
        );
    }
}
