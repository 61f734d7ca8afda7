//! The pipeline file: a TOML document with `[pipeline]` settings, `[sources.NAME]`,
//! `[agents.NAME]` and `[sinks.NAME]` tables, and `edges`.
//!
//! ```toml
//! [pipeline]
//! name = "fraud-detection"
//! batch_size = 8192
//!
//! [sources.transactions]
//! type = "generator"
//! count = 1_000_000
//!
//! [agents.rules]
//! module = "fraud_rules.wasm"     # relative to this file, or builtin:filter / builtin:project
//! parallelism = 2
//! key = "card_id"
//! config = { over_limit_factor = 1.5 }
//!
//! [sinks.alerts]
//! type = "stdout"
//!
//! edges = ["transactions -> rules -> alerts"]
//! ```
//!
//! Loading validates everything that can be checked before running; every error names the file,
//! the table and field, and what was expected.

mod builtins;
mod changelog;
pub mod paths;
pub mod secrets;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::checkpoint::CheckpointSpec;
use crate::connectors::kafka::AvroSpec;
pub use paths::Paths;

use crate::connectors::{OnError, SinkSpec, SourceSpec};
use crate::state::BackendKind;
use crate::wasm::{Limits, LimitsOverride, ModuleSource};

/// Why a pipeline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read the pipeline file: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the pipeline schema.
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    /// A SQL pipeline has a mistake, at a line and column.
    #[error("{}:{error}", file.display())]
    Sql {
        file: PathBuf,
        error: crate::sql::SqlError,
    },
    /// A value is out of range or refers to something that does not exist.
    #[error("{}: {location}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        location: String,
        message: String,
    },
}

/// `[pipeline]`: run-wide settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    name: Option<String>,
    batch_size: Option<usize>,
    channel_capacity: Option<usize>,
    dead_letter: Option<PathBuf>,
    dead_letter_mb: Option<u64>,
    file_sink_mb: Option<u64>,
    #[serde(default)]
    state: BackendKind,
    state_cache_mb: Option<u64>,
    #[serde(default)]
    limits: LimitsOverride,
    checkpoint: Option<CheckpointSpec>,
    scale_out: Option<RawScaleOut>,
}

/// `[pipeline.scale_out]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaleOut {
    source: Option<String>,
    shared_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    module: String,
    #[serde(default = "one")]
    parallelism: usize,
    key: Option<String>,
    config: Option<toml::Value>,
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    limits: LimitsOverride,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    pipeline: RawSettings,
    #[serde(default)]
    sources: IndexMap<String, SourceSpec>,
    #[serde(default)]
    agents: IndexMap<String, RawAgent>,
    #[serde(default)]
    sinks: IndexMap<String, SinkSpec>,
    #[serde(default)]
    edges: Vec<String>,
}

/// An agent of a validated pipeline.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Where the component comes from.
    pub module: ModuleSource,
    /// How many instances run in parallel.
    pub parallelism: usize,
    /// The column whose value decides which instance a row goes to.
    pub key: Option<String>,
    /// The configuration passed to `init`: the `config` table as JSON, or a string as it is.
    pub config: String,
    /// What to do with a batch the agent refuses or traps on.
    pub on_error: OnError,
    /// Sandbox limits of each instance.
    pub limits: Limits,
}

/// A connection from an output port of a source or agent to an agent or sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    /// The output port of `from` (always 0 for a source).
    pub from_port: u32,
    pub to: String,
    /// The input port of `to`: the order in which its distinct inputs first appear in `edges`.
    pub to_port: u32,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The file it was loaded from (for messages), if any.
    pub file: PathBuf,
    pub name: String,
    /// Rows per batch that sources produce.
    pub batch_size: usize,
    /// Batches buffered on each edge before the producer waits.
    pub channel_capacity: usize,
    /// Where dead letters go.
    pub dead_letter: Option<PathBuf>,
    /// The most the dead-letter file may hold, in MiB.
    pub dead_letter_mb: u64,
    /// The most one file sink may write per checkpoint (per run without checkpoints), in MiB.
    pub file_sink_mb: u64,
    /// Where agents' keyed state is kept.
    pub state: BackendKind,
    /// The write-back cache in front of each RocksDB instance, in MiB (0: none).
    pub state_cache_mb: u64,
    /// `[pipeline.checkpoint]`: periodic checkpoints, when set.
    pub checkpoint: Option<CheckpointSpec>,
    /// `[pipeline.scale_out]`: share a Kafka source's partitions with the other processes of its
    /// consumer group (see [`crate::scaleout`]).
    pub scale_out: Option<ScaleOutSpec>,
    pub sources: IndexMap<String, SourceSpec>,
    pub agents: IndexMap<String, AgentSpec>,
    pub sinks: IndexMap<String, SinkSpec>,
    pub edges: Vec<Edge>,
    /// The values its `${…}` references resolved to (kept in memory only), to take them out of
    /// messages: see [`secrets`].
    pub secrets: secrets::Resolved,
}

/// `[pipeline.scale_out]`: the pipeline runs one copy per partition of a Kafka source, on
/// whichever process of the source's consumer group is assigned that partition.
///
/// ```toml
/// [pipeline.scale_out]
/// source = "payments"              # the Kafka source whose partitions are shared
/// shared_dir = "/mnt/sabot/shared" # every process reaches it: checkpoints, pending output
/// ```
///
/// With `[pipeline.checkpoint.storage]` (object storage) there is no `shared_dir`: each
/// partition's checkpoints, with its pending output, are in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutSpec {
    /// The Kafka source whose partitions are shared (its `group` is the consumer group).
    pub source: String,
    /// Where each partition's checkpoints and pending exactly-once output live, reachable by
    /// every process of the group; `None` when they are in object storage.
    pub shared_dir: Option<PathBuf>,
}

/// The default rows per source batch.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// The default batches buffered per edge.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4;
/// The default write-back cache per RocksDB instance, in MiB.
pub const DEFAULT_STATE_CACHE_MB: u64 = 64;
/// The default budget of the dead-letter file, in MiB.
pub const DEFAULT_DEAD_LETTER_MB: u64 = 1024;
/// The default budget of a file sink per checkpoint, in MiB.
pub const DEFAULT_FILE_SINK_MB: u64 = 1024;
/// The most instances an agent may have.
pub const MAX_PARALLELISM: usize = 256;

