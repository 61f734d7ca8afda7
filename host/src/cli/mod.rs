//! The `sabot` command line: `run`, `validate`, `explain`, `sql` (a shell), `inspect`,
//! `componentize`, `new agent`; `serve`
//! (the long-running host); and against a server: `deploy`, `submit`, `swap`, `pipelines`,
//! `agents`, `tables`, `modules`, `health`.
//!
//! Exit codes: 0 success; 1 the pipeline failed while running (or a swap rolled back); 2 the
//! pipeline or a module is invalid (nothing ran), or a server refused the request; 3 a server
//! cannot be reached; 4 a server refused the token; 130 stopped by Ctrl-C (after flushing all
//! output).

pub mod explain;
mod progress;
pub mod remote;
pub mod scaffold;
pub mod shell;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use crate::config::PipelineSpec;
use crate::dataflow::RunStats;
use crate::wasm::{CompileCache, ModuleSource, WasmRuntime};
use crate::{Error, Pipeline, RunOptions, RunSummary};

/// Sabot: stream processing with sandboxed WebAssembly agents over Arrow batches.
#[derive(Debug, Parser)]
#[command(name = "sabot", version, about, long_about = None)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as `sabot=debug`.
    #[arg(long, global = true, env = "SABOT_LOG", default_value = "warn")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// A `sabot` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file until its input ends or Ctrl-C.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Use another module for an agent: `--module rules=path/to/rules.wasm`.
        #[arg(long = "module", value_name = "AGENT=MODULE")]
        modules: Vec<String>,
        #[command(flatten)]
        cache: CacheArgs,
        /// Never print the live progress line.
        #[arg(long)]
        no_progress: bool,
        /// Keep the run's data (state, checkpoints) under DIR instead of a temporary directory,
        /// and resume from the newest complete checkpoint there.
        #[arg(long, value_name = "DIR", env = "SABOT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Discard the checkpoints under --data-dir: start from empty state and the beginning of
        /// every source.
        #[arg(long, requires = "data_dir")]
        fresh: bool,
    },
    /// Check a pipeline file and its modules without running it.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Use another module for an agent: `--module rules=path/to/rules.wasm`.
        #[arg(long = "module", value_name = "AGENT=MODULE")]
        modules: Vec<String>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print a pipeline's operator graph (TOML or SQL): sources with their columns and event
    /// time, agents with their modules and settings, sinks and edges.
    Explain {
        /// The pipeline file (`.toml` or `.sql`).
        pipeline: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Use another module for an agent: `--module rules=path/to/rules.wasm`.
        #[arg(long = "module", value_name = "AGENT=MODULE")]
        modules: Vec<String>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// An interactive SQL shell: declare tables and views, and preview queries against them
    /// (a bounded run: the first rows, or what arrives within the time limit). Reads standard
    /// input, so a file of statements can be piped in.
    Sql {
        /// The most rows (or, for an updating query, keys) a preview shows.
        #[arg(long, default_value_t = 20)]
        rows: usize,
        /// The longest a preview runs, in seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Create a new agent that builds and runs as it is: `sabot new agent NAME --lang go`.
    New {
        /// What to create: `agent`.
        #[arg(value_enum)]
        kind: NewKind,
        /// The agent's name (lowercase letters, digits, `_`, `-`).
        name: String,
        /// The agent's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// The directory to create (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The Sabot checkout whose SDKs the agent uses (default: the one this binary was built
        /// from).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Wrap a WASI preview-1 core module (Go's wasip1 target) into an agent component.
    Componentize {
        /// The core module (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`).
        core: PathBuf,
        /// The component to write (default: the core module's name without `.core`, `.wasm`).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The world the module implements: `timed-agent` or `agent`.
        #[arg(long, default_value = "timed-agent")]
        world: String,
    },
    /// Run the long-running host: the HTTP API, the dashboard, pipelines defined over the API.
    Serve {
        /// A TOML file of server settings (see `sabot_host::serve::ServeConfig`); `SABOT_*`
        /// variables and these flags override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where to listen (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Modules, pipelines, state and checkpoints (default ./sabot-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Upload an agent component to a server as NAME@VERSION.
    Deploy {
        /// The component file.
        module: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Define a pipeline on a server from a pipeline file (modules as NAME@VERSION or builtin:).
    Submit {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Start it at once.
        #[arg(long)]
        start: bool,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Swap a running agent's module at the next checkpoint, state kept; waits for the outcome.
    Swap {
        pipeline: String,
        agent: String,
        /// The new module: NAME@VERSION.
        module: String,
        /// A new config for the agent's `init` (JSON); default: the one it runs with.
        #[arg(long, value_name = "JSON")]
        config: Option<String>,
        /// Return once the swap is requested, without waiting for its outcome.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// List a server's pipelines.
    Pipelines {
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// List a pipeline's agents with their versions and counters.
    Agents {
        pipeline: String,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// List a pipeline's state tables.
    Tables {
        pipeline: String,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Read a materialized view of a running pipeline: one key's rows (`--key`), or the first
    /// rows in key order (`--limit`).
    View {
        /// The view's name (its `CREATE MATERIALIZED VIEW` name, or its `builtin:view` agent).
        name: String,
        /// The key to read (a number is tried as an integer key first, then as text).
        #[arg(long, conflicts_with = "limit")]
        key: Option<String>,
        /// How many rows to read, from the first key (1 to 10 000; default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// The pipeline whose view it is, when several have a view of that name.
        #[arg(long)]
        pipeline: Option<String>,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// List the modules uploaded to a server.
    Modules {
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Manage a server's secrets (`${secret:NAME}` in definitions): values are written, never
    /// read back.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Check that a server answers (exit 0), as a container health check.
    Health {
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Compile a module into the compile cache, for a server (internal: the server runs it in a
    /// child process it can stop).
    #[command(name = "__precompile", hide = true)]
    Precompile {
        #[arg(long)]
        cache_dir: PathBuf,
        #[arg(long)]
        cache_mb: u64,
        #[arg(long)]
        name: String,
        file: PathBuf,
    },
    /// Describe a module: world, imports, exports, size, SDK version.
    Inspect {
        /// The component file.
        module: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cache: CacheArgs,
    },
}

/// What `sabot new` creates.
/// `sabot secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Store a secret; its value is read from stdin (one final newline dropped).
    Set { name: String },
    /// List the secrets' names and when each was set.
    List,
    /// Delete a secret.
    Delete { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewKind {
    /// An agent: its code, build script, a pipeline to try it on, and a README.
    Agent,
}

/// Where compiled components are cached.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Directory of the compiled-component cache (default: $SABOT_CACHE_DIR, else
    /// ~/.cache/sabot/components).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every module afresh and cache nothing.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

impl CacheArgs {
    fn cache(&self) -> CompileCache {
        if self.no_cache {
            CompileCache::new(None)
        } else {
            CompileCache::new(self.cache_dir.clone().or_else(CompileCache::default_dir))
        }
    }
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).unwrap_or_else(|e| {
        eprintln!(
            "sabot: --log-level {:?} is not a valid level or filter ({e}); using warn",
            cli.log_level
        );
        tracing_subscriber::EnvFilter::new("warn")
    });
    // Guest log lines are kept for the server's API whatever the level printed.
    let guest_logs = Arc::new(crate::serve::logs::GuestLogs::default());
    {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let keep_guest = matches!(cli.command, Command::Serve { .. });
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .with(keep_guest.then(|| {
                crate::serve::logs::GuestLogLayer(guest_logs.clone()).with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("sabot::guest", tracing::Level::TRACE),
                )
            }))
            .init();
    }
    match execute(cli.command, guest_logs) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints a command's result on standard output.
#[allow(clippy::print_stdout)]
fn print(text: &str) {
    println!("{text}");
}

fn execute(
    command: Command,
    guest_logs: Arc<crate::serve::logs::GuestLogs>,
) -> Result<ExitCode, Error> {
    match command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut settings =
                crate::serve::ServeConfig::load(config.as_deref(), std::env::vars())?;
            if let Some(l) = listen {
                settings.listen = l;
            }
            if let Some(d) = data_dir {
                settings.data_dir = d;
            }
            crate::serve::serve(settings, guest_logs)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy {
            module,
            name,
            version,
            server,
        } => {
            print(&remote::deploy(
                &remote::Client::new(&server)?,
                &module,
                &name,
                &version,
            )?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit {
            pipeline,
            start,
            server,
        } => {
            print(&remote::submit(
                &remote::Client::new(&server)?,
                &pipeline,
                start,
            )?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Swap {
            pipeline,
            agent,
            module,
            config,
            no_wait,
            server,
        } => {
            let client = remote::Client::new(&server)?;
            print(&remote::swap(
                &client,
                &pipeline,
                &agent,
                &module,
                config.as_deref(),
                no_wait,
            )?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Pipelines { server } => {
            print(&remote::pipelines(&remote::Client::new(&server)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents { pipeline, server } => {
            print(&remote::agents(&remote::Client::new(&server)?, &pipeline)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tables { pipeline, server } => {
            print(&remote::tables(&remote::Client::new(&server)?, &pipeline)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::View {
            name,
            key,
            limit,
            pipeline,
            server,
        } => {
            print(&remote::view(
                &remote::Client::new(&server)?,
                pipeline.as_deref(),
                &name,
                key.as_deref(),
                limit,
            )?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Modules { server } => {
            print(&remote::modules(&remote::Client::new(&server)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Secret { action, server } => {
            let client = remote::Client::new(&server)?;
            print(&match action {
                SecretAction::Set { name } => {
                    let mut value = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut value).map_err(
                        |e| Error::Usage(format!("cannot read the secret's value from stdin: {e}")),
                    )?;
                    // A value piped with `echo` ends with a newline that is not part of it.
                    if value.ends_with('\n') {
                        value.pop();
                        if value.ends_with('\r') {
                            value.pop();
                        }
                    }
                    remote::secret_set(&client, &name, &value)?
                }
                SecretAction::List => remote::secret_list(&client)?,
                SecretAction::Delete { name } => remote::secret_delete(&client, &name)?,
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { server } => {
            print(&remote::health(&remote::Client::new(&server)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            pipeline,
            modules,
            cache,
            no_progress,
            data_dir,
            fresh,
        } => {
            // Before loading: a Ctrl-C while modules compile stops cleanly too.
            let stop = on_ctrl_c();
            let pipeline = load(&pipeline, &modules, &cache)?;
            if pipeline.spec().scale_out.is_some() {
                return run_scaled_out(&pipeline, stop, data_dir, fresh);
            }
            run(
                &pipeline,
                stop,
                data_dir,
                fresh,
                !no_progress && std::io::stderr().is_terminal(),
            )
        }
        Command::Validate {
            pipeline: path,
            modules,
            cache,
        } => {
            let pipeline = load(&path, &modules, &cache)?;
            let spec = pipeline.spec();
            let instances: usize = spec.agents.values().map(|a| a.parallelism).sum();
            eprintln!(
                "{}: valid — pipeline `{}`: {} source(s), {} agent(s) ({} instance(s)), {} sink(s), {} edge(s)",
                path.display(),
                spec.name,
                spec.sources.len(),
                spec.agents.len(),
                instances,
                spec.sinks.len(),
                spec.edges.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            pipeline: path,
            json,
            modules,
            cache,
        } => {
            let pipeline = load(&path, &modules, &cache)?;
            let out = if json {
                format!("{:#}\n", explain::graph(pipeline.spec()))
            } else {
                explain::text(pipeline.spec())
            };
            std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())
                .map_err(|e| Error::Internal(format!("cannot write to standard output: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql {
            rows,
            timeout,
            cache,
        } => {
            if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
                return Err(Error::Internal(format!(
                    "--timeout {timeout}: expected seconds, more than 0 and at most 3600"
                )));
            }
            let runtime = WasmRuntime::new(cache.cache())?;
            let dir = std::env::current_dir()
                .map_err(|e| Error::Internal(format!("cannot read the working directory: {e}")))?;
            let mut shell = shell::Shell::new(
                runtime,
                dir,
                rows,
                std::time::Duration::from_secs_f64(timeout),
            );
            let stdin = std::io::stdin();
            let terminal = stdin.is_terminal();
            shell
                .run(stdin.lock(), &mut std::io::stdout(), terminal)
                .map_err(|e| Error::Internal(format!("the shell's input or output failed: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New {
            kind: NewKind::Agent,
            name,
            lang,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let written = scaffold::new_agent(&name, lang, &dir, sdk.as_deref())?;
            eprintln!(
                "created agent `{name}` in {} ({} files); build and try it:\n  cd {} && ./build.sh && sabot run pipeline.toml",
                dir.display(),
                written.len(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Precompile {
            cache_dir,
            cache_mb,
            name,
            file,
        } => match crate::wasm::isolate::child(&cache_dir, cache_mb, &name, &file) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // The server reads the reason from standard output.
            Err(crate::wasm::ModuleError::Invalid { message, .. }) => {
                print(&message);
                Ok(ExitCode::FAILURE)
            }
            Err(other) => {
                print(&other.to_string());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Componentize {
            core,
            output,
            world,
        } => {
            let name = core.display().to_string();
            let bytes = std::fs::read(&core).map_err(|source| crate::wasm::ModuleError::Read {
                module: name.clone(),
                source,
            })?;
            let component = crate::wasm::componentize::componentize(&bytes, &name, &world)?;
            let output = output.unwrap_or_else(|| {
                let stem = core.file_stem().unwrap_or_default().to_string_lossy();
                core.with_file_name(format!("{}.wasm", stem.trim_end_matches(".core")))
            });
            if output == core {
                return Err(Error::Usage(format!(
                    "the output would overwrite the core module {name}: give -o FILE"
                )));
            }
            std::fs::write(&output, &component).map_err(|source| Error::File {
                path: output.display().to_string(),
                source,
            })?;
            eprintln!(
                "{}: a `{world}` component of {} bytes",
                output.display(),
                component.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            module,
            json,
            cache,
        } => {
            let bytes =
                std::fs::read(&module).map_err(|source| crate::wasm::ModuleError::Read {
                    module: module.display().to_string(),
                    source,
                })?;
            let runtime = WasmRuntime::new(cache.cache())?;
            let info =
                crate::wasm::inspect::inspect(&runtime, &module.display().to_string(), &bytes);
            let mut out = String::new();
            if json {
                out = serde_json::to_string_pretty(&info)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                out.push('\n');
            } else {
                use std::fmt::Write;
                let _ = writeln!(out, "module:   {}", module.display());
                let _ = writeln!(out, "kind:     {}", info.kind);
                let _ = writeln!(out, "size:     {} bytes", info.size);
                let _ = writeln!(out, "sha256:   {}", info.sha256);
                let _ = writeln!(
                    out,
                    "world:    {}",
                    info.world.as_deref().unwrap_or("(not a Sabot agent)")
                );
                let _ = writeln!(
                    out,
                    "sdk:      {}",
                    info.sdk_version.as_deref().map_or(
                        "(unknown: not built with sabot-sdk for Rust)".to_owned(),
                        |v| format!("sabot-sdk {v}")
                    )
                );
                let _ = writeln!(out, "imports:");
                for i in &info.imports {
                    let _ = writeln!(out, "  {i}");
                }
                let _ = writeln!(out, "exports:");
                for e in &info.exports {
                    let _ = writeln!(out, "  {e}");
                }
                if let Some(problem) = &info.problem {
                    let _ = writeln!(out, "problem:  {problem}");
                }
            }
            print_stdout(&out);
            Ok(if info.problem.is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn print_stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn load(
    path: &std::path::Path,
    overrides: &[String],
    cache: &CacheArgs,
) -> Result<Pipeline, Error> {
    let mut modules = Vec::new();
    for arg in overrides {
        let Some((agent, module)) = arg.split_once('=') else {
            return Err(Error::Config(crate::config::ConfigError::Invalid {
                file: path.to_owned(),
                location: format!("--module {arg}"),
                message: "expected AGENT=MODULE, e.g. --module rules=target/wasm32-wasip2/release/rules.wasm".into(),
            }));
        };
        let source = match module.strip_prefix("builtin:") {
            Some(b) => ModuleSource::Builtin(b.to_owned()),
            None => ModuleSource::Path(PathBuf::from(module)),
        };
        modules.push((agent.to_owned(), source));
    }
    let runtime = WasmRuntime::new(cache.cache())?;
    // A SQL pipeline's function calls are type-checked by asking their modules.
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let spec = PipelineSpec::load_with(
        path,
        &modules,
        Some(&crate::wasm::function::local(&runtime, base)),
    )?;
    Pipeline::new(spec, runtime)
}

/// Installs the Ctrl-C handler: the first press asks for a graceful stop, the second exits.
fn on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::SeqCst) {
            eprintln!("\nsabot: second interrupt, exiting without flushing");
            std::process::exit(130);
        }
        eprintln!(
            "\nsabot: stopping: finishing in-flight batches and flushing output (Ctrl-C again to exit at once)"
        );
    });
    if let Err(e) = installed {
        tracing::warn!(error = %e, "cannot install the Ctrl-C handler; Ctrl-C will stop without flushing");
    }
    stop
}

fn run(
    pipeline: &Pipeline,
    stop: Arc<AtomicBool>,
    data_dir: Option<PathBuf>,
    fresh: bool,
    show_progress: bool,
) -> Result<ExitCode, Error> {
    let spec = pipeline.spec();
    let stats = Arc::new(RunStats::for_pipeline(spec));
    let progress = show_progress.then(|| progress::Progress::start(stats.clone()));
    let result = pipeline.run(RunOptions {
        stop: stop.clone(),
        stats: Some(stats),
        data_dir,
        fresh,
        live: None,
        work_dir: None,
    });
    if let Some(p) = progress {
        p.finish();
    }
    let summary = result?;
    eprintln!("{}", summary_line(&summary));
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// `sabot run` of a pipeline with `[pipeline.scale_out]`: one member of the consumer group,
/// printing the partitions it gains and loses.
fn run_scaled_out(
    pipeline: &Pipeline,
    stop: Arc<AtomicBool>,
    data_dir: Option<PathBuf>,
    fresh: bool,
) -> Result<ExitCode, Error> {
    let spec = pipeline.spec();
    let scale = spec.scale_out.as_ref().expect("checked by the caller");
    let place = match (
        &scale.shared_dir,
        spec.checkpoint.as_ref().and_then(|c| c.storage.as_ref()),
    ) {
        (Some(dir), _) => dir.join(&spec.name).display().to_string(),
        (None, Some(storage)) => format!(
            "{}/{}.TOPIC.PARTITION",
            storage.url.trim_end_matches('/'),
            spec.name
        ),
        (None, None) => String::from("(no shared_dir)"),
    };
    if fresh {
        return Err(Error::Usage(format!(
            "--fresh does not apply to a scaled-out pipeline: its checkpoints belong to the whole group, under {place} (remove them while no member runs to start over)"
        )));
    }
    eprintln!(
        "sabot: pipeline `{}` shares the partitions of source `{}` with its consumer group; checkpoints under {place}",
        spec.name, scale.source,
    );
    let summary = crate::scaleout::run(
        pipeline,
        crate::scaleout::ScaleOutOptions {
            stop,
            data_dir,
            on_event: Some(Arc::new(|event| eprintln!("sabot: {event}"))),
            live: None,
            stats: None,
        },
    )?;
    eprintln!(
        "sabot: pipeline `{}` stopped after {:.2} s: {} partition task(s), {} events in, {} out",
        summary.pipeline,
        summary.elapsed.as_secs_f64(),
        summary.tasks,
        progress::grouped(summary.events_in),
        progress::grouped(summary.events_out),
    );
    Ok(ExitCode::from(130))
}

/// The one-line summary printed at the end of a run.
pub fn summary_line(s: &RunSummary) -> String {
    let secs = s.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        s.events_in as f64 / secs
    } else {
        0.0
    };
    let mut line = format!(
        "sabot: pipeline `{}` {} in {:.2} s: {} events in ({}/s), {} out",
        s.pipeline,
        if s.interrupted { "stopped" } else { "finished" },
        secs,
        progress::grouped(s.events_in),
        progress::si(rate),
        progress::grouped(s.events_out),
    );
    let latency = s.stats.sink_latency();
    if let (Some(p50), Some(p99)) = (latency.quantile(0.5), latency.quantile(0.99)) {
        line.push_str(&format!(
            " (latency p50 {}, p99 {})",
            progress::duration(p50),
            progress::duration(p99)
        ));
    }
    if s.failed_batches > 0 {
        line.push_str(&format!(
            ", {} batch(es) failed and skipped or dead-lettered",
            s.failed_batches
        ));
    }
    if s.dead_letters > 0 {
        line.push_str(&format!(", {} dead letter(s)", s.dead_letters));
    }
    if let Some(id) = s.restored_from {
        line.push_str(&format!(", resumed from checkpoint {id}"));
    }
    if s.checkpoints > 0 {
        line.push_str(&format!(", {} checkpoint(s)", s.checkpoints));
    }
    let restarts: u64 = s
        .stats
        .nodes
        .values()
        .map(|n| n.restarts.load(Ordering::Relaxed))
        .sum();
    if restarts > 0 {
        line.push_str(&format!(", {restarts} instance restart(s)"));
    }
    line
}
