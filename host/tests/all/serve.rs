//! `sabot serve` end to end over real HTTP on loopback: the modules and pipelines APIs, auth, a
//! flood of malformed uploads, hot swaps under load (exactly-once, state kept), rollback, the
//! metrics, the CLI against a server, and the dashboard in headless Chromium.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Scratch;
use sabot_test_artifacts::component_variant;

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";
/// A token with scope `read` (servers started with `SABOT_READ_TOKEN`).
pub(crate) const READ_TOKEN: &str = "read-token-0123456789abcdef";

/// A `sabot serve` process on a free loopback port, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    scratch: std::sync::Arc<Scratch>,
    http: ureq::Agent,
}

impl Server {
    pub(crate) fn start(env: &[(&str, &str)]) -> Self {
        Self::start_in(std::sync::Arc::new(Scratch::new()), env)
    }

    /// A server on the data directory of `scratch` (another server's, after a crash).
    pub(crate) fn start_in(scratch: std::sync::Arc<Scratch>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sabot"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(scratch.path("data"))
            .env("SABOT_TOKEN", TOKEN)
            .env("SABOT_CACHE_DIR", crate::support::cache_dir())
            .env("SABOT_PROBATION_MS", "600")
            .env("SABOT_CHECKPOINT_MS", "200")
            .env("SABOT_LOG", "warn")
            // Compiling an upload took 27 s on a busy 2-core CI machine (a Go component, a
            // module made to compile slowly), past the server's default 30 s request deadline:
            // a long one unless the test sets its own, so that uploads are not what tests
            // measure by accident.
            .env("SABOT_REQUEST_TIMEOUT_MS", "120000")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(scratch.path("server.log"))
                    .expect("the server's log file"),
            ));
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start sabot serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("sabot: listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server says where it listens");
        // A server with `SABOT_TLS_CERT`: the test's client trusts the CA in `SABOT_CA_CERT`
        // (a variable the server does not read). The client waits longer than any request
        // deadline a test gives the server: the server's deadlines are what tests measure.
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(240)));
        if let Some((_, ca)) = env.iter().find(|(k, _)| *k == "SABOT_CA_CERT") {
            let pem = std::fs::read(ca).unwrap();
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        let http = config.build().into();
        let server = Server {
            child,
            url,
            scratch,
            http,
        };
        server.wait_for("ready", Duration::from_secs(30), || {
            server.get("/readyz").0 == 200
        });
        server
    }

    pub(crate) fn answer(mut r: ureq::http::Response<ureq::Body>) -> (u16, Value) {
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GET `path` with the admin token.
    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        self.get_with(path, Some(TOKEN))
    }

    /// GET `path` with `token` (none: no `Authorization` header).
    pub(crate) fn get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(&format!("{}{path}", self.url));
        if let Some(t) = token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        Self::answer(request.call().unwrap())
    }

    pub(crate) fn text(&self, path: &str) -> String {
        match self.get(path).1 {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", content_type);
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let request = request.body(body.to_vec()).unwrap();
        match self.http.run(request) {
            Ok(r) => Self::answer(r),
            // The server may close a connection whose body it refused before reading it all.
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    pub(crate) fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        self.send("POST", path, content_type, body, Some(TOKEN))
    }

    pub(crate) fn delete(&self, path: &str) -> (u16, Value) {
        self.send("DELETE", path, "text/plain", b"", Some(TOKEN))
    }

    pub(crate) fn upload(&self, name: &str, version: &str, bytes: &[u8]) -> (u16, Value) {
        self.post(
            &format!("/v1/modules/{name}/{version}"),
            "application/wasm",
            bytes,
        )
    }

    pub(crate) fn create(&self, toml: &str, start: bool) -> Value {
        let (status, body) = self.post(
            &format!("/v1/pipelines?start={start}"),
            "application/toml",
            toml.as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
        body
    }

    pub(crate) fn pipeline(&self, name: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/pipelines/{name}"));
        assert_eq!(status, 200, "{body}");
        body
    }

    #[track_caller]
    pub(crate) fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.pipeline(name);
            if last["status"] == status {
                return last;
            }
            assert!(
                Instant::now() < deadline,
                "pipeline {name} did not become {status}: {last:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Swaps `agent` of the running `pipeline` from version `from` to `to` with `sabot swap`,
    /// and checks the pipeline kept running on `to`.
    #[track_caller]
    pub(crate) fn swap_running(&self, pipeline: &str, agent: &str, from: &str, to: &str) {
        let out = self.cli(&["swap", pipeline, agent, to], Some(TOKEN));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{from} → {to}: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains(&format!("{from} → {to}")), "{said}");
        let p = self.pipeline(pipeline);
        assert_eq!(p["status"], "running", "{from} → {to} under load: {p:#}");
        assert_eq!(p["nodes"][1]["version"], to);
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.scratch.path("data")
    }

    /// Runs the `sabot` CLI against this server.
    pub(crate) fn cli(&self, args: &[&str], token: Option<&str>) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sabot"));
        c.args(args)
            .env("SABOT_SERVER", &self.url)
            .env_remove("SABOT_TOKEN");
        if let Some(t) = token {
            c.env("SABOT_TOKEN", t);
        }
        c.output().unwrap()
    }
}

impl Server {
    /// Kills the server with SIGKILL; its data directory stays.
    pub(crate) fn crash(mut self) -> std::sync::Arc<Scratch> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.scratch.clone()
    }
}