impl PipelineSpec {
    /// Loads and validates the pipeline file at `path`. Relative paths in it are relative to the
    /// file's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_modules(path, &[])
    }

    /// Like [`PipelineSpec::load`], with the modules of some agents replaced (what
    /// `--module AGENT=FILE` does on the command line): the file's own module for those agents
    /// need not exist.
    pub fn load_with_modules(
        path: impl AsRef<Path>,
        modules: &[(String, ModuleSource)],
    ) -> Result<Self, ConfigError> {
        Self::load_with(path, modules, None)
    }

    /// Like [`PipelineSpec::load_with_modules`], with a way to ask function modules what a SQL
    /// pipeline's calls return (see [`crate::sql::Catalog::functions`]); `--module NAME=FILE`
    /// may name a declared function.
    pub fn load_with(
        path: impl AsRef<Path>,
        modules: &[(String, ModuleSource)],
        functions: Option<&crate::sql::FunctionTypes<'_>>,
    ) -> Result<Self, ConfigError> {
        let file = path.as_ref().to_owned();
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse_with(&text, &file, modules, functions)
    }

    /// Like [`PipelineSpec::parse_with_modules`], with a way to ask function modules what a SQL
    /// pipeline's calls return (see [`PipelineSpec::load_with`]).
    pub fn parse_with(
        text: &str,
        file: &Path,
        modules: &[(String, ModuleSource)],
        functions: Option<&crate::sql::FunctionTypes<'_>>,
    ) -> Result<Self, ConfigError> {
        Self::parse_in(text, file, modules, Paths::Anywhere, None, functions)
    }

    /// Parses and validates pipeline text; `file` names it in messages and its directory anchors
    /// relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_modules(text, file, &[])
    }

    /// Like [`PipelineSpec::parse`], with the modules of some agents replaced.
    pub fn parse_with_modules(
        text: &str,
        file: &Path,
        modules: &[(String, ModuleSource)],
    ) -> Result<Self, ConfigError> {
        Self::parse_in(text, file, modules, Paths::Anywhere, None, None)
    }

    /// Like [`PipelineSpec::parse_with_modules`], for a definition a client sent to a server:
    /// every path it names must stay inside `file`'s directory ([`paths`]), and its
    /// `${secret:NAME}` references come from `store` ([`secrets`]).
    pub fn parse_confined(
        text: &str,
        file: &Path,
        modules: &[(String, ModuleSource)],
        store: &secrets::SecretStore,
    ) -> Result<Self, ConfigError> {
        Self::parse_in(text, file, modules, Paths::Confined, Some(store), None)
    }

    fn parse_in(
        text: &str,
        file: &Path,
        modules: &[(String, ModuleSource)],
        paths: Paths,
        store: Option<&secrets::SecretStore>,
        functions: Option<&crate::sql::FunctionTypes<'_>>,
    ) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let sql = crate::sql::is_sql(file);
        // `--module NAME=FILE` naming a SQL function replaces the function's module.
        let mut modules = modules.to_vec();
        let mut function_modules = Vec::new();
        if sql {
            let declared = crate::sql::declared_functions(text).unwrap_or_default();
            modules.retain(|(name, module)| {
                let function = declared.iter().any(|(f, _)| f.eq_ignore_ascii_case(name));
                if function {
                    function_modules.push((name.clone(), module_text(module)));
                }
                !function
            });
        }
        let modules = modules.as_slice();
        let (raw, resolved): (RawPipeline, _) = if sql || text.contains("${") {
            // References are replaced in the parsed document, never in the text.
            let mut doc: toml::Value = if sql {
                sql_document(text, file, &sql_catalog(functions, &function_modules))?.into()
            } else {
                toml::from_str(text).map_err(parse_error)?
            };
            let resolved = if text.contains("${") {
                let sources = match store {
                    Some(store) => secrets::Sources::Server { store },
                    None => secrets::Sources::Run { base },
                };
                secrets::resolve(&mut doc, sources).map_err(|e| ConfigError::Invalid {
                    file: file.to_owned(),
                    location: e.location,
                    message: e.message,
                })?
            } else {
                secrets::Resolved::default()
            };
            let raw = doc
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    file: file.to_owned(),
                    message: resolved.redact(e.to_string().trim_end()),
                })?;
            (raw, resolved)
        } else {
            (
                toml::from_str(text).map_err(parse_error)?,
                secrets::Resolved::default(),
            )
        };
        let mut spec = Validator {
            file,
            base,
            modules,
            paths,
        }
        .validate(raw)
        .map_err(|e| redact_error(e, &resolved))?;
        spec.secrets = resolved;
        Ok(spec)
    }

    /// The columns of output `port` of source `name`, when they are known before it runs (a
    /// generator, Nexmark, a declared schema).
    pub fn source_schema(&self, name: &str, port: u32) -> Option<arrow_schema::SchemaRef> {
        builtins::source_schema(self.sources.get(name)?, port)
    }

    /// The inputs of `node` (agent or sink), as `(from, from_port, to_port)`.
    pub fn inputs_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |e| e.to == node)
    }

    /// The edges leaving `node`.
    pub fn outputs_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |e| e.from == node)
    }
}

/// The columns of a source document's output `port`, when known before it runs: what the SQL
/// planner checks expressions against.
fn sql_schema_of(source: &toml::Value, port: u32) -> Option<arrow_schema::SchemaRef> {
    let spec: SourceSpec = source.clone().try_into().ok()?;
    builtins::source_schema(&spec, port)
}

/// What the SQL planner asks: sources' columns, function modules through `functions`, and
/// the modules that replace declared functions' (`--module NAME=FILE`).
fn sql_catalog<'a>(
    functions: Option<&'a crate::sql::FunctionTypes<'a>>,
    modules: &'a [(String, String)],
) -> crate::sql::Catalog<'a> {
    crate::sql::Catalog {
        schema_of: &sql_schema_of,
        functions,
        modules,
    }
}

/// A module as `CREATE FUNCTION` would name it: a built-in, or a file by its absolute path
/// (a path given on the command line is relative to the working directory).
fn module_text(module: &ModuleSource) -> String {
    match module {
        ModuleSource::Builtin(name) => format!("builtin:{name}"),
        ModuleSource::Path(path) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
    }
}

/// Compiles a SQL pipeline to its pipeline document.
fn sql_document(
    text: &str,
    file: &Path,
    catalog: &crate::sql::Catalog<'_>,
) -> Result<toml::Table, ConfigError> {
    crate::sql::compile(text, catalog).map_err(|error| ConfigError::Sql {
        file: file.to_owned(),
        error,
    })
}

/// Checks SQL declarations as a pipeline would use them, with nothing to write yet (the
/// `sabot sql` shell); `file` names them in messages.
pub fn check_sql(
    text: &str,
    file: &Path,
    functions: Option<&crate::sql::FunctionTypes<'_>>,
) -> Result<(), ConfigError> {
    crate::sql::check(text, &sql_catalog(functions, &[])).map_err(|error| ConfigError::Sql {
        file: file.to_owned(),
        error,
    })
}

