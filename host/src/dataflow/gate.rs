//! A task's input: the channels feeding it, merged into one sequence of events with barriers
//! aligned, watermarks combined and the end of input detected.
//!
//! Alignment: once barrier *n* arrives on a channel, that channel's later messages are held back
//! until *n* has arrived on every channel still open; then the task sees the barrier once, and
//! the held messages are replayed in arrival order. So everything a task handled before it
//! snapshots belongs to checkpoint *n*, and nothing after.

use std::collections::VecDeque;
use std::time::Instant;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::router::{Message, Payload};
use crate::time::WatermarkTracker;

/// What a task sees next.
#[derive(Debug)]
pub(crate) enum GateEvent {
    Batch {
        port: u32,
        batch: RecordBatch,
    },
    /// The combined watermark advanced.
    Watermark(i64),
    /// None of the inputs carries event time.
    Untimed,
    /// Barrier *n* arrived on every open channel.
    Barrier(u64),
    /// Every channel has ended (or every sender is gone): `complete` when every one of them
    /// reached the end of its input, rather than stopping.
    End {
        complete: bool,
    },
    /// The deadline passed with nothing to report.
    Timeout,
}

/// The merged input of one task.
pub(crate) struct InputGate {
    rx: Receiver<Message>,
    ended: Vec<bool>,
    open: usize,
    blocked: Vec<bool>,
    aligning: Option<u64>,
    held: Vec<Message>,
    replay: VecDeque<Message>,
    out: VecDeque<GateEvent>,
    watermarks: WatermarkTracker,
    untimed_reported: bool,
    started: Instant,
    finished: bool,
    /// Whether a channel ended without its input being complete.
    stopped: bool,
}

impl InputGate {
    /// The gate over `channels` channels that share `rx`.
    pub fn new(rx: Receiver<Message>, channels: usize) -> Self {
        InputGate {
            rx,
            ended: vec![false; channels],
            open: channels,
            blocked: vec![false; channels],
            aligning: None,
            held: Vec::new(),
            replay: VecDeque::new(),
            out: VecDeque::new(),
            watermarks: WatermarkTracker::new(channels, None, 0),
            untimed_reported: false,
            started: Instant::now(),
            finished: channels == 0,
            stopped: false,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The next event, waiting until `deadline` at most.
    pub fn next(&mut self, deadline: Option<Instant>) -> GateEvent {
        loop {
            if let Some(event) = self.out.pop_front() {
                return event;
            }
            if self.finished {
                return GateEvent::End {
                    complete: !self.stopped,
                };
            }
            let message = match self.replay.pop_front() {
                Some(m) => m,
                None => {
                    let received = match deadline {
                        Some(d) => self.rx.recv_deadline(d),
                        None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match received {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => return GateEvent::Timeout,
                        Err(RecvTimeoutError::Disconnected) => {
                            // Every sender is gone without saying so: an upstream task failed.
                            self.finished = true;
                            self.stopped = true;
                            return GateEvent::End { complete: false };
                        }
                    }
                }
            };
            self.handle(message);
        }
    }

    fn handle(&mut self, message: Message) {
        let c = message.channel as usize;
        if self.blocked[c] {
            self.held.push(message);
            return;
        }
        let now = self.now_ms();
        match message.payload {
            Payload::Batch(batch) => {
                self.watermarks.activity(c, now);
                self.out.push_back(GateEvent::Batch {
                    port: message.port,
                    batch,
                });
            }
            Payload::Watermark(w) => {
                if let Some(w) = self.watermarks.update(c, w, now) {
                    self.out.push_back(GateEvent::Watermark(w));
                }
            }
            Payload::Idle => {
                if let Some(w) = self.watermarks.set_idle(c) {
                    self.out.push_back(GateEvent::Watermark(w));
                }
            }
            Payload::Untimed => {
                if let Some(w) = self.watermarks.exclude(c) {
                    self.out.push_back(GateEvent::Watermark(w));
                }
                if self.watermarks.all_excluded()
                    && self.watermarks.current().is_none()
                    && !self.untimed_reported
                {
                    self.untimed_reported = true;
                    self.out.push_back(GateEvent::Untimed);
                }
            }
            Payload::Barrier(n) => {
                self.blocked[c] = true;
                self.aligning = Some(n);
                self.try_align();
            }
            Payload::End(complete) => {
                self.ended[c] = true;
                self.stopped |= !complete;
                self.open -= 1;
                // A complete input no longer holds the others back; a stopped one still does:
                // its events go on in the next run.
                if complete && let Some(w) = self.watermarks.exclude(c) {
                    self.out.push_back(GateEvent::Watermark(w));
                }
                self.try_align();
                if self.open == 0 && self.replay.is_empty() {
                    self.finished = true;
                    self.out.push_back(GateEvent::End {
                        complete: !self.stopped,
                    });
                }
            }
        }
    }

    fn try_align(&mut self) {
        let Some(n) = self.aligning else { return };
        let blocked = self.blocked.iter().filter(|b| **b).count();
        if blocked < self.open {
            return;
        }
        self.aligning = None;
        self.blocked.iter_mut().for_each(|b| *b = false);
        // Held messages go first, in the order they arrived, before anything new.
        let held = std::mem::take(&mut self.held);
        for m in held.into_iter().rev() {
            self.replay.push_front(m);
        }
        self.out.push_back(GateEvent::Barrier(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use crossbeam_channel::unbounded;
    use std::sync::Arc;

    fn batch(v: i64) -> Payload {
        Payload::Batch(
            RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v])) as ArrayRef)])
                .unwrap(),
        )
    }

