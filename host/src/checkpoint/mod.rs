//! Checkpoints: the Chandy–Lamport protocol with aligned barriers, as a pure state machine
//! ([`Coordinator`]), and their storage on disk ([`CheckpointStore`]).
//!
//! ## The protocol
//!
//! Every `interval_ms` the coordinator starts checkpoint *n*: each source, between two batches,
//! records its position and sends barrier *n* down every edge. A task with several input
//! channels *aligns*: once barrier *n* has arrived on a channel, that channel's later messages
//! wait until *n* has arrived on every channel. Aligned, an agent instance snapshots its state
//! and timers into the checkpoint's directory, and a sink *pre-commits* (makes what it was given
//! before the barrier durable, but not yet visible); each then forwards the barrier and
//! acknowledges. When every task has acknowledged *n*, the coordinator writes the checkpoint's
//! metadata — the last step, atomically — and only then tells sinks to commit. A crash before
//! the metadata exists leaves an incomplete checkpoint that recovery ignores; a crash after it
//! leaves pending sink commits that recovery finishes from the metadata.
//!
//! When all input has ended, every task takes a *final* snapshot, and the run ends with a final
//! checkpoint, so that running the same pipeline again on the same data directory resumes after
//! everything already committed.
//!
//! ## On disk
//!
//! ```text
//! DATA_DIR/checkpoints/chk-0000000042/
//!     state/AGENT/INSTANCE/…     an instance's state snapshot and timers
//!     _metadata                  JSON: source positions, sink commits, every file with its size,
//!                                and a checksum; written last (temporary file, fsync, rename)
//! ```
//!
//! With `[pipeline.checkpoint.storage]`, each completed checkpoint is also uploaded to an
//! S3-compatible object store, metadata last, and recovery reads the store: see [`remote`].

mod coordinator;
pub mod remote;
pub mod store;

pub use coordinator::{Ack, Coordinator, TaskId};
pub use remote::Remote;
pub use store::{CheckpointStore, Metadata, Restored};

use std::path::PathBuf;

use serde::Deserialize;

/// `[pipeline.checkpoint]`: how often to checkpoint, how many checkpoints to keep, and where.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between the end of one checkpoint and the start of the next, in milliseconds.
    pub interval_ms: u64,
    /// How many complete checkpoints to keep (the newest ones); at least 1.
    #[serde(default = "default_retain")]
    pub retain: usize,
    /// `[pipeline.checkpoint.storage]`: an object store that holds the checkpoints, so that
    /// they outlast the machine; the data directory only when unset.
    #[serde(default)]
    pub storage: Option<StorageSpec>,
}

/// `[pipeline.checkpoint.storage]`: checkpoints in an S3-compatible object store.
///
/// ```toml
/// [pipeline.checkpoint.storage]
/// url = "s3://sabot-checkpoints/fraud"   # bucket and prefix; the pipeline's name is appended
/// endpoint = "http://127.0.0.1:9090"      # any S3-compatible store; AWS when unset
/// region = "us-east-1"
/// access_key_id = "${env:S3_ACCESS_KEY_ID}"
/// secret_access_key = "${secret:s3-secret}"
/// ```
///
/// What is left out comes from the `AWS_*` environment variables of the process.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// `s3://BUCKET/PREFIX`.
    pub url: String,
    /// The store's address, `http://` or `https://`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for StorageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSpec")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .finish()
    }
}

impl StorageSpec {
    /// What is wrong with these settings, as (field, what was expected).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        remote::parse_url(&self.url).map_err(|m| ("url", m))?;
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err((
                "endpoint",
                format!("`{e}` is not an address: expected http://HOST:PORT or https://HOST"),
            ));
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => Err((
                "secret_access_key",
                "access_key_id is set without it: set both, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )),
            (None, Some(_)) => Err((
                "access_key_id",
                "secret_access_key is set without it: set both, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )),
            _ => Ok(()),
        }
    }
}

fn default_retain() -> usize {
    3
}

/// Why checkpoints could not be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("checkpoint storage: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Checkpoints exist but none of them can be used: refusing to start from zero silently.
    #[error(
        "no usable checkpoint in {}: {reasons}. Fix or remove the damaged checkpoints, or run with --fresh to start over from empty state (committed output is kept, sources start from the beginning)",
        dir.display()
    )]
    NoneUsable { dir: PathBuf, reasons: String },
    /// The data directory holds another pipeline's checkpoints.
    #[error(
        "the checkpoints in {} belong to pipeline `{found}`, not `{expected}`: use another --data-dir, or --fresh to discard them",
        dir.display()
    )]
    OtherPipeline {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    /// Another run holds the data directory.
    #[error(
        "another sabot run is using the data directory {}: one run per data directory (use another --data-dir)",
        dir.display()
    )]
    Busy { dir: PathBuf },
    /// A snapshot could not be written or read.
    #[error("checkpoint {id}: {message}")]
    Snapshot { id: u64, message: String },
    /// The object store refused or could not be reached (after retries).
    #[error("checkpoint storage {url}: {message}")]
    Remote { url: String, message: String },
}

impl CheckpointError {
    pub(crate) fn remote(url: &str, message: impl Into<String>) -> Self {
        CheckpointError::Remote {
            url: url.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CheckpointError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
