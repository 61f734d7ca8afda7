//! The Nexmark source: the auction-site event model of the Nexmark benchmark — people, auctions
//! and bids, 1 : 3 : 46 — from the `nexmark` crate's generator, on three output ports.
//!
//! | port | events | columns |
//! |---|---|---|
//! | 0 | people | `id`, `name`, `email_address`, `credit_card`, `city`, `state`, `date_time`, `extra` |
//! | 1 | auctions | `id`, `item_name`, `description`, `initial_bid`, `reserve`, `date_time`, `expires`, `seller`, `category`, `extra` |
//! | 2 | bids | `auction`, `bidder`, `price`, `channel`, `url`, `date_time`, `extra` |
//!
//! `date_time` and `expires` are timestamps (ms). Events are produced in chunks of `batch_size`;
//! each chunk's people come out before its auctions, and its auctions before its bids, so a
//! person is always sent before the auctions and bids that name it. The sequence is a pure
//! function of the settings: a checkpoint records the chunk and how much of it was sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::{ConnectorError, Source};

mod columns;

/// `type = "nexmark"` in a `[sources.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkSpec {
    /// How many events (of all kinds) to produce; endless when absent.
    pub count: Option<u64>,
    /// Events per second of wall time; `0` (the default) produces as fast as the pipeline consumes.
    #[serde(default)]
    pub rate: f64,
    /// Event time of the first event, in milliseconds since the Unix epoch (default
    /// 2026-01-01T00:00:00Z): fixed, so runs produce the same events.
    #[serde(default = "default_base_time")]
    pub base_time_ms: u64,
    /// Event time, e.g. `event_time = { column = "date_time" }`.
    pub event_time: Option<crate::time::EventTimeSpec>,
}

fn default_base_time() -> u64 {
    1_767_225_600_000
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The schema of port `port` (0 people, 1 auctions, 2 bids).
pub fn schema(port: u32) -> SchemaRef {
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let t = |n: &str| Field::new(n, ts(), false);
    Arc::new(Schema::new(match port {
        0 => vec![
            i("id"),
            s("name"),
            s("email_address"),
            s("credit_card"),
            s("city"),
            s("state"),
            t("date_time"),
            s("extra"),
        ],
        1 => vec![
            i("id"),
            s("item_name"),
            s("description"),
            i("initial_bid"),
            i("reserve"),
            t("date_time"),
            t("expires"),
            i("seller"),
            i("category"),
            s("extra"),
        ],
        _ => vec![
            i("auction"),
            i("bidder"),
            i("price"),
            s("channel"),
            s("url"),
            t("date_time"),
            s("extra"),
        ],
    }))
}

impl NexmarkSpec {
    /// Checks the settings; the message names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        super::check_rate(self.rate)
    }

    /// A source producing chunks of `batch_size` events.
    pub fn open(&self, batch_size: usize) -> NexmarkSource {
        NexmarkSource {
            spec: self.clone(),
            batch_size,
            chunk_start: 0,
            sent_ports: 0,
            pending: VecDeque::new(),
            started: None,
            resumed_at: 0,
            used: [true; 3],
        }
    }
}

/// A running Nexmark generator.
#[derive(Debug)]
pub struct NexmarkSource {
    spec: NexmarkSpec,
    batch_size: usize,
    /// The offset of the first event of the current chunk.
    chunk_start: u64,
    /// How many of the current chunk's batches were returned.
    sent_ports: usize,
    pending: VecDeque<(u32, RecordBatch)>,
    started: Option<Instant>,
    resumed_at: u64,
    /// The ports some edge takes.
    used: [bool; 3],
}