/// A SQL pipeline as the TOML text of the same pipeline, named `name`: what a server stores
/// for a definition sent as `application/sql` (the SQL is kept in its opening comment).
/// `functions` answers for the modules its `CREATE FUNCTION`s name (uploaded modules).
pub fn sql_to_toml(
    text: &str,
    name: &str,
    functions: Option<&crate::sql::FunctionTypes<'_>>,
) -> Result<String, ConfigError> {
    let file = PathBuf::from(format!("{name}.sql"));
    let mut document = sql_document(text, &file, &sql_catalog(functions, &[]))?;
    // The name the server gives it replaces a `SET name`; the other settings stay.
    let mut settings = match document.remove("pipeline") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    settings.insert("name".into(), name.into());
    document.insert("pipeline".into(), settings.into());
    let body = toml::to_string(&document).map_err(|e| ConfigError::Parse {
        file: file.clone(),
        message: format!("the compiled pipeline cannot be written as TOML: {e}"),
    })?;
    let comment: String = text.lines().map(|l| format!("# {l}\n")).collect();
    Ok(format!("# Compiled from SQL:\n{comment}\n{body}"))
}

/// `e` with the values of resolved references replaced by the references.
fn redact_error(e: ConfigError, resolved: &secrets::Resolved) -> ConfigError {
    if resolved.is_empty() {
        return e;
    }
    match e {
        ConfigError::Parse { file, message } => ConfigError::Parse {
            file,
            message: resolved.redact(&message),
        },
        ConfigError::Invalid {
            file,
            location,
            message,
        } => ConfigError::Invalid {
            file,
            location,
            message: resolved.redact(&message),
        },
        // SQL errors come before references are resolved.
        early @ (ConfigError::Read { .. } | ConfigError::Sql { .. }) => early,
    }
}

struct Validator<'a> {
    file: &'a Path,
    base: &'a Path,
    /// Modules given instead of the file's, by agent.
    modules: &'a [(String, ModuleSource)],
    /// Where the paths it names may point.
    paths: Paths,
}

