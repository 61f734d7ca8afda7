//! A task's input: the channels feeding it, merged into one sequence of events with barriers
//! aligned, watermarks combined and the end of input detected.
//!
//! A channel is one edge from one upstream instance. The channels from the same upstream
//! instance (several edges, e.g. both inputs of a join) share one bounded queue, so that what
//! that instance sent arrives in the order it sent it; the queues are read round-robin.
//!
//! Alignment (Flink's model): once barrier *n* arrives on a channel, that channel is not read
//! again until *n* has arrived on every channel still open; then the task sees the barrier once.
//! A queue whose channels all hold the barrier is not read: it fills and its sender waits —
//! backpressure, not buffering — so memory during alignment stays within the queues' capacity
//! (`channel_capacity` messages per channel) whatever the skew between inputs. An upstream
//! instance broadcasts a barrier on all its channels at once, so a shared queue holds nothing
//! between the barrier on one of its channels and the barrier on the next (a message for a
//! blocked channel read from a shared queue would be held and handled first after the barrier;
//! the broadcast makes that not happen). Everything a task handled before it snapshots belongs to
//! checkpoint *n*, and nothing after.

use std::collections::VecDeque;
use std::time::Instant;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Select, TryRecvError};

use super::router::{Message, Payload};
use crate::time::WatermarkTracker;

/// What a task sees next.
#[derive(Debug)]
pub(crate) enum GateEvent {
    Batch {
        port: u32,
        batch: RecordBatch,
        /// When its source handed it on.
        born: Instant,
    },
    /// The combined watermark advanced.
    Watermark(i64),
    /// None of the inputs carries event time.
    Untimed,
    /// Barrier *n* arrived on every open channel.
    Barrier(u64),
    /// Every channel has ended (or a sender is gone without ending): `complete` when every one
    /// of them reached the end of its input, rather than stopping.
    End { complete: bool },
    /// The deadline passed with nothing to report.
    Timeout,
}

/// What waiting on the channels gave.
enum Received {
    Message(Message),
    /// The sender of a channel is gone without ending it: an upstream task failed.
    Gone,
    Timeout,
}

/// The merged input of one task.
pub(crate) struct InputGate {
    /// The bounded queues, one per upstream instance.
    queues: Vec<Receiver<Message>>,
    /// The channels of each queue.
    channels_of: Vec<Vec<usize>>,
    /// Messages taken from a shared queue for a channel that is aligning, kept until the barrier.
    held: VecDeque<Message>,
    /// Held messages, to handle before reading on.
    replay: VecDeque<Message>,
    ended: Vec<bool>,
    open: usize,
    blocked: Vec<bool>,
    aligning: Option<u64>,
    /// Where the next round-robin read starts.
    cursor: usize,
    out: VecDeque<GateEvent>,
    watermarks: WatermarkTracker,
    untimed_reported: bool,
    started: Instant,
    finished: bool,
    /// Whether a channel ended without its input being complete.
    stopped: bool,
}

impl InputGate {
    /// The gate over `queues`; `queue_of[c]` is the queue channel `c` arrives on.
    pub fn new(queues: Vec<Receiver<Message>>, queue_of: &[usize]) -> Self {
        let channels = queue_of.len();
        let mut channels_of = vec![Vec::new(); queues.len()];
        for (c, &q) in queue_of.iter().enumerate() {
            channels_of[q].push(c);
        }
        InputGate {
            held: VecDeque::new(),
            queues,
            channels_of,
            replay: VecDeque::new(),
            ended: vec![false; channels],
            open: channels,
            blocked: vec![false; channels],
            aligning: None,
            cursor: 0,
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
            if self.open == 0 && self.replay.is_empty() {
                self.finished = true;
            }
            if self.finished {
                return GateEvent::End {
                    complete: !self.stopped,
                };
            }
            if let Some(m) = self.replay.pop_front() {
                self.handle(m);
                continue;
            }
            match self.receive(deadline) {
                Received::Message(m) => {
                    if self.blocked[m.channel as usize] {
                        self.held.push_back(m);
                    } else {
                        self.handle(m);
                    }
                }
                Received::Timeout => return GateEvent::Timeout,
                Received::Gone => {
                    self.finished = true;
                    self.stopped = true;
                    return GateEvent::End { complete: false };
                }
            }
        }
    }

    /// Whether queue `q` is read now: one of its channels is open and not holding a barrier.
    fn readable(&self, q: usize) -> bool {
        self.channels_of[q]
            .iter()
            .any(|&c| !self.ended[c] && !self.blocked[c])
    }