impl Server {
    /// What the server wrote to stderr (its log), across restarts on the same directory.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- the server's log, last lines ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub(crate) fn module(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A keyed, stateful pipeline over `count` generated transactions at `rate` per second: the
/// `misbehave` agent in `state` mode emits, per card and batch, how many rows of the card it has
/// seen so far (kept in host state).
pub(crate) fn stateful(name: &str, module: &str, count: u64, rate: u64) -> String {
    format!(
        r#"edges = ["gen -> m -> out"]
[pipeline]
name = "{name}"
batch_size = 1000
[sources.gen]
type = "generator"
count = {count}
rate = {rate}
cards = 500
[agents.m]
module = "{module}"
key = "card_id"
parallelism = 2
config = {{ mode = "state" }}
[sinks.out]
type = "file"
path = "out/result.jsonl"
"#
    )
}

/// Checks the output of [`stateful`] is exactly once: per card, the `seen` counts strictly
/// increase (a duplicate repeats one, a replay goes back), and their final values add up to
/// every event (a lost event, or state lost in a swap, falls short).
#[track_caller]
pub(crate) fn assert_exactly_once(output: &Path, events: u64) {
    let text = std::fs::read_to_string(output).unwrap();
    let mut last: BTreeMap<i64, u64> = BTreeMap::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let card = row["card_id"].as_i64().unwrap();
        let seen = row["seen"].as_u64().unwrap();
        if let Some(before) = last.insert(card, seen) {
            assert!(
                seen > before,
                "card {card}: seen went from {before} to {seen}: a duplicate or replayed row"
            );
        }
    }
    let total: u64 = last.values().sum();
    assert_eq!(total, events, "events counted in state across the run");
}

