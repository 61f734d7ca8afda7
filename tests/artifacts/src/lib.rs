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

    fn build(language: Language, sabot: &Path) -> PathBuf {
        let repo = super::workspace();
        let agents = repo.join("examples/fraud-detection/agents");
        match language {
            Language::JavaScript => {
                let out = out_dir().join("fraud_rules_js.wasm");
                run(
                    Command::new("node")
                        .arg(repo.join("guest-sdk/js/build.mjs"))
                        .arg(agents.join("js/fraud_rules.js"))
                        .arg("-o")
                        .arg(&out),
                    "building the JavaScript agent (sabot-agent-build)",
                );
                out
            }
            Language::Python => {
                let out = out_dir().join("fraud_rules_py.wasm");
                run(
                    Command::new(venv_python())
                        .args(["-m", "sabot_agent.build"])
                        .arg(agents.join("python/fraud_rules.py"))
                        .arg("-o")
                        .arg(&out),
                    "building the Python agent (sabot_agent.build)",
                );
                out
            }
            Language::Go => {
                let core = out_dir().join("fraud_rules_go.core.wasm");
                let out = out_dir().join("fraud_rules_go.wasm");
                run(
                    Command::new("go")
                        .args(["build", "-buildmode=c-shared", "-o"])
                        .arg(&core)
                        .arg(".")
                        .current_dir(agents.join("go"))
                        .env("GOOS", "wasip1")
                        .env("GOARCH", "wasm"),
                    "building the Go agent (go build, wasip1)",
                );
                run(
                    Command::new(sabot)
                        .arg("componentize")
                        .arg(&core)
                        .arg("-o")
                        .arg(&out),
                    "sabot componentize (the Go agent)",
                );
                out
            }
        }
    }

    /// The fraud rules in `language`, built once per process; `sabot` is the binary whose
    /// `componentize` wraps the Go module.
    pub fn fraud_rules(language: Language, sabot: &Path) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = match language {
            Language::JavaScript => 0,
            Language::Python => 1,
            Language::Go => 2,
        };
        BUILT[slot].get_or_init(|| build(language, sabot))
    }
}
