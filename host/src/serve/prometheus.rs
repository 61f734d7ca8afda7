//! `/metrics`: the server's pipelines in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::pipelines::{Entry, Status, SwapState};
use crate::dataflow::{NO_WATERMARK, NodeKind};
use crate::wasm::metrics::LATENCY_BUCKETS;

/// The families being written. Samples are grouped by family whatever order they come in, as
/// the format requires; each family's `# HELP` and `# TYPE` lines come once, before its samples.
#[derive(Default)]
struct Out {
    families: indexmap::IndexMap<&'static str, String>,
    current: &'static str,
}

/// Escapes a label value (`\`, `"` and newlines).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

impl Out {
    fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        self.current = name;
        self.families
            .entry(name)
            .or_insert_with(|| format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// A sample of the family declared last.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let text = self.families.entry(self.current).or_default();
        text.push_str(name);
        if !labels.is_empty() {
            text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let _ = write!(text, "{k}=\"{}\"", escape(v));
            }
            text.push('}');
        }
        let _ = writeln!(text, " {}", number(value));
    }

    fn finish(self) -> String {
        self.families.into_values().collect()
    }

    /// One family with one sample.
    fn metric(
        &mut self,
        name: &'static str,
        kind: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, kind, help);
        self.sample(name, labels, value);
    }
}

