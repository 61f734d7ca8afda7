//! `wit/log.wit`: guest log lines become `tracing` events tagged with pipeline, agent and
//! instance, within the instance's log budget ([`LogThrottle`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bindings::sabot::agent::log::{Host, Level, add_to_linker};
use super::{AgentMetrics, HostState, Limits, Tags};
use wasmtime::component::{HasSelf, Linker};

/// A log line longer than this is cut, so a hostile agent cannot flood the host's log.
pub const MAX_LINE: usize = 16 * 1024;

/// Lines dropped over the budget are summarised in one warning at most this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The log budget of one agent instance (`limits.log_lines_per_s`, `limits.log_bytes_per_s`),
/// shared by its `log` calls and its captured stdout and stderr: two token buckets that hold one
/// second's worth and refill continuously. A line either bucket cannot pay for is dropped and
/// counted (`sabot_agent_log_dropped_total`), and the drops are summarised in one warning per
/// [`SUMMARY_EVERY`].
#[derive(Debug)]
pub struct LogThrottle {
    bucket: Mutex<Bucket>,
    tags: Arc<Tags>,
    metrics: Arc<AgentMetrics>,
}

#[derive(Debug)]
struct Bucket {
    rate: (f64, f64),
    lines: f64,
    bytes: f64,
    refilled: Instant,
    dropped: (u64, u64),
    reported: Option<Instant>,
}

impl LogThrottle {
    /// The log budget of the instance `tags` names.
    pub fn new(limits: &Limits, tags: Arc<Tags>, metrics: Arc<AgentMetrics>) -> Self {
        let rate = (limits.log_lines_per_s as f64, limits.log_bytes_per_s as f64);
        LogThrottle {
            bucket: Mutex::new(Bucket {
                rate,
                lines: rate.0,
                bytes: rate.1,
                refilled: Instant::now(),
                dropped: (0, 0),
                reported: None,
            }),
            tags,
            metrics,
        }
    }

    /// Whether a line of `len` bytes may be logged now; if not, it is counted as dropped.
    pub fn admit(&self, len: usize) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(b.refilled).as_secs_f64();
        b.refilled = now;
        b.lines = (b.lines + elapsed * b.rate.0).min(b.rate.0);
        b.bytes = (b.bytes + elapsed * b.rate.1).min(b.rate.1);
        let len = len as f64;
        if b.lines >= 1.0 && b.bytes >= len {
            b.lines -= 1.0;
            b.bytes -= len;
            return true;
        }
        b.dropped.0 += 1;
        b.dropped.1 += len as u64;
        self.metrics
            .sandbox
            .log_dropped
            .fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Logs one warning for the lines dropped since the last one, when there are some and the
    /// last warning is [`SUMMARY_EVERY`] old (or `now` is true: the instance is going away).
    pub fn report(&self, now: bool) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        if b.dropped.0 == 0 || !(now || b.reported.is_none_or(|r| r.elapsed() >= SUMMARY_EVERY)) {
            return;
        }
        let (lines, bytes) = std::mem::take(&mut b.dropped);
        b.reported = Some(Instant::now());
        let t = &self.tags;
        tracing::warn!(
            pipeline = %t.pipeline, agent = %t.agent, instance = t.instance,
            dropped_lines = lines, dropped_bytes = bytes,
            "the agent logged over its budget (limits.log_lines_per_s = {}, limits.log_bytes_per_s = {}): {lines} lines ({bytes} bytes) dropped",
            b.rate.0, b.rate.1
        );
    }
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let message = super::truncate(&message, MAX_LINE);
        if !self.log.admit(message.len()) {
            return;
        }
        let t = &self.tags;
        match level {
            Level::Trace => {
                tracing::trace!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "sabot::guest", pipeline = %t.pipeline, agent = %t.agent, instance = t.instance, "{message}")
            }
        }
    }
}

/// Adds `sabot:agent/log` to `linker`.
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
