//! `cargo bench -p sabot-host --bench serve`: the control plane of `sabot serve`, measured
//! against the `sabot` binary over loopback HTTP. Nothing here is asserted.
//!
//! 1. **Upload to active**: a typical Rust agent (the fraud rules, a 4 MiB component with
//!    arrow) uploaded to a server with an empty compile cache (compiled and checked on upload),
//!    then swapped into a pipeline running at full speed; the time until every instance runs it.
//! 2. **Swap pause**: the time one instance's data path stops for a swap (instantiation and
//!    `init` of the new version at the barrier), over `SABOT_BENCH_SWAPS` swaps (default 10),
//!    beside the time of one batch's `process` call in the same run (the baseline).
//! 3. **API latency** under load: p50/p99 of `GET /v1/pipelines/NAME` and `GET /metrics` while
//!    the pipeline runs at full speed, beside the same requests with the pipeline stopped.

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its table on standard output"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "bench-token-0123456789abcdef";

struct Server {
    child: Child,
    url: String,
    http: ureq::Agent,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("SABOT_TOKEN", TOKEN)
            .env("SABOT_PROBATION_MS", "200")
            .env("SABOT_CHECKPOINT_MS", "500")
            .env("SABOT_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("sabot: listening on ")
            .expect("the server's address")
            .to_owned();
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Server {
            child,
            url,
            http,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> Value {
        let mut r = self
            .http
            .get(&format!("{}{path}", self.url))
            .call()
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null)
    }

    fn get_timed(&self, path: &str) -> Duration {
        let started = Instant::now();
        let mut r = self
            .http
            .get(&format!("{}{path}", self.url))
            .call()
            .unwrap();
        let _ = r.body_mut().read_to_vec().unwrap();
        started.elapsed()
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Value {
        let mut r = self
            .http
            .post(&format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert!(status < 300, "{path}: {status} {v}");
        v
    }

    /// Swaps the agent to `module` and waits until every instance runs it.
    fn swap(&self, module: &str) -> Value {
        let swap = self.post(
            "/v1/pipelines/bench/agents/rules/swap",
            "application/json",
            serde_json::json!({ "module": module })
                .to_string()
                .as_bytes(),
        );
        loop {
            let swaps = self.get("/v1/pipelines/bench/swaps");
            let this = swaps
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == swap["id"])
                .unwrap()
                .clone();
            match this["state"].as_str().unwrap() {
                "active" => return this,
                "rolled-back" => panic!("swap rolled back: {this}"),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let swaps = sabot_test_artifacts::bench_setting("SABOT_BENCH_SWAPS", 10) as usize;
    let requests = sabot_test_artifacts::bench_setting("SABOT_BENCH_REQUESTS", 500) as usize;
    let server = Server::start();
    let rules = std::fs::read(sabot_test_artifacts::FRAUD_RULES).unwrap();
    println!(
        "control plane, fraud rules agent ({:.1} MiB component), loopback HTTP",
        rules.len() as f64 / (1 << 20) as f64
    );

    // 1. Upload (cold compile) and swap to active.
    let started = Instant::now();
    server.post("/v1/modules/fraud/1", "application/wasm", &rules);
    let first_upload = started.elapsed();
    let pipeline = r#"edges = ["gen -> rules -> out"]
[pipeline]
name = "bench"
[sources.gen]
type = "generator"
cards = 2000
[agents.rules]
module = "fraud@1"
key = "card_id"
parallelism = 2
[agents.rules.config]
over_limit_factor = 1.5
blacklisted_merchants = ["m99001"]
high_risk_countries = ["KP"]
[sinks.out]
type = "blackhole"
"#;
    server.post(
        "/v1/pipelines?start=true",
        "application/toml",
        pipeline.as_bytes(),
    );
    while server.get("/v1/pipelines/bench")["checkpoints"]["completed"].as_u64() == Some(0) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    server.post(
        "/v1/modules/fraud/2",
        "application/wasm",
        &sabot_test_artifacts::component_variant(&rules, "v2"),
    );
    let upload = started.elapsed();
    let swap = server.swap("fraud@2");
    let switch = Duration::from_micros(swap["switch_us"].as_u64().unwrap());
    println!("\nupload to active (empty compile cache, pipeline at full speed)");
    println!(
        "  first upload (compile + checks)   {:>9.1} ms",
        ms(first_upload)
    );
    println!("  upload of v2 (compile + checks)   {:>9.1} ms", ms(upload));
    println!(
        "  swap request to every instance on v2 {:>6.1} ms",
        ms(switch)
    );
    println!(
        "  upload to active                  {:>9.1} ms",
        ms(upload + switch)
    );

    // 2. The pause each swap causes, beside one batch's call.
    let mut pauses = Vec::new();
    for i in 0..swaps {
        let s = server.swap(if i % 2 == 0 { "fraud@1" } else { "fraud@2" });
        pauses.push(Duration::from_micros(s["pause_us"].as_u64().unwrap()));
    }
    let agents = server.get("/v1/pipelines/bench/agents");
    let calls = agents[0]["calls"].as_f64().unwrap();
    let text = {
        let mut r = server
            .http
            .get(&format!("{}/metrics", server.url))
            .call()
            .unwrap();
        r.body_mut().read_to_string().unwrap()
    };
    let busy: f64 = text
        .lines()
        .find(|l| l.starts_with("sabot_agent_call_duration_seconds_sum{pipeline=\"bench\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let per_call = Duration::from_secs_f64(busy / calls.max(1.0));
    let median = quantile(pauses.clone(), 0.5);
    println!("\nswap pause in the data path ({swaps} swaps, target < 10 ms)");
    println!(
        "  median {:>8.2} ms   max {:>8.2} ms",
        ms(median),
        ms(quantile(pauses, 1.0))
    );
    println!(
        "  baseline: one process call (8 192 rows) {:>6.2} ms; median pause = {:.2} calls",
        ms(per_call),
        median.as_secs_f64() / per_call.as_secs_f64()
    );

    // 3. API latency with the pipeline at full speed, then stopped.
    let measure = |server: &Server| {
        let mut status = Vec::new();
        let mut metrics = Vec::new();
        for _ in 0..requests {
            status.push(server.get_timed("/v1/pipelines/bench"));
            metrics.push(server.get_timed("/metrics"));
        }
        (status, metrics)
    };
    let (busy_status, busy_metrics) = measure(&server);
    let rate = {
        let p = server.get("/v1/pipelines/bench");
        p["nodes"][0]["rows_out"].as_f64().unwrap() / (p["uptime_ms"].as_f64().unwrap() / 1e3)
    };
    server.post("/v1/pipelines/bench/stop?wait=true", "text/plain", b"");
    let (idle_status, idle_metrics) = measure(&server);
    println!(
        "\nAPI latency ({requests} requests each; pipeline at {:.0} K events/s, then stopped)",
        rate / 1e3
    );
    println!(
        "  {:<26} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "", "p50 busy", "p99 busy", "p50 idle", "p99 idle", "p99 ×"
    );
    for (name, busy, idle) in [
        ("GET /v1/pipelines/bench", busy_status, idle_status),
        ("GET /metrics", busy_metrics, idle_metrics),
    ] {
        let (b50, b99) = (quantile(busy.clone(), 0.5), quantile(busy, 0.99));
        let (i50, i99) = (quantile(idle.clone(), 0.5), quantile(idle, 0.99));
        println!(
            "  {name:<26} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>6.2}×",
            ms(b50),
            ms(b99),
            ms(i50),
            ms(i99),
            b99.as_secs_f64() / i99.as_secs_f64()
        );
    }
}
