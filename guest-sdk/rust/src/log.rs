//! Structured logging through the host: `wit/log.wit`.
//!
//! Lines are tagged by the host with the pipeline, agent and instance. Anything an agent writes to
//! standard error (a panic message, say) is captured by the host too.

use crate::imports::log;
use crate::wit::sabot::agent::log::Level;

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
