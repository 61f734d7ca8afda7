//! Guest log lines (and captured stdout/stderr), kept per pipeline for the API and the dashboard.
//!
//! [`GuestLogs`] is a `tracing` layer: it takes the events of target `sabot::guest`, which
//! `wasm::log` and `wasm::capture` tag with pipeline, agent and instance, and keeps the newest
//! [`KEEP`] of each pipeline.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Lines kept per pipeline.
pub const KEEP: usize = 1_000;

/// One guest log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub unix_ms: u64,
    pub level: String,
    pub pipeline: String,
    pub agent: String,
    pub instance: u64,
    /// `log` (the log interface), or `stdout` / `stderr`.
    pub stream: String,
    pub message: String,
}

/// The newest guest log lines of each pipeline.
#[derive(Debug, Default)]
pub struct GuestLogs {
    lines: Mutex<BTreeMap<String, VecDeque<LogLine>>>,
}

impl GuestLogs {
    /// The lines of `pipeline`, oldest first, at most `limit` of the newest.
    pub fn lines(&self, pipeline: &str, limit: usize) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.get(pipeline).map_or_else(Vec::new, |q| {
            q.iter()
                .skip(q.len().saturating_sub(limit))
                .cloned()
                .collect()
        })
    }

    /// Forgets the lines of `pipeline` (it was deleted).
    pub fn forget(&self, pipeline: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(pipeline);
    }

    fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let q = lines.entry(line.pipeline.clone()).or_default();
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(line);
    }
}

#[derive(Default)]
struct Fields {
    pipeline: String,
    agent: String,
    instance: u64,
    stream: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "stream" => self.stream = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "instance" {
            self.instance = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "pipeline" => self.pipeline = text,
            "agent" => self.agent = text,
            "message" => self.message = text,
            "stream" => self.stream = Some(text.trim_matches('"').to_owned()),
            "instance" => self.instance = text.parse().unwrap_or(0),
            _ => {}
        }
    }
}

/// The `tracing` layer that fills a [`GuestLogs`].
#[derive(Debug, Clone)]
pub struct GuestLogLayer(pub std::sync::Arc<GuestLogs>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GuestLogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sabot::guest" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        self.0.push(LogLine {
            unix_ms: super::now_unix_ms(),
            level: event.metadata().level().to_string(),
            pipeline: f.pipeline,
            agent: f.agent,
            instance: f.instance,
            stream: f.stream.unwrap_or_else(|| "log".into()),
            message: f.message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn guest_lines_are_kept_per_pipeline_with_their_tags_and_others_are_not() {
        let logs = std::sync::Arc::new(GuestLogs::default());
        let subscriber = tracing_subscriber::registry().with(GuestLogLayer(logs.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..KEEP + 5 {
                tracing::info!(target: "sabot::guest", pipeline = %"p", agent = %"a", instance = 1usize, "line {i}");
            }
            tracing::warn!(target: "sabot::guest", pipeline = %"q", agent = %"b", instance = 0usize, stream = "stderr", "oops");
            tracing::info!(pipeline = %"p", "not a guest line");
        });
        let p = logs.lines("p", usize::MAX);
        assert_eq!(p.len(), KEEP);
        assert_eq!(p[0].message, "line 5");
        assert_eq!(
            (p[0].agent.as_str(), p[0].instance, p[0].stream.as_str()),
            ("a", 1, "log")
        );
        let q = logs.lines("q", 10);
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].level.as_str(), q[0].stream.as_str()),
            ("WARN", "stderr")
        );
        assert_eq!(logs.lines("p", 2).len(), 2);
    }
}
