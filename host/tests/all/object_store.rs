//! Checkpoints in object storage, against a real S3-compatible server: S3Proxy (fetched by
//! `scripts/s3.sh`), one per test so that a test can kill it and start it again. Every run here
//! gets a new, empty data directory, as on a new machine: the bucket is the only thing that
//! lasts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sabot_host::{RunOptions, RunSummary};

use crate::checkpoint::{reference, windows_pipeline};
use crate::support::{Scratch, assert_same_lines, sorted_lines};

pub const BUCKET: &str = "sabot";
const ACCESS_KEY: &str = "sabot-test";
const SECRET_KEY: &str = "sabot-test-secret";

/// An S3Proxy server on loopback keeping its objects as files under a temporary directory.
pub struct S3Server {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server with an empty bucket `sabot`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("objects").join(BUCKET)).unwrap();
        let port = crate::support::free_port();
        std::fs::write(
            dir.path().join("s3proxy.conf"),
            format!(
                "s3proxy.endpoint=http://127.0.0.1:{port}\ns3proxy.authorization=aws-v2-or-v4\n\
                 s3proxy.identity={ACCESS_KEY}\ns3proxy.credential={SECRET_KEY}\n\
                 jclouds.provider=filesystem\njclouds.filesystem.basedir={}\n",
                dir.path().join("objects").display()
            ),
        )
        .unwrap();
        let mut server = S3Server {
            dir,
            port,
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let lib = std::env::var("SABOT_S3PROXY_LIB")
            .expect("SABOT_S3PROXY_LIB is set by scripts/s3.sh (scripts/test sources it)");
        let logback = std::env::var("SABOT_S3PROXY_LOGBACK")
            .expect("SABOT_S3PROXY_LOGBACK is set by scripts/s3.sh");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new("java")
            .arg(format!("-Dlogback.configurationFile={logback}"))
            .args([
                "-Xmx256m",
                "-cp",
                &format!("{lib}/*"),
                "org.gaul.s3proxy.Main",
            ])
            .arg("--properties")
            .arg(self.dir.path().join("s3proxy.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("java runs S3Proxy");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "S3Proxy did not listen on {} within 60 s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL; its objects stay.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and objects.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `[pipeline.checkpoint.storage]` for checkpoints under `s3://sabot/PREFIX`.
    pub fn storage_toml(&self, prefix: &str) -> String {
        format!(
            "\n[pipeline.checkpoint.storage]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
            self.endpoint()
        )
    }

    /// The file the server keeps object `key` of the bucket in.
    pub fn object(&self, key: &str) -> PathBuf {
        self.dir.path().join("objects").join(BUCKET).join(key)
    }

    /// The checkpoint ids under `s3://sabot/PREFIX` (a pipeline's folder), newest first, and
    /// whether each has its metadata.
    pub fn checkpoints(&self, prefix: &str) -> Vec<(u64, bool)> {
        let dir = self.object(prefix);
        let mut ids: Vec<(u64, bool)> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
                        Some((id, e.path().join("_metadata").exists()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        ids
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `toml` in `s` on data directory `data`; with `stop_after`, asks the run to stop once
/// that many checkpoints are in the bucket under `prefix`.
fn run_on(
    s: &Scratch,
    toml: &str,
    data: &str,
    stop_after: Option<(&S3Server, &str, usize)>,
) -> RunSummary {
    let pipeline = s.pipeline(toml).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        if let Some((server, prefix, n)) = stop_after {
            let stop = stop.clone();
            scope.spawn(move || {
                let waited = Instant::now();
                while server.checkpoints(prefix).iter().filter(|c| c.1).count() < n
                    && waited.elapsed() < Duration::from_secs(60)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                stop.store(true, Ordering::SeqCst);
            });
        }
        pipeline
            .run(RunOptions {
                stop: stop.clone(),
                data_dir: Some(s.path(data)),
                ..RunOptions::default()
            })
            .unwrap_or_else(|e| panic!("run on {data}: {e}\nS3Proxy: {}", server_log(stop_after)))
    })
}

fn server_log(stop_after: Option<(&S3Server, &str, usize)>) -> String {
    stop_after.map(|(s, _, _)| s.log()).unwrap_or_default()
}

/// The pipeline's folder in the bucket: the prefix, then the pipeline's name (`pipeline`, from
/// the file name).
fn folder(prefix: &str) -> String {
    format!("{prefix}/pipeline")
}

#[test]
fn a_run_resumes_on_another_machine_from_the_object_store_alone() {
    let server = S3Server::start();
    let toml = windows_pipeline(60_000, 40_000, "rocksdb", 50) + &server.storage_toml("resume");
    let (out, big) = reference(&windows_pipeline(60_000, 0, "rocksdb", 50));

    let s = Scratch::new();
    let first = run_on(
        &s,
        &toml,
        "machine-a",
        Some((&server, &folder("resume"), 3)),
    );
    assert!(first.interrupted && first.events_in < 60_000, "{first:?}");
    let in_bucket = server.checkpoints(&folder("resume"));
    assert!(
        in_bucket
            .iter()
            .any(|&(id, done)| done && Some(id) == first.final_checkpoint),
        "the final checkpoint {:?} is in the bucket: {in_bucket:?}",
        first.final_checkpoint
    );
    assert!(
        in_bucket.len() <= 3,
        "retain = 3 in the bucket too: {in_bucket:?}"
    );
    // Another machine: an empty data directory.
    std::fs::remove_dir_all(s.path("machine-a")).unwrap();
    let second = run_on(&s, &toml, "machine-b", None);
    assert_eq!(second.restored_from, first.final_checkpoint);
    assert_eq!(
        first.events_in + second.events_in,
        60_000,
        "no event read twice"
    );
    assert_same_lines(&sorted_lines(&s.read("out.jsonl")), &out, "out.jsonl");
    assert_same_lines(&sorted_lines(&s.read("big.jsonl")), &big, "big.jsonl");
}

#[test]
fn damaged_and_partial_checkpoints_in_the_bucket_fall_back_to_an_older_one() {
    let server = S3Server::start();
    let toml = windows_pipeline(60_000, 40_000, "rocksdb", 50) + &server.storage_toml("damaged");
    let (out, _) = reference(&windows_pipeline(60_000, 0, "rocksdb", 50));
    let s = Scratch::new();
    let first = run_on(&s, &toml, "a", None);
    let ids: Vec<u64> = server
        .checkpoints(&folder("damaged"))
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(ids.len(), 3, "three kept: {ids:?}");
    assert_eq!(Some(ids[0]), first.final_checkpoint);
    let chk = |id: u64| format!("{}/chk-{id:010}", folder("damaged"));

    // The newest: a state file cut short. The next: metadata that does not parse. And a newer
    // one that was never completed: files, no metadata.
    let state = walk(&server.object(&chk(ids[0])))
        .into_iter()
        .find(|p| {
            p.to_string_lossy().contains("/state/") && std::fs::metadata(p).unwrap().len() > 1
        })
        .expect("a state file in the newest checkpoint");
    let len = std::fs::metadata(&state).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&state)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::write(
        server.object(&format!("{}/_metadata", chk(ids[1]))),
        "{ cut",
    )
    .unwrap();
    let partial = server.object(&format!("{}/state/w/0/memory.bin", chk(ids[0] + 1)));
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, b"half an upload").unwrap();

    // Output committed after the checkpoint it falls back to is taken back and written again.
    let second = run_on(&s, &toml, "b", None);
    assert_eq!(second.restored_from, Some(ids[2]));
    assert!(
        second.events_in > 0,
        "the events after checkpoint {} are read again",
        ids[2]
    );
    assert_same_lines(&sorted_lines(&s.read("out.jsonl")), &out, "out.jsonl");

    // Nothing usable at all: the run stops and says why, naming the objects. One metadata
    // object is 1 GiB (sparse on the server's disk): passed over by its size, never read.
    for (i, (id, _)) in server
        .checkpoints(&folder("damaged"))
        .into_iter()
        .enumerate()
    {
        let meta = server.object(&format!("{}/_metadata", chk(id)));
        if !meta.exists() {
            continue;
        }
        if i == 0 {
            std::fs::File::create(&meta)
                .unwrap()
                .set_len(1 << 30)
                .unwrap();
        } else {
            std::fs::write(meta, "{ cut").unwrap();
        }
    }
    let e = s
        .pipeline(&toml)
        .unwrap()
        .run(RunOptions {
            data_dir: Some(s.path("c")),
            ..RunOptions::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no usable checkpoint in s3://sabot/damaged/pipeline"),
        "{e}"
    );
    assert!(e.contains("_metadata does not parse"), "{e}");
    assert!(
        e.contains("its metadata is 1073741824 bytes, more than the 67108864"),
        "{e}"
    );
}

#[test]
fn the_object_store_killed_mid_run_stalls_checkpoints_and_loses_nothing() {
    let mut server = S3Server::start();
    let toml = windows_pipeline(200_000, 40_000, "rocksdb", 100) + &server.storage_toml("outage");
    let (out, big) = reference(&windows_pipeline(200_000, 0, "rocksdb", 100));
    let s = Scratch::new();
    let pipeline = s.pipeline(&toml).unwrap();
    let summary = std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            pipeline.run(RunOptions {
                data_dir: Some(s.path("data")),
                ..RunOptions::default()
            })
        });
        std::thread::sleep(Duration::from_millis(1500));
        let before = server.checkpoints(&folder("outage"));
        assert!(
            !before.is_empty(),
            "checkpoints reach the bucket before the outage"
        );
        server.kill();
        std::thread::sleep(Duration::from_secs(4));
        server.restart();
        run.join().unwrap()
    })
    .unwrap_or_else(|e| panic!("{e}\nS3Proxy: {}", server.log()));
    assert_eq!(summary.events_in, 200_000);
    assert_same_lines(&sorted_lines(&s.read("out.jsonl")), &out, "out.jsonl");
    assert_same_lines(&sorted_lines(&s.read("big.jsonl")), &big, "big.jsonl");
    // The final checkpoint made it after the outage: a rerun elsewhere repeats nothing.
    let again = run_on(&s, &toml, "elsewhere", None);
    assert_eq!(again.restored_from, summary.final_checkpoint);
    assert_eq!(again.events_in, 0);
    assert_same_lines(
        &sorted_lines(&s.read("out.jsonl")),
        &out,
        "out.jsonl after a rerun",
    );
}

