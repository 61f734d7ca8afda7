//! Sliding windows kept as panes: each key's events are accumulated once, in the slice of time
//! every one of its windows shares (a *pane*, `gcd(size, slide)` long), instead of once in each
//! of the `size / slide` windows that contain them; a window's result is its panes merged when
//! it closes. What Flink SQL calls window slicing: for a 10-second window every 2 seconds, one
//! accumulator update per event instead of five, one state entry per key instead of one per
//! (key, window).

use serde::{Deserialize, Serialize};

use super::{Acc, KeyValue, OutType};

/// The accumulators of one key's events in `[start, start + width)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pane {
    pub start: i64,
    pub accs: Vec<Acc>,
}

/// What is kept per key: its panes that a window still to close contains, in start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Panes {
    pub key: KeyValue,
    /// The type of each aggregate's result (as [`super::WindowState::types`]).
    pub types: Vec<OutType>,
    pub panes: Vec<Pane>,
}

impl Panes {
    /// The accumulators of the pane starting at `start`, made by `fresh` if there is none yet;
    /// and whether it was made.
    pub fn pane<E>(
        &mut self,
        start: i64,
        fresh: impl FnOnce() -> Result<Vec<Acc>, E>,
    ) -> Result<(&mut Vec<Acc>, bool), E> {
        let at = self.panes.partition_point(|p| p.start < start);
        let made = self.panes.get(at).is_none_or(|p| p.start != start);
        if made {
            self.panes.insert(
                at,
                Pane {
                    start,
                    accs: fresh()?,
                },
            );
        }
        Ok((&mut self.panes[at].accs, made))
    }

    /// The window `[end - size, end)`: the accumulators of its panes merged in time order, or
    /// `None` when it holds none (no event fell in it).
    pub fn window(&self, end: i64, size: i64) -> Option<Vec<Acc>> {
        let from = self.panes.partition_point(|p| p.start < end - size);
        let mut inside = self.panes[from..].iter().take_while(|p| p.start < end);
        let mut accs = inside.next()?.accs.clone();
        for pane in inside {
            for (acc, later) in accs.iter_mut().zip(&pane.accs) {
                acc.merge(later.clone());
            }
        }
        Some(accs)
    }

    /// Drops the panes whose last window is `[end - size, end)` or earlier: those starting at
    /// or before `end - size`.
    pub fn expire(&mut self, end: i64, size: i64) {
        let keep = self.panes.partition_point(|p| p.start <= end - size);
        self.panes.drain(..keep);
    }
}

/// The length of the panes of sliding windows of `size` every `slide` ms: the longest slice
/// of time whose events all share the same windows.
pub fn width(size: i64, slide: i64) -> i64 {
    let (mut a, mut b) = (size, slide);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The earliest and latest end of the windows of `size` every `slide` ms containing the pane
/// starting at `start`.
pub fn ends(start: i64, size: i64, slide: i64) -> (i64, i64) {
    let last = start.div_euclid(slide) * slide;
    let first = (start - size).div_euclid(slide) * slide + slide;
    (first + size, last + size)
}

#[cfg(test)]
mod tests {
    use super::super::Assigner;
    use super::*;

    #[test]
    fn a_pane_lies_in_exactly_the_windows_of_each_of_its_instants() {
        for (size, slide) in [(10, 2), (10, 4), (9, 6), (5, 5), (12, 8)] {
            let w = width(size, slide);
            assert_eq!(size % w, 0);
            assert_eq!(slide % w, 0);
            let assigner = Assigner::Sliding { size, slide };
            for start in (-40..40).map(|i| i * w) {
                let windows = assigner.windows(start);
                for ts in start..start + w {
                    assert_eq!(assigner.windows(ts), windows, "{size}/{slide} at {ts}");
                }
                let (first, last) = ends(start, size, slide);
                assert_eq!(windows.first().map(|w| w.1), Some(first));
                assert_eq!(windows.last().map(|w| w.1), Some(last));
            }
        }
    }

    #[test]
    fn a_window_merges_its_panes_and_expiry_keeps_what_later_windows_need() {
        let mut panes = Panes {
            key: KeyValue::I64(1),
            types: vec![OutType::I64],
            panes: Vec::new(),
        };
        for (start, n) in [(4, 3), (0, 1), (8, 5), (2, 2)] {
            let (accs, made) = panes
                .pane(start, || Ok::<_, ()>(vec![Acc::Count(0)]))
                .unwrap();
            assert!(made);
            accs[0] = Acc::Count(n);
        }
        assert!(!panes.pane(4, || Err(())).unwrap().1);
        let starts: Vec<i64> = panes.panes.iter().map(|p| p.start).collect();
        assert_eq!(starts, [0, 2, 4, 8]);
        // Windows of 6 every 2.
        assert_eq!(panes.window(6, 6), Some(vec![Acc::Count(6)]));
        assert_eq!(panes.window(10, 6), Some(vec![Acc::Count(8)]));
        assert_eq!(panes.window(20, 6), None);
        panes.expire(8, 6);
        let starts: Vec<i64> = panes.panes.iter().map(|p| p.start).collect();
        assert_eq!(starts, [4, 8]);
    }
}