/// Renders every pipeline's metrics.
pub fn render(entries: &[std::sync::Arc<Entry>], uptime_s: f64) -> String {
    let mut out = Out::default();
    out.metric("sabot_up", "gauge", "1 while the server runs.", &[], 1.0);
    out.metric(
        "sabot_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &[],
        uptime_s,
    );
    let count = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    out.metric(
        "sabot_http_connections_refused_total",
        "counter",
        "Connections answered 503 and closed because the server held max_connections.",
        &[],
        count(&super::listen::REFUSED),
    );
    out.metric(
        "sabot_http_connections_timed_out_total",
        "counter",
        "Connections closed by the header or idle timeout.",
        &[],
        count(&super::listen::TIMED_OUT),
    );
    let now_ms = super::now_unix_ms() as f64;
    for entry in entries {
        let p = entry.name.as_str();
        let (status, _) = entry.status();
        out.metric(
            "sabot_pipeline_running",
            "gauge",
            "1 while the pipeline runs.",
            &[("pipeline", p)],
            f64::from(u8::from(status == Status::Running)),
        );
        out.metric(
            "sabot_pipeline_restarts_total",
            "counter",
            "Runs restarted from a checkpoint after a swapped-in version failed.",
            &[("pipeline", p)],
            entry.restarts() as f64,
        );
        let stats = entry.stats();
        let versions = entry.versions();
        for (node, n) in &stats.nodes {
            let labels = [("pipeline", p), (kind_label(n.kind), node.as_str())];
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
            match n.kind {
                NodeKind::Source => {
                    out.metric(
                        "sabot_source_rows_total",
                        "counter",
                        "Rows a source produced.",
                        &labels,
                        load(&n.rows_out),
                    );
                    out.metric(
                        "sabot_source_batches_total",
                        "counter",
                        "Batches a source produced.",
                        &labels,
                        load(&n.batches_out),
                    );
                }
                NodeKind::Sink => {
                    out.metric(
                        "sabot_sink_rows_total",
                        "counter",
                        "Rows a sink accepted.",
                        &labels,
                        load(&n.rows_in),
                    );
                    out.metric(
                        "sabot_sink_batches_total",
                        "counter",
                        "Batches a sink accepted.",
                        &labels,
                        load(&n.batches_in),
                    );
                    out.metric(
                        "sabot_sink_bytes_written_total",
                        "counter",
                        "Bytes a sink wrote (file sinks).",
                        &labels,
                        load(&n.bytes_written),
                    );
                    out.family(
                        "sabot_sink_latency_seconds",
                        "summary",
                        "End-to-end latency of the events a sink wrote, from when the oldest row of their batch arrived in (or was due at) its source (a timer's result: from its emission) to the sink having written them; quantiles over events, within 5 %.",
                    );
                    for q in ["0.5", "0.99", "0.999"] {
                        let value = q
                            .parse()
                            .ok()
                            .and_then(|q| n.latency.quantile(q))
                            .map_or(f64::NAN, |d| d.as_secs_f64());
                        out.sample(
                            "sabot_sink_latency_seconds",
                            &[labels[0], labels[1], ("quantile", q)],
                            value,
                        );
                    }
                    out.sample(
                        "sabot_sink_latency_seconds_sum",
                        &labels,
                        n.latency.sum().as_secs_f64(),
                    );
                    out.sample(
                        "sabot_sink_latency_seconds_count",
                        &labels,
                        n.latency.count() as f64,
                    );
                }
                NodeKind::Agent => {
                    out.metric(
                        "sabot_agent_rows_in_total",
                        "counter",
                        "Rows handed to an agent.",
                        &labels,
                        load(&n.rows_in),
                    );
                    out.metric(
                        "sabot_agent_rows_out_total",
                        "counter",
                        "Rows an agent emitted.",
                        &labels,
                        load(&n.rows_out),
                    );
                    out.metric(
                        "sabot_agent_batches_in_total",
                        "counter",
                        "Batches handed to an agent.",
                        &labels,
                        load(&n.batches_in),
                    );
                    out.metric(
                        "sabot_agent_batches_out_total",
                        "counter",
                        "Batches an agent emitted.",
                        &labels,
                        load(&n.batches_out),
                    );
                    out.metric(
                        "sabot_agent_failed_batches_total",
                        "counter",
                        "Batches skipped or dead-lettered by policy.",
                        &labels,
                        load(&n.failed_batches),
                    );
                    out.metric(
                        "sabot_agent_restarts_total",
                        "counter",
                        "Instances replaced after a failure.",
                        &labels,
                        load(&n.restarts),
                    );
                    if let Some(version) = versions.get(node) {
                        let sha = entry
                            .live
                            .version(node)
                            .map(|v| v.current().1.module.sha256.clone())
                            .unwrap_or_default();
                        out.metric(
                            "sabot_agent_module_info",
                            "gauge",
                            "The module version an agent runs (value 1).",
                            &[
                                ("pipeline", p),
                                ("agent", node),
                                ("version", version),
                                ("sha256", &sha),
                            ],
                            1.0,
                        );
                    }
                    if let Some(m) = entry.live.metrics(node) {
                        let c = m.calls.snapshot();
                        out.family(
                            "sabot_agent_call_duration_seconds",
                            "histogram",
                            "Time of each guest call (process, timers, watermarks).",
                        );
                        let mut cumulative = 0;
                        for (i, n) in c.buckets.iter().enumerate() {
                            cumulative += n;
                            let le =
                                number(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
                            out.sample(
                                "sabot_agent_call_duration_seconds_bucket",
                                &[labels[0], labels[1], ("le", &le)],
                                cumulative as f64,
                            );
                        }
                        out.sample(
                            "sabot_agent_call_duration_seconds_sum",
                            &labels,
                            c.wall_seconds,
                        );
                        out.sample(
                            "sabot_agent_call_duration_seconds_count",
                            &labels,
                            c.count as f64,
                        );
                        out.metric(
                            "sabot_agent_cpu_seconds_total",
                            "counter",
                            "CPU time of the agent's threads inside guest calls.",
                            &labels,
                            c.cpu_seconds,
                        );
                        out.metric(
                            "sabot_agent_traps_total",
                            "counter",
                            "Guest calls that trapped (panic, deadline, memory cap).",
                            &labels,
                            c.traps as f64,
                        );
                        out.metric(
                            "sabot_agent_memory_bytes",
                            "gauge",
                            "Linear memory held by the agent's instances.",
                            &labels,
                            c.memory_bytes as f64,
                        );
                        for (budget, count) in m.sandbox.exceeded_counts() {
                            out.metric(
                                "sabot_agent_budget_exceeded_total",
                                "counter",
                                "Guest calls failed for going over a budget of the agent's limits.",
                                &[labels[0], labels[1], ("budget", budget.name())],
                                count as f64,
                            );
                        }
                        out.metric(
                            "sabot_agent_log_dropped_total",
                            "counter",
                            "Guest log lines dropped over the log budget (limits.log_lines_per_s, log_bytes_per_s).",
                            &labels,
                            m.sandbox.log_dropped() as f64,
                        );
                        out.metric(
                            "sabot_agent_state_bytes",
                            "gauge",
                            "Keyed state the agent's instances keep (as last measured).",
                            &labels,
                            m.sandbox.state_bytes() as f64,
                        );
                        for (name, value) in m.counters() {
                            out.metric(
                                "sabot_guest_counter_total",
                                "counter",
                                "Counters an agent defines (metrics interface).",
                                &[labels[0], labels[1], ("name", &name)],
                                value as f64,
                            );
                        }
                    }
                }
            }
            let w = n.watermark.load(Ordering::Relaxed);
            if w != NO_WATERMARK && n.kind != NodeKind::Sink {
                let (name, lag): (&'static str, &'static str) = match n.kind {
                    NodeKind::Source => (
                        "sabot_source_watermark_seconds",
                        "sabot_source_watermark_lag_seconds",
                    ),
                    _ => (
                        "sabot_agent_watermark_seconds",
                        "sabot_agent_watermark_lag_seconds",
                    ),
                };
                out.metric(
                    name,
                    "gauge",
                    "The newest watermark the node passed on, seconds since the epoch.",
                    &labels,
                    w as f64 / 1e3,
                );
                out.metric(
                    lag,
                    "gauge",
                    "How far the watermark is behind the wall clock, seconds.",
                    &labels,
                    (now_ms - w as f64).max(0.0) / 1e3,
                );
            }
        }
        let cp = &stats.checkpoints;
        let completed = cp.completed.load(Ordering::Relaxed);
        out.metric(
            "sabot_checkpoints_completed_total",
            "counter",
            "Checkpoints completed by the current run.",
            &[("pipeline", p)],
            completed as f64,
        );
        if completed > 0 {
            out.metric(
                "sabot_checkpoint_last_id",
                "gauge",
                "The id of the newest checkpoint.",
                &[("pipeline", p)],
                cp.last_id.load(Ordering::Relaxed) as f64,
            );
            out.metric(
                "sabot_checkpoint_duration_seconds",
                "gauge",
                "How long the newest checkpoint took, from barrier to durable metadata.",
                &[("pipeline", p)],
                cp.last_duration_us.load(Ordering::Relaxed) as f64 / 1e6,
            );
            out.metric(
                "sabot_checkpoint_size_bytes",
                "gauge",
                "Bytes the newest checkpoint wrote.",
                &[("pipeline", p)],
                cp.last_size_bytes.load(Ordering::Relaxed) as f64,
            );
            let at = cp.last_completed_unix_ms.load(Ordering::Relaxed) as f64;
            out.metric(
                "sabot_checkpoint_age_seconds",
                "gauge",
                "Seconds since the newest checkpoint completed.",
                &[("pipeline", p)],
                (now_ms - at).max(0.0) / 1e3,
            );
        }
        let mut swaps = std::collections::BTreeMap::<(String, &'static str), u64>::new();
        for s in entry.swaps() {
            let state = match s.state {
                SwapState::Pending => "pending",
                SwapState::Probation => "probation",
                SwapState::Active => "active",
                SwapState::RolledBack => "rolled-back",
            };
            *swaps.entry((s.agent, state)).or_default() += 1;
        }
        for ((agent, state), n) in swaps {
            out.metric(
                "sabot_agent_swaps_total",
                "counter",
                "Hot swaps asked of an agent, by where they ended.",
                &[("pipeline", p), ("agent", &agent), ("state", state)],
                n as f64,
            );
        }
    }
    out.finish()
}

fn kind_label(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Source => "source",
        NodeKind::Agent => "agent",
        NodeKind::Sink => "sink",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_declared_once() {
        let mut out = Out::default();
        out.metric("m", "gauge", "h.", &[("a", "x\"y\\z\nw")], 1.5);
        out.metric("n", "counter", "i.", &[], 2.0);
        out.metric("m", "gauge", "h.", &[("a", "b")], f64::INFINITY);
        assert_eq!(
            out.finish(),
            "# HELP m h.\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\"} 1.5\nm{a=\"b\"} +Inf\n# HELP n i.\n# TYPE n counter\nn 2\n"
        );
    }
}