#[test]
fn modules_are_stored_by_content_tagged_immutably_and_refused_with_reasons() {
    let s = Server::start(&[]);
    let plain = module(sabot_test_artifacts::PLAIN);
    let (status, info) = s.upload("echo", "1.0.0", &plain);
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["world"], "agent");
    assert_eq!(info["size"], plain.len());
    // The same bytes again: nothing new. Other bytes under the tag: refused.
    assert_eq!(s.upload("echo", "1.0.0", &plain).0, 200);
    let (status, body) = s.upload("echo", "1.0.0", &component_variant(&plain, "x"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("immutable"),
        "{body}"
    );

    // Multipart, as a browser or curl -F sends it.
    let boundary = "sabotboundary";
    let mut form = Vec::new();
    for (field, value) in [("name", "echo"), ("version", "2")] {
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    form.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"module\"; filename=\"echo.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes());
    form.extend_from_slice(&component_variant(&plain, "2"));
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, info) = s.post(
        "/v1/modules",
        &format!("multipart/form-data; boundary={boundary}"),
        &form,
    );
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["version"], "2");

    let (_, list) = s.get("/v1/modules");
    let tags: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}@{}",
                m["name"].as_str().unwrap(),
                m["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(tags, ["echo@1.0.0", "echo@2"]);
    assert_eq!(s.get("/v1/modules/echo/2").1["sha256"], info["sha256"]);
    assert_eq!(s.get("/v1/modules/echo/3").0, 404);

    // What is wrong is named: a core module, a component of another world, not Wasm.
    let core = wat::parse_str("(module)").unwrap();
    let (status, body) = s.upload("core", "1", &core);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module"),
        "{body}"
    );
    let empty = wat::parse_str("(component)").unwrap();
    let (status, body) = s.upload("empty", "1", &empty);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not implement the sabot:agent/agent@0.1.1 world"),
        "{body}"
    );

    // In use by a pipeline: not deleted. Unused: deleted, blob and all.
    s.create(
        "edges = [\"gen -> a -> out\"]\n[pipeline]\nname = \"uses-echo\"\n[sources.gen]\ntype = \"generator\"\ncount = 10\n[agents.a]\nmodule = \"echo@1.0.0\"\n[sinks.out]\ntype = \"blackhole\"\n",
        false,
    );
    let (status, body) = s.delete("/v1/modules/echo/1.0.0");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("uses-echo"),
        "{body}"
    );
    let (status, _) = s.delete("/v1/modules/echo/2");
    assert_eq!(status, 200);
    assert_eq!(s.get("/v1/modules/echo/2").0, 404);
    let blobs = std::fs::read_dir(s.data().join("modules/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 1, "only echo@1.0.0's bytes are left");
}

/// An upload refused for its size before its body is read is answered with `Connection: close`:
/// the server closes that connection, and a client that kept it for its next request would see
/// that request fail with a broken pipe instead of an answer.
#[test]
fn an_upload_refused_for_its_size_unread_says_the_connection_closes() {
    use std::io::{Read, Write};
    let s = Server::start(&[("SABOT_MAX_UPLOAD_MB", "1")]);
    let address = s.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/modules/big/1 HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
        (1 << 20) + 1
    )
    .unwrap();
    stream.write_all(&[0u8; 1024]).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // The server reads on: a refusal for a bad name right after is answered, not cut off.
    let (status, body) = s.upload("UPPER", "1", &vec![0u8; 64 << 10]);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_flood_of_malformed_uploads_is_refused_with_4xx_while_the_server_stays_healthy() {
    let s = Server::start(&[("SABOT_MAX_UPLOAD_MB", "4"), ("SABOT_VALIDATIONS", "2")]);
    let good = module(sabot_test_artifacts::PLAIN);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut cases: Vec<(String, String, String, Vec<u8>)> = Vec::new();
    for i in 0..40 {
        let len = rng.usize(1..4096);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        cases.push(("random bytes".into(), format!("junk{i}"), "1".into(), bytes));
    }
    for i in 0..30 {
        let cut = rng.usize(8..good.len() - 1);
        cases.push((
            "truncated".into(),
            format!("cut{i}"),
            "1".into(),
            good[..cut].to_vec(),
        ));
    }
    for i in 0..15 {
        let wrong = wat::parse_str(format!(
            "(component (core module (func (export \"f{i}\"))))"
        ))
        .unwrap();
        cases.push(("wrong world".into(), format!("wrong{i}"), "1".into(), wrong));
    }
    for i in 0..5 {
        cases.push((
            "core module".into(),
            format!("core{i}"),
            "1".into(),
            wat::parse_str("(module)").unwrap(),
        ));
    }
    for i in 0..5 {
        cases.push((
            "oversized".into(),
            format!("big{i}"),
            "1".into(),
            vec![0u8; (4 << 20) + 1 + i],
        ));
    }
    let bad_names = [
        ("UPPER", "1"),
        ("a%20b", "1"),
        ("x.y", "1"),
        (".hidden", "1"),
        ("-dash", "1"),
        ("%2e%2e", "1"),
        ("ok", ".."),
        ("ok", "%2e%2e"),
        ("ok", "a%2Fb"),
        ("ok", "v%201"),
    ];
    for (name, version) in bad_names {
        cases.push(("bad name".into(), name.into(), version.into(), good.clone()));
    }
    let long = "n".repeat(65);
    cases.push(("bad name".into(), long.clone(), "1".into(), good.clone()));
    cases.push(("bad name".into(), "ok".into(), long, good.clone()));
    cases.push(("empty".into(), "empty".into(), "1".into(), Vec::new()));
    assert!(cases.len() >= 100, "{} cases", cases.len());

    std::thread::scope(|scope| {
        for chunk in cases.chunks(cases.len().div_ceil(4)) {
            let s = &s;
            scope.spawn(move || {
                for (what, name, version, bytes) in chunk {
                    let (status, body) = s.upload(name, version, bytes);
                    // An oversized body may be cut off before the answer is read.
                    let refused =
                        (400..500).contains(&status) || (status == 0 && what == "oversized");
                    assert!(
                        refused,
                        "{what} ({name}@{version}, {} bytes): {status} {body}",
                        bytes.len()
                    );
                    if status != 0 && (400..500).contains(&status) {
                        assert!(
                            body["error"].is_string(),
                            "{what}: no error message: {body}"
                        );
                    }
                    if what == "oversized" && status != 0 {
                        assert_eq!(status, 413, "{what}: {body}");
                    }
                }
            });
        }
    });
    assert_eq!(s.get("/healthz").0, 200);
    assert_eq!(s.get("/readyz").0, 200);
    assert_eq!(
        s.get("/v1/modules").1,
        json!([]),
        "nothing malformed was kept"
    );
    let (status, body) = s.upload("good", "1", &good);
    assert_eq!(status, 201, "the server still takes a valid upload: {body}");
}

#[test]
fn reads_need_a_read_token_and_changes_an_admin_one() {
    let s = Server::start(&[("SABOT_READ_TOKEN", READ_TOKEN)]);
    let plain = module(sabot_test_artifacts::PLAIN);
    let mutations: [(&str, &str, &[u8]); 9] = [
        ("POST", "/v1/modules/echo/1", &plain),
        ("POST", "/v1/modules", b"x"),
        ("DELETE", "/v1/modules/echo/1", b""),
        ("POST", "/v1/pipelines", b"[pipeline]\nname = \"p\"\n"),
        ("POST", "/v1/pipelines/p/start", b""),
        ("POST", "/v1/pipelines/p/stop", b""),
        (
            "POST",
            "/v1/pipelines/p/agents/a/swap",
            b"{\"module\": \"echo@1\"}",
        ),
        ("PUT", "/v1/secrets/kafka-password", b"hunter2"),
        ("DELETE", "/v1/secrets/kafka-password", b""),
    ];
    for (method, path, body) in mutations {
        for token in [None, Some("wrong-token-0123456789")] {
            let (status, answer) = s.send(method, path, "application/octet-stream", body, token);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {answer}");
        }
        let (status, answer) = s.send(
            method,
            path,
            "application/octet-stream",
            body,
            Some(READ_TOKEN),
        );
        assert_eq!(status, 403, "{method} {path} with the read token: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("token `read` has scope `read`"),
            "{answer}"
        );
    }
    assert_eq!(
        s.send("DELETE", "/v1/pipelines/p", "text/plain", b"", None)
            .0,
        401
    );
    assert_eq!(s.get("/v1/modules").1, json!([]), "nothing was uploaded");
    assert_eq!(s.get("/v1/secrets").1, json!([]), "no secret was stored");
    let reads = [
        "/v1/modules",
        "/v1/pipelines",
        "/v1/secrets",
        "/metrics",
        "/v1/pipelines/p",
        "/nowhere",
    ];
    for path in reads {
        let (status, answer) = s.get_with(path, None);
        assert_eq!(status, 401, "GET {path} without a token: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("`read`"),
            "{answer}"
        );
        assert_eq!(
            s.get_with(path, Some("wrong-token-0123456789")).0,
            401,
            "{path}"
        );
    }
    for path in ["/v1/modules", "/v1/pipelines", "/v1/secrets", "/metrics"] {
        assert_eq!(
            s.get_with(path, Some(READ_TOKEN)).0,
            200,
            "{path} with the read token"
        );
    }
    // The event stream too: its first bytes only come with a token.
    let refused = s.get_with("/v1/events", None);
    assert_eq!(refused.0, 401);
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(
            s.get_with(path, None).0,
            200,
            "{path} is open to probes and browsers"
        );
    }
    drop(s);

    // Reads opened on purpose; changes still need the admin token.
    let s = Server::start(&[("SABOT_PUBLIC_READS", "true")]);
    for path in ["/v1/modules", "/v1/pipelines", "/metrics"] {
        assert_eq!(s.get_with(path, None).0, 200, "{path} with public reads");
    }
    assert_eq!(
        s.send("POST", "/v1/pipelines", "application/toml", b"x", None)
            .0,
        401
    );
}