impl Validator<'_> {
    fn invalid(&self, location: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            location: location.into(),
            message: message.into(),
        }
    }

    /// `path` anchored at the file's directory; on a server, confined to it.
    /// `Err((field, message))`.
    fn place(&self, path: &Path, field: &str) -> Result<PathBuf, (String, String)> {
        self.paths
            .place(self.base, path)
            .map_err(|m| (field.to_owned(), m))
    }

    /// Places an Avro schema file and loads it; on a server a schema that does not parse is
    /// refused without the parser's words, which may quote the file.
    fn avro(&self, a: &mut AvroSpec) -> Result<(), (String, String)> {
        a.schema_file = self.place(&a.schema_file, "avro.schema_file")?;
        a.load().map_err(|(field, m)| match self.paths {
            Paths::Confined if m.contains("not a usable Avro schema") => (
                field,
                format!(
                    "{}: not a usable Avro schema (on a server the parser's reason is not shown, as it may quote the file: check the schema locally)",
                    a.schema_file.display()
                ),
            ),
            _ => (field, m),
        })
    }

    fn validate(&self, raw: RawPipeline) -> Result<PipelineSpec, ConfigError> {
        let settings = &raw.pipeline;
        let name = match &settings.name {
            Some(n) => {
                check_name(n).map_err(|m| self.invalid("[pipeline] field `name`", m))?;
                n.clone()
            }
            None => self
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into()),
        };
        let batch_size = settings.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=1 << 20).contains(&batch_size) {
            return Err(self.invalid(
                "[pipeline] field `batch_size`",
                format!("expected rows per batch from 1 to 1048576, got {batch_size}"),
            ));
        }
        let channel_capacity = settings
            .channel_capacity
            .unwrap_or(DEFAULT_CHANNEL_CAPACITY);
        if !(1..=1024).contains(&channel_capacity) {
            return Err(self.invalid(
                "[pipeline] field `channel_capacity`",
                format!("expected batches per edge from 1 to 1024, got {channel_capacity}"),
            ));
        }
        let base_limits = settings.limits.over(Limits::default());
        self.check_limits("[pipeline.limits]", base_limits)?;
        let dead_letter = match settings.dead_letter.as_deref() {
            Some(p) => Some(
                self.place(p, "dead_letter")
                    .map_err(|(f, m)| self.invalid(format!("[pipeline] field `{f}`"), m))?,
            ),
            None => None,
        };
        let mib_setting = |field: &str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if (1..=1 << 20).contains(&value) {
                Ok(value)
            } else {
                Err(self.invalid(
                    format!("[pipeline] field `{field}`"),
                    format!("expected 1 to 1048576 MiB, got {value}"),
                ))
            }
        };
        let dead_letter_mb = mib_setting(
            "dead_letter_mb",
            settings.dead_letter_mb,
            DEFAULT_DEAD_LETTER_MB,
        )?;
        let file_sink_mb =
            mib_setting("file_sink_mb", settings.file_sink_mb, DEFAULT_FILE_SINK_MB)?;

        if raw.sources.is_empty() {
            return Err(self.invalid("[sources]", "a pipeline needs at least one source, e.g. [sources.input] with type = \"generator\""));
        }
        // A materialized view (a `builtin:view` agent) is an output too: it is read over HTTP.
        let views = raw
            .agents
            .values()
            .any(|a| a.module.trim() == "builtin:view");
        if raw.sinks.is_empty() && !views {
            return Err(self.invalid(
                "[sinks]",
                "a pipeline needs at least one sink, e.g. [sinks.out] with type = \"stdout\" (or a builtin:view agent)",
            ));
        }

        // Names are unique across sources, agents and sinks.
        let mut kinds: HashMap<&str, &str> = HashMap::new();
        let tables = [
            ("sources", raw.sources.keys().collect::<Vec<_>>()),
            ("agents", raw.agents.keys().collect()),
            ("sinks", raw.sinks.keys().collect()),
        ];
        for (table, names) in &tables {
            for name in names {
                check_name(name).map_err(|m| self.invalid(format!("[{table}.{name}]"), m))?;
                if let Some(other) = kinds.insert(name.as_str(), table) {
                    return Err(self.invalid(
                        format!("[{table}.{name}]"),
                        format!("the name `{name}` is already used in [{other}]; names must be unique across sources, agents and sinks"),
                    ));
                }
            }
        }

        let mut sources = raw.sources.clone();
        for (name, spec) in sources.iter_mut() {
            let check = match spec {
                SourceSpec::Generator(g) => g.validate(),
                SourceSpec::Nexmark(n) => n.validate(),
                SourceSpec::Kafka(k) => {
                    let avro = match &mut k.avro {
                        Some(a) => self.avro(a),
                        None => Ok(()),
                    }
                    .and_then(|()| self.paths.kafka_properties(self.base, &mut k.properties));
                    if let Err(e) = avro {
                        Err(e)
                    } else if k.on_error == OnError::DeadLetter
                        && dead_letter.is_none()
                        && k.dead_letter_topic.is_none()
                    {
                        Err(("on_error".into(), "\"dead-letter\" needs a place for them: set dead_letter_topic = \"TOPIC\" here, or dead_letter = \"PATH\" in [pipeline]".into()))
                    } else {
                        k.validate()
                    }
                }
                SourceSpec::File(f) => match self.place(&f.path, "path") {
                    Err(e) => Err(e),
                    Ok(path) => {
                        f.path = path;
                        if f.on_error == OnError::DeadLetter && dead_letter.is_none() {
                            Err(("on_error".into(), "\"dead-letter\" needs a dead-letter file: set dead_letter = \"PATH\" in [pipeline]".into()))
                        } else {
                            f.validate()
                        }
                    }
                },
            };
            check
                .and_then(|()| spec.check_event_time())
                .map_err(|(field, m)| {
                    self.invalid(format!("[sources.{name}] field `{field}`"), m)
                })?;
        }
        if let Some(c) = &settings.checkpoint {
            if let Some(storage) = &c.storage {
                storage.validate().map_err(|(field, m)| {
                    self.invalid(format!("[pipeline.checkpoint.storage] field `{field}`"), m)
                })?;
            }
            if c.interval_ms == 0 {
                return Err(self.invalid(
                    "[pipeline.checkpoint] field `interval_ms`",
                    "expected milliseconds between checkpoints, at least 1",
                ));
            }
            if c.retain == 0 {
                return Err(self.invalid(
                    "[pipeline.checkpoint] field `retain`",
                    "expected how many complete checkpoints to keep, at least 1",
                ));
            }
        }

        let mut agents = IndexMap::new();
        for (agent, _) in self.modules {
            if !raw.agents.contains_key(agent) {
                let known = raw.agents.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(self.invalid(
                    format!("--module {agent}=…"),
                    format!("the pipeline has no agent `{agent}` (agents: {known})"),
                ));
            }
        }
        for (name, a) in &raw.agents {
            let at = |field: &str| format!("[agents.{name}] field `{field}`");
            let replaced = self.modules.iter().find(|(agent, _)| agent == name);
            let at_module = match replaced {
                Some(_) => format!("--module {name}=…"),
                None => at("module"),
            };
            if replaced.is_none() && a.module.trim().is_empty() {
                return Err(self.invalid(
                    at("module"),
                    "expected a path to a .wasm component or builtin:NAME",
                ));
            }
            let module = match replaced {
                Some((_, module)) => module.clone(),
                None => crate::wasm::resolve(self.base, &a.module),
            };
            match &module {
                ModuleSource::Path(p) if !p.is_file() => {
                    return Err(self.invalid(at_module.clone(), format!("no such module file: {} (build the agent first, e.g. cargo build --release --target wasm32-wasip2)", p.display())));
                }
                ModuleSource::Builtin(b) if crate::wasm::builtin::bytes(b).is_none() => {
                    return Err(self.invalid(
                        at_module.clone(),
                        format!(
                            "there is no built-in operator `{b}` (built-ins: {})",
                            crate::wasm::builtin::names().join(", ")
                        ),
                    ));
                }
                _ => {}
            }
            if !(1..=MAX_PARALLELISM).contains(&a.parallelism) {
                return Err(self.invalid(
                    at("parallelism"),
                    format!(
                        "expected 1 to {MAX_PARALLELISM} instances, got {}",
                        a.parallelism
                    ),
                ));
            }
            if let Some(key) = &a.key
                && key.trim().is_empty()
            {
                return Err(self.invalid(at("key"), "expected a column name"));
            }
            if a.on_error == OnError::DeadLetter && dead_letter.is_none() {
                return Err(self.invalid(at("on_error"), "\"dead-letter\" needs a dead-letter file: set dead_letter = \"PATH\" in [pipeline]"));
            }
            let limits = a.limits.over(base_limits);
            self.check_limits(&format!("[agents.{name}.limits]"), limits)?;
            let config = match &a.config {
                None => "{}".to_owned(),
                Some(toml::Value::String(s)) => s.clone(),
                Some(v @ toml::Value::Table(_)) => serde_json::to_string(v).map_err(|e| {
                    self.invalid(at("config"), format!("cannot be expressed as JSON: {e}"))
                })?,
                Some(other) => {
                    return Err(self.invalid(
                        at("config"),
                        format!("expected a table or a string, got {}", other.type_str()),
                    ));
                }
            };
            agents.insert(
                name.clone(),
                AgentSpec {
                    module,
                    parallelism: a.parallelism,
                    key: a.key.clone(),
                    config,
                    on_error: a.on_error,
                    limits,
                },
            );
        }

        let mut sinks = raw.sinks.clone();
        for (name, spec) in sinks.iter_mut() {
            let check = match spec {
                SinkSpec::File(f) => {
                    let placed = self.place(&f.path, "path").map(|p| f.path = p);
                    match placed.and_then(|()| f.validate()) {
                        Ok(()) if settings.checkpoint.is_some()
                            && f.format() == Some(crate::connectors::Format::Arrow) =>
                        {
                            Err(("format".into(), "an Arrow IPC file cannot be appended to, so with [pipeline.checkpoint] an exactly-once file sink writes \"jsonl\" or \"csv\"".into()))
                        }
                        other => other,
                    }
                }
                SinkSpec::Stdout(s) => s.validate(),
                SinkSpec::Blackhole(_) => Ok(()),
                SinkSpec::Kafka(k) => match &mut k.avro {
                    Some(a) => self.avro(a),
                    None => Ok(()),
                }
                .and_then(|()| self.paths.kafka_properties(self.base, &mut k.properties))
                .and_then(|()| k.validate())
                .and_then(|()| match &settings.checkpoint {
                    Some(c) => k.validate_with_checkpoints(c.interval_ms),
                    None => Ok(()),
                }),
            };
            check
                .map_err(|(field, m)| self.invalid(format!("[sinks.{name}] field `{field}`"), m))?;
        }

        let scale_out = match &settings.scale_out {
            Some(raw) => Some(self.scale_out(raw, settings, &sources, &sinks)?),
            None => None,
        };

        let outputs: HashMap<&str, u32> = sources
            .iter()
            .map(|(n, s)| (n.as_str(), s.outputs()))
            .collect();
        let edges = self.edges(&raw.edges, &kinds, &outputs)?;
        self.check_graph(&edges, &kinds)?;

        let spec = PipelineSpec {
            file: self.file.to_owned(),
            name,
            batch_size,
            channel_capacity,
            dead_letter,
            dead_letter_mb,
            file_sink_mb,
            state: settings.state,
            state_cache_mb: settings.state_cache_mb.unwrap_or(DEFAULT_STATE_CACHE_MB),
            checkpoint: settings.checkpoint.clone(),
            scale_out,
            sources,
            agents,
            sinks,
            edges,
            secrets: secrets::Resolved::default(),
        };
        builtins::check(&spec).map_err(|(at, message)| self.invalid(at, message))?;
        changelog::check(&spec).map_err(|(at, message)| self.invalid(at, message))?;
        Ok(spec)
    }

    /// Checks `[pipeline.scale_out]`: a Kafka source alone, checkpoints on, no output that
    /// every copy would write.
    fn scale_out(
        &self,
        raw: &RawScaleOut,
        settings: &RawSettings,
        sources: &IndexMap<String, SourceSpec>,
        sinks: &IndexMap<String, SinkSpec>,
    ) -> Result<ScaleOutSpec, ConfigError> {
        let at = |field: &str| format!("[pipeline.scale_out] field `{field}`");
        let kafka: Vec<&String> = sources
            .iter()
            .filter(|(_, s)| matches!(s, SourceSpec::Kafka(_)))
            .map(|(n, _)| n)
            .collect();
        let source = match &raw.source {
            Some(name) => match sources.get(name) {
                Some(SourceSpec::Kafka(_)) => name.clone(),
                Some(_) => {
                    return Err(self.invalid(
                        at("source"),
                        format!("source `{name}` is not a Kafka source: only a Kafka consumer group can share partitions"),
                    ));
                }
                None => {
                    return Err(self.invalid(
                        at("source"),
                        format!(
                            "there is no source `{name}` (sources: {})",
                            sources.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            },
            None => match kafka.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(self.invalid(
                        at("source"),
                        "expected the name of the Kafka source whose partitions are shared",
                    ));
                }
            },
        };
        if let Some(other) = sources.keys().find(|n| **n != source) {
            return Err(self.invalid(
                format!("[sources.{other}]"),
                format!("a scaled-out pipeline runs one copy per partition of `{source}`, so it reads that source alone: every copy would read `{other}` again"),
            ));
        }
        if let Some(SourceSpec::Kafka(k)) = sources.get(&source)
            && k.bounded
        {
            return Err(self.invalid(
                format!("[sources.{source}] field `bounded`"),
                "a scaled-out pipeline runs until it is stopped, while partitions move between processes: remove `bounded`",
            ));
        }
        if let Some((name, _)) = sinks.iter().find(|(_, s)| matches!(s, SinkSpec::File(_))) {
            return Err(self.invalid(
                format!("[sinks.{name}]"),
                "every partition's copy of a scaled-out pipeline would write this one file: write to Kafka (type = \"kafka\") instead",
            ));
        }
        if settings.checkpoint.is_none() {
            return Err(self.invalid(
                "[pipeline.checkpoint]",
                "a scaled-out pipeline needs checkpoints: a partition that moves resumes from its newest one; set interval_ms",
            ));
        }
        let in_object_storage = settings
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.storage.is_some());
        let shared_dir = match &raw.shared_dir {
            Some(dir) if in_object_storage => {
                return Err(self.invalid(
                    at("shared_dir"),
                    format!(
                        "`{}` is not used: the partitions' checkpoints are in [pipeline.checkpoint.storage]; remove shared_dir",
                        dir.display()
                    ),
                ));
            }
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(self.invalid(
                    at("shared_dir"),
                    "expected a directory every process of the group reaches",
                ));
            }
            Some(dir) => Some(
                self.place(dir, "shared_dir")
                    .map_err(|(f, m)| self.invalid(at(&f), m))?,
            ),
            // A server in a cluster gives the pipeline its object store.
            None if in_object_storage || matches!(self.paths, Paths::Confined) => None,
            None => {
                return Err(self.invalid(
                    at("shared_dir"),
                    "expected a directory every process of the group reaches, or checkpoints in object storage ([pipeline.checkpoint.storage])",
                ));
            }
        };
        Ok(ScaleOutSpec { source, shared_dir })
    }

    fn check_limits(&self, table: &str, limits: Limits) -> Result<(), ConfigError> {
        limits
            .check()
            .map_err(|(field, expected)| self.invalid(format!("{table} field `{field}`"), expected))
    }

    fn edges(
        &self,
        chains: &[String],
        kinds: &HashMap<&str, &str>,
        source_outputs: &HashMap<&str, u32>,
    ) -> Result<Vec<Edge>, ConfigError> {
        let known = || {
            let mut names: Vec<_> = kinds.keys().copied().collect();
            names.sort_unstable();
            names.join(", ")
        };
        let mut edges: Vec<Edge> = Vec::new();
        let mut input_ports: HashMap<String, Vec<(String, u32)>> = HashMap::new();
        for (i, chain) in chains.iter().enumerate() {
            let at = format!("edges[{i}] ({chain:?})");
            let hops: Vec<&str> = chain.split("->").map(str::trim).collect();
            if hops.len() < 2 || hops.iter().any(|h| h.is_empty()) {
                return Err(self.invalid(at, "expected \"from -> to\", optionally chained (\"a -> b -> c\"); `agent:N` picks an agent's output port N"));
            }
            for pair in hops.windows(2) {
                let (from, from_port) = match pair[0].split_once(':') {
                    Some((n, p)) => (
                        n.trim(),
                        p.trim().parse::<u32>().map_err(|_| {
                            self.invalid(
                                &at,
                                format!(
                                    "`{}`: the output port after `:` must be a number",
                                    pair[0]
                                ),
                            )
                        })?,
                    ),
                    None => (pair[0], 0),
                };
                let to = pair[1];
                if to.contains(':') {
                    return Err(self.invalid(
                        &at,
                        format!(
                            "`{to}`: ports are chosen on the sending side only (`agent:N -> next`)"
                        ),
                    ));
                }
                match kinds.get(from) {
                    None => {
                        return Err(self
                            .invalid(&at, format!("unknown node `{from}` (nodes: {})", known())));
                    }
                    Some(&"sinks") => {
                        return Err(
                            self.invalid(&at, format!("`{from}` is a sink: sinks have no outputs"))
                        );
                    }
                    Some(&"sources")
                        if from_port >= source_outputs.get(from).copied().unwrap_or(1) =>
                    {
                        let n = source_outputs.get(from).copied().unwrap_or(1);
                        return Err(self.invalid(
                            &at,
                            if n == 1 {
                                format!("`{from}` is a source with one output, port 0")
                            } else {
                                format!("`{from}` is a source with outputs 0 to {}", n - 1)
                            },
                        ));
                    }
                    _ => {}
                }
                match kinds.get(to) {
                    None => {
                        return Err(
                            self.invalid(&at, format!("unknown node `{to}` (nodes: {})", known()))
                        );
                    }
                    Some(&"sources") => {
                        return Err(self
                            .invalid(&at, format!("`{to}` is a source: sources have no inputs")));
                    }
                    _ => {}
                }
                if edges
                    .iter()
                    .any(|e| e.from == from && e.from_port == from_port && e.to == to)
                {
                    return Err(
                        self.invalid(&at, format!("the edge {from} -> {to} is declared twice"))
                    );
                }
                let ports = input_ports.entry(to.to_owned()).or_default();
                let to_port = match ports.iter().position(|(f, p)| f == from && *p == from_port) {
                    Some(i) => i as u32,
                    None => {
                        ports.push((from.to_owned(), from_port));
                        (ports.len() - 1) as u32
                    }
                };
                edges.push(Edge {
                    from: from.to_owned(),
                    from_port,
                    to: to.to_owned(),
                    to_port,
                });
            }
        }
        Ok(edges)
    }

    fn check_graph(&self, edges: &[Edge], kinds: &HashMap<&str, &str>) -> Result<(), ConfigError> {
        let mut names: Vec<(&str, &str)> = kinds.iter().map(|(n, k)| (*n, *k)).collect();
        names.sort_unstable();
        for (name, kind) in &names {
            let has_in = edges.iter().any(|e| e.to == *name);
            let has_out = edges.iter().any(|e| e.from == *name);
            match *kind {
                "sources" if !has_out => {
                    return Err(self.invalid(format!("[sources.{name}]"), format!("the source feeds nothing: add an edge such as \"{name} -> …\" to `edges`")));
                }
                "agents" if !has_in => {
                    return Err(self.invalid(
                        format!("[agents.{name}]"),
                        format!(
                            "the agent has no input: add an edge such as \"… -> {name}\" to `edges`"
                        ),
                    ));
                }
                "sinks" if !has_in => {
                    return Err(self.invalid(
                        format!("[sinks.{name}]"),
                        format!(
                            "the sink has no input: add an edge such as \"… -> {name}\" to `edges`"
                        ),
                    ));
                }
                _ => {}
            }
        }
        // No cycles: repeatedly remove nodes with no remaining inputs.
        let mut remaining: BTreeSet<&str> = names.iter().map(|(n, _)| *n).collect();
        loop {
            let ready: Vec<&str> = remaining
                .iter()
                .copied()
                .filter(|n| {
                    !edges
                        .iter()
                        .any(|e| e.to == *n && remaining.contains(e.from.as_str()))
                })
                .collect();
            if ready.is_empty() {
                break;
            }
            for n in ready {
                remaining.remove(n);
            }
        }
        if !remaining.is_empty() {
            let cycle: Vec<&str> = remaining.into_iter().collect();
            return Err(self.invalid(
                "edges",
                format!(
                    "the edges form a cycle through {}; a pipeline must be a DAG",
                    cycle.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// Node and pipeline names: a letter, then letters, digits, `_` or `-`.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: expected a letter, then letters, digits, `_` or `-` (at most 64)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineSpec, String> {
        PipelineSpec::parse(text, Path::new("/nowhere/p.toml")).map_err(|e| e.to_string())
    }

    const SOURCE: &str = "[sources.gen]\ntype = \"generator\"\ncount = 10\n";
    const SINK: &str = "[sinks.out]\ntype = \"blackhole\"\n";

    const KAFKA: &str = "[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopics = [\"in\"]\nformat = \"raw\"\n";

    #[test]
    fn a_source_or_sink_field_of_the_wrong_type_is_named_with_what_it_expects() {
        for (table, says) in [
            (
                "[sources.gen]\ntype = \"generator\"\nmax_batch_delay_ms = -1\n[sinks.out]\ntype = \"blackhole\"\n",
                "field `max_batch_delay_ms`: invalid value: integer `-1`, expected u64",
            ),
            (
                "[sources.gen]\ntype = \"generator\"\nevent_time = { column = 5 }\n[sinks.out]\ntype = \"blackhole\"\n",
                "field `event_time.column`: invalid type: integer `5`, expected a string",
            ),
            (
                "[sources.gen]\ntype = \"generator\"\nspeed = 3\n[sinks.out]\ntype = \"blackhole\"\n",
                "field `speed`: unknown field `speed`, expected one of `count`, `rate`",
            ),
            (
                "[sources.gen]\ntype = 3\n[sinks.out]\ntype = \"blackhole\"\n",
                "field `type`: expected text, got a integer",
            ),
            (
                "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9\"\ntopic = 5\n",
                "field `topic`: invalid type: integer `5`, expected a string",
            ),
            (
                "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"printer\"\n",
                "unknown variant `printer`, expected one of `stdout`, `file`, `blackhole`, `kafka`",
            ),
        ] {
            let err = parse(&format!("edges = [\"gen -> out\"]\n{table}")).unwrap_err();
            assert!(err.contains(says), "{table}: {err}");
        }
    }

    #[test]
    fn kafka_properties_that_would_break_exactly_once_are_refused_by_name() {
        for (key, why) in [
            ("group.id", "use `group"),
            ("enable.auto.commit", "commit_offsets"),
            ("isolation.level", "read_committed"),
            ("enable_auto_commit", "commit_offsets"),
        ] {
            let text = format!(
                "edges = [\"k -> out\"]\n{KAFKA}properties = {{ \"{key}\" = \"x\" }}\n{SINK}"
            );
            let err = parse(&text).unwrap_err();
            assert!(
                err.contains(&format!("[sources.k] field `properties.\"{key}\"`"))
                    && err.contains("cannot be set by a pipeline")
                    && err.contains(why),
                "{key}: {err}"
            );
        }
        let sink = |props: &str, checkpoint: &str| {
            format!(
                "edges = [\"gen -> out\"]\n{checkpoint}{SOURCE}[sinks.out]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopic = \"t\"\nproperties = {{ {props} }}\n"
            )
        };
        for key in ["transactional.id", "enable.idempotence"] {
            let err = parse(&sink(&format!("\"{key}\" = \"x\""), "")).unwrap_err();
            assert!(
                err.contains(&format!("[sinks.out] field `properties.\"{key}\"`")),
                "{err}"
            );
        }
        let checkpoint = "[pipeline.checkpoint]\ninterval_ms = 60000\n";
        let err = parse(&sink("\"transaction.timeout.ms\" = \"30000\"", checkpoint)).unwrap_err();
        assert!(
            err.contains("30000 ms is not longer than the checkpoint interval (60000 ms)"),
            "{err}"
        );
        parse(&sink("\"transaction.timeout.ms\" = \"120000\"", checkpoint)).unwrap();
        parse(&sink("\"compression.type\" = \"lz4\"", checkpoint)).unwrap();
    }
    const SCALED: &str =
        "[pipeline.checkpoint]\ninterval_ms = 500\n[pipeline.scale_out]\nshared_dir = \"shared\"\n";

    #[test]
    fn scale_out_names_its_kafka_source_and_resolves_the_shared_dir() {
        let p = parse(&format!(
            "edges = [\"k -> out\"]\n{KAFKA}{SINK}[pipeline]\n{SCALED}"
        ))
        .unwrap();
        assert_eq!(
            p.scale_out,
            Some(ScaleOutSpec {
                source: "k".into(),
                shared_dir: Some(PathBuf::from("/nowhere/shared")),
            })
        );
    }

    #[test]
    fn scale_out_keeps_checkpoints_in_a_shared_dir_or_in_object_storage_not_both() {
        let storage = "[pipeline.checkpoint.storage]\nurl = \"s3://bucket/prefix\"\n";
        let p = parse(&format!(
            "edges = [\"k -> out\"]\n{KAFKA}{SINK}[pipeline]\n[pipeline.checkpoint]\ninterval_ms = 500\n{storage}[pipeline.scale_out]\nsource = \"k\"\n"
        ))
        .unwrap();
        assert_eq!(p.scale_out.unwrap().shared_dir, None);
        let err = parse(&format!(
            "edges = [\"k -> out\"]\n{KAFKA}{SINK}[pipeline]\n[pipeline.checkpoint]\ninterval_ms = 500\n{storage}[pipeline.scale_out]\nshared_dir = \"s\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("field `shared_dir`: `s` is not used")
                && err.contains("remove shared_dir"),
            "{err}"
        );
        let err = parse(&format!(
            "edges = [\"k -> out\"]\n{KAFKA}{SINK}[pipeline]\n[pipeline.checkpoint]\ninterval_ms = 500\n[pipeline.scale_out]\nsource = \"k\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("field `shared_dir`: expected a directory every process of the group reaches, or checkpoints in object storage"),
            "{err}"
        );
    }

    #[test]
    fn scale_out_refuses_what_every_partition_copy_would_repeat() {
        let scaled = |extra: &str, edges: &str, settings: &str| {
            parse(&format!(
                "edges = [{edges}]\n{KAFKA}{SINK}{extra}[pipeline]\n{settings}"
            ))
            .unwrap_err()
        };
        let err = scaled(SOURCE, "\"k -> out\", \"gen -> out\"", SCALED);
        assert!(
            err.contains("[sources.gen]: a scaled-out pipeline runs one copy per partition of `k`"),
            "{err}"
        );
        let err = scaled(
            "[sinks.f]\ntype = \"file\"\npath = \"out.jsonl\"\n",
            "\"k -> out\", \"k -> f\"",
            SCALED,
        );
        assert!(err.contains("[sinks.f]: every partition's copy"), "{err}");
        let err = scaled(
            "",
            "\"k -> out\"",
            "[pipeline.scale_out]\nshared_dir = \"s\"\n",
        );
        assert!(
            err.contains("[pipeline.checkpoint]: a scaled-out pipeline needs checkpoints"),
            "{err}"
        );
        let err = scaled(
            "",
            "\"k -> out\"",
            "[pipeline.checkpoint]\ninterval_ms = 500\n[pipeline.scale_out]\nsource = \"gen\"\nshared_dir = \"s\"\n",
        );
        assert!(
            err.contains("field `source`: there is no source `gen` (sources: k)"),
            "{err}"
        );
        let err = parse(&format!(
            "edges = [\"k -> out\"]\n{KAFKA}bounded = true\n{SINK}[pipeline]\n{SCALED}"
        ))
        .unwrap_err();
        assert!(err.contains("[sources.k] field `bounded`"), "{err}");
        let err = parse(&format!(
            "edges = [\"k -> out\"]\n{KAFKA}partitions = []\n{SINK}"
        ))
        .unwrap_err();
        assert!(
            err.contains("[sources.k] field `partitions`: expected one or more partition numbers"),
            "{err}"
        );
    }

    #[test]
    fn avro_needs_a_readable_schema_and_confluent_framing_an_id() {
        let dir = std::env::temp_dir().join(format!("sabot-config-avro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bad.avsc"), "{\"type\": \"record\"").unwrap();
        std::fs::write(
            dir.join("ok.avsc"),
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#,
        )
        .unwrap();
        let parse_in = |avro: &str| {
            PipelineSpec::parse(
                &format!("edges = [\"k -> out\"]\n[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopics = [\"in\"]\nformat = \"avro\"\n{avro}{SINK}"),
                &dir.join("p.toml"),
            )
            .map_err(|e| e.to_string())
        };
        let err = parse_in("").unwrap_err();
        assert!(
            err.contains("[sources.k] field `avro`: format = \"avro\" needs the records' schema"),
            "{err}"
        );
        let err = parse_in("avro = { schema_file = \"missing.avsc\" }\n").unwrap_err();
        assert!(
            err.contains("field `avro.schema_file`: cannot read") && err.contains("missing.avsc"),
            "{err}"
        );
        let err = parse_in("avro = { schema_file = \"bad.avsc\" }\n").unwrap_err();
        assert!(
            err.contains("field `avro.schema_file`") && err.contains("not a usable Avro schema"),
            "{err}"
        );
        let err = parse_in("avro = { schema_file = \"ok.avsc\", framing = \"confluent\" }\n")
            .unwrap_err();
        assert!(
            err.contains(
                "field `avro.schema_id`: framing = \"confluent\" needs the schema's registry id"
            ),
            "{err}"
        );
        let ok = parse_in(
            "avro = { schema_file = \"ok.avsc\", framing = \"confluent\", schema_id = 3 }\n",
        )
        .unwrap();
        let SourceSpec::Kafka(k) = &ok.sources["k"] else {
            panic!()
        };
        assert!(k.avro.as_ref().unwrap().schema.contains("\"R\""));
    }

    #[test]
    fn a_minimal_pipeline_parses_with_defaults() {
        let p = parse(&format!("edges = [\"gen -> out\"]\n{SOURCE}{SINK}")).unwrap();
        assert_eq!(p.name, "p");
        assert_eq!(p.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(
            p.edges,
            vec![Edge {
                from: "gen".into(),
                from_port: 0,
                to: "out".into(),
                to_port: 0
            }]
        );
    }

    #[test]
    fn chains_expand_into_edges_and_ports_follow_declaration_order() {
        let text = format!(
            "edges = [\"gen -> f -> out\", \"gen2 -> f\", \"f:1 -> out\"]\n{SOURCE}[sources.gen2]\ntype = \"generator\"\n[agents.f]\nmodule = \"builtin:filter\"\nconfig = {{ where = \"true\" }}\n{SINK}"
        );
        let p = parse(&text).unwrap();
        let ports: Vec<_> = p
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.from_port, e.to.as_str(), e.to_port))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("gen", 0, "f", 0),
                ("f", 0, "out", 0),
                ("gen2", 0, "f", 1),
                ("f", 1, "out", 1)
            ]
        );
        assert_eq!(p.agents["f"].config, r#"{"where":"true"}"#);
    }

    #[test]
    fn errors_name_the_file_table_and_field() {
        let err = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}{SINK}[pipeline]\nbatch_size = 0\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "/nowhere/p.toml: [pipeline] field `batch_size`: expected rows per batch from 1 to 1048576, got 0"
        );

        let err = parse(&format!("edges = [\"gen -> out\"]\n{SINK}[sources.gen]\ntype = \"generator\"\nfraud_rate = 2.0\n")).unwrap_err();
        assert!(
            err.contains("[sources.gen] field `fraud_rate`: expected a probability"),
            "{err}"
        );

        let err = parse(&format!("edges = [\"gen -> a -> out\"]\n{SOURCE}{SINK}[agents.a]\nmodule = \"builtin:filter\"\nparallelism = 0\n")).unwrap_err();
        assert!(
            err.contains("[agents.a] field `parallelism`: expected 1 to 256 instances, got 0"),
            "{err}"
        );

        let err = parse(&format!(
            "edges = [\"gen -> a -> out\"]\n{SOURCE}{SINK}[agents.a]\nmodule = \"missing.wasm\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("[agents.a] field `module`: no such module file: /nowhere/missing.wasm"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused_with_their_location() {
        let err = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}{SINK}[sinks.bad]\ntype = \"kafak\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("unknown variant `kafak`"), "{err}");
        assert!(err.contains("line"), "{err}");
        let err = parse(&format!(
            "edges = [\"gen -> out\"]\n{SINK}[sources.gen]\ntype = \"generator\"\ncuont = 5\n"
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `cuont`"), "{err}");
        let err = parse("this is not toml").unwrap_err();
        assert!(
            err.starts_with("/nowhere/p.toml: TOML parse error at line 1"),
            "{err}"
        );
    }

    #[test]
    fn graph_mistakes_are_explained() {
        let err = parse(&format!("edges = [\"gen -> nope\"]\n{SOURCE}{SINK}")).unwrap_err();
        assert!(
            err.contains("unknown node `nope` (nodes: gen, out)"),
            "{err}"
        );
        let err = parse(&format!("edges = []\n{SOURCE}{SINK}")).unwrap_err();
        assert!(
            err.contains("[sources.gen]: the source feeds nothing"),
            "{err}"
        );
        let err = parse(&format!("edges = [\"out -> gen\"]\n{SOURCE}{SINK}")).unwrap_err();
        assert!(err.contains("`out` is a sink"), "{err}");
        let cyc = format!(
            "edges = [\"gen -> a -> b -> a\", \"b -> out\"]\n{SOURCE}{SINK}[agents.a]\nmodule = \"builtin:filter\"\n[agents.b]\nmodule = \"builtin:filter\"\n"
        );
        let err = parse(&cyc).unwrap_err();
        assert!(err.contains("cycle through a, b"), "{err}");
        let err = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}[sinks.gen]\ntype = \"blackhole\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("duplicate key") || err.contains("already used"),
            "{err}"
        );
    }

    #[test]
    fn the_state_backend_is_chosen_per_pipeline() {
        let p = parse(&format!("edges = [\"gen -> out\"]\n{SOURCE}{SINK}")).unwrap();
        assert_eq!(p.state, BackendKind::Rocksdb, "RocksDB is the default");
        let p = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}{SINK}[pipeline]\nstate = \"memory\"\n"
        ))
        .unwrap();
        assert_eq!(p.state, BackendKind::Memory);
        let err = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}{SINK}[pipeline]\nstate = \"redis\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("unknown variant `redis`, expected `memory` or `rocksdb`"),
            "{err}"
        );
    }

    #[test]
    fn checkpoint_and_event_time_settings_are_checked() {
        let p = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}{SINK}[pipeline.checkpoint]\ninterval_ms = 250\n"
        ))
        .unwrap();
        assert_eq!(
            p.checkpoint.map(|c| (c.interval_ms, c.retain)),
            Some((250, 3))
        );
        let err = parse(&format!(
            "edges = [\"gen -> out\"]\n{SOURCE}{SINK}[pipeline.checkpoint]\ninterval_ms = 0\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("[pipeline.checkpoint] field `interval_ms`"),
            "{err}"
        );
        let err = parse(
            "edges = [\"gen -> out\"]\n[sources.gen]\ntype = \"generator\"\nevent_time = { column = \"when\" }\n[sinks.out]\ntype = \"blackhole\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("[sources.gen] field `event_time.column`")
                && err.contains("there is no column `when`")
                && err.contains("txn_id, ts"),
            "{err}"
        );
        let err = parse(
            "edges = [\"gen -> out\"]\n[sources.gen]\ntype = \"generator\"\nevent_time = { column = \"country\" }\n[sinks.out]\ntype = \"blackhole\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("column `country` is Utf8; expected a timestamp"),
            "{err}"
        );
        let err = parse(
            "edges = [\"gen -> out\"]\n[pipeline.checkpoint]\ninterval_ms = 100\n[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"file\"\npath = \"o.arrow\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("[sinks.out] field `format`") && err.contains("cannot be appended to"),
            "{err}"
        );
    }

    #[test]
    fn dead_letter_policy_needs_a_dead_letter_file() {
        let err = parse(&format!("edges = [\"gen -> a -> out\"]\n{SOURCE}{SINK}[agents.a]\nmodule = \"builtin:filter\"\non_error = \"dead-letter\"\n")).unwrap_err();
        assert!(err.contains("[agents.a] field `on_error`"), "{err}");
    }
}
