//! The crash test: the real `sabot` binary killed with SIGKILL at random points, restarted each
//! time on the same data directory, must commit exactly the output of a run without crashes —
//! nothing lost, nothing twice. `SABOT_CRASH_ROUNDS=200` runs a longer version by hand.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::checkpoint::{reference, windows_pipeline};
use crate::support::{Scratch, assert_same_lines, cache_dir, sorted_lines};

/// The rounds of a crash test: `SABOT_CRASH_ROUNDS`, else 20.
pub fn rounds() -> usize {
    std::env::var("SABOT_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
}

/// Runs `p.toml` in `s` with the `sabot` binary until it finishes, killed with SIGKILL `rounds`
/// times, each a random time in `pause_ms` after its start (seeded by `seed`). Each run uses the
/// data directory `data_dir(kills so far)`; `after_kill` is told each killed run's. Returns
/// the kills; fails if the run finished before `rounds` of them, or failed.
pub fn run_killed(
    s: &Scratch,
    rounds: usize,
    seed: u64,
    pause_ms: std::ops::Range<u64>,
    data_dir: impl Fn(usize) -> String,
    after_kill: impl Fn(&str),
) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = 0;
    loop {
        let data = data_dir(kills);
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["run", "p.toml", "--data-dir", &data, "--no-progress"])
            .current_dir(s.dir.path())
            .env("SABOT_CACHE_DIR", cache_dir())
            .env_remove("SABOT_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kills < rounds {
            std::thread::sleep(Duration::from_millis(rng.u64(pause_ms.clone())));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                after_kill(&data);
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
    kills
}

/// `out.jsonl` and `big.jsonl` in `s` hold exactly `out` and `big`: no row lost, none twice.
pub fn assert_exactly(s: &Scratch, out: &[String], big: &[String], context: &str) {
    let got = sorted_lines(&s.read("out.jsonl"));
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "duplicated rows {context}");
    assert_eq!(got.len(), out.len(), "rows lost or duplicated {context}");
    assert_same_lines(&got, out, &format!("out.jsonl {context}"));
    assert_same_lines(
        &sorted_lines(&s.read("big.jsonl")),
        big,
        &format!("big.jsonl {context}"),
    );
}

#[test]
fn killed_at_random_points_the_committed_output_is_exactly_a_clean_runs() {
    let rounds = rounds();
    let events = 40_000 * (rounds as u64 / 2 + 6);
    let toml = windows_pipeline(events, 40_000, "rocksdb", 100);
    let (out, big) = reference(&toml.replace("rate = 40000", "rate = 0"));

    let s = Scratch::new();
    s.write("p.toml", &toml);
    let started = Instant::now();
    let kills = run_killed(
        &s,
        rounds,
        rounds as u64,
        50..700,
        |_| "data".into(),
        |_| {},
    );
    assert_exactly(&s, &out, &big, "after SIGKILLs");
    eprintln!(
        "crash test: {kills} kills, {events} events, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