/// The batches of one chunk: (port, batch) for each kind present, people first. Building
/// events (their strings, mostly) is the costly part, so a large chunk is generated in two
/// halves on two threads, each kind's halves then joined into one batch.
fn chunk(
    base_time: u64,
    start: u64,
    events: usize,
    used: [bool; 3],
) -> Result<Vec<(u32, RecordBatch)>, ConnectorError> {
    if events < 2_048 || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return Ok(columns::batches(base_time, start, events, used));
    }
    let half = events / 2;
    let (first, second) = std::thread::scope(|scope| {
        let second =
            scope.spawn(|| columns::batches(base_time, start + half as u64, events - half, used));
        let first = columns::batches(base_time, start, half, used);
        (
            first,
            second.join().expect("the generator thread does not panic"),
        )
    });
    let mut out = Vec::new();
    for port in 0..3 {
        let halves: Vec<&RecordBatch> = first
            .iter()
            .chain(&second)
            .filter(|(p, _)| *p == port)
            .map(|(_, b)| b)
            .collect();
        if halves.is_empty() {
            continue;
        }
        let joined = arrow_select::concat::concat_batches(&schema(port), halves).map_err(|e| {
            ConnectorError::Internal(format!("nexmark could not join its two halves: {e}"))
        })?;
        out.push((port, joined));
    }
    Ok(out)
}

impl NexmarkSource {
    fn chunk_len(&self) -> usize {
        let left = self
            .spec
            .count
            .map_or(u64::MAX, |c| c.saturating_sub(self.chunk_start));
        left.min(self.batch_size as u64) as usize
    }

    /// Whether the next chunk is due at the configured rate (waiting a little if not).
    fn due(&mut self) -> bool {
        if self.spec.rate <= 0.0 {
            return true;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let next = started
            + Duration::from_secs_f64((self.chunk_start - self.resumed_at) as f64 / self.spec.rate);
        let now = Instant::now();
        if next <= now {
            return true;
        }
        std::thread::sleep((next - now).min(Duration::from_millis(20)));
        false
    }
}

impl Source for NexmarkSource {
    fn schema(&self) -> Option<SchemaRef> {
        Some(schema(2))
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        Ok(self.next_output()?.map(|(_, b)| b))
    }

    fn next_output(&mut self) -> Result<Option<(u32, RecordBatch)>, ConnectorError> {
        if let Some(next) = self.pending.pop_front() {
            self.sent_ports += 1;
            if self.pending.is_empty() {
                self.chunk_start += self.chunk_len() as u64;
                self.sent_ports = 0;
            }
            return Ok(Some(next));
        }
        let events = self.chunk_len();
        if events == 0 {
            return Ok(None);
        }
        if !self.due() {
            return Ok(Some((0, RecordBatch::new_empty(schema(0)))));
        }
        self.pending = chunk(self.spec.base_time_ms, self.chunk_start, events, self.used)?.into();
        self.pending
            .drain(..self.sent_ports.min(self.pending.len()));
        self.next_output()
    }

    fn connect(&mut self, ports: &[u32]) {
        self.used = [0, 1, 2].map(|p| ports.contains(&p));
    }

    fn at_boundary(&self) -> bool {
        self.pending.is_empty()
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "chunk": self.chunk_start, "sent": self.sent_ports, "batch_size": self.batch_size })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        let batch_size = super::position_u64(position, "batch_size", "nexmark")?;
        if batch_size != self.batch_size as u64 {
            return Err(ConnectorError::Internal(format!(
                "nexmark: the checkpoint was taken with batch_size {batch_size}, this run has {}; chunks must be the same to resume",
                self.batch_size
            )));
        }
        self.chunk_start = super::position_u64(position, "chunk", "nexmark")?;
        self.sent_ports = super::position_u64(position, "sent", "nexmark")? as usize;
        self.resumed_at = self.chunk_start;
        self.started = None;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::ArrayRef;
    use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
    use nexmark::EventGenerator;
    use nexmark::config::NexmarkConfig;
    use nexmark::event::{Event, EventType};

    /// How many events of kind `port` (0 people, 1 auctions, 2 bids) come before the event at global
    /// offset `x`: the kinds repeat every 50 events, 1 person, then 3 auctions, then 46 bids.
    fn before(x: u64, port: usize) -> u64 {
        const PER: [u64; 3] = [1, 3, 46];
        const FIRST: [u64; 3] = [0, 1, 4];
        (x / 50) * PER[port] + (x % 50).saturating_sub(FIRST[port]).min(PER[port])
    }

