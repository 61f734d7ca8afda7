//! `cargo bench -p sabot-host --bench checkpoint`: stateful throughput, the cost of checkpoints,
//! and recovery time. Every figure is printed beside a baseline measured in the same run.
//! Nothing here is asserted.
//!
//! 1. The stateful fraud-detection example (per-card state in RocksDB behind the write-back
//!    cache), events/s, beside the same pipeline with only the stateless rules; then with a
//!    checkpoint every second vs none.
//! 2. Recovery of a large RocksDB state (`SABOT_BENCH_STATE_MB`, default 1024): snapshot time,
//!    restore at the same parallelism (the snapshot's files are linked), and restore into two
//!    instances (every entry read and rewritten).
//!
//! `SABOT_BENCH_EVENTS` sets the pipeline size (default 10 000 000).

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

/// The allocator of the `sabot` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sabot_host::connectors::SinkSpec;
use sabot_host::connectors::blackhole::BlackholeSpec;
use sabot_host::state::{BackendKind, SnapshotSource, StateScope, open_instance, owned_key_groups};
use sabot_host::wasm::{CompileCache, ModuleSource, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

/// The fraud example with `events` events, sinks replaced by blackholes, rules configured by
/// `edit`, checkpoints as `checkpoint` says.
fn fraud(
    runtime: &Arc<WasmRuntime>,
    events: u64,
    stateful: bool,
    checkpoint_ms: Option<u64>,
) -> f64 {
    let workspace = sabot_test_artifacts::workspace();
    let mut text =
        std::fs::read_to_string(workspace.join("examples/fraud-detection/pipeline.toml")).unwrap();
    text = text.replace("count = 1_000_000", &format!("count = {events}"));
    text = text.replace("[pipeline.checkpoint]\ninterval_ms = 1000\n", "");
    if let Some(ms) = checkpoint_ms {
        text = text.replace(
            "[sources.transactions]",
            &format!("[pipeline.checkpoint]\ninterval_ms = {ms}\n\n[sources.transactions]"),
        );
    }
    if !stateful {
        for rule in ["velocity", "amount_anomaly", "impossible_travel"] {
            text = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{rule} =")))
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    let mut spec = PipelineSpec::parse_with_modules(
        &text,
        &workspace.join("examples/fraud-detection/pipeline.toml"),
        &[
            (
                "rules".to_owned(),
                ModuleSource::Path(sabot_test_artifacts::FRAUD_RULES.into()),
            ),
            (
                "score".to_owned(),
                ModuleSource::Path(sabot_test_artifacts::FRAUD_SCORE.into()),
            ),
        ],
    )
    .unwrap();
    for sink in spec.sinks.values_mut() {
        *sink = SinkSpec::Blackhole(BlackholeSpec {});
    }
    let pipeline = Pipeline::new(spec, runtime.clone()).unwrap();
    let summary = pipeline.run(RunOptions::default()).unwrap();
    assert_eq!(summary.events_in, events);
    summary.events_in as f64 / summary.elapsed.as_secs_f64()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 10_000_000);
    let state_mb = sabot_test_artifacts::bench_setting("SABOT_BENCH_STATE_MB", 1024);
    let cache_dir = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(CompileCache::new(Some(cache_dir.path().into()))).unwrap();
    // Compile once, outside the timings.
    fraud(&runtime, 10_000, true, None);

    println!("# Sabot state and checkpoint benchmarks\n");
    println!(
        "## Stateful fraud detection (examples/fraud-detection), {events} events, 2 instances\n"
    );
    // This machine is shared and noisy: the variants run interleaved, five times each, and the
    // medians are compared.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut stateless, mut none, mut every_second) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        stateless.push(fraud(&runtime, events, false, None));
        none.push(fraud(&runtime, events, true, None));
        every_second.push(fraud(&runtime, events, true, Some(1_000)));
    }
    let (stateless, none, every_second) = (median(stateless), median(none), median(every_second));
    println!("Medians of 5 interleaved runs.\n");
    println!("| pipeline | events/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| stateless rules only (baseline) | {:.2} M | 1.00× |",
        stateless / 1e6
    );
    println!(
        "| stateful rules (RocksDB + write-back cache), no checkpoints | {:.2} M | {:.2}× |",
        none / 1e6,
        none / stateless
    );
    println!(
        "| stateful rules, a checkpoint every second | {:.2} M | {:.2}× ({:+.1} % vs no checkpoints) |",
        every_second / 1e6,
        every_second / stateless,
        (every_second / none - 1.0) * 100.0
    );

    // 2. Recovery of a large state.
    let tmp = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    // Random values: the state does not compress, so what is on disk is what was written.
    let mut rng = fastrand::Rng::with_seed(1);
    let value_len = 240usize;
    let entries = (state_mb << 20) / (value_len as u64 + 24);
    let backend = open_instance(
        BackendKind::Rocksdb,
        &tmp.path().join("work"),
        None,
        0,
        1,
        owned_key_groups(0, 1),
        0,
    )
    .unwrap();
    let scope = StateScope::new(backend.clone(), "bench", 0, 1, true);
    let started = Instant::now();
    let mut key = 0i64;
    while (key as u64) < entries {
        let writes = (0..65_536)
            .map(|_| {
                key += 1;
                let value: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
                    .take(value_len)
                    .collect();
                ((key.to_le_bytes().to_vec(), Vec::new()), Some(value))
            })
            .collect();
        scope.write("s", writes).unwrap();
    }
    let filled = started.elapsed();
    let snapshot = tmp.path().join("snapshot");
    std::fs::create_dir_all(&snapshot).unwrap();
    let started = Instant::now();
    backend.snapshot(&snapshot).unwrap();
    let snapshotted = started.elapsed();
    drop(scope);
    drop(backend);
    let on_disk = dir_size(&snapshot);
    let from = SnapshotSource {
        dirs: vec![snapshot.clone()],
        kind: BackendKind::Rocksdb,
    };

    let probe = |backend: Arc<dyn sabot_host::state::StateBackend>,
                 instance: usize,
                 parallelism: usize| {
        let scope = StateScope::new(backend, "bench", instance, parallelism, true);
        let mut found = 0;
        for k in (1..=key).step_by((key as usize / 1_000).max(1)) {
            let k = k.to_le_bytes().to_vec();
            if scope.owns(&k).is_ok() {
                found += usize::from(scope.get_many("s", &[(k, Vec::new())]).unwrap()[0].is_some());
            }
        }
        found
    };
    let started = Instant::now();
    let restored = open_instance(
        BackendKind::Rocksdb,
        &tmp.path().join("restored"),
        Some(&from),
        0,
        1,
        owned_key_groups(0, 1),
        0,
    )
    .unwrap();
    let same = started.elapsed();
    assert!(probe(restored, 0, 1) >= 1_000);

    let started = Instant::now();
    let mut found = 0;
    for i in 0..2 {
        let b = open_instance(
            BackendKind::Rocksdb,
            &tmp.path().join(format!("rescaled-{i}")),
            Some(&from),
            i,
            2,
            owned_key_groups(i, 2),
            0,
        )
        .unwrap();
        found += probe(b, i, 2);
    }
    let rescaled = started.elapsed();
    assert!(found >= 1_000);

    println!(
        "\n## Recovery of {state_mb} MiB of RocksDB state ({entries} entries of {} random bytes, {:.0} MiB on disk)\n",
        value_len,
        on_disk as f64 / (1 << 20) as f64
    );
    println!("| step | time | ratio |");
    println!("|---|---|---|");
    println!(
        "| writing the state through the state API (baseline) | {:.2} s | 1.00× |",
        filled.as_secs_f64()
    );
    println!(
        "| snapshot (flush + RocksDB checkpoint) | {:.2} s | {:.3}× |",
        snapshotted.as_secs_f64(),
        snapshotted.as_secs_f64() / filled.as_secs_f64()
    );
    println!(
        "| restore, same parallelism (files linked) | {:.3} s | {:.4}× |",
        same.as_secs_f64(),
        same.as_secs_f64() / filled.as_secs_f64()
    );
    println!(
        "| restore into 2 instances (read and rewritten) | {:.2} s | {:.3}× |",
        rescaled.as_secs_f64(),
        rescaled.as_secs_f64() / filled.as_secs_f64()
    );
}
