//! The accept loop: HTTP/1.1 connections under three bounds, so that clients without a token
//! cannot lock the server out by holding sockets.
//!
//! - at most [`ConnLimits::max_connections`] at once; one more is answered `503` and closed at
//!   once (so `/healthz` says why, rather than hanging in the backlog);
//! - a request head must arrive within [`ConnLimits::header_timeout`] of the connection opening,
//!   or of the previous response on a kept-alive connection (hyper's header-read timeout): idle
//!   and slow-header connections are closed;
//! - a connection on which no byte moves either way for [`ConnLimits::idle_timeout`] is closed
//!   ([`Idle`]): a client that stops reading a response, or sends a body one byte a minute.
//!
//! Bodies are bounded in time by the request timeout of the router (`request_timeout_ms`).
//! With TLS, the handshake is part of the request head: it must end within the header timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// The bounds of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Connections refused because the server held `max_connections` (for `/metrics`).
pub static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Connections closed by a timeout (header or idle).
pub static TIMED_OUT: AtomicU64 = AtomicU64::new(0);

/// How long a stopping server waits for its connections to finish their requests.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets open
/// connections finish the request they are in (up to `DRAIN`) and returns.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let refused = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
            // One line a second at most: a flood of connections is not a flood of log.
            if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(1)) {
                warned = Some(std::time::Instant::now());
                tracing::warn!(%peer, max_connections = limits.max_connections, refused_total = refused, "refusing connections: the server holds its maximum (sabot_http_connections_refused_total counts them)");
            }
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let idle = Idle::new(stream, limits.idle_timeout);
        let service = TowerToHyperService::new(router.clone());
        let stopping = stopping.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(TokioIo::new(idle), service, limits, stopping, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(idle)).await {
                        Ok(Ok(stream)) => {
                            connection(TokioIo::new(stream), service, limits, stopping, peer).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            TIMED_OUT.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    let _ = stop.send(true);
    // Every connection holds a slot: all slots back means all connections closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(all)).await;
}

/// Serves HTTP/1.1 on one connection until it closes, or until the server stops (then the
/// request in flight is finished, up to [`DRAIN`]).
async fn connection<I>(
    io: I,
    service: TowerToHyperService<axum::Router>,
    limits: ConnLimits,
    mut stopping: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { let _ = stopping.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() || is_idle(&e) {
            TIMED_OUT.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

fn is_idle(e: &hyper::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
}

/// Answers a connection over the limit with a 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "{{\"error\":\"the server holds its maximum of {max} connections (max_connections, SABOT_MAX_CONNECTIONS): retry later\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A stream that fails with `TimedOut` when no byte has moved either way for its timeout while
/// it is being read from or written to.
pub struct Idle<S> {
    inner: S,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Idle<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Idle {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// `Pending` for as long as the deadline has not passed; an error once it has.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no byte moved for {} ms (idle_timeout_ms)",
                    self.timeout.as_millis()
                ),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S> Idle<S> {
    /// The outcome of a write: bytes written are progress; a write that waits may time out.
    fn wrote(
        &mut self,
        written: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(written, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(written, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.expired(cx).map(Err),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_stream_on_which_nothing_moves_times_out_and_progress_resets_the_clock() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = Idle::new(a, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        tokio::time::advance(Duration::from_secs(6)).await;
        b.write_all(b"x").await.unwrap();
        assert_eq!(idle.read(&mut buf).await.unwrap(), 1);
        // 6 s more: 12 s since the start, 6 s since the last byte.
        tokio::time::advance(Duration::from_secs(6)).await;
        b.write_all(b"y").await.unwrap();
        assert_eq!(idle.read(&mut buf).await.unwrap(), 1);
        let e = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("idle_timeout_ms"), "{e}");
    }
}
