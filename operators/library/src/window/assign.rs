//! Which windows an event belongs to, and how session windows merge. Pure functions.

use serde::{Deserialize, Serialize};

/// The shape of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// Fixed, non-overlapping windows of `size` ms, aligned to the epoch.
    Tumbling { size: i64 },
    /// Windows of `size` ms starting every `slide` ms: an event is in `size / slide` of them.
    Sliding { size: i64, slide: i64 },
    /// Per key, events closer than `gap` ms to each other share a window, which ends `gap` ms
    /// after its last event.
    Session { gap: i64 },
}

impl Assigner {
    /// The `[start, end)` windows of fixed shape (tumbling, sliding) containing `ts`, earliest
    /// first; empty for sessions, which depend on the other events.
    pub fn windows(&self, ts: i64) -> Vec<(i64, i64)> {
        match *self {
            Assigner::Tumbling { size } => {
                let start = ts.div_euclid(size) * size;
                vec![(start, start + size)]
            }
            Assigner::Sliding { size, slide } => {
                let last = ts.div_euclid(slide) * slide;
                let mut out = Vec::new();
                let mut start = last;
                while start > ts - size {
                    out.push((start, start + size));
                    start -= slide;
                }
                out.reverse();
                out
            }
            Assigner::Session { .. } => Vec::new(),
        }
    }

    /// The window an event at `ts` opens on its own (for sessions, `[ts, ts + gap)`).
    pub fn own_window(&self, ts: i64) -> (i64, i64) {
        match *self {
            Assigner::Session { gap } => (ts, ts + gap),
            _ => *self
                .windows(ts)
                .last()
                .expect("an event is in at least one window"),
        }
    }
}

/// A session window being built: `[start, end)` and its accumulated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session<A> {
    pub start: i64,
    pub end: i64,
    pub acc: A,
}

/// Adds the window `[start, end)` with state `acc` to `sessions` (disjoint, in start order),
/// merging every session it overlaps or touches with `merge`. Returns the index of the session
/// that holds it.
pub fn add_session<A>(
    sessions: &mut Vec<Session<A>>,
    start: i64,
    end: i64,
    acc: A,
    mut merge: impl FnMut(&mut A, A),
) -> usize {
    let mut new = Session { start, end, acc };
    let mut kept = Vec::with_capacity(sessions.len() + 1);
    for s in sessions.drain(..) {
        if s.start <= new.end && new.start <= s.end {
            // Overlapping or adjacent: one session. Merge the earlier one into the later.
            if s.start <= new.start {
                let mut merged = s;
                merge(&mut merged.acc, new.acc);
                merged.end = merged.end.max(new.end);
                new = merged;
            } else {
                merge(&mut new.acc, s.acc);
                new.end = new.end.max(s.end);
            }
        } else {
            kept.push(s);
        }
    }
    let at = kept.partition_point(|s| s.start < new.start);
    kept.insert(at, new);
    *sessions = kept;
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_sliding_windows_contain_the_event() {
        assert_eq!(Assigner::Tumbling { size: 10 }.windows(25), [(20, 30)]);
        assert_eq!(Assigner::Tumbling { size: 10 }.windows(-1), [(-10, 0)]);
        assert_eq!(
            Assigner::Sliding {
                size: 30,
                slide: 10
            }
            .windows(25),
            [(0, 30), (10, 40), (20, 50)]
        );
        for ts in -50..50 {
            for (s, e) in (Assigner::Sliding {
                size: 30,
                slide: 10,
            })
            .windows(ts)
            {
                assert!(s <= ts && ts < e);
            }
        }
    }

    #[test]
    fn sessions_merge_what_overlaps_and_keep_the_rest() {
        let mut s: Vec<Session<Vec<i64>>> = Vec::new();
        let mut merge = |a: &mut Vec<i64>, b: Vec<i64>| a.extend(b);
        add_session(&mut s, 0, 10, vec![0], &mut merge);
        add_session(&mut s, 30, 40, vec![30], &mut merge);
        add_session(&mut s, 15, 25, vec![15], &mut merge);
        assert_eq!(s.len(), 3);
        // Bridges all three.
        add_session(&mut s, 8, 32, vec![8], &mut merge);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].start, s[0].end), (0, 40));
        let mut all = s[0].acc.clone();
        all.sort();
        assert_eq!(all, [0, 8, 15, 30]);
    }
}
