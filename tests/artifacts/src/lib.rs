//! Paths of the guest components used by Sabot's tests and benchmarks, built from source by this
//! crate's build script (nothing `.wasm` is committed).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The workspace root, for examples and golden files.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The component `bytes` with a custom section named `tag` appended: other bytes (another
/// sha256), the same code — a second version of an agent to upload and swap to.
pub fn component_variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(tag.len(), &mut payload);
    payload.extend_from_slice(tag.as_bytes());
    payload.extend_from_slice(b"sabot test variant");
    let mut out = bytes.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// A benchmark's numeric setting: the environment variable `name`, else `default`.
pub fn bench_setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Agents in other languages, built from source with their SDKs (`guest-sdk/js`, `/python`,
/// `/go`) and the toolchains `scripts/languages.sh` installs: the fraud rules of
/// `examples/fraud-detection/agents/`.
pub mod languages {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    /// A language with an SDK besides Rust.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Language {
        JavaScript,
        Python,
        Go,
    }

    pub const ALL: [Language; 3] = [Language::JavaScript, Language::Python, Language::Go];

    impl std::fmt::Display for Language {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Language::JavaScript => "JavaScript",
                Language::Python => "Python",
                Language::Go => "Go",
            })
        }
    }

    fn out_dir() -> PathBuf {
        let dir = Path::new(super::MISBEHAVE)
            .parent()
            .expect("artifact dir")
            .join("languages");
        std::fs::create_dir_all(&dir).expect("create the languages output directory");
        dir
    }

    #[track_caller]
    fn run(command: &mut Command, what: &str) {
        let out = command.output().unwrap_or_else(|e| {
            panic!("{what}: cannot start {command:?}: {e} (scripts/test installs the toolchains)")
        });
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The Python of the SDK's virtual environment: `$SABOT_VENV`, else ~/.cache/sabot/venv.
    pub fn venv_python() -> PathBuf {
        let venv = std::env::var_os("SABOT_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/sabot/venv")
            });
        venv.join("bin/python")
    }

    /// Builds the agent at `source` (a module file; for Go, the package directory) into
    /// `<name>.wasm` in the artifacts directory.
    fn build(language: Language, source: &Path, name: &str, sabot: &Path) -> PathBuf {
        let out = out_dir().join(format!("{name}.wasm"));
        match language {
            Language::JavaScript => run(
                Command::new("node")
                    .arg(super::workspace().join("guest-sdk/js/build.mjs"))
                    .arg(source)
                    .arg("-o")
                    .arg(&out),
                &format!("building {name} (sabot-agent-build)"),
            ),
            Language::Python => run(
                Command::new(venv_python())
                    .args(["-m", "sabot_agent.build"])
                    .arg(source)
                    .arg("-o")
                    .arg(&out),
                &format!("building {name} (sabot_agent.build)"),
            ),
            Language::Go => {
                let core = out_dir().join(format!("{name}.core.wasm"));
                run(
                    Command::new("go")
                        .args(["build", "-buildmode=c-shared", "-o"])
                        .arg(&core)
                        .arg(".")
                        .current_dir(source)
                        .env("GOOS", "wasip1")
                        .env("GOARCH", "wasm"),
                    &format!("building {name} (go build, wasip1)"),
                );
                run(
                    Command::new(sabot)
                        .arg("componentize")
                        .arg(&core)
                        .arg("-o")
                        .arg(&out),
                    &format!("sabot componentize ({name})"),
                );
            }
        }
        out
    }

    fn slot(language: Language) -> usize {
        match language {
            Language::JavaScript => 0,
            Language::Python => 1,
            Language::Go => 2,
        }
    }

    /// The fraud rules in `language` (`examples/fraud-detection/agents/`), built once per
    /// process; `sabot` is the binary whose `componentize` wraps the Go module.
    pub fn fraud_rules(language: Language, sabot: &Path) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        BUILT[slot(language)].get_or_init(|| {
            let agents = super::workspace().join("examples/fraud-detection/agents");
            let (source, name) = match language {
                Language::JavaScript => (agents.join("js/fraud_rules.js"), "fraud_rules_js"),
                Language::Python => (agents.join("python/fraud_rules.py"), "fraud_rules_py"),
                Language::Go => (agents.join("go"), "fraud_rules_go"),
            };
            build(language, &source, name, sabot)
        })
    }

    /// The functions of `examples/sql/functions` (`risk`, `tier`, the aggregate `median`) in
    /// `language` (`risk.js`, `risk.py`, `go/`), built once per process; `sabot` is the binary
    /// whose `componentize` wraps the Go module.
    pub fn sql_functions(language: Language, sabot: &Path) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        BUILT[slot(language)].get_or_init(|| {
            let dir = super::workspace().join("examples/sql/functions");
            let (source, name) = match language {
                Language::JavaScript => (dir.join("risk.js"), "sql_functions_js"),
                Language::Python => (dir.join("risk.py"), "sql_functions_py"),
                Language::Go => (dir.join("go"), "sql_functions_go"),
            };
            build(language, &source, name, sabot)
        })
    }

    /// `tests/guests/languages/js/hostile_function.js`: a function module whose constructor
    /// spins or allocates without bound, built once per process.
    pub fn hostile_function_js() -> &'static Path {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        BUILT.get_or_init(|| {
            let source = super::workspace().join("tests/guests/languages/js/hostile_function.js");
            build(
                Language::JavaScript,
                &source,
                "hostile_function_js",
                Path::new("sabot"),
            )
        })
    }

    /// The Rust `misbehave` guest's `state` mode in `language`, over the same stores with the
    /// same values (`tests/guests/languages/`: `js/keep_state.js`, `python/keep_state.py`,
    /// `go-keep-state/`), built once per process.
    pub fn keep_state(language: Language, sabot: &Path) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        BUILT[slot(language)].get_or_init(|| {
            let guests = super::workspace().join("tests/guests/languages");
            let (source, name) = match language {
                Language::JavaScript => (guests.join("js/keep_state.js"), "keep_state_js"),
                Language::Python => (guests.join("python/keep_state.py"), "keep_state_py"),
                Language::Go => (guests.join("go-keep-state"), "keep_state_go"),
            };
            build(language, &source, name, sabot)
        })
    }

    /// The timers agent of `tests/guests/languages/` in `language` (timers, log and metrics
    /// through the SDK), built once per process.
    pub fn timed(language: Language, sabot: &Path) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        BUILT[slot(language)].get_or_init(|| {
            let guests = super::workspace().join("tests/guests/languages");
            let (source, name) = match language {
                Language::JavaScript => (guests.join("js/timed.js"), "timed_js"),
                Language::Python => (guests.join("python/timed.py"), "timed_py"),
                Language::Go => (guests.join("go"), "timed_go"),
            };
            build(language, &source, name, sabot)
        })
    }
}
