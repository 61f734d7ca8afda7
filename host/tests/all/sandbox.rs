//! A hostile or broken agent must never hurt the host: every way an agent can fail is stopped,
//! named, and leaves no half-written output.

use std::time::{Duration, Instant};

use sabot_host::Error;
use sabot_host::wasm::{
    AgentFailure, AgentInstance, AgentMetrics, Limits, ModuleError, ModuleSource, Tags,
};
use sabot_test_artifacts::MISBEHAVE;

use crate::support::{Scratch, lit, runtime};

/// generator (1000 rows, batches of 100) -> misbehave(mode) -> out.jsonl
fn pipeline(mode: &str, agent_extra: &str, pipeline_extra: &str) -> String {
    format!(
        r#"
edges = ["gen -> m -> out"]

[pipeline]
batch_size = 100
{pipeline_extra}

[sources.gen]
type = "generator"
count = 1000

[agents.m]
module = {module}
config = {{ mode = "{mode}", count = 3, bytes = 3145728 }}
{agent_extra}

[sinks.out]
type = "file"
path = "out.jsonl"
"#,
        module = lit(MISBEHAVE)
    )
}

fn agent_failure(result: Result<sabot_host::RunSummary, Error>) -> (String, AgentFailure) {
    match result {
        Err(Error::Agent { agent, failure, .. }) => (agent, failure),
        Err(other) => panic!("expected an agent failure, got: {other}"),
        Ok(s) => panic!(
            "expected an agent failure, the run succeeded with {} rows out",
            s.events_out
        ),
    }
}

fn assert_nothing_written(scratch: &Scratch) {
    assert_eq!(
        scratch.files(),
        vec!["pipeline.toml".to_owned()],
        "a failed run must leave no output behind"
    );
}

#[test]
fn an_agent_error_fails_the_run_naming_the_agent_and_the_row() {
    let s = Scratch::new();
    let err = s.run(&pipeline("error", "", "")).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("agent `m`"), "{message}");
    assert!(message.contains("at row 1"), "{message}");
    assert!(message.contains("misbehave refuses this row"), "{message}");
    assert_eq!(err.exit_code(), 1);
    assert_nothing_written(&s);
}

#[test]
fn a_panicking_guest_reports_its_panic_message_with_the_agent_name() {
    let s = Scratch::new();
    let err = s.run(&pipeline("panic", "", "")).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("agent `m`"), "{message}");
    assert!(message.contains("trapped"), "{message}");
    assert!(message.contains("misbehave was told to panic"), "{message}");
    assert_nothing_written(&s);
}

#[test]
fn an_infinite_loop_is_stopped_within_twice_the_deadline() {
    let limits = Limits {
        deadline_ms: 500,
        ..Limits::default()
    };
    let module = runtime()
        .load(&ModuleSource::Path(MISBEHAVE.into()))
        .unwrap();
    let mut instance = AgentInstance::start(
        runtime(),
        module,
        r#"{"mode":"loop"}"#.into(),
        limits,
        Tags::default(),
        std::sync::Arc::new(AgentMetrics::default()),
        sabot_host::state::StateScope::standalone("m"),
    )
    .unwrap();
    let batch = sabot_host::connectors::generator::GeneratorSpec::schema();
    let batch = arrow_array::RecordBatch::new_empty(batch);
    let started = Instant::now();
    let failure = instance.process(0, &batch).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(failure, AgentFailure::Deadline { deadline_ms: 500 }),
        "{failure}"
    );
    assert!(
        took < Duration::from_millis(1000),
        "stopped after {took:?}, more than 2x the 500 ms deadline"
    );

    // And in a pipeline: the run fails with the deadline named.
    let s = Scratch::new();
    let (agent, failure) =
        agent_failure(s.run(&pipeline("loop", "limits = { deadline_ms = 200 }", "")));
    assert_eq!(agent, "m");
    assert!(
        failure.to_string().contains("deadline of 200 ms"),
        "{failure}"
    );
    assert_nothing_written(&s);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap_and_the_host_keeps_running() {
    let s = Scratch::new();
    let (_, failure) = agent_failure(s.run(&pipeline("bomb", "limits = { memory_mb = 32 }", "")));
    assert!(
        matches!(failure, AgentFailure::Memory { memory_mb: 32, .. }),
        "{failure}"
    );
    assert!(
        failure.to_string().contains("memory cap of 32 MiB"),
        "{failure}"
    );
    assert_nothing_written(&s);

    // The same process runs a healthy pipeline afterwards.
    let ok = Scratch::new();
    let summary = ok
        .run(&pipeline("pass", "limits = { memory_mb = 32 }", ""))
        .unwrap();
    assert_eq!(summary.events_out, 1000);
}

