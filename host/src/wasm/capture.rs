//! A guest's standard output and error: each line becomes a `tracing` event tagged with the
//! agent, and the last few KiB are kept so a trap report can show what the guest printed (a Rust
//! panic message, a JavaScript exception) before it died. Writes never fail and never grow memory
//! without bound.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::Tags;
use super::log::LogThrottle;

/// How much of the recent output is kept for trap reports.
const TAIL: usize = 8 * 1024;
/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 4 * 1024;

/// One captured stream (`stdout` or `stderr`) of one instance.
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

struct Inner {
    stream: &'static str,
    tags: Arc<Tags>,
    log: Arc<LogThrottle>,
    tail: VecDeque<u8>,
    line: Vec<u8>,
}

impl Capture {
    /// A capture for `stream` of the instance `tags` names, its lines within the instance's log
    /// budget `log`.
    pub fn new(stream: &'static str, tags: Arc<Tags>, log: Arc<LogThrottle>) -> Self {
        Capture {
            inner: Arc::new(Mutex::new(Inner {
                stream,
                tags,
                log,
                tail: VecDeque::with_capacity(TAIL),
                line: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts bytes written by the guest.
    pub fn push(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        for &b in bytes {
            if inner.tail.len() == TAIL {
                inner.tail.pop_front();
            }
            inner.tail.push_back(b);
            if b == b'\n' || inner.line.len() >= MAX_LINE {
                inner.emit();
                if b == b'\n' {
                    continue;
                }
            }
            if b != b'\n' {
                inner.line.push(b);
            }
        }
    }

    /// Logs any unfinished line.
    pub fn flush(&self) {
        self.lock().emit();
    }

    /// The last few KiB the guest wrote, as text.
    pub fn tail(&self) -> String {
        let inner = self.lock();
        let bytes: Vec<u8> = inner.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// Forgets the kept output (after it was reported).
    pub fn clear_tail(&self) {
        self.lock().tail.clear();
    }
}

impl Inner {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        if !self.log.admit(self.line.len()) {
            self.line.clear();
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let t = &self.tags;
        tracing::info!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, stream = self.stream, "{line}");
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_only_the_most_recent_output() {
        let tags = Arc::new(Tags::default());
        let log = LogThrottle::new(&Default::default(), tags.clone(), Default::default());
        let c = Capture::new("stderr", tags, Arc::new(log));
        c.push(&vec![b'a'; TAIL]);
        c.push(b"panicked at the end\n");
        let tail = c.tail();
        assert!(tail.ends_with("panicked at the end"));
        assert!(tail.len() <= TAIL);
        c.clear_tail();
        assert_eq!(c.tail(), "");
    }
}
