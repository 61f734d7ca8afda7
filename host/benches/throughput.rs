//! `cargo bench -p sabot-host --bench throughput`: Sabot's foundation benchmarks. Every figure is
//! printed beside a baseline measured in the same run, as a ratio. Nothing here is asserted.
//!
//! 1. The same filter logic (`sabot-expr`) native in-process vs as the built-in Wasm `filter`
//!    agent, with Arrow IPC both ways, on 8192-row batches.
//! 2. generator → filter agent → blackhole, events/s, beside generator → blackhole.
//! 3. Module start: compile (cold) vs load from the compile cache (warm).
//! 4. Keyed state from a Wasm agent (five primitives updated per row, batched), memory vs
//!    RocksDB, beside the same pipeline with a stateless pass-through agent.
//!
//! `SABOT_BENCH_EVENTS` sets the pipeline size (default 5 000 000).

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

/// The allocator of the `sabot` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use sabot_host::connectors::Source;
use sabot_host::connectors::generator::GeneratorSpec;
use sabot_host::wasm::{
    AgentInstance, AgentMetrics, AgentModule, Builtins, CompileCache, Limits, ModuleSource, Tags,
    WasmRuntime,
};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

const PREDICATE: &str = "amount > 1000 AND country <> 'KP'";
const BATCH: usize = 8192;

fn batches(count: usize) -> Vec<RecordBatch> {
    let spec: GeneratorSpec =
        toml::from_str(&format!("count = {}\nfraud_rate = 0.01", count * BATCH)).unwrap();
    let mut generator = spec.open(BATCH);
    std::iter::from_fn(|| generator.next_batch().unwrap()).collect()
}

/// Best of `rounds` timings of `f` over all batches, as rows/s.
fn rows_per_sec(
    rounds: usize,
    input: &[RecordBatch],
    mut f: impl FnMut(&RecordBatch) -> usize,
) -> (f64, usize) {
    let rows: usize = input.iter().map(RecordBatch::num_rows).sum();
    let mut best = Duration::MAX;
    let mut kept = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        kept = input.iter().map(&mut f).sum();
        best = best.min(started.elapsed());
    }
    (rows as f64 / best.as_secs_f64(), kept)
}

