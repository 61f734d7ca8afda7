//! What travels on the edges, and how a node's output reaches the nodes downstream.
//!
//! Every edge is a set of *channels*: one per (upstream instance, downstream instance). A
//! downstream task numbers its incoming channels so that it can tell them apart: to align
//! barriers, to combine watermarks, and to know when all of its input has ended. Each channel is
//! a bounded queue of its own (`channel_capacity` messages), so that a task aligning a barrier
//! can stop reading one channel and let its sender wait; each message carries its channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow_array::RecordBatch;
use crossbeam_channel::Sender;

use super::split;
use crate::Error;

/// What a message carries.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// Rows, on an input port of the receiver, and when their source handed them on (see
    /// [`super::latency`]).
    Batch(RecordBatch, Instant),
    /// No event at or before this time will come on this channel any more.
    Watermark(i64),
    /// The channel has nothing to say for a while: it must not hold watermarks back.
    Idle,
    /// The channel carries no event time at all.
    Untimed,
    /// Checkpoint barrier: everything before it belongs to checkpoint *n*, everything after to
    /// the next.
    Barrier(u64),
    /// The channel is finished: `true` when its input is complete (a bounded input ended),
    /// `false` when the run was asked to stop (the input goes on in the next run).
    End(bool),
}

/// A message on a channel into a task.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub channel: u32,
    pub port: u32,
    pub payload: Payload,
}

/// One downstream instance, and the channel number it knows this sender by.
#[derive(Debug)]
pub(crate) struct Target {
    pub tx: Sender<Message>,
    pub channel: u32,
}

/// One edge leaving a node's output port.
#[derive(Debug)]
pub(crate) struct Route {
    pub from_port: u32,
    pub to: String,
    pub to_port: u32,
    /// Partition by this column (keyed agent with several instances).
    pub key: Option<String>,
    /// Round-robin position (several instances, no key).
    pub next: AtomicUsize,
    pub targets: Vec<Target>,
}

/// Sends a node's output down its edges.
#[derive(Debug)]
pub(crate) struct Router {
    pub node: String,
    pub routes: Vec<Route>,
}

/// Why a message could not be routed.
pub(crate) enum RouteError {
    /// The receiving task is gone: it failed, and that failure is the one reported.
    Closed,
    /// The batch cannot be partitioned (no key column, unhashable key).
    Partition(Error),
}

impl Route {
    fn deliver(&self, target: &Target, payload: Payload) -> Result<(), RouteError> {
        target
            .tx
            .send(Message {
                channel: target.channel,
                port: self.to_port,
                payload,
            })
            .map_err(|_| RouteError::Closed)
    }
}

impl Router {
    /// Sends `batch`, emitted on output `port` and born at `born`, down every edge leaving that
    /// port: to the one instance its key belongs to, or round-robin.
    pub fn send(&self, port: u32, batch: &RecordBatch, born: Instant) -> Result<(), RouteError> {
        for route in self.routes.iter().filter(|r| r.from_port == port) {
            match (&route.key, route.targets.len()) {
                (_, 1) => route.deliver(&route.targets[0], Payload::Batch(batch.clone(), born))?,
                (Some(key), n) => {
                    let parts = split(batch, key, n).map_err(|m| {
                        RouteError::Partition(Error::Data(format!(
                            "the input of keyed agent `{}` from `{}` {m}",
                            route.to, self.node
                        )))
                    })?;
                    for (target, part) in route.targets.iter().zip(parts) {
                        if let Some(part) = part {
                            route.deliver(target, Payload::Batch(part, born))?;
                        }
                    }
                }
                (None, n) => {
                    let i = route.next.fetch_add(1, Ordering::Relaxed) % n;
                    route.deliver(&route.targets[i], Payload::Batch(batch.clone(), born))?;
                }
            }
        }
        Ok(())
    }

    /// Sends `payload` (a watermark, a barrier, the end) on every channel this node feeds.
    pub fn broadcast(&self, payload: &Payload) -> Result<(), RouteError> {
        for route in &self.routes {
            for target in &route.targets {
                route.deliver(target, payload.clone())?;
            }
        }
        Ok(())
    }
}
