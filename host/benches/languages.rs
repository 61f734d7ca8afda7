//! `cargo bench -p sabot-host --bench languages`: the same fraud rules
//! (`examples/fraud-detection/languages.toml`: three stateless rules and velocity in keyed state)
//! in Rust, JavaScript, Python and Go, on the same input in the same run: events/s of the whole
//! pipeline and the ratio to the Rust agent. Then, for JavaScript, where the time goes: the same
//! pipeline with agents that stop after decoding, after reading the columns, and after the rules.
//! Nothing here is asserted.
//!
//! `SABOT_BENCH_EVENTS` sets the input size (default 1 000 000); the figure is the median of
//! `SABOT_BENCH_ROUNDS` runs (default 3), the languages interleaved.

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

/// The allocator of the `sabot` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sabot_host::connectors::SinkSpec;
use sabot_host::connectors::blackhole::BlackholeSpec;
use sabot_host::wasm::{CompileCache, ModuleSource, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};
use sabot_test_artifacts::languages::{self, Language};

/// Events/s of the languages example with `module` as the rules, `events` events.
fn run(runtime: &Arc<WasmRuntime>, module: &Path, events: u64) -> f64 {
    let workspace = sabot_test_artifacts::workspace();
    let file = workspace.join("examples/fraud-detection/languages.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("count = 200_000", &format!("count = {events}"));
    let mut spec = PipelineSpec::parse_with_modules(
        &text,
        &file,
        &[("rules".to_owned(), ModuleSource::Path(module.to_path_buf()))],
    )
    .unwrap();
    for sink in spec.sinks.values_mut() {
        *sink = SinkSpec::Blackhole(BlackholeSpec {});
    }
    let summary = Pipeline::new(spec, runtime.clone())
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    assert_eq!(summary.events_in, events);
    summary.events_in as f64 / summary.elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// JavaScript agents that do part of the rules' work, to see where the time goes.
fn js_stages(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let stages = [
        (
            "decode only (return nothing)",
            "export default function () { return undefined; }\n",
        ),
        (
            "+ read amount, limit (typed arrays) and merchant, country (stringsOf)",
            "import { stringsOf } from '@sabot/agent';\n\
             export default function (t) {\n\
               const a = t.getChild('amount').toArray(); const l = t.getChild('card_limit').toArray();\n\
               const m = stringsOf(t.getChild('merchant_id')); const c = stringsOf(t.getChild('country'));\n\
               let n = 0; for (let i = 0; i < a.length; i++) if (a[i] > l[i] || m[i] === 'x' || c[i] === 'y') n++;\n\
               return undefined;\n\
             }\n",
        ),
        (
            "+ the same, reading strings row by row with get(i)",
            "export default function (t) {\n\
               const m = t.getChild('merchant_id'); const c = t.getChild('country');\n\
               let n = 0; for (let i = 0; i < t.numRows; i++) if (m.get(i) === 'x' || c.get(i) === 'y') n++;\n\
               return undefined;\n\
             }\n",
        ),
    ];
    let sdk = sabot_test_artifacts::workspace().join("guest-sdk/js/build.mjs");
    stages
        .into_iter()
        .enumerate()
        .map(|(i, (name, source))| {
            let js = dir.join(format!("stage{i}.js"));
            let wasm = dir.join(format!("stage{i}.wasm"));
            std::fs::write(&js, source).unwrap();
            let out = std::process::Command::new("node")
                .arg(&sdk)
                .arg(&js)
                .arg("-o")
                .arg(&wasm)
                .output()
                .expect("node");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            (name, wasm)
        })
        .collect()
}

fn main() {
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 1_000_000);
    let rounds = sabot_test_artifacts::bench_setting("SABOT_BENCH_ROUNDS", 3).max(1);
    let cache_dir = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(CompileCache::new(Some(cache_dir.path().into()))).unwrap();
    let sabot = Path::new(env!("CARGO_BIN_EXE_sabot"));

    let mut agents: Vec<(String, PathBuf)> =
        vec![("Rust".into(), sabot_test_artifacts::FRAUD_RULES.into())];
    for language in languages::ALL {
        agents.push((
            language.to_string(),
            languages::fraud_rules(language, sabot).to_path_buf(),
        ));
    }
    // Compile once, outside the timings.
    for (_, module) in &agents {
        run(&runtime, module, 10_000);
    }

    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); agents.len()];
    for _ in 0..rounds {
        for (i, (_, module)) in agents.iter().enumerate() {
            samples[i].push(run(&runtime, module, events));
        }
    }
    let rust = median(samples[0].clone());
    println!("# The same fraud rules in four languages\n");
    println!(
        "examples/fraud-detection/languages.toml, {events} events, 2 instances keyed by card, median of {rounds}\n"
    );
    println!("| agent | events/s | vs Rust |");
    println!("|---|---|---|");
    for ((name, _), s) in agents.iter().zip(samples) {
        let m = median(s);
        println!("| {name} | {:.0} K | {:.2}× |", m / 1e3, m / rust);
    }

    let dir = tempfile::tempdir().unwrap();
    let stages = js_stages(dir.path());
    for (_, module) in &stages {
        run(&runtime, module, 10_000);
    }
    println!("\n## JavaScript: where the time goes\n");
    println!("| JavaScript agent that stops after… | events/s |");
    println!("|---|---|");
    for (name, module) in &stages {
        let m = median((0..rounds).map(|_| run(&runtime, module, events)).collect());
        println!("| {name} | {:.0} K |", m / 1e3);
    }
    let js = languages::fraud_rules(Language::JavaScript, sabot);
    let m = median((0..rounds).map(|_| run(&runtime, js, events)).collect());
    println!(
        "| the whole rules (+ velocity state, take, encode) | {:.0} K |",
        m / 1e3
    );
}