    fn describe(e: GateEvent) -> String {
        match e {
            GateEvent::Batch { batch, .. } => {
                let v = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0);
                format!("b{v}")
            }
            GateEvent::Watermark(w) => format!("w{w}"),
            GateEvent::Untimed => "untimed".into(),
            GateEvent::Barrier(n) => format!("B{n}"),
            GateEvent::End { complete: true } => "end".into(),
            GateEvent::End { complete: false } => "stop".into(),
            GateEvent::Timeout => "timeout".into(),
        }
    }

    fn run(channels: usize, messages: Vec<(u32, Payload)>) -> Vec<String> {
        let (tx, rx) = unbounded();
        for (channel, payload) in messages {
            tx.send(Message {
                channel,
                port: 0,
                payload,
            })
            .unwrap();
        }
        drop(tx);
        let mut gate = InputGate::new(rx, channels);
        let mut out = Vec::new();
        loop {
            let e = describe(gate.next(None));
            out.push(e.clone());
            if e == "end" || e == "stop" {
                return out;
            }
        }
    }

    #[test]
    fn a_barrier_holds_back_its_channel_until_every_channel_has_it() {
        let got = run(
            2,
            vec![
                (0, batch(1)),
                (0, Payload::Barrier(1)),
                (0, batch(2)),  // after the barrier on 0: held
                (1, batch(10)), // before the barrier on 1: goes through
                (1, Payload::Barrier(1)),
                (1, batch(11)),
                (0, Payload::End(true)),
                (1, Payload::End(true)),
            ],
        );
        assert_eq!(got, ["b1", "b10", "B1", "b2", "b11", "end"]);
    }

    #[test]
    fn an_ended_channel_does_not_hold_alignment_or_watermarks_back() {
        let got = run(
            2,
            vec![
                (0, Payload::Watermark(5)),
                (0, Payload::Barrier(3)),
                (1, Payload::Watermark(9)),
                (1, Payload::End(true)),
                (0, Payload::End(true)),
            ],
        );
        assert_eq!(got, ["w5", "B3", "end"]);
    }

    #[test]
    fn the_watermark_is_the_minimum_over_channels_and_untimed_channels_are_ignored() {
        let got = run(
            3,
            vec![
                (2, Payload::Untimed),
                (0, Payload::Watermark(5)),
                (1, Payload::Watermark(3)),
                (1, Payload::Watermark(8)),
                (0, Payload::Idle),
                (1, Payload::Watermark(12)),
                (0, batch(1)), // active again, at 5: holds the watermark at 12
                (1, Payload::Watermark(20)),
                (0, Payload::Watermark(15)),
                (0, Payload::End(true)),
                (1, Payload::End(true)),
                (2, Payload::End(true)),
            ],
        );
        assert_eq!(got, ["w3", "w5", "w8", "w12", "b1", "w15", "w20", "end"]);
    }

    #[test]
    fn a_task_whose_inputs_carry_no_event_time_is_told_once() {
        let got = run(
            2,
            vec![
                (0, Payload::Untimed),
                (1, Payload::Untimed),
                (0, Payload::End(true)),
                (1, Payload::End(true)),
            ],
        );
        assert_eq!(got, ["untimed", "end"]);
    }

    #[test]
    fn senders_gone_without_an_end_stop_the_input() {
        let got = run(2, vec![(0, batch(1))]);
        assert_eq!(got, ["b1", "stop"]);
    }

    #[test]
    fn a_stopped_channel_still_holds_the_watermark_back() {
        let got = run(
            2,
            vec![
                (0, Payload::Watermark(5)),
                (1, Payload::Watermark(50)),
                (0, Payload::End(false)),
                (1, Payload::Watermark(80)),
                (1, Payload::End(false)),
            ],
        );
        assert_eq!(got, ["w5", "stop"]);
    }

    #[test]
    fn one_stopped_channel_makes_the_end_a_stop() {
        let got = run(2, vec![(0, Payload::End(true)), (1, Payload::End(false))]);
        assert_eq!(got, ["stop"]);
    }
}
