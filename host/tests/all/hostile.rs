//! A hostile tenant, tried as an attacker would from the published WIT alone: every resource an
//! agent can make the host spend is capped, named when the cap is hit, and measured here — peak
//! RSS of the real `sabot` process (`wait4`), bytes on disk, bytes of log — not assumed.
//!
//! Agents that a Rust SDK cannot express (several memories, huge tables) are written in WAT and
//! made components with `sabot componentize`; the others are modes of the `misbehave` guest.

use std::path::{Path, PathBuf};

use sabot_test_artifacts::{MISBEHAVE, PLAIN};

use crate::support::{Scratch, lit, sabot_measured};

const MIB: u64 = 1 << 20;

/// A core module that implements the agent world's canonical ABI by hand: `init` and `process`
/// succeed (process emits nothing) after running `init_body` / `process_body`. `extra` declares
/// more memories, tables, functions.
fn hostile_core(extra: &str, init_body: &str, process_body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 16)
  {extra}
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
      (br_if $fits (i32.ne (memory.grow
        (i32.add (i32.shr_u (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
                            (i32.const 16)) (i32.const 1)))
        (i32.const -1)))
      unreachable)
    (local.get $p))
  (func (export "sabot:agent/handler@0.1.0#init") (param i32 i32) (result i32)
    {init_body}
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))
  (func (export "sabot:agent/handler@0.1.0#process") (param i32 i32 i32) (result i32)
    {process_body}
    ;; reset the heap: every call's input is garbage after it
    (global.set $heap (i32.const 1024))
    (i32.store8 (i32.const 32) (i32.const 0))
    (i32.store (i32.const 36) (i32.const 16))
    (i32.store (i32.const 40) (i32.const 0))
    (i32.const 32))
)"#
    )
}

/// `wat` made a component of the `agent` world with the real `sabot componentize`, in `dir`.
fn component(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let core = wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
    let core_path = dir.join(format!("{name}.core.wasm"));
    std::fs::write(&core_path, core).unwrap();
    let out = dir.join(format!("{name}.wasm"));
    let run = crate::support::sabot(
        &[
            "componentize",
            core_path.to_str().unwrap(),
            "--world",
            "agent",
            "-o",
            out.to_str().unwrap(),
        ],
        dir,
    );
    assert!(
        run.status.success(),
        "componentize {name}: {}",
        crate::support::stderr(&run)
    );
    out
}

/// generator (1000 rows, batches of 250) -> `m` (`module`, `agent_extra`) -> out.jsonl
fn pipeline(module: &Path, agent_extra: &str, pipeline_extra: &str) -> String {
    format!(
        r#"
edges = ["gen -> m -> out"]

[pipeline]
batch_size = 250
{pipeline_extra}

[sources.gen]
type = "generator"
count = 1000

[agents.m]
module = {module}
{agent_extra}

[sinks.out]
type = "file"
path = "out.jsonl"
"#,
        module = lit(module.to_str().unwrap())
    )
}

/// The misbehave guest in `mode`, with `count` and `bytes`.
fn misbehave(mode: &str, count: u64, bytes: u64, extra: &str) -> String {
    format!("config = {{ mode = \"{mode}\", count = {count}, bytes = {bytes} }}\n{extra}")
}

/// Runs `pipeline.toml` in `s` with the real binary: (exit code, stderr, peak RSS bytes).
fn run(s: &Scratch, toml: &str) -> (i32, String, u64) {
    run_with(s, toml, &[])
}

fn run_with(s: &Scratch, toml: &str, args: &[&str]) -> (i32, String, u64) {
    // The baseline first: its run leaves the agent compiled in the shared cache, so that no
    // measured run pays (in peak RSS) for compiling it.
    healthy_rss();
    measure(s, toml, args)
}

fn measure(s: &Scratch, toml: &str, args: &[&str]) -> (i32, String, u64) {
    s.write("pipeline.toml", toml);
    let mut all = vec!["run", "pipeline.toml"];
    all.extend_from_slice(args);
    let m = sabot_measured(&all, s.dir.path());
    let stderr = crate::support::stderr(&m.output);
    (m.output.status.code().unwrap_or(-1), stderr, m.peak_rss)
}

