//! `wit/metrics.wit`: counters, gauges and histograms an agent defines, kept per agent (all its
//! instances together).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bindings::sabot::agent::metrics::{Host, add_to_linker};
use super::{Budget, HostState};
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

/// The metrics of one agent: those the guest defines, and the host's own measure of its calls
/// ([`CallStats`]).
#[derive(Debug, Default)]
pub struct AgentMetrics {
    inner: Mutex<Inner>,
    /// What the host measures of every guest call, whatever the guest records itself.
    pub calls: CallStats,
    /// What the sandbox refused or dropped, and the state the instances keep.
    pub sandbox: SandboxStats,
}

/// What the sandbox refused an agent (all instances together): the budgets its calls went over,
/// the log lines it dropped, and the state each instance keeps.
#[derive(Debug, Default)]
pub struct SandboxStats {
    exceeded: [AtomicU64; Budget::ALL.len()],
    /// Guest log lines dropped over the log budget.
    pub log_dropped: AtomicU64,
    state_bytes: Mutex<BTreeMap<usize, u64>>,
}

impl SandboxStats {
    /// Counts a call that went over `budget`.
    pub fn exceeded(&self, budget: Budget) {
        self.exceeded[budget as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many calls went over each budget.
    pub fn exceeded_counts(&self) -> Vec<(Budget, u64)> {
        Budget::ALL
            .iter()
            .map(|b| (*b, self.exceeded[*b as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// Guest log lines dropped so far.
    pub fn log_dropped(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }

    /// Records the state instance `instance` keeps, in bytes.
    pub fn state(&self, instance: usize, bytes: u64) {
        self.state_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance, bytes);
    }

    /// The state all instances keep, in bytes (as last measured).
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}

/// The upper bounds (seconds) of the call latency histogram's buckets; one more counts the rest.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The host's measure of an agent's guest calls (all instances together): how many, how long
/// (a histogram), how much CPU, how many ended in a trap, and how much linear memory the
/// instances hold.
#[derive(Debug, Default)]
pub struct CallStats {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    wall_ns: AtomicU64,
    cpu_ns: AtomicU64,
    traps: AtomicU64,
    last_trap: Mutex<Option<String>>,
    memory: Mutex<BTreeMap<usize, u64>>,
}

/// A copy of [`CallStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CallSnapshot {
    /// Calls per latency bucket (not cumulative); the last is over the last bound.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub traps: u64,
    /// Linear memory of all instances, bytes.
    pub memory_bytes: u64,
}

impl CallSnapshot {
    /// The latency under which a fraction `q` of the calls finished (a bucket's upper bound);
    /// `None` without calls.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let target = (self.count as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }
}

impl CallStats {
    /// Records one call that took `wall` and used `cpu` of its thread.
    pub fn record(&self, wall: Duration, cpu: Duration) {
        let secs = wall.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.wall_ns
            .fetch_add(wall.as_nanos() as u64, Ordering::Relaxed);
        self.cpu_ns
            .fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records a call that trapped (a panic, a deadline, the memory cap), and why.
    pub fn trapped(&self, reason: String) {
        self.traps.fetch_add(1, Ordering::Relaxed);
        *self.last_trap.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Why the last trapped call trapped.
    pub fn last_trap(&self) -> Option<String> {
        self.last_trap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records how much linear memory instance `instance` holds.
    pub fn memory(&self, instance: usize, bytes: u64) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance, bytes);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CallSnapshot {
        CallSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            wall_seconds: self.wall_ns.load(Ordering::Relaxed) as f64 / 1e9,
            cpu_seconds: self.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            traps: self.traps.load(Ordering::Relaxed),
            memory_bytes: self
                .memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .sum(),
        }
    }
}

/// CPU time the calling thread has used: what a guest call costs, measured around it on the
/// instance's own thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the valid pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
    fn call_latencies_land_in_their_buckets_and_quantiles_read_bounds() {
        let c = CallStats::default();
        for _ in 0..98 {
            c.record(Duration::from_micros(80), Duration::from_micros(70));
        }
        c.record(Duration::from_millis(3), Duration::ZERO);
        c.record(Duration::from_secs(3), Duration::ZERO);
        let s = c.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.buckets[1], 98);
        assert_eq!(s.buckets[6], 1);
        assert_eq!(*s.buckets.last().unwrap(), 1);
        assert_eq!(s.quantile(0.5), Some(0.000_1));
        assert_eq!(s.quantile(0.99), Some(0.005));
        assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
        assert!(thread_cpu_time() > Duration::ZERO);
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