#[test]
fn oversized_output_is_refused() {
    let s = Scratch::new();
    let (_, failure) = agent_failure(s.run(&pipeline(
        "huge-output",
        "limits = { max_output_mb = 1 }",
        "",
    )));
    match failure {
        AgentFailure::OutputTooLarge { bytes, cap } => {
            assert_eq!(cap, 1 << 20);
            assert!(bytes > 3 << 20, "{bytes}");
        }
        other => panic!("expected OutputTooLarge, got {other}"),
    }
    assert_nothing_written(&s);
}

#[test]
fn malformed_ipc_output_is_refused() {
    let s = Scratch::new();
    let (_, failure) = agent_failure(s.run(&pipeline("bad-ipc", "", "")));
    assert!(
        matches!(failure, AgentFailure::MalformedOutput { port: 0, .. }),
        "{failure}"
    );
    assert!(
        failure.to_string().contains("not valid Arrow IPC"),
        "{failure}"
    );
    assert_nothing_written(&s);
}

#[test]
fn an_invalid_config_stops_the_run_before_any_output() {
    let s = Scratch::new();
    let (_, failure) = agent_failure(s.run(&pipeline("bad-config", "", "")));
    assert!(matches!(failure, AgentFailure::Init(_)), "{failure}");
    assert!(
        failure
            .to_string()
            .contains("invalid-config: mode `bad-config` always refuses"),
        "{failure}"
    );
    assert_nothing_written(&s);
}

#[test]
fn a_core_module_is_refused_with_how_to_build_a_component() {
    let s = Scratch::new();
    let core = wat::parse_str("(module)").unwrap();
    let path = s.path("core.wasm");
    std::fs::write(&path, core).unwrap();
    let err = runtime().load(&ModuleSource::Path(path)).unwrap_err();
    assert!(matches!(err, ModuleError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[test]
fn a_component_of_another_world_is_refused_naming_what_is_missing() {
    let empty = wat::parse_str("(component)").unwrap();
    let err = runtime().load_bytes("empty.wasm", &empty).unwrap_err();
    assert!(matches!(err, ModuleError::WrongWorld { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("sabot:agent/agent@0.1.1"), "{message}");
    assert!(message.contains("sabot:agent/handler@0.1.1"), "{message}");

    let wants_http =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func)))))"#)
            .unwrap();
    let err = runtime()
        .load_bytes("http.wasm", &wants_http)
        .unwrap_err()
        .to_string();
    assert!(err.contains("wasi:http/outgoing-handler@0.2.0"), "{err}");
}

#[test]
fn bytes_that_are_not_webassembly_are_refused() {
    let err = runtime()
        .load_bytes("random.wasm", b"\x7fELF not wasm at all")
        .unwrap_err();
    assert!(matches!(err, ModuleError::Invalid { .. }), "{err}");
    let mut truncated = std::fs::read(MISBEHAVE).unwrap();
    truncated.truncate(truncated.len() / 2);
    let err = runtime()
        .load_bytes("truncated.wasm", &truncated)
        .unwrap_err();
    assert!(matches!(err, ModuleError::Invalid { .. }), "{err}");
}