/// What a healthy run of the same shape costs: the baseline the hostile runs are held to.
fn healthy_rss() -> u64 {
    static BASELINE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASELINE.get_or_init(|| {
        let s = Scratch::new();
        let healthy = pipeline(Path::new(MISBEHAVE), &misbehave("pass", 0, 0, ""), "");
        // Twice: the first run may compile the agent (into the cache); the second starts as
        // every hostile run does, from the cache.
        let (code, stderr, _) = measure(&s, &healthy, &[]);
        assert_eq!(code, 0, "{stderr}");
        let (code, stderr, rss) = measure(&s, &healthy, &[]);
        assert_eq!(code, 0, "{stderr}");
        rss
    })
}

#[track_caller]
fn assert_rss_near_healthy(rss: u64, slack: u64, what: &str) {
    let base = healthy_rss();
    assert!(
        rss <= base + slack,
        "{what}: peak RSS {} MiB, a healthy run {} MiB: more than {} MiB over",
        rss / MIB,
        base / MIB,
        slack / MIB
    );
}

fn file_len(s: &Scratch, name: &str) -> u64 {
    std::fs::metadata(s.path(name)).map_or(0, |m| m.len())
}

#[test]
fn several_memories_are_capped_together_before_they_are_touched() {
    let s = Scratch::new();
    // Four memories of 100 MiB each, every page written in `init`: each under the 256 MiB cap,
    // 400 MiB together.
    let extra = (1..=4)
        .map(|i| format!("(memory $m{i} 1600)"))
        .collect::<Vec<_>>()
        .join("\n");
    let fill = (1..=4)
        .map(|i| format!("(memory.fill $m{i} (i32.const 0) (i32.const 97) (i32.const 104857600))"))
        .collect::<Vec<_>>()
        .join("\n");
    let module = component(s.dir.path(), "memories", &hostile_core(&extra, &fill, ""));
    let (code, stderr, rss) = run(&s, &pipeline(&module, "", ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("agent `m`"), "{stderr}");
    assert!(stderr.contains("limits.memory_mb"), "{stderr}");
    assert!(
        stderr.contains("in all, over the cap of 256.0 MiB"),
        "{stderr}"
    );
    assert_rss_near_healthy(rss, 64 * MIB, "four 100 MiB memories");
    assert_eq!(file_len(&s, "out.jsonl"), 0);
}

#[test]
fn memories_grown_one_by_one_stop_at_the_cap_and_skip_goes_on() {
    let s = Scratch::new();
    // Each call grows four small memories by 40 MiB each and writes them: 160 MiB a call, kept.
    let extra = (1..=4)
        .map(|i| format!("(memory $m{i} 1)"))
        .collect::<Vec<_>>()
        .join("\n");
    let grow = (1..=4)
        .map(|i| {
            format!(
                "(if (i32.eq (memory.grow $m{i} (i32.const 640)) (i32.const -1)) (then unreachable))
                 (memory.fill $m{i} (i32.const 0) (i32.const 98) (i32.shl (memory.size $m{i}) (i32.const 16)))"
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let module = component(s.dir.path(), "grow", &hostile_core(&extra, "", &grow));
    let (code, stderr, rss) = run(&s, &pipeline(&module, "on_error = \"skip\"", ""));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("skipped a batch"), "{stderr}");
    assert!(stderr.contains("limits.memory_mb"), "{stderr}");
    assert_rss_near_healthy(rss, 300 * MIB, "memories grown to the cap");
}

#[test]
fn a_huge_table_counts_against_the_memory_cap() {
    let s = Scratch::new();
    // 40 M elements: 320 MiB of references.
    let module = component(
        s.dir.path(),
        "table",
        &hostile_core("(table 40000000 funcref)", "", ""),
    );
    let (code, stderr, rss) = run(&s, &pipeline(&module, "", ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.memory_mb"), "{stderr}");
    assert!(stderr.contains("growing a table"), "{stderr}");
    assert_rss_near_healthy(rss, 64 * MIB, "a 40 M element table");
}

#[test]
fn counts_of_tables_memories_and_instances_are_capped() {
    let s = Scratch::new();
    let tables = component(
        s.dir.path(),
        "tables",
        &hostile_core(
            "(table 1 funcref) (table 1 funcref) (table 1 funcref)",
            "",
            "",
        ),
    );
    let (code, stderr, _) = run(&s, &pipeline(&tables, "limits = { max_tables = 2 }", ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_tables"), "{stderr}");
    assert!(stderr.contains("over the limit of 2"), "{stderr}");

    let memories = component(
        s.dir.path(),
        "memories",
        &hostile_core("(memory 1) (memory 1)", "", ""),
    );
    let (code, stderr, _) = run(
        &s,
        &pipeline(&memories, "limits = { max_memories = 2 }", ""),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_memories"), "{stderr}");

    // A Rust agent is several core instances (its module, the WASI adapter, shims).
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("pass", 0, 0, "limits = { max_instances = 1 }"),
            "",
        ),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_instances"), "{stderr}");
}

#[test]
fn a_few_bytes_of_ipc_declaring_a_billion_null_rows_write_nothing() {
    let s = Scratch::new();
    let (code, stderr, rss) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("null-rows", 1_000_000_000, 0, ""),
            "",
        ),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_output_rows"), "{stderr}");
    assert!(
        stderr.contains("emitted 1000000000 rows in one call"),
        "{stderr}"
    );
    assert_eq!(file_len(&s, "out.jsonl"), 0);
    assert_rss_near_healthy(rss, 64 * MIB, "a billion null rows");

    // Relative to the input: 250 rows in may give at most 25 000 out.
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("null-rows", 30_000, 0, ""),
            "",
        ),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("max_output_ratio = 100"), "{stderr}");
}

#[test]
fn one_dictionary_value_repeated_in_every_row_is_refused_before_a_sink_writes_it() {
    let s = Scratch::new();
    // 1 MiB once in the IPC, 8 GiB when written out.
    let (code, stderr, rss) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("dict-bomb", 8_000, MIB, ""),
            "",
        ),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_output_mb"), "{stderr}");
    assert!(stderr.contains("when written out"), "{stderr}");
    assert_eq!(file_len(&s, "out.jsonl"), 0);
    assert_rss_near_healthy(rss, 96 * MIB, "a dictionary bomb");
}

#[test]
fn a_huge_error_message_is_cut_and_dead_lettered_once_per_batch() {
    let s = Scratch::new();
    // 4 MiB messages on batches of 250 rows: 1 GB of dead letters before the cut.
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("long-error", 0, 4 * MIB, "on_error = \"dead-letter\""),
            "dead_letter = \"dead.jsonl\"",
        ),
    );
    assert_eq!(code, 0, "{stderr}");
    let dead = file_len(&s, "dead.jsonl");
    assert!(dead < 400_000, "the dead-letter file is {dead} bytes");
    let lines: Vec<serde_json::Value> = s
        .read("dead.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let headers: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("reason").is_some()).collect();
    assert_eq!(headers.len(), 4, "one reason per batch");
    let reason = headers[0]["reason"].as_str().unwrap();
    assert!(reason.len() < 5_000, "{} bytes", reason.len());
    assert!(
        reason.contains("[cut: 4194"),
        "{}",
        &reason[reason.len() - 80..]
    );
    let rows: Vec<_> = lines.iter().filter(|l| l.get("row").is_some()).collect();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[0]["batch"], headers[0]["batch"]);
    assert!(stderr.len() < 64 * 1024, "{} bytes of log", stderr.len());

    // Failing, the message printed is cut too.
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("long-error", 0, 4 * MIB, ""),
            "",
        ),
    );
    assert_eq!(code, 1);
    assert!(stderr.len() < 16 * 1024, "{} bytes of log", stderr.len());
    assert!(
        stderr.contains("bytes in all, limits.max_error_bytes = 4096"),
        "{stderr}"
    );
}

