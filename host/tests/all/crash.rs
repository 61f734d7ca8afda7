//! The crash test: the real `sabot` binary killed with SIGKILL at random points, restarted each
//! time on the same data directory, must commit exactly the output of a run without crashes —
//! nothing lost, nothing twice. `SABOT_CRASH_ROUNDS=200` runs a longer version by hand.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::checkpoint::{reference, windows_pipeline};
use crate::support::{Scratch, assert_same_lines, cache_dir, sorted_lines};

#[test]
fn killed_at_random_points_the_committed_output_is_exactly_a_clean_runs() {
    let rounds: usize = std::env::var("SABOT_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let events = 40_000 * (rounds as u64 / 2 + 6);
    let toml = windows_pipeline(events, 40_000, "rocksdb", 100);
    let (out, big) = reference(&toml.replace("rate = 40000", "rate = 0"));

    let s = Scratch::new();
    s.write("p.toml", &toml);
    let mut rng = fastrand::Rng::with_seed(rounds as u64);
    let mut kills = 0;
    let started = Instant::now();
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["run", "p.toml", "--data-dir", "data", "--no-progress"])
            .current_dir(s.dir.path())
            .env("SABOT_CACHE_DIR", cache_dir())
            .env_remove("SABOT_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kills < rounds {
            std::thread::sleep(Duration::from_millis(rng.u64(50..700)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "after {kills} kills: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        break;
    }
    assert!(
        kills >= rounds,
        "the run finished after only {kills} kills: give it more work"
    );
    let got = sorted_lines(&s.read("out.jsonl"));
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "duplicated rows");
    assert_eq!(got.len(), out.len(), "rows lost or duplicated");
    assert_same_lines(&got, &out, "out.jsonl");
    assert_same_lines(&sorted_lines(&s.read("big.jsonl")), &big, "big.jsonl");
    eprintln!(
        "crash test: {kills} kills, {events} events, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
