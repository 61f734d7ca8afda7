//! Helpers: pipelines written to temporary directories, run in-process or with the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};

use sabot_host::wasm::{CompileCache, WasmRuntime};
use sabot_host::{Error, Pipeline, PipelineSpec, RunOptions, RunSummary};

/// One runtime for the whole test binary, with a compile cache in the target directory so
/// repeated runs do not recompile the guests.
pub fn runtime() -> Arc<WasmRuntime> {
    static RUNTIME: OnceLock<Arc<WasmRuntime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| WasmRuntime::new(CompileCache::new(Some(cache_dir()))).expect("engine"))
        .clone()
}

pub fn cache_dir() -> PathBuf {
    Path::new(sabot_test_artifacts::MISBEHAVE)
        .parent()
        .expect("artifact dir")
        .join("sabot-test-cache")
}

/// A scratch directory holding a pipeline file.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    /// Writes `pipeline.toml` and loads it.
    pub fn pipeline(&self, toml: &str) -> Result<Pipeline, Error> {
        let path = self.write("pipeline.toml", toml);
        let spec = PipelineSpec::load(&path)?;
        Pipeline::new(spec, runtime())
    }

    /// Writes, loads and runs `pipeline.toml`.
    pub fn run(&self, toml: &str) -> Result<RunSummary, Error> {
        self.pipeline(toml)?.run(RunOptions::default())
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// The names of the files in the scratch directory.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// A TOML string literal for a path.
pub fn lit(path: &str) -> String {
    format!("{path:?}")
}

/// The lines of `text`, sorted: outputs of parallel instances are compared as multisets.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Runs the real `sabot` binary.
pub fn sabot(args: &[&str], cwd: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(args)
        .current_dir(cwd)
        .env("SABOT_CACHE_DIR", cache_dir())
        .env_remove("SABOT_LOG")
        .output()
        .expect("run sabot")
}

/// A run of the real binary, and what it cost.
pub struct Measured {
    pub output: Output,
    /// The process's peak resident set, bytes (its own `ru_maxrss`, from `wait4`).
    pub peak_rss: u64,
}

/// Runs the real `sabot` binary and measures its peak RSS.
// The child is reaped by `wait4` (which `Child::wait` cannot do: it gives no `rusage`).
#[allow(clippy::zombie_processes)]
pub fn sabot_measured(args: &[&str], cwd: &Path) -> Measured {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(args)
        .current_dir(cwd)
        .env("SABOT_CACHE_DIR", cache_dir())
        .env_remove("SABOT_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sabot");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes).expect("read the child's output");
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is valid; `wait4` fills it for the child we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing through valid pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    Measured {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        },
        peak_rss: usage.ru_maxrss as u64 * 1024,
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts two sorted line lists are equal, reporting only how they differ (not every line).
#[track_caller]
pub fn assert_same_lines(got: &[String], expected: &[String], context: &str) {
    if got == expected {
        return;
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|l| !got.contains(l))
        .take(5)
        .collect();
    let extra: Vec<&String> = got
        .iter()
        .filter(|l| !expected.contains(l))
        .take(5)
        .collect();
    panic!(
        "{context}: {} lines, expected {}; first missing: {missing:?}; first unexpected: {extra:?}",
        got.len(),
        expected.len()
    );
}