#[test]
fn pipelines_are_defined_run_observed_queried_and_kept_inside_their_directory() {
    let s = Server::start(&[]);
    let misbehave = module(sabot_test_artifacts::MISBEHAVE);
    assert_eq!(s.upload("mis", "1", &misbehave).0, 201);

    // Paths outside the pipeline's directory and files on the server are refused.
    for (bad, expected) in [
        (
            "path = \"/tmp/escape.jsonl\"",
            "outside the pipeline's directory",
        ),
        (
            "path = \"../escape.jsonl\"",
            "outside the pipeline's directory",
        ),
    ] {
        let toml = stateful("escape", "mis@1", 10, 0).replace("path = \"out/result.jsonl\"", bad);
        let (status, body) = s.post("/v1/pipelines", "application/toml", toml.as_bytes());
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }
    let scaled = "edges = [\"k -> out\"]\n[pipeline]\nname = \"scaled\"\n[pipeline.checkpoint]\ninterval_ms = 500\n[pipeline.scale_out]\nshared_dir = \"shared\"\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9\"\ntopics = [\"t\"]\nformat = \"raw\"\n[sinks.out]\ntype = \"blackhole\"\n";
    let (status, body) = s.post("/v1/pipelines", "application/toml", scaled.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("run a scaled-out pipeline with `sabot run`"),
        "{body}"
    );
    let toml = stateful("file-module", "/etc/agent.wasm", 10, 0);
    let (status, body) = s.post("/v1/pipelines", "application/toml", toml.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("NAME@VERSION"),
        "{body}"
    );
    let (status, body) = s.post(
        "/v1/pipelines",
        "application/toml",
        stateful("x", "nope@1", 10, 0).as_bytes(),
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("[agents.m] field `module`: no module nope@1"),
        "{body}"
    );

    // Defined from JSON (the same schema), started, observed while it runs.
    let definition: toml::Table =
        toml::from_str(&stateful("cards", "mis@1", 100_000, 25_000)).unwrap();
    let (status, created) = s.post(
        "/v1/pipelines?start=true",
        "application/json",
        serde_json::to_string(&definition).unwrap().as_bytes(),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "running");
    let (status, body) = s.post(
        "/v1/pipelines",
        "application/toml",
        stateful("cards", "mis@1", 1, 0).as_bytes(),
    );
    assert_eq!(status, 409, "{body}");

    s.wait_for("a checkpoint and rows", Duration::from_secs(30), || {
        let p = s.pipeline("cards");
        p["checkpoints"]["completed"].as_u64().unwrap_or(0) > 0
            && p["nodes"][1]["rows_in"].as_u64().unwrap_or(0) > 0
    });
    let p = s.pipeline("cards");
    let names: Vec<&str> = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gen", "m", "out"]);
    assert_eq!(
        p["edges"][0],
        json!({"from": "gen", "from_port": 0, "to": "m", "to_port": 0})
    );
    assert!(p["definition"].as_str().unwrap().contains("mis@1"));
    let (_, agents) = s.get("/v1/pipelines/cards/agents");
    assert_eq!(agents[0]["name"], "m");
    assert_eq!(agents[0]["version"], "mis@1");
    assert_eq!(agents[0]["parallelism"], 2);
    assert!(agents[0]["calls"].as_u64().unwrap() > 0);
    assert!(agents[0]["memory_bytes"].as_u64().unwrap() > 0);
    let (_, sources) = s.get("/v1/pipelines/cards/sources");
    assert_eq!(sources[0]["type"], "generator");
    assert!(sources[0]["rows"].as_u64().unwrap() > 0);
    let (_, tables) = s.get("/v1/pipelines/cards/tables");
    assert!(
        tables["m"].as_array().unwrap().contains(&json!("seen")),
        "{tables}"
    );

    // Queryable state: a card's count (JSON, as every SDK writes it), read while the pipeline runs,
    // only grows.
    let read = || -> u64 {
        let (status, v) = s.get("/v1/pipelines/cards/tables/m/seen?key=7&key_type=int64");
        assert_eq!(status, 200, "{v}");
        if v["found"] == true {
            v["value"]["json"].as_u64().unwrap()
        } else {
            0
        }
    };
    let first = read();
    s.wait_for("card 7 to be seen again", Duration::from_secs(30), || {
        read() > first
    });
    let (status, body) = s.get("/v1/pipelines/cards/tables/m/seen?key=x&key_type=int64");
    assert_eq!(status, 400, "{body}");
    assert_eq!(s.get("/v1/pipelines/cards/tables/nobody/seen?key=1").0, 404);

    // Metrics: one family per name, every sample a number.
    let metrics = s.text("/metrics");
    let mut types = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                types.insert(name.to_owned(), ()).is_none(),
                "TYPE {name} twice"
            );
        } else if !line.starts_with('#') {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        }
    }
    for family in [
        "sabot_agent_rows_in_total",
        "sabot_agent_call_duration_seconds",
        "sabot_agent_traps_total",
        "sabot_agent_cpu_seconds_total",
        "sabot_agent_memory_bytes",
        "sabot_source_rows_total",
        "sabot_checkpoint_duration_seconds",
        "sabot_checkpoint_size_bytes",
        "sabot_checkpoint_age_seconds",
        "sabot_sink_latency_seconds",
    ] {
        assert!(
            types.contains_key(family),
            "{family} missing from:\n{metrics}"
        );
    }
    assert!(
        metrics
            .contains("sabot_agent_module_info{pipeline=\"cards\",agent=\"m\",version=\"mis@1\"")
    );
    // Running: cannot be deleted. Stopped (with its final checkpoint), it resumes where it was.
    assert_eq!(s.delete("/v1/pipelines/cards").0, 409);
    let (status, stopped) = s.post("/v1/pipelines/cards/stop?wait=true", "text/plain", b"");
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "stopped");
    // The sink's latency, once stopped: quantiles in order, over every event it wrote.
    let metrics = s.text("/metrics");
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    let sink = "{pipeline=\"cards\",sink=\"out\"";
    let q = |q: &str| {
        sample(&format!(
            "sabot_sink_latency_seconds{sink},quantile=\"{q}\"}}"
        ))
    };
    let (p50, p99, p999) = (q("0.5"), q("0.99"), q("0.999"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{p50} {p99} {p999}");
    let counted = sample(&format!("sabot_sink_latency_seconds_count{sink}}}"));
    let rows = sample(&format!("sabot_sink_rows_total{sink}}}"));
    assert!(0.0 < counted && counted == rows, "{counted} of {rows} rows");
    // The same in the pipeline's counters.
    let out = &s.pipeline("cards")["nodes"][2];
    assert_eq!(out["name"], "out");
    let (p50_ms, p99_ms) = (
        out["latency_p50_ms"].as_f64().unwrap(),
        out["latency_p99_ms"].as_f64().unwrap(),
    );
    assert!(
        (p50_ms / 1e3 - p50).abs() < 1e-9 && (p99_ms / 1e3 - p99).abs() < 1e-9,
        "{out}"
    );
    assert_eq!(
        s.post("/v1/pipelines/cards/start", "text/plain", b"").0,
        200
    );
    s.wait_status("cards", "finished", Duration::from_secs(60));
    assert_exactly_once(&s.data().join("pipelines/cards/out/result.jsonl"), 100_000);
    assert_eq!(s.delete("/v1/pipelines/cards").0, 204);
    assert!(!s.data().join("pipelines/cards").exists());
}

#[test]
fn a_swap_under_load_keeps_state_and_loses_or_duplicates_nothing_through_a_server_crash() {
    let s = Server::start(&[]);
    let v1 = module(sabot_test_artifacts::MISBEHAVE);
    assert_eq!(s.upload("mis", "1", &v1).0, 201);
    assert_eq!(s.upload("mis", "2", &component_variant(&v1, "v2")).0, 201);
    s.create(&stateful("swap", "mis@1", 150_000, 25_000), true);
    s.wait_for("rows through the agent", Duration::from_secs(30), || {
        s.pipeline("swap")["nodes"][1]["rows_in"]
            .as_u64()
            .unwrap_or(0)
            > 20_000
    });
    // Through the CLI: it waits for the swap to end and says how it went.
    let out = s.cli(&["swap", "swap", "m", "mis@2"], Some(TOKEN));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("mis@1 → mis@2"), "{said}");
    let p = s.pipeline("swap");
    assert_eq!(
        p["status"], "running",
        "the swap happened under load: {p:#}"
    );
    let swap = &p["swaps"][0];
    assert_eq!(swap["state"], "active", "{swap}");
    assert!(swap["pause_us"].as_u64().unwrap() > 0);
    assert_eq!(p["nodes"][1]["version"], "mis@2");
    // The swapped version is recorded, and is what the pipeline runs after the server crashes
    // and starts again: it resumes from its newest checkpoint, exactly once.
    let control: Value = serde_json::from_slice(
        &std::fs::read(s.data().join("pipelines/swap/control.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(control["versions"]["m"]["module"], "mis@2");
    assert_eq!(control["running"], true);
    let s = Server::start_in(s.crash(), &[]);
    let resumed = s.pipeline("swap");
    assert_eq!(resumed["nodes"][1]["version"], "mis@2", "{resumed:#}");
    let done = s.wait_status("swap", "finished", Duration::from_secs(60));
    assert_eq!(done["restarts"], 0);
    assert_exactly_once(&s.data().join("pipelines/swap/out/result.jsonl"), 150_000);
}

#[test]
fn a_version_that_fails_to_start_or_traps_on_probation_is_rolled_back_exactly_once() {
    let s = Server::start(&[("SABOT_PROBATION_MS", "5000")]);
    let v1 = module(sabot_test_artifacts::MISBEHAVE);
    assert_eq!(s.upload("mis", "1", &v1).0, 201);
    assert_eq!(s.upload("mis", "2", &component_variant(&v1, "v2")).0, 201);
    s.create(&stateful("rollback", "mis@1", 200_000, 25_000), true);
    s.wait_for("rows through the agent", Duration::from_secs(30), || {
        s.pipeline("rollback")["nodes"][1]["rows_in"]
            .as_u64()
            .unwrap_or(0)
            > 20_000
    });

    // A version whose init refuses its config: the instances keep the old one.
    let out = s.cli(
        &[
            "swap",
            "rollback",
            "m",
            "mis@2",
            "--config",
            "{\"mode\": \"bad-config\"}",
        ],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(1), "a rolled-back swap exits 1");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("rolled back") && said.contains("invalid-config"),
        "{said}"
    );

    // A version that traps after two batches: the run restarts from its newest checkpoint with
    // the old version.
    let (status, swap) = s.post(
        "/v1/pipelines/rollback/agents/m/swap",
        "application/json",
        br#"{"module": "mis@2", "config": {"mode": "state", "count": 2}}"#,
    );
    assert_eq!(status, 202, "{swap}");
    s.wait_for("the rollback", Duration::from_secs(60), || {
        s.pipeline("rollback")["swaps"][1]["state"] == "rolled-back"
    });
    let p = s.wait_status("rollback", "finished", Duration::from_secs(90));
    let swaps = p["swaps"].as_array().unwrap();
    assert_eq!(swaps[0]["state"], "rolled-back");
    assert!(
        swaps[0]["reason"]
            .as_str()
            .unwrap()
            .contains("could not start mis@2"),
        "{}",
        swaps[0]
    );
    assert!(
        swaps[1]["reason"]
            .as_str()
            .unwrap()
            .contains("misbehave traps after 2 batches"),
        "{}",
        swaps[1]
    );
    assert_eq!(p["restarts"], 1, "{p:#}");
    assert_eq!(p["nodes"][1]["version"], "mis@1");
    assert_exactly_once(
        &s.data().join("pipelines/rollback/out/result.jsonl"),
        200_000,
    );
    let metrics = s.text("/metrics");
    assert!(
        metrics.contains(
            "sabot_agent_swaps_total{pipeline=\"rollback\",agent=\"m\",state=\"rolled-back\"} 2"
        ),
        "{metrics}"
    );
    // The trapping version's stderr was captured and tagged with pipeline and agent.
    let (_, logs) = s.get("/v1/pipelines/rollback/logs?limit=1000");
    let lines = logs.as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["agent"] == "m"
            && l["stream"] == "stderr"
            && l["message"].as_str().unwrap().contains("misbehave traps")),
        "{logs}"
    );
}

