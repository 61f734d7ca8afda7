//! Module uploads, streamed to temporary files under `DATA/uploads`: an upload holds about
//! [`CHUNK`] bytes of memory while it is received, at most `max_upload_mb` of disk, and all
//! uploads in flight together at most `upload_buffer_mb`. A temporary file is removed when its
//! upload is done with, whatever the outcome; the directory is emptied at start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::StatusCode;

use super::ApiError;

/// Bytes an upload gathers in memory before writing them to its file.
pub const CHUNK: usize = 256 * 1024;

/// The uploads in flight.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    /// The largest upload, bytes.
    max_bytes: u64,
    /// All uploads in flight together, bytes.
    total_bytes: u64,
    in_flight: AtomicU64,
}

impl Uploads {
    /// Uploads spooled under `dir`, which is emptied (left over by a crash) and created.
    pub fn new(dir: PathBuf, max_bytes: u64, total_bytes: u64) -> std::io::Result<Arc<Self>> {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Uploads {
            dir,
            max_bytes,
            total_bytes,
            in_flight: AtomicU64::new(0),
        }))
    }

    /// Bytes held by uploads in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Starts an upload that announced `declared` bytes (`Content-Length`), refused at once when
    /// that is over the limit.
    pub fn start(self: &Arc<Self>, declared: Option<u64>) -> Result<Spool, ApiError> {
        if let Some(n) = declared
            && n > self.max_bytes
        {
            return Err(self.too_large(n));
        }
        let file = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.dir)
            .map_err(|e| {
                ApiError::internal(format!(
                    "cannot create an upload file in {}: {e}",
                    self.dir.display()
                ))
            })?;
        Ok(Spool {
            uploads: self.clone(),
            file,
            buffer: Vec::with_capacity(CHUNK),
            len: 0,
        })
    }

    fn too_large(&self, n: u64) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the upload is larger than the server takes: {n} bytes or more, over max_upload_mb = {} (SABOT_MAX_UPLOAD_MB)",
                self.max_bytes >> 20
            ),
        }
    }
}

/// An upload being received, then received: its bytes are in a temporary file.
#[derive(Debug)]
pub struct Spool {
    uploads: Arc<Uploads>,
    file: tempfile::NamedTempFile,
    buffer: Vec<u8>,
    /// Bytes received (and reserved in `in_flight`).
    len: u64,
}

impl Spool {
    /// Adds `chunk`, refusing it when the upload, or all uploads together, would be too large.
    pub fn push(&mut self, chunk: &Bytes) -> Result<(), ApiError> {
        let n = chunk.len() as u64;
        if self.len + n > self.uploads.max_bytes {
            return Err(self.uploads.too_large(self.len + n));
        }
        let before = self.uploads.in_flight.fetch_add(n, Ordering::AcqRel);
        if before + n > self.uploads.total_bytes {
            self.uploads.in_flight.fetch_sub(n, Ordering::AcqRel);
            return Err(ApiError::unavailable(format!(
                "uploads in progress hold {} MiB, the most the server takes at once (upload_buffer_mb = {}, SABOT_UPLOAD_BUFFER_MB): retry later",
                before >> 20,
                self.uploads.total_bytes >> 20
            )));
        }
        self.len += n;
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ApiError> {
        self.file.write_all(&self.buffer).map_err(|e| {
            ApiError::internal(format!(
                "cannot write the upload to {}: {e}",
                self.file.path().display()
            ))
        })?;
        self.buffer.clear();
        Ok(())
    }

    /// The upload, complete.
    pub fn finish(mut self) -> Result<Self, ApiError> {
        self.flush()?;
        self.buffer = Vec::new();
        Ok(self)
    }

    /// Bytes received.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The file itself is removed by `NamedTempFile`.
        self.uploads.in_flight.fetch_sub(self.len, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_bounded_alone_and_together_and_give_their_bytes_back() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().join("uploads"), 1000, 1500).unwrap();
        assert_eq!(
            uploads.start(Some(1001)).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let mut a = uploads.start(None).unwrap();
        a.push(&Bytes::from(vec![1u8; 900])).unwrap();
        let e = a.push(&Bytes::from(vec![1u8; 200])).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("max_upload_mb"), "{}", e.message);
        let mut b = uploads.start(None).unwrap();
        let e = b.push(&Bytes::from(vec![2u8; 700])).unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("upload_buffer_mb"), "{}", e.message);
        let a = a.finish().unwrap();
        assert_eq!(std::fs::read(a.path()).unwrap(), vec![1u8; 900]);
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists(), "the file goes with the upload");
        assert_eq!(uploads.in_flight(), 0);
        b.push(&Bytes::from(vec![2u8; 700])).unwrap();
        assert_eq!(uploads.in_flight(), 700);
    }
}
