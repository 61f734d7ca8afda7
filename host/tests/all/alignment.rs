//! Barrier alignment under skew, measured: while a task waits for a barrier from a slow input,
//! the fast input is not read (its queue fills and its source waits), so memory stays flat
//! whatever the skew, instead of holding back everything the fast input sends.

use sabot_test_artifacts::MISBEHAVE;

use crate::support::{Scratch, lit, sabot_measured};

const MIB: u64 = 1 << 20;

/// `slow_src -> slow -> out` and `fast -> out`, checkpoints every 100 ms: the sink aligns each
/// barrier across a stalled input (`sleep_ms` a batch) and a flooding one.
fn skewed(sleep_ms: u64, mode: &str) -> String {
    format!(
        r#"
edges = ["slow_src -> slow -> out", "fast -> out"]

[pipeline]
batch_size = 4096

[pipeline.checkpoint]
interval_ms = 100

[sources.slow_src]
type = "generator"
count = 49152
seed = 1

[sources.fast]
type = "generator"
count = 6000000
seed = 2

[agents.slow]
module = {module}
config = {{ mode = "{mode}", count = {sleep_ms}, bytes = 0 }}

[sinks.out]
type = "blackhole"
"#,
        module = lit(MISBEHAVE)
    )
}

fn run(toml: &str) -> (u64, String) {
    let s = Scratch::new();
    s.write("pipeline.toml", toml);
    let m = sabot_measured(
        &["run", "pipeline.toml", "--data-dir", "data"],
        s.dir.path(),
    );
    let stderr = crate::support::stderr(&m.output);
    assert!(m.output.status.success(), "{stderr}");
    (m.peak_rss, stderr)
}

#[test]
fn a_stalled_input_slows_its_peer_instead_of_growing_memory_while_barriers_align() {
    // Compile the agent first, so that neither measured run pays for compiling it.
    let warm = Scratch::new();
    warm.write("pipeline.toml", &skewed(0, "pass"));
    let out = crate::support::sabot(&["validate", "pipeline.toml"], warm.dir.path());
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    // The same graph without the stall: what the pipeline costs anyway.
    let (healthy, _) = run(&skewed(0, "pass"));
    // 12 batches at 300 ms each: every barrier waits up to channel_capacity × 300 ms on the slow
    // input, while the fast one could send its 6 M rows (about 600 MB) in a third of that.
    let (skewed_rss, summary) = run(&skewed(300, "sleep"));
    eprintln!(
        "peak RSS: {} MiB without a stall, {} MiB with one input stalled",
        healthy / MIB,
        skewed_rss / MIB
    );
    // The summary line says `…, N checkpoint(s)`.
    let checkpoints: u64 = summary
        .split(" checkpoint(s)")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint count in: {summary}"));
    assert!(
        checkpoints >= 1,
        "barriers were aligned while the slow input stalled: {summary}"
    );
    assert!(
        skewed_rss < healthy + 64 * MIB,
        "peak RSS {} MiB with a stalled input, {} MiB without: the fast input is buffered",
        skewed_rss / MIB,
        healthy / MIB
    );
}