    /// The next message of a readable queue: round-robin among those with one waiting, else
    /// the first to arrive before `deadline`.
    fn receive(&mut self, deadline: Option<Instant>) -> Received {
        let n = self.queues.len();
        for k in 0..n {
            let q = (self.cursor + k) % n;
            if !self.readable(q) {
                continue;
            }
            match self.queues[q].try_recv() {
                Ok(m) => {
                    self.cursor = (q + 1) % n;
                    return Received::Message(m);
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Received::Gone,
            }
        }
        let readable: Vec<usize> = (0..n).filter(|&q| self.readable(q)).collect();
        if readable.is_empty() {
            // Every open channel is blocked: alignment completes as the last barrier is
            // handled, so this is not reached; wait out the deadline rather than spin.
            if let Some(d) = deadline {
                std::thread::sleep(d.saturating_duration_since(Instant::now()));
            }
            return Received::Timeout;
        }
        let mut select = Select::new();
        for &q in &readable {
            select.recv(&self.queues[q]);
        }
        let selected = match deadline {
            Some(d) => match select.select_deadline(d) {
                Ok(op) => op,
                Err(_) => return Received::Timeout,
            },
            None => select.select(),
        };
        let q = readable[selected.index()];
        match selected.recv(&self.queues[q]) {
            Ok(m) => {
                self.cursor = (q + 1) % n;
                Received::Message(m)
            }
            Err(_) => Received::Gone,
        }
    }

    fn handle(&mut self, message: Message) {
        let c = message.channel as usize;
        let now = self.now_ms();
        match message.payload {
            Payload::Batch(batch, born) => {
                self.watermarks.activity(c, now);
                self.out.push_back(GateEvent::Batch {
                    port: message.port,
                    batch,
                    born,
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
        self.out.push_back(GateEvent::Barrier(n));
        // What was held back comes first, before anything new.
        self.replay.append(&mut self.held);
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
            Instant::now(),
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

    /// Feeds `messages` one at a time, in this order, taking every event the gate has after
    /// each (a blocked channel's message stays in its queue); then closes every channel.
    fn run(channels: usize, messages: Vec<(u32, Payload)>) -> Vec<String> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..channels).map(|_| unbounded()).unzip();
        let queue_of: Vec<usize> = (0..channels).collect();
        let mut gate = InputGate::new(rxs, &queue_of);
        let mut out = Vec::new();
        for (channel, payload) in messages {
            txs[channel as usize]
                .send(Message {
                    channel,
                    port: 0,
                    payload,
                })
                .unwrap();
            loop {
                match describe(gate.next(Some(Instant::now()))) {
                    e if e == "timeout" => break,
                    e if e == "end" || e == "stop" => {
                        out.push(e);
                        return out;
                    }
                    e => out.push(e),
                }
            }
        }
        drop(txs);
        loop {
            let e = describe(gate.next(None));
            out.push(e.clone());
            if e == "end" || e == "stop" {
                return out;
            }
        }
    }

    #[test]
    fn a_blocked_channel_is_not_read_so_its_sender_feels_backpressure() {
        let (a_tx, a_rx) = crossbeam_channel::bounded(2);
        let (b_tx, b_rx) = crossbeam_channel::bounded(2);
        let mut gate = InputGate::new(vec![a_rx, b_rx], &[0, 1]);
        let send = |tx: &crossbeam_channel::Sender<Message>, channel, payload| {
            tx.try_send(Message {
                channel,
                port: 0,
                payload,
            })
            .is_ok()
        };
        assert!(send(&a_tx, 0, Payload::Barrier(1)));
        assert_eq!(describe(gate.next(Some(Instant::now()))), "timeout");
        // Channel 0 is aligning: it fills and then refuses, however much it has to send.
        let mut accepted = 0;
        for v in 0..1000 {
            if send(&a_tx, 0, batch(v)) {
                accepted += 1;
            }
            assert_eq!(describe(gate.next(Some(Instant::now()))), "timeout");
        }
        assert_eq!(accepted, 2, "only channel_capacity messages wait");
        assert!(send(&b_tx, 1, batch(100)));
        assert!(send(&b_tx, 1, Payload::Barrier(1)));
        let got: Vec<String> = (0..4).map(|_| describe(gate.next(None))).collect();
        assert_eq!(got, ["b100", "B1", "b0", "b1"]);
    }

    #[test]
    fn channels_of_one_upstream_share_a_queue_and_keep_its_order() {
        let (one, one_rx) = unbounded();
        let (other, other_rx) = unbounded();
        // Channels 0 and 1 (two edges) come from one upstream instance, channel 2 from another.
        let mut gate = InputGate::new(vec![one_rx, other_rx], &[0, 0, 1]);
        let send = |tx: &crossbeam_channel::Sender<Message>, channel: u32, payload| {
            tx.send(Message {
                channel,
                port: channel,
                payload,
            })
            .unwrap()
        };
        send(&one, 1, batch(1));
        send(&one, 0, batch(2));
        send(&one, 1, batch(3));
        send(&one, 0, Payload::Barrier(1));
        send(&one, 1, Payload::Barrier(1));
        send(&one, 0, batch(4));
        send(&other, 2, batch(10));
        send(&other, 2, Payload::Barrier(1));
        send(&other, 2, batch(11));
        for c in 0..2 {
            send(&one, c, Payload::End(true));
        }
        send(&other, 2, Payload::End(true));
        let mut got = Vec::new();
        loop {
            let e = describe(gate.next(None));
            got.push(e.clone());
            if e == "end" {
                break;
            }
        }
        // The first upstream's order is kept across its two channels; the barrier comes once.
        let firsts: Vec<&str> = got
            .iter()
            .map(String::as_str)
            .filter(|e| ["b1", "b2", "b3", "B1", "b4"].contains(e))
            .collect();
        assert_eq!(firsts, ["b1", "b2", "b3", "B1", "b4"], "{got:?}");
        let barrier = got.iter().position(|e| e == "B1").unwrap();
        assert!(got[..barrier].contains(&"b10".to_owned()), "{got:?}");
        assert!(got[barrier..].contains(&"b11".to_owned()), "{got:?}");
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
