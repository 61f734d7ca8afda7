//! End-to-end latency: how long each event takes from its source to the moment a sink has
//! written it.
//!
//! A batch carries an [`Instant`](std::time::Instant): when its oldest row began to wait in its
//! source, where the source says (`Source::born`: a Kafka record's arrival, a rate-limited
//! generator row's due time — so a source holding rows to fill a batch counts), else when the
//! source handed it on; for a result an operator emits on a timer or watermark, when it emitted
//! it. An agent's output of a batch keeps its input's instant, so queueing, barrier alignment and
//! every agent call on the way count. Each sink records, per batch it has written, the time since
//! then, weighted by the batch's rows: the quantiles are over events, not batches, each event
//! counted with its batch's oldest (an upper bound for the others).
//!
//! [`Latency`] is a lock-free histogram of logarithmic buckets, eight per power of two from
//! 1 µs (a quantile is within ±4.5 % of the exact value) up to about 38 hours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per power of two.
const PER_OCTAVE: f64 = 8.0;
/// Buckets: 1 µs to 2^37 µs (about 38 hours); longer times count in the last.
const BUCKETS: usize = 37 * 8;

/// A histogram of latencies, weighted by events.
#[derive(Debug)]
pub struct Latency {
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Latency {
    /// Counts `events` that took `took`.
    pub fn record(&self, took: Duration, events: u64) {
        if events == 0 {
            return;
        }
        let us = took.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
        let at = ((us as f64).log2() * PER_OCTAVE) as usize;
        self.buckets[at.min(BUCKETS - 1)].fetch_add(events, Ordering::Relaxed);
        self.sum_us
            .fetch_add(us.saturating_mul(events), Ordering::Relaxed);
    }

    /// Adds `other`'s events to these.
    pub fn add(&self, other: &Latency) {
        for (mine, theirs) in self.buckets.iter().zip(other.buckets.iter()) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.sum_us
            .fetch_add(other.sum_us.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The events counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The sum of the events' latencies.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// The latency `q` (0 to 1) of the events are at or under: the middle of its bucket
    /// (geometrically), `None` before any event.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let us = ((i as f64 + 0.5) / PER_OCTAVE).exp2();
                return Some(Duration::from_secs_f64(us / 1e6));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_over_events_within_the_bucket_resolution() {
        let l = Latency::default();
        assert_eq!(l.quantile(0.5), None);
        // 98 events at 1 ms, 1 at 20 ms, 1 at 3 s (in batches of different sizes).
        l.record(Duration::from_millis(1), 90);
        l.record(Duration::from_millis(1), 8);
        l.record(Duration::from_millis(20), 1);
        l.record(Duration::from_secs(3), 1);
        assert_eq!(l.count(), 100);
        let near = |d: Option<Duration>, want: f64| {
            let got = d.unwrap().as_secs_f64();
            assert!(
                (got - want).abs() <= want * 0.05,
                "{got} s, expected {want} s ±5 %"
            );
        };
        near(l.quantile(0.5), 0.001);
        near(l.quantile(0.98), 0.001);
        near(l.quantile(0.99), 0.020);
        near(l.quantile(0.999), 3.0);
        near(l.quantile(1.0), 3.0);
        assert_eq!(
            l.sum(),
            Duration::from_micros(98 * 1_000 + 20_000 + 3_000_000)
        );
        // Nothing is lost at the ends.
        l.record(Duration::ZERO, 1);
        l.record(Duration::from_secs(1_000_000), 1);
        assert_eq!(l.count(), 102);
    }
}
