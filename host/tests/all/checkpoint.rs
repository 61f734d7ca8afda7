//! Checkpoints in-process: a run stopped part-way resumes where it stopped, a finished run is
//! not repeated, damaged checkpoints fall back or stop the run, and `fresh` starts over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sabot_host::{Error, RunOptions, RunSummary};
use sabot_test_artifacts::TIMED;

use crate::support::{Scratch, assert_same_lines, lit, sorted_lines};

/// Generator → event-time windows per card (2 instances) → file, plus a stateless filter → file.
pub fn windows_pipeline(count: u64, rate: u64, backend: &str, interval_ms: u64) -> String {
    format!(
        r#"
edges = ["gen -> w -> out", "gen -> big -> big_out"]
[pipeline]
batch_size = 500
state = "{backend}"
[pipeline.checkpoint]
interval_ms = {interval_ms}
retain = 3
[sources.gen]
type = "generator"
count = {count}
rate = {rate}
cards = 50
event_time = {{ column = "ts" }}
[agents.w]
module = {module}
parallelism = 2
key = "card_id"
config = {{ size_ms = 1000, key_column = "card_id" }}
[agents.big]
module = "builtin:filter"
config = {{ where = "amount > 2000" }}
[sinks.out]
type = "file"
path = "out.jsonl"
[sinks.big_out]
type = "file"
path = "big.jsonl"
"#,
        module = lit(TIMED)
    )
}

/// The outputs of a run of `toml` without interruption.
pub fn reference(toml: &str) -> (Vec<String>, Vec<String>) {
    let s = Scratch::new();
    s.run(toml).unwrap();
    (
        sorted_lines(&s.read("out.jsonl")),
        sorted_lines(&s.read("big.jsonl")),
    )
}

/// Complete checkpoints in `data/checkpoints`.
fn complete_checkpoints(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("checkpoints"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("_metadata").exists())
                .count()
        })
        .unwrap_or(0)
}

/// Runs `toml` on `s`'s data directory; with `stop_after` checkpoints, asks the run to stop once
/// that many are complete.
pub fn run_in(
    s: &Scratch,
    toml: &str,
    stop_after: Option<usize>,
    fresh: bool,
) -> Result<RunSummary, Error> {
    run_in_on(s, toml, crate::support::runtime(), stop_after, fresh)
}