    /// The crate's events of global offsets `[start, start + events)` of the kinds `used` asks for.
    fn generate_range(base_time: u64, start: u64, events: usize, used: [bool; 3]) -> Vec<Event> {
        let config = NexmarkConfig {
            base_time,
            ..NexmarkConfig::default()
        };
        if used == [true; 3] {
            return EventGenerator::new(config)
                .with_offset(start)
                .take(events)
                .collect();
        }
        let kinds = [EventType::Person, EventType::Auction, EventType::Bid];
        let mut out = Vec::new();
        for port in (0..3).filter(|p| used[*p]) {
            let (from, to) = (before(start, port), before(start + events as u64, port));
            out.extend(
                EventGenerator::new(config.clone())
                    .with_type_filter(kinds[port])
                    .with_offset(from)
                    .take((to - from) as usize),
            );
        }
        out
    }

    /// The batches the `nexmark` crate's own events make: the reference [`columns`] must equal.
    fn reference_chunk(
        base_time: u64,
        start: u64,
        events: usize,
        used: [bool; 3],
    ) -> Result<Vec<(u32, RecordBatch)>, ConnectorError> {
        let generator = generate_range(base_time, start, events, used);
        let mut people = (
            Int64Builder::new(),
            [(); 5].map(|_| StringBuilder::new()),
            TimestampMillisecondBuilder::new(),
            StringBuilder::new(),
        );
        let mut auctions = (
            Int64Builder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            Int64Builder::new(),
            Int64Builder::new(),
            TimestampMillisecondBuilder::new(),
            TimestampMillisecondBuilder::new(),
            Int64Builder::new(),
            Int64Builder::new(),
            StringBuilder::new(),
        );
        let mut bids = (
            Int64Builder::new(),
            Int64Builder::new(),
            Int64Builder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            TimestampMillisecondBuilder::new(),
            StringBuilder::new(),
        );
        let (mut np, mut na, mut nb) = (0, 0, 0);
        for event in generator {
            match event {
                Event::Person(p) => {
                    np += 1;
                    people.0.append_value(p.id as i64);
                    for (b, v) in people.1.iter_mut().zip([
                        &p.name,
                        &p.email_address,
                        &p.credit_card,
                        &p.city,
                        &p.state,
                    ]) {
                        b.append_value(v);
                    }
                    people.2.append_value(p.date_time as i64);
                    people.3.append_value(&p.extra);
                }
                Event::Auction(a) => {
                    na += 1;
                    auctions.0.append_value(a.id as i64);
                    auctions.1.append_value(&a.item_name);
                    auctions.2.append_value(&a.description);
                    auctions.3.append_value(a.initial_bid as i64);
                    auctions.4.append_value(a.reserve as i64);
                    auctions.5.append_value(a.date_time as i64);
                    auctions.6.append_value(a.expires as i64);
                    auctions.7.append_value(a.seller as i64);
                    auctions.8.append_value(a.category as i64);
                    auctions.9.append_value(&a.extra);
                }
                Event::Bid(b) => {
                    nb += 1;
                    bids.0.append_value(b.auction as i64);
                    bids.1.append_value(b.bidder as i64);
                    bids.2.append_value(b.price as i64);
                    bids.3.append_value(&b.channel);
                    bids.4.append_value(&b.url);
                    bids.5.append_value(b.date_time as i64);
                    bids.6.append_value(&b.extra);
                }
            }
        }
        let build = |port: u32, columns: Vec<ArrayRef>| {
            RecordBatch::try_new(schema(port), columns).map_err(|e| {
                ConnectorError::Internal(format!("nexmark built an invalid batch: {e}"))
            })
        };
        let mut out = Vec::new();
        if np > 0 {
            let mut cols: Vec<ArrayRef> = vec![Arc::new(people.0.finish())];
            cols.extend(
                people
                    .1
                    .iter_mut()
                    .map(|b| Arc::new(b.finish()) as ArrayRef),
            );
            cols.push(Arc::new(people.2.finish()));
            cols.push(Arc::new(people.3.finish()));
            out.push((0, build(0, cols)?));
        }
        if na > 0 {
            let a = &mut auctions;
            out.push((
                1,
                build(
                    1,
                    vec![
                        Arc::new(a.0.finish()),
                        Arc::new(a.1.finish()),
                        Arc::new(a.2.finish()),
                        Arc::new(a.3.finish()),
                        Arc::new(a.4.finish()),
                        Arc::new(a.5.finish()),
                        Arc::new(a.6.finish()),
                        Arc::new(a.7.finish()),
                        Arc::new(a.8.finish()),
                        Arc::new(a.9.finish()),
                    ],
                )?,
            ));
        }
        if nb > 0 {
            let b = &mut bids;
            out.push((
                2,
                build(
                    2,
                    vec![
                        Arc::new(b.0.finish()),
                        Arc::new(b.1.finish()),
                        Arc::new(b.2.finish()),
                        Arc::new(b.3.finish()),
                        Arc::new(b.4.finish()),
                        Arc::new(b.5.finish()),
                        Arc::new(b.6.finish()),
                    ],
                )?,
            ));
        }
        Ok(out)
    }

