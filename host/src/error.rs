//! The host's one error type: what went wrong, and whose fault it is.

use crate::config::ConfigError;
use crate::connectors::ConnectorError;
use crate::wasm::{AgentFailure, ModuleError};

/// Whose fault an error is, which tells the user where to look and whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The pipeline file, a module, or the agent code: fix and re-run.
    User,
    /// A system outside Sabot (a file, the disk): may succeed when retried.
    External,
    /// A bug in Sabot.
    Internal,
}

/// Everything that can stop a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A module could not be loaded, compiled, or does not implement the agent world.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// An agent failed (trapped, errored, exceeded a limit) and the pipeline's policy is `fail`.
    #[error("agent `{agent}` (instance {instance}): {failure}")]
    Agent {
        agent: String,
        instance: usize,
        #[source]
        failure: AgentFailure,
    },
    /// Data does not fit the pipeline: a keyed agent's input lacks its key column, say.
    #[error("{0}")]
    Data(String),
    /// A source or sink failed.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The state backend failed.
    #[error("state backend: {0}")]
    State(#[from] crate::state::BackendError),
    /// Checkpoints could not be written, or the run cannot resume from them.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A core module could not be made an agent component.
    #[error(transparent)]
    Componentize(#[from] crate::wasm::componentize::ComponentizeError),
    /// A file the command writes or reads could not be.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A command was given something it cannot use (the message says what and why).
    #[error("{0}")]
    Usage(String),
    /// A Sabot server answered a command with an error, or could not be reached.
    #[error("{message}")]
    Remote {
        /// What the server said, or why it could not be reached.
        message: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
    },
    /// A bug in Sabot.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config(_)
            | Error::Module(_)
            | Error::Agent { .. }
            | Error::Data(_)
            | Error::Componentize(_)
            | Error::Usage(_) => Fault::User,
            Error::File { .. } => Fault::External,
            Error::Connector(e) => e.fault(),
            Error::State(_) | Error::Checkpoint(_) => Fault::External,
            Error::Remote { status, .. } => match status {
                Some(400..=499) => Fault::User,
                Some(500..) => Fault::Internal,
                _ => Fault::External,
            },
            Error::Internal(_) => Fault::Internal,
        }
    }

    /// The process exit code for this error: 2 when the pipeline could not start because of
    /// its definition (or a server refused a request as invalid), 1 when it failed while
    /// running; for commands against a server, 3 when it cannot be reached and 4 when it refuses
    /// the token.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Module(_) | Error::Componentize(_) | Error::Usage(_) => 2,
            Error::Remote { status: None, .. } => 3,
            Error::Remote {
                status: Some(401 | 403),
                ..
            } => 4,
            Error::Remote {
                status: Some(400..=499),
                ..
            } => 2,
            _ => 1,
        }
    }
}