/// [`run_in`], its modules loaded by `runtime` (which says how built-in operators run).
pub fn run_in_on(
    s: &Scratch,
    toml: &str,
    runtime: Arc<sabot_host::wasm::WasmRuntime>,
    stop_after: Option<usize>,
    fresh: bool,
) -> Result<RunSummary, Error> {
    let path = s.write("pipeline.toml", toml);
    let pipeline = sabot_host::Pipeline::new(sabot_host::PipelineSpec::load(&path)?, runtime)?;
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(n) = stop_after {
        let stop = stop.clone();
        let data = s.path("data");
        std::thread::spawn(move || {
            let waited = std::time::Instant::now();
            while complete_checkpoints(&data) < n && waited.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    pipeline.run(RunOptions {
        stop,
        data_dir: Some(s.path("data")),
        fresh,
        ..RunOptions::default()
    })
}

#[test]
fn a_stopped_run_resumes_where_it_stopped_and_the_output_is_exact() {
    for backend in ["memory", "rocksdb"] {
        let toml = windows_pipeline(60_000, 40_000, backend, 50);
        let (out, big) = reference(&toml.replace("rate = 40000", "rate = 0"));
        assert_eq!(
            out.len(),
            60 * 50,
            "one row per card and second of event time"
        );

        let s = Scratch::new();
        let first = run_in(&s, &toml, Some(3), false).unwrap();
        assert!(first.interrupted);
        assert!(
            first.events_in > 0 && first.events_in < 60_000,
            "{}",
            first.events_in
        );
        assert!(first.checkpoints > 0, "checkpoints every 50 ms");
        let partial = sorted_lines(&s.read("out.jsonl"));
        assert!(partial.len() < out.len());

        let second = run_in(&s, &toml, None, false).unwrap();
        assert_eq!(second.restored_from, first.final_checkpoint);
        assert_eq!(
            first.events_in + second.events_in,
            60_000,
            "{backend}: no event read twice"
        );
        assert_same_lines(&sorted_lines(&s.read("out.jsonl")), &out, "out.jsonl");
        assert_same_lines(&sorted_lines(&s.read("big.jsonl")), &big, "big.jsonl");
    }
}

#[test]
fn a_finished_run_is_not_repeated_and_fresh_starts_over() {
    let toml = windows_pipeline(5_000, 0, "rocksdb", 1_000);
    let s = Scratch::new();
    run_in(&s, &toml, None, false).unwrap();
    let out = s.read("out.jsonl");
    assert_eq!(out.lines().count(), 5 * 50);

    let again = run_in(&s, &toml, None, false).unwrap();
    assert_eq!(again.events_in, 0, "the input was all read");
    assert_eq!(s.read("out.jsonl"), out, "nothing written twice");

    let fresh = run_in(&s, &toml, None, true).unwrap();
    assert_eq!(fresh.restored_from, None);
    assert_eq!(fresh.events_in, 5_000);
    assert_same_lines(
        &sorted_lines(&s.read("out.jsonl")),
        &sorted_lines(&out),
        "out.jsonl",
    );
}

fn checkpoint_dirs(s: &Scratch) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(s.path("data/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("chk-"))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one_and_the_output_stays_exact() {
    let toml = windows_pipeline(60_000, 40_000, "rocksdb", 50);
    let (out, big) = reference(&toml.replace("rate = 40000", "rate = 0"));
    let s = Scratch::new();
    let first = run_in(&s, &toml, Some(3), false).unwrap();
    let dirs = checkpoint_dirs(&s);
    assert_eq!(dirs.len(), 3, "the newest 3 are kept: {dirs:?}");
    // The newest (final) checkpoint loses a state file.
    let newest = dirs.last().unwrap();
    let victim = walk(newest)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "sst") || p.ends_with("timers.bin"))
        .unwrap();
    std::fs::remove_file(&victim).unwrap();

    let second = run_in(&s, &toml, None, false).unwrap();
    assert!(
        second.restored_from < first.final_checkpoint,
        "{:?}",
        second.restored_from
    );
    assert_same_lines(&sorted_lines(&s.read("out.jsonl")), &out, "out.jsonl");
    assert_same_lines(&sorted_lines(&s.read("big.jsonl")), &big, "big.jsonl");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn when_no_checkpoint_is_usable_the_run_stops_and_leaves_the_output_alone() {
    let toml = windows_pipeline(60_000, 40_000, "memory", 50);
    let s = Scratch::new();
    run_in(&s, &toml, Some(2), false).unwrap();
    let out = s.read("out.jsonl");
    for dir in checkpoint_dirs(&s) {
        std::fs::write(dir.join("_metadata"), b"{ damaged").unwrap();
    }
    let e = run_in(&s, &toml, None, false).unwrap_err().to_string();
    assert!(
        e.contains("no usable checkpoint") && e.contains("does not parse") && e.contains("--fresh"),
        "{e}"
    );
    assert_eq!(s.read("out.jsonl"), out);
}

#[test]
fn two_runs_cannot_share_a_data_directory() {
    let toml = windows_pipeline(1_000_000, 20_000, "rocksdb", 100);
    let s = Scratch::new();
    let pipeline = s.pipeline(&toml).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let first = {
        let stop = stop.clone();
        let data = s.path("data");
        std::thread::spawn(move || {
            pipeline.run(RunOptions {
                stop,
                data_dir: Some(data),
                ..RunOptions::default()
            })
        })
    };
    // Wait until the first run has started writing.
    let started = std::time::Instant::now();
    while !s.path("data/state").exists() {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = run_in(&s, &toml, None, false).unwrap_err().to_string();
    assert!(
        e.contains("another sabot run is using the data directory"),
        "{e}"
    );
    stop.store(true, Ordering::SeqCst);
    first.join().unwrap().unwrap();
}
