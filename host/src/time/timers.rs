//! Timers, per key, fired in timestamp order.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a timer costs in a timer budget besides its key.
pub const TIMER_OVERHEAD: u64 = 32;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Fires when the watermark passes its time.
    EventTime,
    /// Fires when the wall clock passes its time.
    ProcessingTime,
}

/// A timer: for `key`, at `ts` milliseconds since the Unix epoch, in `domain`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timer {
    pub domain: TimeDomain,
    pub ts: i64,
    pub key: Vec<u8>,
}

/// An agent instance's timers, shared between the dataflow task (which fires them) and the
/// instance's host calls (which register them). Checkpointed with the instance's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentTimers {
    pub event: TimerQueue,
    pub processing: TimerQueue,
    /// The instance's current watermark (not checkpointed: it is derived again from the input).
    #[serde(skip)]
    pub watermark: Option<i64>,
}

impl AgentTimers {
    /// The queue of `domain`.
    pub fn queue(&mut self, domain: TimeDomain) -> &mut TimerQueue {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// How many timers are registered, both clocks.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the timers hold: their keys, and [`TIMER_OVERHEAD`] bytes each.
    pub fn bytes(&self) -> u64 {
        self.event.key_bytes() + self.processing.key_bytes() + self.len() as u64 * TIMER_OVERHEAD
    }
}

/// Registered timers of one clock: `(timestamp, key)`, each at most once.
#[derive(Debug, Clone, Default)]
pub struct TimerQueue {
    timers: BTreeSet<(i64, Vec<u8>)>,
    /// Bytes of the timers' keys.
    key_bytes: u64,
}

/// How a queue is stored in a checkpoint.
#[derive(Serialize)]
struct Stored<'a> {
    timers: &'a BTreeSet<(i64, Vec<u8>)>,
}

#[derive(Deserialize)]
struct Restored {
    timers: BTreeSet<(i64, Vec<u8>)>,
}

impl Serialize for TimerQueue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Stored {
            timers: &self.timers,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TimerQueue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Restored { timers } = Restored::deserialize(deserializer)?;
        let key_bytes = timers.iter().map(|(_, k)| k.len() as u64).sum();
        Ok(TimerQueue { timers, key_bytes })
    }
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a timer for `key` at `ts` (registering the same one twice keeps one).
    pub fn register(&mut self, key: Vec<u8>, ts: i64) {
        let len = key.len() as u64;
        if self.timers.insert((ts, key)) {
            self.key_bytes += len;
        }
    }

    /// Deletes the timer for `key` at `ts`, if any.
    pub fn delete(&mut self, key: &[u8], ts: i64) {
        if self.timers.remove(&(ts, key.to_vec())) {
            self.key_bytes -= key.len() as u64;
        }
    }

    /// Bytes of the timers' keys.
    pub fn key_bytes(&self) -> u64 {
        self.key_bytes
    }

    /// How many timers are registered.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// The earliest registered timestamp.
    pub fn next(&self) -> Option<i64> {
        self.timers.first().map(|(ts, _)| *ts)
    }

    /// Moves into this queue the timers of `other` whose key satisfies `keep` (a restore that
    /// takes the key groups an instance owns).
    pub fn absorb(&mut self, other: TimerQueue, mut keep: impl FnMut(&[u8]) -> bool) {
        for (ts, key) in other.timers {
            if keep(&key) {
                self.register(key, ts);
            }
        }
    }

    /// Removes and returns every timer at or before `watermark`, in timestamp order (then key
    /// order).
    pub fn fire(&mut self, watermark: i64) -> Vec<(Vec<u8>, i64)> {
        let mut fired = Vec::new();
        while let Some((ts, _)) = self.timers.first() {
            if *ts > watermark {
                break;
            }
            let (ts, key) = self.timers.pop_first().expect("checked non-empty");
            self.key_bytes -= key.len() as u64;
            fired.push((key, ts));
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_once_in_timestamp_order_as_the_watermark_passes() {
        let mut q = TimerQueue::new();
        q.register(b"b".to_vec(), 30);
        q.register(b"a".to_vec(), 10);
        q.register(b"a".to_vec(), 10);
        q.register(b"c".to_vec(), 20);
        q.register(b"d".to_vec(), 40);
        q.delete(b"d", 40);
        assert_eq!(q.len(), 3);
        assert_eq!(q.fire(5), vec![]);
        assert_eq!(q.fire(20), vec![(b"a".to_vec(), 10), (b"c".to_vec(), 20)]);
        assert_eq!(q.fire(20), vec![], "each timer fires once");
        assert_eq!(q.next(), Some(30));
        assert_eq!(q.fire(i64::MAX), vec![(b"b".to_vec(), 30)]);
        assert!(q.is_empty());
    }

    /// Random registrations and watermarks against a brute-force reference.
    #[test]
    fn matches_a_reference_on_random_timers() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut q = TimerQueue::new();
        let mut reference: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut watermark = 0;
        for _ in 0..2_000 {
            if rng.bool() {
                let (key, ts) = (vec![rng.u8(0..8)], watermark + rng.i64(1..100));
                q.register(key.clone(), ts);
                if !reference.contains(&(ts, key.clone())) {
                    reference.push((ts, key));
                }
            } else {
                watermark += rng.i64(0..30);
                let mut due: Vec<(i64, Vec<u8>)> = reference
                    .iter()
                    .filter(|(t, _)| *t <= watermark)
                    .cloned()
                    .collect();
                due.sort();
                reference.retain(|(t, _)| *t > watermark);
                let fired: Vec<(i64, Vec<u8>)> =
                    q.fire(watermark).into_iter().map(|(k, t)| (t, k)).collect();
                assert_eq!(fired, due);
            }
        }
    }
}
