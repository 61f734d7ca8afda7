//! Watermarks: per partition, then combined over a task's inputs.

/// The watermark of one ordered-enough stream: events may arrive up to `max_delay` late.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    max_delay: i64,
    max_seen: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator allowing events `max_delay` (in the event-time unit) behind the latest one.
    pub fn new(max_delay: i64) -> Self {
        BoundedOutOfOrderness {
            max_delay: max_delay.max(0),
            max_seen: None,
        }
    }

    /// Takes an event time into account.
    pub fn observe(&mut self, ts: i64) {
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
    }

    /// Takes a batch's event times into account (nulls are skipped by the caller).
    pub fn observe_all(&mut self, times: impl IntoIterator<Item = i64>) {
        if let Some(max) = times.into_iter().max() {
            self.observe(max);
        }
    }

    /// The watermark: no event at or before it is expected any more. `None` before any event.
    pub fn watermark(&self) -> Option<i64> {
        self.max_seen
            .map(|m| m.saturating_sub(self.max_delay).saturating_sub(1))
    }
}

#[derive(Debug, Clone)]
struct Input {
    watermark: Option<i64>,
    last_active_ms: u64,
    idle: bool,
    /// Ended, or carries no event time: never holds the others back again.
    excluded: bool,
}

/// Combines the watermarks of a task's inputs.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    inputs: Vec<Input>,
    idle_timeout_ms: Option<u64>,
    current: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker of `inputs` inputs, all active at `now_ms`. With `idle_timeout_ms`, an input
    /// that neither sends data nor a watermark for that long is idle.
    pub fn new(inputs: usize, idle_timeout_ms: Option<u64>, now_ms: u64) -> Self {
        WatermarkTracker {
            inputs: vec![
                Input {
                    watermark: None,
                    last_active_ms: now_ms,
                    idle: false,
                    excluded: false,
                };
                inputs
            ],
            idle_timeout_ms,
            current: None,
        }
    }

    /// The combined watermark so far.
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Whether input `input` is idle.
    pub fn is_idle(&self, input: usize) -> bool {
        self.inputs[input].idle
    }

    /// Input `input` says it is idle: it stops holding the others back until it sends data.
    /// Returns the combined watermark if that let it advance.
    pub fn set_idle(&mut self, input: usize) -> Option<i64> {
        self.inputs[input].idle = true;
        self.advance()
    }

    /// Input `input` ended, or carries no event time: it never holds the others back again.
    /// Returns the combined watermark if that let it advance.
    pub fn exclude(&mut self, input: usize) -> Option<i64> {
        self.inputs[input].excluded = true;
        self.advance()
    }

    /// Whether every input is excluded: the task has no event time from its inputs.
    pub fn all_excluded(&self) -> bool {
        self.inputs.iter().all(|i| i.excluded)
    }

    /// Input `input` sent data at `now_ms`: it is active again.
    pub fn activity(&mut self, input: usize, now_ms: u64) {
        let i = &mut self.inputs[input];
        i.last_active_ms = now_ms;
        i.idle = false;
    }

    /// Input `input` reports watermark `watermark` at `now_ms`. Returns the combined watermark
    /// if it advanced.
    pub fn update(&mut self, input: usize, watermark: i64, now_ms: u64) -> Option<i64> {
        self.activity(input, now_ms);
        let i = &mut self.inputs[input];
        // An input's own watermark never goes back.
        i.watermark = Some(i.watermark.map_or(watermark, |w| w.max(watermark)));
        self.advance()
    }

    /// Marks inputs quiet since before `now_ms - idle_timeout` idle. Returns the combined
    /// watermark if that let it advance.
    pub fn check_idle(&mut self, now_ms: u64) -> Option<i64> {
        let timeout = self.idle_timeout_ms?;
        for i in &mut self.inputs {
            if !i.idle && now_ms.saturating_sub(i.last_active_ms) >= timeout {
                i.idle = true;
            }
        }
        self.advance()
    }

    fn advance(&mut self) -> Option<i64> {
        let active: Vec<&Input> = self
            .inputs
            .iter()
            .filter(|i| !i.idle && !i.excluded)
            .collect();
        if active.is_empty() {
            // Every input is idle: nothing holds the watermark back, and nothing moves it either.
            return None;
        }
        // An active input that has not reported yet holds everything back.
        let min = active
            .iter()
            .map(|i| i.watermark)
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .min()?;
        if self.current.is_none_or(|c| min > c) {
            self.current = Some(min);
            Some(min)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_trails_the_latest_event_by_the_allowed_delay() {
        let mut g = BoundedOutOfOrderness::new(100);
        assert_eq!(g.watermark(), None);
        g.observe_all([1_000, 950, 1_200]);
        assert_eq!(g.watermark(), Some(1_099));
        g.observe(1_100); // late but within the delay: the watermark does not move back
        assert_eq!(g.watermark(), Some(1_099));
    }

    #[test]
    fn the_combined_watermark_is_the_minimum_and_only_advances() {
        let mut t = WatermarkTracker::new(2, None, 0);
        assert_eq!(t.update(0, 100, 1), None, "input 1 has not reported");
        assert_eq!(t.update(1, 50, 2), Some(50));
        assert_eq!(t.update(1, 80, 3), Some(80));
        assert_eq!(
            t.update(1, 70, 4),
            None,
            "an input's watermark never goes back"
        );
        assert_eq!(t.update(1, 200, 5), Some(100));
        assert_eq!(t.current(), Some(100));
    }

    #[test]
    fn an_ended_input_no_longer_holds_the_others_back() {
        let mut t = WatermarkTracker::new(3, None, 0);
        t.update(0, 10, 0);
        t.update(1, 50, 0);
        assert_eq!(t.current(), None, "input 2 has not reported");
        assert_eq!(t.exclude(2), Some(10));
        assert_eq!(t.exclude(0), Some(50));
        assert!(!t.all_excluded());
        assert_eq!(t.set_idle(1), None, "all idle: nothing moves");
        t.exclude(1);
        assert!(t.all_excluded());
    }

    #[test]
    fn an_idle_input_stops_holding_the_others_back_until_it_speaks_again() {
        let mut t = WatermarkTracker::new(2, Some(1_000), 0);
        t.update(0, 10, 0);
        t.update(1, 5, 0);
        assert_eq!(t.current(), Some(5));
        assert_eq!(t.update(0, 500, 600), None);
        assert_eq!(t.check_idle(999), None);
        assert_eq!(t.check_idle(1_000), Some(500), "input 1 idle since 0");
        assert!(t.is_idle(1));
        t.activity(1, 1_100);
        assert!(!t.is_idle(1));
        assert_eq!(t.update(0, 900, 1_200), None, "input 1 is back at 5: held");
        assert_eq!(t.current(), Some(500), "never goes back");
    }

    /// Random updates against a brute-force reference.
    #[test]
    fn matches_a_reference_on_random_updates() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let n = rng.usize(1..5);
            let mut t = WatermarkTracker::new(n, None, 0);
            let mut reference: Vec<Option<i64>> = vec![None; n];
            let mut last = None;
            for step in 0..50 {
                let input = rng.usize(0..n);
                let wm = rng.i64(0..1_000);
                let advanced = t.update(input, wm, step);
                reference[input] = Some(reference[input].map_or(wm, |w: i64| w.max(wm)));
                let min = reference
                    .iter()
                    .copied()
                    .collect::<Option<Vec<_>>>()
                    .and_then(|v| v.into_iter().min());
                let expected = match (min, last) {
                    (Some(m), Some(l)) if m > l => Some(m),
                    (Some(m), None) => Some(m),
                    _ => None,
                };
                assert_eq!(advanced, expected);
                if expected.is_some() {
                    last = expected;
                }
                assert_eq!(t.current(), last);
            }
        }
    }
}
