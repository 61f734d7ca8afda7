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
    /// The process's peak resident set, bytes (`ru_maxrss`, measured clean: see
    /// [`sabot_measured`]).
    pub peak_rss: u64,
}

/// Forks and execs its arguments, waits, writes the child's `ru_maxrss` (KiB) to the file
/// named first, and ends as the child ended (the same exit code or signal).
const MEASURE: &str = r#"
import os, signal, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
sys.exit(os.WEXITSTATUS(status))
"#;

/// Runs the real `sabot` binary and measures its peak RSS.
///
/// A process's `ru_maxrss` starts at the resident set of the process it was spawned from (the
/// kernel carries the old address space's high-water mark across `exec`), and this test process
/// can hold hundreds of MiB while other tests run. So `sabot` is started by a small Python
/// process that forks it and reports its `ru_maxrss`: what is measured is `sabot`, plus at
/// most the few MiB of that interpreter.
pub fn sabot_measured(args: &[&str], cwd: &Path) -> Measured {
    let report = tempfile::NamedTempFile::new().expect("a report file");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(MEASURE)
        .arg(report.path())
        .arg(env!("CARGO_BIN_EXE_sabot"))
        .args(args)
        .current_dir(cwd)
        .env("SABOT_CACHE_DIR", cache_dir())
        .env_remove("SABOT_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sabot under python3");
    let kib: u64 = std::fs::read_to_string(report.path())
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS reported: {}", stderr(&output)));
    Measured {
        output,
        peak_rss: kib * 1024,
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

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