#[test]
fn the_cli_lists_what_a_server_runs_and_exits_with_meaningful_codes() {
    let s = Server::start(&[("SABOT_READ_TOKEN", READ_TOKEN)]);
    let dir = s.scratch.path("");
    let wasm = dir.join("plain.wasm");
    std::fs::copy(sabot_test_artifacts::PLAIN, &wasm).unwrap();
    let wasm = wasm.to_str().unwrap();

    let out = s.cli(
        &["deploy", wasm, "--name", "echo", "--version", "1"],
        Some(TOKEN),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployed echo@1"));
    let out = s.cli(
        &["deploy", wasm, "--name", "echo", "--version", "1"],
        Some("wrong-token-0123456789"),
    );
    assert_eq!(out.status.code(), Some(4), "a wrong token exits 4");
    let out = s.cli(
        &["deploy", wasm, "--name", "Echo", "--version", "1"],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(2), "a refused request exits 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a valid name"));

    let file = s.scratch.write(
        "p.toml",
        "edges = [\"gen -> a -> out\"]\n[pipeline]\nname = \"echoes\"\n[sources.gen]\ntype = \"generator\"\nrate = 1000\n[agents.a]\nmodule = \"echo@1\"\n[sinks.out]\ntype = \"blackhole\"\n",
    );
    let out = s.cli(&["submit", file.to_str().unwrap(), "--start"], Some(TOKEN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pipeline echoes is running"));

    let out = s.cli(&["pipelines"], None);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a listing without a token exits 4"
    );
    let stdout = |args: &[&str]| {
        let out = s.cli(args, Some(READ_TOKEN));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let modules = stdout(&["modules"]);
    assert!(
        modules.starts_with("NAME") && modules.contains("echo  1"),
        "{modules}"
    );
    let pipelines = stdout(&["pipelines"]);
    assert!(
        pipelines
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("echoes  running"),
        "{pipelines}"
    );
    let agents = stdout(&["agents", "echoes"]);
    assert!(
        agents.lines().nth(1).unwrap().starts_with("a      echo@1"),
        "{agents}"
    );
    let tables = stdout(&["tables", "echoes"]);
    assert!(tables.contains("AGENT") && tables.contains("a"), "{tables}");
    let json: Value = serde_json::from_str(&stdout(&["pipelines", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "echoes");
    let out = s.cli(&["agents", "nothing"], Some(READ_TOKEN));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pipeline `nothing`"));

    let out = Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["pipelines", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "an unreachable server exits 3");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));
}

#[test]
fn the_dashboard_asks_for_a_read_token_then_draws_the_pipeline_and_its_numbers_move_in_headless_chromium()
 {
    let s = Server::start(&[("SABOT_READ_TOKEN", READ_TOKEN)]);
    assert_eq!(
        s.upload("mis", "1", &module(sabot_test_artifacts::MISBEHAVE))
            .0,
        201
    );
    s.create(&stateful("live", "mis@1", 10_000_000, 20_000), true);
    let browser = Chromium::start(&s.scratch.path("chromium"));
    let page = browser.open(&format!("{}/", s.url));
    // Nothing is read before the page is given a token.
    page.wait_for("the page to ask for a token", || {
        page.eval("document.getElementById('login').dataset.auth") == json!("needed")
    });
    assert_eq!(
        page.eval("document.querySelectorAll('svg g[data-node]').length"),
        json!(0)
    );
    page.eval(&format!(
        "(() => {{ const f = document.getElementById('login');
           f.querySelector('[name=token]').value = '{READ_TOKEN}';
           f.requestSubmit(); return true; }})()"
    ));
    let nodes = || page.eval("document.querySelectorAll('svg g[data-node]').length");
    page.wait_for("the graph's three nodes", || nodes() == json!(3));
    let names = page.eval("[...document.querySelectorAll('svg g[data-node]')].map(g => g.dataset.node + ':' + g.dataset.kind).join(',')");
    assert_eq!(names, json!("gen:source,m:agent,out:sink"));
    let version = page
        .eval("document.querySelector('g[data-node=\"m\"] [data-field=\"version\"]').textContent");
    assert_eq!(version, json!("mis@1"));
    let rows = |node: &str| -> u64 {
        page.eval(&format!(
            "Number(document.querySelector('g[data-node=\"{node}\"]').dataset.rows || 0)"
        ))
        .as_u64()
        .unwrap_or(0)
    };
    page.wait_for("rows through the agent", || rows("m") > 0);
    let before = (rows("gen"), rows("m"), rows("out"));
    page.wait_for("the numbers to change", || {
        rows("gen") > before.0 && rows("m") > before.1 && rows("out") > before.2
    });
    page.wait_for("a rate", || {
        page.eval("Number(document.querySelector('g[data-node=\"m\"]').dataset.rate)")
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    });
    page.wait_for("a checkpoint shown", || {
        page.eval("document.querySelector('[data-field=\"checkpoint\"]').textContent")
            .as_str()
            .is_some_and(|t| t.starts_with("checkpoint #"))
    });

    // The swap offered on the page goes through the API.
    assert_eq!(
        s.upload(
            "mis",
            "2",
            &component_variant(&module(sabot_test_artifacts::MISBEHAVE), "v2")
        )
        .0,
        201
    );
    page.eval(&format!(
        "(() => {{ const f = document.querySelector('form[data-swap=\"live\"]');
           f.querySelector('[name=module]').value = 'mis@2';
           f.querySelector('[name=token]').value = '{TOKEN}';
           f.requestSubmit(); return true; }})()"
    ));
    s.wait_for(
        "the swap from the dashboard",
        Duration::from_secs(30),
        || s.pipeline("live")["swaps"][0]["state"] == "active",
    );
    page.wait_for("the new version on the page", || {
        page.eval(
            "document.querySelector('g[data-node=\"m\"] [data-field=\"version\"]').textContent",
        ) == json!("mis@2")
    });
}

