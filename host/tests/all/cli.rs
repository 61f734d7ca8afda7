//! The `sabot` binary: exit codes, messages, the summary line.

use sabot_test_artifacts::{FRAUD_RULES, MISBEHAVE};

use crate::support::{Scratch, lit, sabot, stderr, stdout};

#[test]
fn version_is_printed() {
    let out = sabot(&["--version"], std::path::Path::new("."));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("sabot {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn run_prints_output_and_a_one_line_summary() {
    let s = Scratch::new();
    s.write(
        "p.toml",
        &format!(
            "edges = [\"gen -> m -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 50\n[agents.m]\nmodule = {}\n[sinks.out]\ntype = \"stdout\"\n",
            lit(MISBEHAVE)
        ),
    );
    let out = sabot(&["run", "p.toml"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 50);
    let err = stderr(&out);
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("sabot: pipeline"))
        .collect();
    assert_eq!(summary.len(), 1, "{err}");
    assert!(
        summary[0].contains("finished")
            && summary[0].contains("50 events in")
            && summary[0].contains("50 out"),
        "{err}"
    );
}

/// The `(latency p50 X, p99 Y)` of a summary line, in milliseconds.
fn summary_latency(line: &str) -> (f64, f64) {
    let ms = |text: &str| -> f64 {
        let (n, unit) = text.trim().split_once(' ').unwrap();
        n.parse::<f64>().unwrap() * if unit.starts_with("ms") { 1.0 } else { 1e3 }
    };
    let inner = line
        .split_once("(latency p50 ")
        .unwrap_or_else(|| panic!("no latency in: {line}"))
        .1;
    let (p50, rest) = inner.split_once(", p99 ").unwrap();
    (ms(p50), ms(rest.split_once(')').unwrap().0))
}

#[test]
fn the_summary_reports_end_to_end_latency_including_every_agent_on_the_way() {
    let s = Scratch::new();
    // Two agents that each sleep 40 ms on every batch, at 50 rows/s: each row waits for both.
    s.write(
        "p.toml",
        &format!(
            "edges = [\"gen -> a -> b -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 20\nrate = 50\n[agents.a]\nmodule = {m}\nconfig = {{ mode = \"sleep\", count = 40 }}\n[agents.b]\nmodule = {m}\nconfig = {{ mode = \"sleep\", count = 40 }}\n[sinks.out]\ntype = \"blackhole\"\n",
            m = lit(MISBEHAVE)
        ),
    );
    let out = sabot(&["run", "p.toml"], s.dir.path());
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("sabot: pipeline"))
        .unwrap();
    let (p50, p99) = summary_latency(line);
    let elapsed_ms: f64 = line
        .split_once(" in ")
        .and_then(|(_, rest)| rest.split_once(" s:"))
        .unwrap()
        .0
        .parse::<f64>()
        .unwrap()
        * 1e3;
    // Both sleeps count (a lower bound the sleeps guarantee, within the histogram's 5 %), and
    // no event took longer than the run.
    assert!(p50 >= 80.0 * 0.95, "p50 {p50} ms: {line}");
    assert!(p50 <= p99 && p99 <= elapsed_ms * 1.05, "{line}");
}