#[test]
fn skip_policy_replaces_a_trapped_instance_and_goes_on() {
    let s = Scratch::new();
    // Each fresh instance passes 3 batches, then traps on the 4th: of 10 batches, 8 pass.
    let summary = s
        .run(&pipeline("trap-after", "on_error = \"skip\"", ""))
        .unwrap();
    assert_eq!(summary.events_in, 1000);
    assert_eq!(summary.events_out, 800);
    assert_eq!(summary.failed_batches, 2);
    assert_eq!(s.read("out.jsonl").lines().count(), 800);
}

#[test]
fn dead_letter_policy_writes_each_row_and_the_reason_once_per_batch() {
    let s = Scratch::new();
    let summary = s
        .run(&pipeline(
            "error",
            "on_error = \"dead-letter\"",
            "dead_letter = \"dead.jsonl\"",
        ))
        .unwrap();
    assert_eq!(summary.events_out, 0);
    assert_eq!(summary.dead_letters, 1000);
    let lines: Vec<serde_json::Value> = s
        .read("dead.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One line with the reason per batch, then its rows, which refer to it.
    let (batches, rows): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.get("reason").is_some());
    assert_eq!(batches.len(), 10);
    assert_eq!(rows.len(), 1000);
    assert_eq!(batches[0]["node"], "m");
    assert_eq!(batches[0]["rows"], 100);
    assert!(
        batches[0]["reason"]
            .as_str()
            .unwrap()
            .contains("misbehave refuses this row")
    );
    assert_eq!(rows[0]["batch"], batches[0]["batch"]);
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|l| l["row"]["txn_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
}

#[test]
fn guest_logs_and_metrics_reach_the_host() {
    let s = Scratch::new();
    let summary = s.run(&pipeline("log", "parallelism = 2", "")).unwrap();
    let metrics = &summary.agent_metrics["m"];
    assert_eq!(metrics.counter("misbehave_rows"), Some(1000));
    assert_eq!(metrics.gauge("misbehave_last_batch_rows"), Some(100.0));
    assert_eq!(metrics.histogram("misbehave_batch_rows").unwrap().count, 10);
}

#[test]
fn keyed_parallel_instances_lose_and_duplicate_nothing() {
    let s = Scratch::new();
    let summary = s
        .run(&pipeline("pass", "parallelism = 3\nkey = \"card_id\"", ""))
        .unwrap();
    assert_eq!(summary.events_out, 1000);
    let mut ids: Vec<i64> = s
        .read("out.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["txn_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
}

#[test]
fn a_second_load_of_a_module_comes_from_the_compile_cache() {
    use sabot_host::wasm::{CacheOutcome, CompileCache, WasmRuntime};
    let dir = tempfile::tempdir().unwrap();
    let cold = WasmRuntime::new(CompileCache::new(Some(dir.path().into()))).unwrap();
    let first = cold.load(&ModuleSource::Path(MISBEHAVE.into())).unwrap();
    assert_eq!(first.cache, CacheOutcome::Miss);
    let warm = WasmRuntime::new(CompileCache::new(Some(dir.path().into()))).unwrap();
    let second = warm.load(&ModuleSource::Path(MISBEHAVE.into())).unwrap();
    assert_eq!(second.cache, CacheOutcome::Hit);
    assert_eq!(first.sha256, second.sha256);
    drop((first, second, cold, warm));

    // A corrupt entry is discarded and recompiled, not trusted.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let again = WasmRuntime::new(CompileCache::new(Some(dir.path().into()))).unwrap();
    assert_eq!(
        again
            .load(&ModuleSource::Path(MISBEHAVE.into()))
            .unwrap()
            .cache,
        CacheOutcome::Miss
    );
}

#[test]
fn a_keyed_agent_whose_input_lacks_the_key_column_fails_naming_it() {
    let s = Scratch::new();
    let err = s
        .run(&pipeline("pass", "parallelism = 2\nkey = \"card\"", ""))
        .unwrap_err();
    assert!(matches!(err, Error::Data(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("keyed agent `m` from `gen` has no key column `card`"),
        "{message}"
    );
    assert!(message.contains("card_id"), "{message}");
    assert_nothing_written(&s);
}