/// Headless Chromium (Debian's `chromium`), driven over the DevTools protocol.
struct Chromium {
    child: Child,
    ws: std::sync::Mutex<tungstenite::WebSocket<std::net::TcpStream>>,
}

struct Page<'a> {
    browser: &'a Chromium,
    session: String,
}

impl Chromium {
    fn start(profile: &Path) -> Self {
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium (scripts/setup installs Debian's chromium package)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium says where its DevTools listen");
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let stream = std::net::TcpStream::connect(&host).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools websocket");
        Chromium {
            child,
            ws: std::sync::Mutex::new(ws),
        }
    }

    /// Sends a DevTools command and returns its result.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut ws = self.ws.lock().unwrap();
        ws.send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = ws.read().expect("a DevTools message");
            let Ok(text) = reply.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn open(&self, url: &str) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        Page {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page<'_> {
    /// Evaluates `expression` in the page; its value, or null when it throws.
    fn eval(&self, expression: &str) -> Value {
        let r = self.browser.call(
            Some(&self.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    #[track_caller]
    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A test CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`:
/// (ca.pem, server.pem, server.key).
pub(crate) fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Sabot test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn https_serves_the_api_and_the_cli_with_a_test_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates(certs.path());
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let s = Server::start(&[
        ("SABOT_TLS_CERT", cert),
        ("SABOT_TLS_KEY", key),
        ("SABOT_CA_CERT", ca),
    ]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    assert_eq!(s.get("/v1/pipelines").1, json!([]));
    assert_eq!(
        s.get_with("/v1/pipelines", None).0,
        401,
        "tokens over HTTPS too"
    );
    let file = s.scratch.write(
        "p.toml",
        "edges = [\"gen -> out\"]\n[pipeline]\nname = \"over-tls\"\n[sources.gen]\ntype = \"generator\"\ncount = 100\n[sinks.out]\ntype = \"blackhole\"\n",
    );
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(args)
            .env("SABOT_SERVER", &s.url)
            .env("SABOT_TOKEN", TOKEN)
            .env_remove("SABOT_CA_CERT")
            .output()
            .unwrap()
    };
    let out = cli(&["submit", file.to_str().unwrap(), "--start", "--ca-cert", ca]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_status("over-tls", "finished", Duration::from_secs(30));
    let out = cli(&["pipelines", "--ca-cert", ca]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("over-tls"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["health", "--ca-cert", ca]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A client that does not trust the CA is refused the connection (exit 3), naming why.
    let out = cli(&["pipelines"]);
    assert_eq!(out.status.code(), Some(3));
    let e = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        e.contains("cannot reach the server")
            && (e.contains("certificate") || e.contains("issuer")),
        "{e}"
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = s.url.replace("https://", "http://");
    let answer = ureq::get(&format!("{plain}/healthz")).call();
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    assert_eq!(s.get("/healthz").0, 200, "the server is still up");
}

#[test]
fn tls_settings_that_do_not_make_a_certificate_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("cert.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let serve = |env: &[(&str, &Path)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sabot"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"));
        c.env("SABOT_TOKEN", TOKEN);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = serve(&[("SABOT_TLS_CERT", &not_pem)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`tls_cert` and `tls_key` go together"));
    let out = serve(&[("SABOT_TLS_CERT", &not_pem), ("SABOT_TLS_KEY", &not_pem)]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("tls_cert")
            && e.contains(&not_pem.display().to_string())
            && e.contains("BEGIN CERTIFICATE"),
        "{e}"
    );
}