#[test]
fn the_dead_letter_file_stops_at_its_budget_naming_it() {
    let s = Scratch::new();
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("error", 0, 0, "on_error = \"dead-letter\""),
            "dead_letter = \"dead.jsonl\"\ndead_letter_mb = 1",
        )
        .replace("count = 1000", "count = 100000"),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("dead_letter_mb"), "{stderr}");
    assert!(stderr.contains("dead.jsonl"), "{stderr}");
    assert!(file_len(&s, "dead.jsonl") <= MIB);
}

#[test]
fn a_log_flood_is_held_to_the_log_budget_and_summarised() {
    let s = Scratch::new();
    // 20 000 lines of 1 KiB per batch, to the log (errors) and to stderr (shown at `info`):
    // 160 MB in all.
    let (code, stderr, _) = run_with(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("log-flood", 20_000, 1024, ""),
            "",
        ),
        &["--log-level", "info"],
    );
    assert_eq!(code, 0, "{stderr}");
    // One second's worth of budget (100 lines, 64 KiB) and the rest of the run's refill, plus
    // the summary: far under a megabyte.
    assert!(stderr.len() < 512 * 1024, "{} bytes of log", stderr.len());
    assert!(
        stderr.contains("logged over its budget (limits.log_lines_per_s = 100"),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
}

