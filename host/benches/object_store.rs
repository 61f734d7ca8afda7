//! `cargo bench -p sabot-host --bench object_store`: checkpoints in an S3-compatible object store
//! (S3Proxy on loopback, fetched by `scripts/s3.sh`: `. scripts/s3.sh && sabot_s3_fetch` first).
//! Every figure is printed beside a baseline measured in the same run; nothing is asserted.
//!
//! 1. Upload and download of a RocksDB snapshot (`SABOT_BENCH_STATE_MB`, default 256) through
//!    the checkpoint store's object storage, beside copying the same files on the local disk.
//! 2. The stateful fraud example with a checkpoint every second into the object store, beside
//!    the same into the data directory and without checkpoints (`SABOT_BENCH_EVENTS`, default
//!    5 000 000; medians of 3 interleaved runs).

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sabot_host::checkpoint::store::FileEntry;
use sabot_host::checkpoint::{Remote, StorageSpec};
use sabot_host::connectors::SinkSpec;
use sabot_host::connectors::blackhole::BlackholeSpec;
use sabot_host::state::{BackendKind, StateScope, open_instance, owned_key_groups};
use sabot_host::wasm::{CompileCache, ModuleSource, WasmRuntime};
use sabot_host::{Pipeline, PipelineSpec, RunOptions};

/// S3Proxy on a free loopback port, objects under `dir`.
struct Server(Child);