    fn drain(mut s: NexmarkSource) -> Vec<(u32, RecordBatch)> {
        std::iter::from_fn(|| s.next_output().unwrap())
            .filter(|(_, b)| b.num_rows() > 0)
            .collect()
    }

    #[test]
    fn events_come_in_the_nexmark_proportions_people_first() {
        let spec: NexmarkSpec = toml::from_str("count = 5000").unwrap();
        let out = drain(spec.open(1000));
        let rows = |port| {
            out.iter()
                .filter(|(p, _)| *p == port)
                .map(|(_, b)| b.num_rows())
                .sum::<usize>()
        };
        assert_eq!(rows(0) + rows(1) + rows(2), 5000);
        assert_eq!((rows(0), rows(1), rows(2)), (100, 300, 4600));
        assert_eq!(out[0].0, 0, "each chunk starts with its people");
    }

    #[test]
    fn the_columnar_generator_gives_the_crates_million_events_value_for_value() {
        // A million events from offset 0 in chunks of the default batch size, every kind.
        let base = default_base_time();
        let mut start = 0;
        while start < 1_000_000 {
            let n = 8_192.min(1_000_000 - start as usize);
            assert_eq!(
                chunk(base, start, n, [true; 3]).unwrap(),
                reference_chunk(base, start, n, [true; 3]).unwrap(),
                "the chunk at offset {start} differs from the crate's events"
            );
            start += n as u64;
        }
    }

    #[test]
    fn the_columnar_generator_gives_the_crates_events_of_the_kinds_asked_for_anywhere() {
        // Offsets far into the sequence (event times past f32's exact integers), odd chunk
        // boundaries, subsets of the kinds, and another base time.
        for (base, start, n) in [
            (7, 12_345, 10_000),
            (default_base_time(), 123_456_789, 3_001),
            (default_base_time(), 40_000_049, 50),
        ] {
            for used in [
                [true; 3],
                [false, true, true],
                [true, false, false],
                [false, false, true],
            ] {
                assert_eq!(
                    chunk(base, start, n, used).unwrap(),
                    reference_chunk(base, start, n, used).unwrap(),
                    "{used:?} at offset {start}"
                );
            }
        }
    }

    #[test]
    fn a_chunk_generated_on_two_threads_is_one_batch_per_kind_equal_to_one_threads() {
        for used in [[true; 3], [false, true, true], [true, false, false]] {
            let one = columns::batches(7, 12_345, 10_000, used);
            assert_eq!(chunk(7, 12_345, 10_000, used).unwrap(), one, "{used:?}");
            assert_eq!(one.len(), used.iter().filter(|u| **u).count());
        }
    }

    #[test]
    fn kinds_no_edge_takes_are_not_generated_and_the_rest_are_the_same_events() {
        let spec: NexmarkSpec = toml::from_str("count = 3000").unwrap();
        let all = drain(spec.open(700));
        let mut only = spec.open(700);
        only.connect(&[0, 2]);
        let some = drain(only);
        let expected: Vec<_> = all.iter().filter(|(p, _)| *p != 1).cloned().collect();
        assert_eq!(some, expected);
    }

    #[test]
    fn a_source_resumed_mid_chunk_continues_with_the_same_events() {
        let spec: NexmarkSpec = toml::from_str("count = 3000").unwrap();
        let all = drain(spec.open(1000));
        let mut first = spec.open(1000);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(first.next_output().unwrap().unwrap());
        }
        let mut resumed = spec.open(1000);
        resumed.seek(&first.position()).unwrap();
        seen.extend(drain(resumed));
        assert_eq!(seen, all);
    }
}