fn main() {
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 5_000_000);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = || CompileCache::new(Some(cache_dir.path().into()));
    // Built-in operators as sandboxed components (what the Wasm rows measure, whatever
    // `SABOT_BUILTINS` says), and as the host runs them by default: natively.
    let runtime = WasmRuntime::with_builtins(cache(), Builtins::Wasm).unwrap();
    let native_runtime = WasmRuntime::with_builtins(cache(), Builtins::Native).unwrap();

    println!("# Sabot foundation benchmarks ({BATCH}-row batches)\n");

    // 3. Cold vs warm start of the filter operator.
    let started = Instant::now();
    let module = runtime
        .load(&ModuleSource::Builtin("filter".into()))
        .unwrap();
    let cold = started.elapsed();
    let warm_runtime = WasmRuntime::with_builtins(cache(), Builtins::Wasm).unwrap();
    let started = Instant::now();
    let warm_module = warm_runtime
        .load(&ModuleSource::Builtin("filter".into()))
        .unwrap();
    let warm = started.elapsed();
    let started = Instant::now();
    let native_module = native_runtime
        .load(&ModuleSource::Builtin("filter".into()))
        .unwrap();
    let native_start = started.elapsed();
    println!(
        "## Module start (builtin:filter, {:.1} MiB component)\n",
        module.size as f64 / (1 << 20) as f64
    );
    println!("| start | time | |");
    println!("|---|---|---|");
    println!(
        "| cold (compile, {:?}) | {:.1} ms | 1.00× |",
        module.cache,
        cold.as_secs_f64() * 1e3
    );
    println!(
        "| warm (compile cache, {:?}) | {:.1} ms | {:.1}× faster |",
        warm_module.cache,
        warm.as_secs_f64() * 1e3,
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    println!(
        "| native built-in (the default, {:?}) | {:.2} ms | {:.0}× faster |\n",
        native_module.cache,
        native_start.as_secs_f64() * 1e3,
        cold.as_secs_f64() / native_start.as_secs_f64()
    );

    // 1. Native vs Wasm filter.
    let input = batches(120);
    let predicate = sabot_expr::Predicate::parse(PREDICATE).unwrap();
    let (native, native_kept) =
        rows_per_sec(5, &input, |b| predicate.filter(b).unwrap().num_rows());
    // The filter as an agent of `runtime`: rows/s and rows kept.
    let filter_agent = |runtime: &Arc<WasmRuntime>, module: Arc<AgentModule>| {
        let mut instance = AgentInstance::start(
            runtime.clone(),
            module,
            serde_json::json!({ "where": PREDICATE }).to_string(),
            Limits::default(),
            Tags::default(),
            Arc::new(AgentMetrics::default()),
            sabot_host::state::StateScope::standalone("bench"),
        )
        .unwrap();
        rows_per_sec(5, &input, |b| {
            instance
                .process(0, b)
                .unwrap()
                .iter()
                .map(|(_, o)| o.num_rows())
                .sum()
        })
    };
    let (wasm, wasm_kept) = filter_agent(&runtime, module.clone());
    assert_eq!(native_kept, wasm_kept, "native and Wasm filters disagree");
    let (builtin_rate, builtin_kept) = filter_agent(&native_runtime, native_module);
    assert_eq!(native_kept, builtin_kept, "the native built-in disagrees");
    println!(
        "## Filter `{PREDICATE}` ({} rows, best of 5)\n",
        input.len() * BATCH
    );
    println!("| implementation | rows/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| native, in-process (baseline) | {:.2} M | 1.00× |",
        native / 1e6
    );
    println!(
        "| Wasm agent (the built-in as a component), IPC both ways | {:.2} M | {:.2}× |",
        wasm / 1e6,
        wasm / native
    );
    println!(
        "| the built-in run natively by the host (the default) | {:.2} M | {:.2}× |\n",
        builtin_rate / 1e6,
        builtin_rate / native
    );

    // Where the time goes: the IPC framing on the host side alone, and an agent that passes
    // every batch through unchanged (all the crossing costs, no compute).
    let mut encoder = sabot_sdk::ipc::BatchEncoder::new();
    let encoded: Vec<Vec<u8>> = input.iter().map(|b| encoder.encode(b).unwrap()).collect();
    let mut enc = sabot_sdk::ipc::BatchEncoder::new();
    let (encode, _) = rows_per_sec(5, &input, |b| enc.encode(b).unwrap().len());
    let started = Instant::now();
    let mut decoder = sabot_sdk::ipc::BatchDecoder::new();
    for bytes in &encoded {
        decoder.decode(bytes.clone()).unwrap();
    }
    let decode = (input.len() * BATCH) as f64 / started.elapsed().as_secs_f64();
    let passthrough_module = runtime
        .load(&ModuleSource::Path(sabot_test_artifacts::MISBEHAVE.into()))
        .unwrap();
    let mut passthrough = AgentInstance::start(
        runtime.clone(),
        passthrough_module,
        r#"{"mode":"pass"}"#.into(),
        Limits::default(),
        Tags::default(),
        Arc::new(AgentMetrics::default()),
        sabot_host::state::StateScope::standalone("bench"),
    )
    .unwrap();
    let (pass, _) = rows_per_sec(5, &input, |b| {
        passthrough.process(0, b).unwrap()[0].1.num_rows()
    });
    let pass_through_rows_per_s = pass;
    println!(
        "## Where the time goes ({} bytes of IPC per batch)\n",
        encoded[1].len()
    );
    println!("| step | rows/s | ratio to native filter |");
    println!("|---|---|---|");
    println!(
        "| host: encode a batch as IPC | {:.2} M | {:.2}× |",
        encode / 1e6,
        encode / native
    );
    println!(
        "| host: decode + validate a batch | {:.2} M | {:.2}× |",
        decode / 1e6,
        decode / native
    );
    println!(
        "| Wasm pass-through agent (all crossing costs, no compute) | {:.2} M | {:.2}× |\n",
        pass / 1e6,
        pass / native
    );

    // 2. Whole pipelines.
    let run = |agent: bool, runtime: &Arc<WasmRuntime>| {
        let text = if agent {
            format!(
                "edges = [\"gen -> f -> out\"]\n[pipeline]\nbatch_size = {BATCH}\n[sources.gen]\ntype = \"generator\"\ncount = {events}\n[agents.f]\nmodule = \"builtin:filter\"\nconfig = {{ where = \"{PREDICATE}\" }}\n[sinks.out]\ntype = \"blackhole\"\n"
            )
        } else {
            format!(
                "edges = [\"gen -> out\"]\n[pipeline]\nbatch_size = {BATCH}\n[sources.gen]\ntype = \"generator\"\ncount = {events}\n[sinks.out]\ntype = \"blackhole\"\n"
            )
        };
        let spec = PipelineSpec::parse(&text, std::path::Path::new("bench.toml")).unwrap();
        let pipeline = Pipeline::new(spec, runtime.clone()).unwrap();
        let summary = pipeline.run(RunOptions::default()).unwrap();
        summary.events_in as f64 / summary.elapsed.as_secs_f64()
    };
    let baseline = run(false, &runtime);
    let with_agent = run(true, &runtime);
    let with_builtin = run(true, &native_runtime);
    println!("## Pipeline, {events} events\n");
    println!("| pipeline | events/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| generator → blackhole (baseline) | {:.2} M | 1.00× |",
        baseline / 1e6
    );
    println!(
        "| generator → filter agent (Wasm) → blackhole | {:.2} M | {:.2}× |",
        with_agent / 1e6,
        with_agent / baseline
    );
    println!(
        "| generator → `builtin:filter` (native, the default) → blackhole | {:.2} M | {:.2}× |",
        with_builtin / 1e6,
        with_builtin / baseline
    );

    // 4. Keyed state.
    let state_events = (events / 5).max(100_000);
    let misbehave = sabot_test_artifacts::MISBEHAVE;
    let stateful = |mode: &str, backend: &str| {
        let text = format!(
            "edges = [\"gen -> m -> out\"]\n[pipeline]\nbatch_size = {BATCH}\nstate = \"{backend}\"\n[sources.gen]\ntype = \"generator\"\ncount = {state_events}\ncards = 100000\n[agents.m]\nmodule = {misbehave:?}\nparallelism = 2\nkey = \"card_id\"\nconfig = {{ mode = \"{mode}\" }}\n[sinks.out]\ntype = \"blackhole\"\n"
        );
        let spec = PipelineSpec::parse(&text, std::path::Path::new("bench.toml")).unwrap();
        let pipeline = Pipeline::new(spec, runtime.clone()).unwrap();
        let summary = pipeline.run(RunOptions::default()).unwrap();
        summary.events_in as f64 / summary.elapsed.as_secs_f64()
    };
    let pass = stateful("pass", "memory");
    let memory = stateful("count", "memory");
    let rocks = stateful("count", "rocksdb");
    let all_memory = stateful("state", "memory");
    println!(
        "\n## Keyed state from a Wasm agent, {state_events} events over 100 000 cards, 2 instances\n"
    );
    println!(
        "`count`: a ReducingState per card, updated with one batched read and one batched write per"
    );
    println!(
        "batch (2 state operations per row). `five primitives`: count, sum, mean, list and a map of"
    );
    println!(
        "merchants, with per-row map calls and per-card reads (a test fixture, not the fast path).\n"
    );
    println!("| agent | events/s | state ops/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| stateless pass-through (baseline) | {:.2} M | | 1.00× |",
        pass / 1e6
    );
    println!(
        "| count, memory backend | {:.2} M | {:.2} M | {:.2}× |",
        memory / 1e6,
        2.0 * memory / 1e6,
        memory / pass
    );
    println!(
        "| count, RocksDB backend | {:.2} M | {:.2} M | {:.2}× |",
        rocks / 1e6,
        2.0 * rocks / 1e6,
        rocks / pass
    );
    println!(
        "| five primitives, memory backend | {:.3} M | | {:.3}× |",
        all_memory / 1e6,
        all_memory / pass
    );

    // 5. What the sandbox's budget accounting costs per call, beside the call it guards.
    budget_accounting(&input, pass_through_rows_per_s, rocks);
}

