//! `wit/metrics.wit`: counters, gauges and histograms an agent defines, kept per agent (all its
//! instances together).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::HostState;
use super::bindings::sabot::agent::metrics::{Host, add_to_linker};
use wasmtime::component::{HasSelf, Linker};

/// An agent may define at most this many metric names; more are dropped (and counted), so a
/// hostile agent cannot grow the host's memory without bound.
pub const MAX_METRICS: usize = 256;
/// Longer metric names are refused.
pub const MAX_NAME: usize = 128;

/// A histogram's summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// The metrics of one agent.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Summary>,
    dropped: u64,
}

impl Inner {
    fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.histograms.len()
    }

    /// Whether `name` may be recorded: known already, or room for one more.
    fn admit(&mut self, name: &str, known: bool) -> bool {
        if known || (name.len() <= MAX_NAME && self.len() < MAX_METRICS) {
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

impl AgentMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds to a counter.
    pub fn counter_add(&self, name: &str, delta: u64) {
        self.with(|m| {
            let known = m.counters.contains_key(name);
            if m.admit(name, known) {
                let c = m.counters.entry(name.to_owned()).or_default();
                *c = c.saturating_add(delta);
            }
        });
    }

    /// Sets a gauge.
    pub fn gauge_set(&self, name: &str, value: f64) {
        self.with(|m| {
            let known = m.gauges.contains_key(name);
            if m.admit(name, known) {
                m.gauges.insert(name.to_owned(), value);
            }
        });
    }

    /// Records a histogram observation.
    pub fn histogram_record(&self, name: &str, value: f64) {
        self.with(|m| {
            let known = m.histograms.contains_key(name);
            if m.admit(name, known) {
                let h = m.histograms.entry(name.to_owned()).or_insert(Summary {
                    count: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                });
                h.count += 1;
                h.sum += value;
                h.min = h.min.min(value);
                h.max = h.max.max(value);
            }
        });
    }

    /// A counter's value.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.with(|m| m.counters.get(name).copied())
    }

    /// A gauge's value.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.with(|m| m.gauges.get(name).copied())
    }

    /// A histogram's summary.
    pub fn histogram(&self, name: &str) -> Option<Summary> {
        self.with(|m| m.histograms.get(name).copied())
    }

    /// All counters, by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.with(|m| m.counters.clone())
    }

    /// How many recordings were dropped for the name limits.
    pub fn dropped(&self) -> u64 {
        self.with(|m| m.dropped)
    }
}

impl Host for HostState {
    fn counter_add(&mut self, name: String, delta: u64) {
        self.metrics.counter_add(&name, delta);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        self.metrics.gauge_set(&name, value);
    }

    fn histogram_record(&mut self, name: String, value: f64) {
        self.metrics.histogram_record(&name, value);
    }
}

/// Adds `sabot:agent/metrics` to `linker`.
pub fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_beyond_the_limit_are_dropped_and_counted() {
        let m = AgentMetrics::default();
        for i in 0..MAX_METRICS + 10 {
            m.counter_add(&format!("c{i}"), 1);
        }
        m.counter_add("c0", 5);
        assert_eq!(m.counter("c0"), Some(6));
        assert_eq!(m.counters().len(), MAX_METRICS);
        assert_eq!(m.dropped(), 10);
        m.gauge_set(&"x".repeat(MAX_NAME + 1), 1.0);
        assert_eq!(m.dropped(), 11);
    }

    #[test]
    fn histograms_summarise_observations() {
        let m = AgentMetrics::default();
        for v in [3.0, 1.0, 2.0] {
            m.histogram_record("h", v);
        }
        assert_eq!(
            m.histogram("h"),
            Some(Summary {
                count: 3,
                sum: 6.0,
                min: 1.0,
                max: 3.0
            })
        );
    }
}
