//! The error an agent returns instead of trapping: `agent-error` in `wit/types.wit`.

use std::fmt;

use arrow_schema::ArrowError;

/// Whose fault an error is, which decides what the host does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The batch, or a row in it, is not what the agent accepts. The pipeline's bad-batch policy
    /// applies: fail the run, skip the batch, or dead-letter it.
    InvalidInput,
    /// The configuration given to [`Agent::init`](crate::Agent::init) is not valid.
    InvalidConfig,
    /// A bug in the agent.
    Internal,
}

/// An ordinary error reported by an agent. Say what was wrong, with the offending value, and what
/// was expected: the host shows the message as it is, tagged with the agent's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    /// Whose fault it is.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
    /// The row of the input batch that caused the error, when one did.
    pub row: Option<u32>,
}

impl AgentError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AgentError {
            kind,
            message: message.into(),
            row: None,
        }
    }

    /// The input is not what the agent accepts.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The configuration is not valid.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// A bug in the agent.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Names the input row that caused the error.
    pub fn at_row(mut self, row: usize) -> Self {
        self.row = Some(u32::try_from(row).unwrap_or(u32::MAX));
        self
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "{} (row {row})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AgentError {}

/// Arrow errors raised while computing over a batch are input errors: a kernel refused the data.
impl From<ArrowError> for AgentError {
    fn from(e: ArrowError) -> Self {
        AgentError::invalid_input(e.to_string())
    }
}

impl From<AgentError> for crate::wit::sabot::agent::types::AgentError {
    fn from(e: AgentError) -> Self {
        use crate::wit::sabot::agent::types::ErrorKind as Wit;
        Self {
            kind: match e.kind {
                ErrorKind::InvalidInput => Wit::InvalidInput,
                ErrorKind::InvalidConfig => Wit::InvalidConfig,
                ErrorKind::Internal => Wit::Internal,
            },
            message: e.message,
            row: e.row,
        }
    }
}