/// The host's budget accounting per call — the output's row count and the size its rows expand
/// to (`limits::expanded_bytes`), and for a stateful call the state-size check of its batched
/// write (`StateBackend::size_bytes`, RocksDB) — timed alone and set beside the time of the calls
/// it guards, measured in this run: a pass-through call on an 8192-row batch (the cheapest call
/// there is) and a `count` call in the RocksDB pipeline (2 instances).
fn budget_accounting(input: &[RecordBatch], pass_rows_per_s: f64, rocks_events_per_s: f64) {
    use sabot_host::state::StateBackend;
    let rounds = 20;
    let started = Instant::now();
    let mut bytes = 0u64;
    for _ in 0..rounds {
        for batch in input {
            bytes = bytes.wrapping_add(std::hint::black_box(
                sabot_host::wasm::limits::expanded_bytes(batch),
            ));
        }
    }
    let output_check = started.elapsed().as_secs_f64() / (rounds * input.len()) as f64;
    std::hint::black_box(bytes);

    let dir = tempfile::tempdir().unwrap();
    let rocks = sabot_host::state::RocksBackend::open(dir.path()).unwrap();
    for chunk in 0..10u64 {
        rocks
            .write(
                (chunk * 10_000..(chunk + 1) * 10_000)
                    .map(|k| (k.to_be_bytes().to_vec(), Some(vec![7u8; 24])))
                    .collect(),
            )
            .unwrap();
    }
    let checks = 20_000;
    let started = Instant::now();
    for _ in 0..checks {
        std::hint::black_box(rocks.size_bytes());
    }
    let size_check = started.elapsed().as_secs_f64() / f64::from(checks);

    // A pass-through call on a whole batch; a `count` call on an instance's half of one.
    let pass_call = BATCH as f64 / pass_rows_per_s;
    let count_call = 2.0 * (BATCH as f64 / 2.0) / rocks_events_per_s;
    let count_accounting = output_check / 2.0 + size_check;
    println!("\n## Budget accounting per call\n");
    println!("| call | call (baseline) | accounting | share |");
    println!("|---|---|---|---|");
    println!(
        "| pass-through, {BATCH} rows: output rows + expanded bytes | {:.1} µs | {:.2} µs | {:.2} % |",
        pass_call * 1e6,
        output_check * 1e6,
        100.0 * output_check / pass_call
    );
    println!(
        "| `count` with RocksDB, {} rows: output + state size | {:.1} µs | {:.2} µs | {:.2} % |",
        BATCH / 2,
        count_call * 1e6,
        count_accounting * 1e6,
        100.0 * count_accounting / count_call
    );
}
