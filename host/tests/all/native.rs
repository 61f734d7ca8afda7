//! The built-in operators run natively: the same rows as their Wasm components, no compile on a
//! first run, state written by one form read by the other, and the budgets a native call cannot
//! be fenced by from outside (output rows, deadline) checked as it builds.

use std::sync::Arc;

use sabot_host::wasm::{Builtins, CacheOutcome, CompileCache, ModuleSource, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

use crate::checkpoint::run_in_on;

use crate::support::{Scratch, assert_same_lines, cache_dir, sabot_measured, sorted_lines, stderr};

/// A runtime whose built-ins run as `builtins` says, over the tests' shared compile cache.
fn runtime_of(builtins: Builtins) -> Arc<WasmRuntime> {
    WasmRuntime::with_builtins(CompileCache::new(Some(cache_dir())), builtins).unwrap()
}

#[test]
fn built_in_operators_run_natively_and_a_first_run_compiles_nothing() {
    let cold = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::with_builtins(
        CompileCache::new(Some(cold.path().into())),
        Builtins::Native,
    )
    .unwrap();
    for name in [
        "filter",
        "project",
        "window",
        "join",
        "aggregate",
        "view",
        "top",
        "over",
    ] {
        let module = runtime.load(&ModuleSource::Builtin(name.into())).unwrap();
        assert!(module.is_native(), "{name}");
        assert_eq!(module.cache, CacheOutcome::Native, "{name}");
        assert!(module.has_time_handler(), "{name}");
    }
    let s = Scratch::new();
    let toml = r#"
edges = ["gen -> big -> w -> out"]
[sources.gen]
type = "generator"
count = 20000
event_time = { column = "ts" }
[agents.big]
module = "builtin:filter"
config = { where = "amount > 100" }
[agents.w]
module = "builtin:window"
key = "country"
config = { kind = "tumbling", size_ms = 60000, time = "ts", key = "country", aggregates = ["count(*) AS n"] }
[sinks.out]
type = "file"
path = "out.jsonl"
"#;
    let path = s.write("pipeline.toml", toml);
    let summary = Pipeline::new(PipelineSpec::load(&path).unwrap(), runtime)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert_eq!(summary.events_in, 20_000);
    assert!(!s.read("out.jsonl").is_empty());
    let compiled: Vec<_> = std::fs::read_dir(cold.path())
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(compiled.is_empty(), "nothing compiled: {compiled:?}");
}

#[test]
fn nexmark_queries_in_sql_give_the_same_rows_natively_and_in_the_sandbox() {
    let (native, wasm) = (runtime_of(Builtins::Native), runtime_of(Builtins::Wasm));
    // A stream join, sliding windows, a ranking, a window join. (q4's updating aggregates
    // interleave their upserts as the instances race, natively or not: its own test checks
    // the final averages against a reference, with the built-ins native as every test runs them.)
    for query in ["sql/q3.sql", "sql/q5.sql", "sql/q7.sql", "sql/q8.sql"] {
        let lines = |rows: Vec<serde_json::Value>| {
            sorted_lines(&rows.iter().map(|r| format!("{r}\n")).collect::<String>())
        };
        let natively = lines(crate::nexmark::run_on(query, native.clone()));
        assert!(!natively.is_empty(), "{query}");
        assert_same_lines(
            &natively,
            &lines(crate::nexmark::run_on(query, wasm.clone())),
            query,
        );
    }
}

#[test]
fn window_state_checkpointed_by_the_sandboxed_operator_resumes_natively_and_back() {
    let toml = |rate: u64| {
        format!(
            r#"
edges = ["gen -> w -> out"]
[pipeline]
batch_size = 500
state = "rocksdb"
[pipeline.checkpoint]
interval_ms = 50
[sources.gen]
type = "generator"
count = 60000
rate = {rate}
cards = 50
event_time = {{ column = "ts" }}
[agents.w]
module = "builtin:window"
parallelism = 2
key = "card_id"
config = {{ kind = "tumbling", size_ms = 1000, time = "ts", key = "card_id", aggregates = ["count(*) AS n", "sum(amount) AS total", "last(country)"] }}
[sinks.out]
type = "file"
path = "out.jsonl"
"#
        )
    };
    let reference = Scratch::new();
    run_in_on(
        &reference,
        &toml(0),
        runtime_of(Builtins::Native),
        None,
        false,
    )
    .unwrap();
    let expected = sorted_lines(&reference.read("out.jsonl"));
    assert_eq!(expected.len(), 60 * 50, "one row per card and second");
    for (first, then) in [
        (Builtins::Wasm, Builtins::Native),
        (Builtins::Native, Builtins::Wasm),
    ] {
        let s = Scratch::new();
        let stopped = run_in_on(&s, &toml(40_000), runtime_of(first), Some(3), false).unwrap();
        assert!(stopped.interrupted && stopped.events_in < 60_000);
        let resumed = run_in_on(&s, &toml(40_000), runtime_of(then), None, false).unwrap();
        assert_eq!(resumed.restored_from, stopped.final_checkpoint);
        assert_eq!(stopped.events_in + resumed.events_in, 60_000);
        assert_same_lines(
            &sorted_lines(&s.read("out.jsonl")),
            &expected,
            &format!("{first:?} then {then:?}"),
        );
    }
}

#[test]
fn a_join_whose_pairs_would_pass_the_call_budget_fails_before_holding_them() {
    // Every row of a country joins every row of that country within an hour: billions of
    // pairs. The native join counts its pairs against the call's row budget as it builds them
    // and stops at the budget, naming it; the host never holds the pairs.
    let s = Scratch::new();
    s.write(
        "join.sql",
        "CREATE TABLE a (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'generator', 'count' = '200000', 'seed' = '1');
         CREATE TABLE b (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'generator', 'count' = '200000', 'seed' = '2');
         CREATE TABLE out WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT a.txn_id, b.txn_id AS other FROM a JOIN b
         ON a.country = b.country AND b.ts BETWEEN a.ts - INTERVAL '1' HOUR AND a.ts + INTERVAL '1' HOUR;",
    );
    let run = sabot_measured(&["run", "join.sql"], s.dir.path());
    let err = stderr(&run.output);
    assert_eq!(run.output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("agent `out_join`")
            && err.contains("limits.max_output_rows")
            && err.contains("was about to emit"),
        "{err}"
    );
    assert!(
        run.peak_rss < 1 << 30,
        "the host stayed under 1 GiB: {} MiB",
        run.peak_rss >> 20
    );
}

#[test]
fn a_native_join_folding_more_pairs_than_its_deadline_allows_is_stopped_at_the_deadline() {
    // A grouped interval join on a column of a few values: each row folds every row of its
    // country within an hour, so one call's work grows with the product of its inputs. The
    // native join checks the call's deadline per input row and stops it, naming the limit.
    let s = Scratch::new();
    let toml = r#"
edges = ["a -> j", "b -> j", "j -> out"]
[sources.a]
type = "generator"
count = 400000
seed = 1
event_time = { column = "ts" }
[sources.b]
type = "generator"
count = 400000
seed = 2
event_time = { column = "ts" }
[agents.j]
module = "builtin:join"
config = { kind = "interval", key = "country", time = "ts", lower_ms = -3600000, upper_ms = 3600000, aggregates = ["count(*) AS n"] }
limits = { deadline_ms = 200 }
[sinks.out]
type = "blackhole"
"#;
    s.write("pipeline.toml", toml);
    let run = sabot_measured(&["run", "pipeline.toml"], s.dir.path());
    let err = stderr(&run.output);
    assert_eq!(run.output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("agent `j`") && err.contains("exceeded its deadline of 200 ms"),
        "{err}"
    );
    assert!(
        run.peak_rss < 1 << 30,
        "the host stayed under 1 GiB: {} MiB",
        run.peak_rss >> 20
    );
}