#[test]
fn new_store_names_beyond_the_limit_fail_the_call() {
    let s = Scratch::new();
    let (code, stderr, _) = run(
        &s,
        &pipeline(Path::new(MISBEHAVE), &misbehave("stores", 50, 0, ""), ""),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_stores"), "{stderr}");
    assert!(
        stderr.contains("store number 65, over the limit of 64"),
        "{stderr}"
    );
}

#[test]
fn state_beyond_its_budget_fails_the_call_in_both_backends() {
    for backend in ["memory", "rocksdb"] {
        let s = Scratch::new();
        // 1 MiB a batch against a 2 MiB budget: the third batch goes over.
        let (code, stderr, _) = run(
            &s,
            &pipeline(
                Path::new(MISBEHAVE),
                &misbehave("state-flood", 100, 10_000, "limits = { state_mb = 2 }"),
                &format!("state = \"{backend}\"\nstate_cache_mb = 0"),
            ),
        );
        assert_eq!(code, 1, "{backend}: {stderr}");
        assert!(stderr.contains("limits.state_mb"), "{backend}: {stderr}");
        assert!(
            stderr.contains("over the budget of 2.0 MiB"),
            "{backend}: {stderr}"
        );
    }
}

#[test]
fn timers_beyond_the_limit_fail_the_call() {
    let s = Scratch::new();
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("timer-flood", 600, 0, "limits = { max_timers = 1000 }"),
            "",
        ),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limits.max_timers"), "{stderr}");
    assert!(
        stderr.contains("would make 1200, over the limit of 1000"),
        "{stderr}"
    );
}

#[test]
fn a_file_sink_stops_at_its_budget_per_checkpoint() {
    let s = Scratch::new();
    // 1 M generated rows, about 150 MB of JSON, against 4 MiB.
    let toml = pipeline(Path::new(PLAIN), "", "file_sink_mb = 4")
        .replace("count = 1000", "count = 1000000");
    let (code, stderr, _) = run(&s, &toml);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("sink `out`"), "{stderr}");
    assert!(stderr.contains("file_sink_mb"), "{stderr}");
    let on_disk: u64 = walk(s.dir.path());
    assert!(on_disk < 8 * MIB, "{on_disk} bytes on disk");
}

/// Bytes of every file under `dir`.
fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() { walk(&e.path()) } else { m.len() }
        })
        .sum()
}

#[test]
fn bad_limits_are_refused_naming_the_field_and_the_range() {
    let s = Scratch::new();
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("pass", 0, 0, "limits = { max_output_rows = 0 }"),
            "",
        ),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("[agents.m.limits] field `max_output_rows`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("expected 1 to 1000000000 rows, got 0"),
        "{stderr}"
    );
    let (code, stderr, _) = run(
        &s,
        &pipeline(
            Path::new(MISBEHAVE),
            &misbehave("pass", 0, 0, "limits = { max_rows = 5 }"),
            "",
        ),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("max_rows"), "{stderr}");
}

#[test]
fn after_every_hostile_mode_a_healthy_pipeline_runs_in_the_same_host() {
    // In one process, each mode under `skip`; then a healthy run.
    for (mode, count, bytes, limits) in [
        ("null-rows", 1_000_000_000, 0, ""),
        ("dict-bomb", 8_000, MIB, ""),
        ("long-error", 0, 4 * MIB, ""),
        ("stores", 100, 0, ""),
        ("timer-flood", 2_000, 0, "limits = { max_timers = 1000 }"),
        ("state-flood", 100, 20_000, "limits = { state_mb = 1 }"),
    ] {
        let s = Scratch::new();
        let summary = s
            .run(&pipeline(
                Path::new(MISBEHAVE),
                &misbehave(
                    mode,
                    count,
                    bytes,
                    &format!("on_error = \"skip\"\n{limits}"),
                ),
                "",
            ))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(summary.events_out, 0, "{mode}");
    }
    let s = Scratch::new();
    let summary = s
        .run(&pipeline(
            Path::new(MISBEHAVE),
            &misbehave("pass", 0, 0, ""),
            "",
        ))
        .unwrap();
    assert_eq!(summary.events_out, 1000);
}