#[test]
fn killed_at_random_points_with_only_the_object_store_the_output_is_exactly_a_clean_runs() {
    let server = S3Server::start();
    let rounds = crate::crash::rounds();
    let events = 40_000 * (rounds as u64 / 2 + 6);
    let toml = windows_pipeline(events, 40_000, "rocksdb", 100) + &server.storage_toml("crash");
    let (out, big) = reference(&windows_pipeline(events, 0, "rocksdb", 100));
    let s = Scratch::new();
    s.write("p.toml", &toml);
    // A new machine each time: the data directory of the round before is gone.
    crate::crash::run_killed(
        &s,
        rounds,
        rounds as u64 + 1,
        100..900,
        |kills| format!("data-{kills}"),
        |data| match std::fs::remove_dir_all(s.path(data)) {
            // The killed run may not have made one yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.unwrap(),
        },
    );
    crate::crash::assert_exactly(&s, &out, &big, "after SIGKILLs");
}

#[test]
fn a_store_that_refuses_is_named_with_what_to_check() {
    let server = S3Server::start();
    let s = Scratch::new();
    let base = windows_pipeline(1_000, 0, "memory", 50);
    let run = |storage: &str| {
        s.pipeline(&(base.clone() + storage))
            .and_then(|p| {
                p.run(RunOptions {
                    data_dir: Some(s.path("data")),
                    ..RunOptions::default()
                })
            })
            .unwrap_err()
            .to_string()
    };
    let wrong_secret = server
        .storage_toml("x")
        .replace(SECRET_KEY, "not-the-secret");
    let started = Instant::now();
    let e = run(&wrong_secret);
    assert!(
        e.contains("checkpoint storage s3://sabot/x/pipeline"),
        "{e}"
    );
    assert!(
        !e.contains("not-the-secret"),
        "the secret is not shown: {e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a refusal is not retried for long"
    );
    let no_bucket = server
        .storage_toml("x")
        .replace("s3://sabot/", "s3://no-such-bucket/");
    let e = run(&no_bucket);
    assert!(e.contains("s3://no-such-bucket/x/pipeline"), "{e}");
    let e = run(&server.storage_toml("x").replace("s3://", "gs://"));
    assert!(
        e.contains("[pipeline.checkpoint.storage] field `url`"),
        "{e}"
    );
    assert!(e.contains("expected s3://BUCKET/PREFIX"), "{e}");
    let e = run(&server
        .storage_toml("x")
        .replace(&format!("secret_access_key = \"{SECRET_KEY}\"\n"), ""));
    assert!(e.contains("field `secret_access_key`"), "{e}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