impl Server {
    fn start(dir: &Path) -> (Self, String) {
        let lib = std::env::var("SABOT_S3PROXY_LIB")
            .expect("SABOT_S3PROXY_LIB: run `. scripts/s3.sh && sabot_s3_fetch` first");
        let logback = std::env::var("SABOT_S3PROXY_LOGBACK").unwrap_or_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::create_dir_all(dir.join("objects/bench")).unwrap();
        let conf = dir.join("s3proxy.conf");
        std::fs::write(
            &conf,
            format!(
                "s3proxy.endpoint=http://127.0.0.1:{port}\ns3proxy.authorization=aws-v2-or-v4\n\
                 s3proxy.identity=bench\ns3proxy.credential=bench-secret\n\
                 jclouds.provider=filesystem\njclouds.filesystem.basedir={}\n",
                dir.join("objects").display()
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .arg(format!("-Dlogback.configurationFile={logback}"))
            .args([
                "-Xmx512m",
                "-cp",
                &format!("{lib}/*"),
                "org.gaul.s3proxy.Main",
            ])
            .arg("--properties")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "S3Proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (Server(child), format!("http://127.0.0.1:{port}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn storage(endpoint: &str, prefix: &str) -> StorageSpec {
    StorageSpec {
        url: format!("s3://bench/{prefix}"),
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some("bench".into()),
        secret_access_key: Some("bench-secret".into()),
    }
}

fn files(base: &Path, dir: &Path, out: &mut Vec<FileEntry>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(base, &p, out);
        } else {
            out.push(FileEntry {
                path: p.strip_prefix(base).unwrap().to_string_lossy().into_owned(),
                size: e.metadata().unwrap().len(),
            });
        }
    }
}

/// A RocksDB snapshot of about `mb` MiB of random values, in `dir/snapshot`.
fn snapshot(dir: &Path, mb: u64) -> PathBuf {
    let backend = open_instance(
        BackendKind::Rocksdb,
        &dir.join("work"),
        None,
        0,
        1,
        owned_key_groups(0, 1),
        0,
    )
    .unwrap();
    let scope = StateScope::new(backend.clone(), "bench", 0, 1, true);
    let mut rng = fastrand::Rng::with_seed(1);
    let entries = (mb << 20) / 264;
    let mut key = 0i64;
    while (key as u64) < entries {
        let writes = (0..65_536)
            .map(|_| {
                key += 1;
                let value: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(240).collect();
                ((key.to_le_bytes().to_vec(), Vec::new()), Some(value))
            })
            .collect();
        scope.write("s", writes).unwrap();
    }
    let snapshot = dir.join("snapshot");
    std::fs::create_dir_all(&snapshot).unwrap();
    backend.snapshot(&snapshot).unwrap();
    snapshot
}

fn fraud(runtime: &Arc<WasmRuntime>, events: u64, checkpoint: Option<&str>) -> f64 {
    let workspace = sabot_test_artifacts::workspace();
    let path = workspace.join("examples/fraud-detection/pipeline.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("count = 1_000_000", &format!("count = {events}"));
    text = text.replace("[pipeline.checkpoint]\ninterval_ms = 1000\n", "");
    if let Some(storage) = checkpoint {
        text = text.replace(
            "[sources.transactions]",
            &format!(
                "[pipeline.checkpoint]\ninterval_ms = 1000\n{storage}\n[sources.transactions]"
            ),
        );
    }
    let modules = [
        (
            "rules".to_owned(),
            ModuleSource::Path(sabot_test_artifacts::FRAUD_RULES.into()),
        ),
        (
            "score".to_owned(),
            ModuleSource::Path(sabot_test_artifacts::FRAUD_SCORE.into()),
        ),
    ];
    let mut spec = PipelineSpec::parse_with_modules(&text, &path, &modules).unwrap();
    for sink in spec.sinks.values_mut() {
        *sink = SinkSpec::Blackhole(BlackholeSpec {});
    }
    let data = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(spec, runtime.clone()).unwrap();
    let summary = pipeline
        .run(RunOptions {
            data_dir: Some(data.path().into()),
            fresh: true,
            ..RunOptions::default()
        })
        .unwrap();
    assert_eq!(summary.events_in, events);
    summary.events_in as f64 / summary.elapsed.as_secs_f64()
}

fn main() {
    let state_mb = sabot_test_artifacts::bench_setting("SABOT_BENCH_STATE_MB", 256);
    let events = sabot_test_artifacts::bench_setting("SABOT_BENCH_EVENTS", 5_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let (_server, endpoint) = Server::start(&tmp.path().join("s3"));

    println!("# Sabot checkpoints in object storage (S3Proxy on loopback)\n");
    let snapshot = snapshot(&tmp.path().join("state"), state_mb);
    let mut list = Vec::new();
    files(&snapshot, &snapshot, &mut list);
    let bytes: u64 = list.iter().map(|f| f.size).sum();
    let mb = bytes as f64 / (1 << 20) as f64;

    let started = Instant::now();
    let copy = tmp.path().join("copy");
    for f in &list {
        let to = copy.join(&f.path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(snapshot.join(&f.path), to).unwrap();
    }
    let copied = started.elapsed().as_secs_f64();

    let remote = Remote::open(&storage(&endpoint, "transfer"), "bench").unwrap();
    let started = Instant::now();
    remote.upload(1, &snapshot, &list, b"{}".to_vec()).unwrap();
    let uploaded = started.elapsed().as_secs_f64();
    let into = tmp.path().join("downloaded");
    std::fs::create_dir_all(&into).unwrap();
    let started = Instant::now();
    remote.download(1, &list, &into).unwrap();
    let downloaded = started.elapsed().as_secs_f64();

    println!(
        "## A RocksDB snapshot: {} files, {mb:.0} MiB, 8 transfers at a time\n",
        list.len()
    );
    println!("| step | MiB/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| copy on the local disk (baseline) | {:.0} | 1.00× |",
        mb / copied
    );
    println!(
        "| upload to the object store | {:.0} | {:.2}× |",
        mb / uploaded,
        copied / uploaded
    );
    println!(
        "| download from the object store | {:.0} | {:.2}× |",
        mb / downloaded,
        copied / downloaded
    );

    let cache = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(CompileCache::new(Some(cache.path().into()))).unwrap();
    fraud(&runtime, 10_000, None);
    let storage_toml = format!(
        "[pipeline.checkpoint.storage]\nurl = \"s3://bench/fraud\"\nendpoint = \"{endpoint}\"\n\
         region = \"us-east-1\"\naccess_key_id = \"bench\"\nsecret_access_key = \"bench-secret\"\n"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut none, mut local, mut remote) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        none.push(fraud(&runtime, events, None));
        local.push(fraud(&runtime, events, Some("")));
        remote.push(fraud(&runtime, events, Some(&storage_toml)));
    }
    let (none, local, remote) = (median(none), median(local), median(remote));
    println!(
        "\n## Stateful fraud detection, {events} events, a checkpoint every second (medians of 3)\n"
    );
    println!("| checkpoints | events/s | vs none |");
    println!("|---|---|---|");
    println!("| none (baseline) | {:.2} M | 1.00× |", none / 1e6);
    println!(
        "| every second, data directory | {:.2} M | {:+.1} % |",
        local / 1e6,
        (local / none - 1.0) * 100.0
    );
    println!(
        "| every second, object store | {:.2} M | {:+.1} % |",
        remote / 1e6,
        (remote / none - 1.0) * 100.0
    );
}