#[test]
fn an_invalid_pipeline_exits_2_naming_file_table_and_field() {
    let s = Scratch::new();
    s.write("p.toml", "edges = [\"gen -> out\"]\n[sources.gen]\ntype = \"generator\"\nrate = -5\n[sinks.out]\ntype = \"stdout\"\n");
    for command in ["validate", "run"] {
        let out = sabot(&[command, "p.toml"], s.dir.path());
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("p.toml: [sources.gen] field `rate`: expected events per second"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn every_built_in_operators_config_is_checked_before_the_run() {
    let s = Scratch::new();
    let pipeline = |module: &str, config: &str| {
        format!(
            "edges = [\"gen -> op -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[agents.op]\nmodule = \"builtin:{module}\"\nconfig = {config}\n[sinks.out]\ntype = \"stdout\"\n"
        )
    };
    for (module, config, expected) in [
        (
            "window",
            r#"{ kind = "tumbling", time = "ts", size_ms = 1000, aggregates = ["median(amount)"] }"#,
            "unknown function `median`",
        ),
        (
            "aggregate",
            r#"{ key = "card_id", aggregates = [] }"#,
            "aggregates is empty",
        ),
        (
            "top",
            r#"{ window = "ts", order = "amount", limit = 10001 }"#,
            "limit 10001 is out of range: expected 1 to 10000",
        ),
        (
            "over",
            r#"{ order = "ts", preceding = 10001, functions = ["avg(amount)"] }"#,
            "a frame reads at most 10000 rows",
        ),
        (
            "over",
            r#"{ order = "ts", functions = ["lag(amount, 0)"] }"#,
            "function `lag(amount, 0)`: offset `0`",
        ),
        (
            "join",
            r#"{ kind = "sideways", key = "card_id" }"#,
            "sideways",
        ),
    ] {
        s.write("p.toml", &pipeline(module, config));
        for command in ["validate", "run"] {
            let out = sabot(&[command, "p.toml"], s.dir.path());
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{command} {config}: {err}");
            assert!(
                err.contains("p.toml: [agents.op] field `config`") && err.contains(expected),
                "{command} {config}: {err}"
            );
            assert!(stdout(&out).is_empty(), "nothing ran");
        }
    }
}

#[test]
fn built_in_operator_expressions_are_checked_before_the_run_against_the_sources_columns() {
    let s = Scratch::new();
    let pipeline = |module: &str, config: &str| {
        format!(
            "edges = [\"gen -> op -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[agents.op]\nmodule = \"builtin:{module}\"\nconfig = {config}\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n"
        )
    };
    for (module, config, expected) in [
        (
            "filter",
            r#"{ where = "amount >>> 3" }"#,
            "field `config.where`: cannot parse expression `amount >>> 3`",
        ),
        (
            "filter",
            r#"{ where = "amont > 3" }"#,
            "field `config.where`: unknown column `amont` in `amont > 3` (the input has columns: txn_id,",
        ),
        (
            "filter",
            r#"{ where = "amount * 2" }"#,
            "a filter must be a boolean expression, this one is of type Float64; checked against the columns of source `gen`",
        ),
        (
            "filter",
            r#"{ wher = "amount > 3" }"#,
            "field `config.where`: expected config = { where = \"EXPRESSION\" }",
        ),
        (
            "project",
            r#"{ select = ["txn_id", "nope * 2 AS x"] }"#,
            "field `config.select`: unknown column `nope`",
        ),
        (
            "project",
            r#"{ select = ["UPPER(amount) AS a"] }"#,
            "argument 1 of UPPER must be text, got Float64",
        ),
        (
            "project",
            r#"{ select = ["SUBSTRING(country)"] }"#,
            "SUBSTRING takes 2 or 3 arguments, got 1",
        ),
        (
            "filter",
            r#"{ where = "REGEXP_LIKE(country, '[A-Z')" }"#,
            "REGEXP_LIKE: bad pattern `[A-Z`",
        ),
        (
            "filter",
            r#"{ where = "CASE WHEN amount > 1 THEN 'x' ELSE 2 END = 'x'" }"#,
            "CASE results do not mix: Utf8 and Int64",
        ),
        (
            "project",
            r#"{ select = ["NOW() AS seen"] }"#,
            "breaking exactly-once results",
        ),
        (
            "project",
            r#"{ select = [] }"#,
            "field `config.select`: is empty (expected at least one column or expression)",
        ),
    ] {
        s.write("p.toml", &pipeline(module, config));
        for command in ["validate", "run"] {
            let out = sabot(&[command, "p.toml"], s.dir.path());
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{command} {config}: {err}");
            assert!(
                err.contains(&format!("p.toml: [agents.op] {expected}")) || err.contains(expected),
                "{command} {config}: {err}"
            );
            assert!(err.contains("[agents.op]"), "{err}");
        }
        assert!(!s.path("out.jsonl").exists(), "nothing ran");
    }
    // What the operators accept passes, and runs.
    s.write(
        "p.toml",
        &pipeline(
            "filter",
            r#"{ where = "amount > 0 AND COALESCE(NULLIF(UPPER(country), 'FR'), '') <> ''" }"#,
        ),
    );
    let out = sabot(&["run", "p.toml"], s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_failing_agent_exits_1_with_the_agent_named() {
    let s = Scratch::new();
    s.write(
        "p.toml",
        &format!(
            "edges = [\"gen -> m -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 50\n[agents.m]\nmodule = {}\nconfig = {{ mode = \"panic\" }}\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n",
            lit(MISBEHAVE)
        ),
    );
    let out = sabot(&["run", "p.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: agent `m` (instance 0): trapped"),
        "{err}"
    );
    assert!(err.contains("misbehave was told to panic"), "{err}");
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn module_overrides_are_checked() {
    let s = Scratch::new();
    s.write("p.toml", "edges = [\"gen -> m -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 5\n[agents.m]\nmodule = \"builtin:filter\"\nconfig = { where = \"true\" }\n[sinks.out]\ntype = \"blackhole\"\n");
    let out = sabot(
        &["validate", "p.toml", "--module", "nope=x.wasm"],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the pipeline has no agent `nope` (agents: m)"),
        "{}",
        stderr(&out)
    );
    let out = sabot(
        &["validate", "p.toml", "--module", &format!("m={MISBEHAVE}")],
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("valid"), "{}", stderr(&out));
}

#[test]
fn inspect_describes_an_agent() {
    let out = sabot(&["inspect", FRAUD_RULES], std::path::Path::new("."));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("kind:     component"), "{text}");
    assert!(
        text.contains("world:    sabot:agent/timed-agent@0.1.1"),
        "{text}"
    );
    assert!(text.contains("sabot:agent/time-handler@0.1.1"), "{text}");
    assert!(
        text.contains(&format!(
            "sdk:      sabot-sdk {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(text.contains("sabot:agent/handler@0.1.1"), "{text}");
    assert!(text.contains("sabot:agent/types@0.1.1"), "{text}");
    // Its batched state calls go through the packed interface of 0.1.1.
    assert!(text.contains("sabot:agent/packed-state@0.1.1"), "{text}");

    let json = sabot(
        &["inspect", "--json", FRAUD_RULES],
        std::path::Path::new("."),
    );
    let info: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(info["world"], "sabot:agent/timed-agent@0.1.1");

    // A component of the plain world, without the event-time hooks, built against the frozen
    // first version of the contract: the version it was built against is the one shown.
    let json = sabot(
        &["inspect", "--json", sabot_test_artifacts::PLAIN],
        std::path::Path::new("."),
    );
    let info: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(info["world"], "sabot:agent/agent@0.1.0");
    assert!(
        info["imports"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("sabot:agent/state@0.1.0")),
        "{info:#}"
    );
}

#[test]
fn inspect_explains_why_a_module_is_not_an_agent() {
    let s = Scratch::new();
    std::fs::write(s.path("core.wasm"), wat::parse_str("(module)").unwrap()).unwrap();
    let out = sabot(&["inspect", "core.wasm"], s.dir.path());
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.contains("kind:     core module"), "{text}");
    assert!(
        text.contains("problem:") && text.contains("wasm32-wasip2"),
        "{text}"
    );
}

#[test]
fn a_closed_stdout_does_not_fail_the_run_or_lose_other_sinks() {
    use std::io::{BufRead, BufReader};
    let s = Scratch::new();
    s.write(
        "p.toml",
        "edges = [\"gen -> out\", \"gen -> copy\"]\n[sources.gen]\ntype = \"generator\"\ncount = 200000\n[sinks.out]\ntype = \"stdout\"\n[sinks.copy]\ntype = \"file\"\npath = \"copy.jsonl\"\n",
    );
    // `sabot run p.toml | head -1`
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["run", "p.toml"])
        .current_dir(s.dir.path())
        .env("SABOT_CACHE_DIR", crate::support::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"txn_id\":0,"), "{first}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.read("copy.jsonl").lines().count(), 200_000);
}

#[test]
fn ctrl_c_stops_an_endless_run_and_flushes_everything_in_flight() {
    let s = Scratch::new();
    s.write(
        "p.toml",
        &format!(
            "edges = [\"gen -> m -> out\"]\n[pipeline]\nbatch_size = 1000\n[sources.gen]\ntype = \"generator\"\nrate = 20000\n[agents.m]\nmodule = {}\nparallelism = 2\nkey = \"card_id\"\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n",
            lit(MISBEHAVE)
        ),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["run", "p.toml"])
        .current_dir(s.dir.path())
        .env("SABOT_CACHE_DIR", crate::support::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until events reach the sink's open part file: the run is under way. (An endless run
    // must not outlive a failed wait: it is killed first.)
    let partial = s.path(".out.jsonl.sabot-pending/open");
    let waited = std::time::Instant::now();
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) == 0 {
        if waited.elapsed() > std::time::Duration::from_secs(120) {
            let mut child = child;
            let _ = child.kill();
            panic!("no output after 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    let summary = err
        .lines()
        .find(|l| l.starts_with("sabot: pipeline"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(summary.contains("stopped"), "{summary}");
    // Every event the sources produced reached the committed output.
    let produced: u64 = summary
        .split(": ")
        .nth(2)
        .and_then(|rest| rest.split(" events in").next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap();
    assert!(produced > 0, "{summary}");
    assert_eq!(
        s.read("out.jsonl").lines().count() as u64,
        produced,
        "{summary}"
    );
}

#[test]
fn a_module_override_stands_in_for_a_module_that_was_never_built() {
    let s = Scratch::new();
    s.write("p.toml", "edges = [\"gen -> m -> out\"]\n[sources.gen]\ntype = \"generator\"\ncount = 5\n[agents.m]\nmodule = \"not-built-yet.wasm\"\n[sinks.out]\ntype = \"blackhole\"\n");
    let out = sabot(&["validate", "p.toml"], s.dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("[agents.m] field `module`: no such module file"),
        "{}",
        stderr(&out)
    );
    let out = sabot(
        &["run", "p.toml", "--module", &format!("m={MISBEHAVE}")],
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
