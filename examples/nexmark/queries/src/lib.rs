//! The Nexmark queries that need code beyond the built-in operators, as one agent whose
//! `config = { query = "…" }` picks the step:
//!
//! - `q4-winners` (input 0: bids, input 1: auctions, straight from the source): per auction, the
//!   highest bid made between its opening and its expiry; when the watermark passes the expiry,
//!   emits `category`, `auction`, `final` (auctions without a bid emit nothing).
//! - `q4-average` (keyed by `category`): the running average of the winning prices per
//!   category; emits `category`, `average`, `auctions` after each winner.
//! - `q5-hottest` (input: the `builtin:window` counts of bids per auction over sliding windows):
//!   per window, the auctions with the most bids, when the watermark passes the window.
//! - `q7-highest` (input: bids): per 10-second tumbling window, the bids with the highest price,
//!   when the watermark passes the window.
//!
//! State is host-managed keyed state and windows close on event-time timers, so every step is
//! checkpointed and restored like any agent.

use std::sync::Arc;

use sabot_sdk::arrow::array::{ArrayRef, Float64Array, Int64Array, TimestampMillisecondArray};
use sabot_sdk::state::{Postcard, ValueState};
use sabot_sdk::timers::{self, Timer};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    query: String,
    #[serde(default = "default_window")]
    window_ms: i64,
}

fn default_window() -> i64 {
    10_000
}

#[derive(Clone, Copy, PartialEq)]
enum Query {
    Q4Winners,
    Q4Average,
    Q5Hottest,
    Q7Highest,
}

/// An open auction (q4).
#[derive(Serialize, Deserialize, Default)]
struct Open {
    category: i64,
    opened: i64,
    expires: i64,
    best: Option<i64>,
}

/// The best so far of a window: the highest value and what reached it.
#[derive(Serialize, Deserialize, Default)]
struct Best {
    value: i64,
    /// q5: auctions; q7: (auction, bidder, date_time).
    rows: Vec<(i64, i64, i64)>,
}

/// A Nexmark query step.
pub struct Nexmark {
    query: Query,
    window_ms: i64,
    // Postcard, not the default JSON: no agent in another language takes this state over, and
    // it is the compact encoding.
    open: ValueState<Open, Postcard>,
    best: ValueState<Best, Postcard>,
    averages: ValueState<(i64, i64), Postcard>,
}

fn ints<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a [i64], AgentError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| AgentError::invalid_input(format!("nexmark: no column `{name}`")))?;
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return Ok(a.values());
    }
    if let Some(a) = col.as_any().downcast_ref::<TimestampMillisecondArray>() {
        return Ok(a.values());
    }
    Err(AgentError::invalid_input(format!(
        "nexmark: column `{name}` is {}, expected int64 or timestamp[ms]",
        col.data_type()
    )))
}

fn ts(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values))
}

impl Agent for Nexmark {
    fn init(config: Config) -> Result<Self, AgentError> {
        let s: Settings = config.parse()?;
        let query = match s.query.as_str() {
            "q4-winners" => Query::Q4Winners,
            "q4-average" => Query::Q4Average,
            "q5-hottest" => Query::Q5Hottest,
            "q7-highest" => Query::Q7Highest,
            other => {
                return Err(AgentError::invalid_config(format!(
                    "unknown query `{other}`: expected q4-winners, q4-average, q5-hottest or q7-highest"
                )));
            }
        };
        if s.window_ms <= 0 {
            return Err(AgentError::invalid_config("window_ms must be positive"));
        }
        Ok(Nexmark {
            query,
            window_ms: s.window_ms,
            open: ValueState::with_codec("open", Postcard),
            best: ValueState::with_codec("best", Postcard),
            averages: ValueState::with_codec("average", Postcard),
        })
    }

    fn process(
        &mut self,
        port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        match (self.query, port) {
            (Query::Q4Winners, 1) => {
                let (ids, opened, expires, category) = (
                    ints(&batch, "id")?,
                    ints(&batch, "date_time")?,
                    ints(&batch, "expires")?,
                    ints(&batch, "category")?,
                );
                let entries: Vec<(i64, Open)> = (0..batch.num_rows())
                    .map(|i| {
                        timers::register_event_time(&ids[i], expires[i]);
                        (
                            ids[i],
                            Open {
                                category: category[i],
                                opened: opened[i],
                                expires: expires[i],
                                best: None,
                            },
                        )
                    })
                    .collect();
                self.open.set_many(&entries)
            }
            (Query::Q4Winners, _) => {
                let (auction, price, at) = (
                    ints(&batch, "auction")?,
                    ints(&batch, "price")?,
                    ints(&batch, "date_time")?,
                );
                let mut keys: Vec<i64> = auction.to_vec();
                keys.sort_unstable();
                keys.dedup();
                let mut open = self.open.get_many(&keys)?;
                for i in 0..batch.num_rows() {
                    let k = keys.binary_search(&auction[i]).expect("a key of the batch");
                    if let Some(o) = &mut open[k]
                        && o.opened <= at[i]
                        && at[i] <= o.expires
                    {
                        o.best = Some(o.best.map_or(price[i], |b| b.max(price[i])));
                    }
                }
                let writes: Vec<(i64, Open)> = keys
                    .into_iter()
                    .zip(open)
                    .filter_map(|(k, o)| o.map(|o| (k, o)))
                    .collect();
                self.open.set_many(&writes)
            }
            (Query::Q4Average, _) => {
                let (category, price) = (ints(&batch, "category")?, ints(&batch, "final")?);
                let mut keys: Vec<i64> = category.to_vec();
                keys.sort_unstable();
                keys.dedup();
                let mut sums: Vec<(i64, i64)> = self
                    .averages
                    .get_many(&keys)?
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect();
                let (mut cats, mut avgs, mut counts) = (Vec::new(), Vec::new(), Vec::new());
                for i in 0..batch.num_rows() {
                    let k = keys
                        .binary_search(&category[i])
                        .expect("a key of the batch");
                    sums[k].0 += price[i];
                    sums[k].1 += 1;
                    cats.push(category[i]);
                    avgs.push(sums[k].0 as f64 / sums[k].1 as f64);
                    counts.push(sums[k].1);
                }
                let writes: Vec<(i64, (i64, i64))> = keys.into_iter().zip(sums).collect();
                self.averages.set_many(&writes)?;
                out.emit(batch_of(vec![
                    ("category", Arc::new(Int64Array::from(cats)) as ArrayRef),
                    ("average", Arc::new(Float64Array::from(avgs))),
                    ("auctions", Arc::new(Int64Array::from(counts))),
                ])?);
                Ok(())
            }
            (Query::Q5Hottest, _) => {
                let (auction, end, n) = (
                    ints(&batch, "auction")?,
                    ints(&batch, "window_end")?,
                    ints(&batch, "n")?,
                );
                self.best_of(end, |i| (n[i], (auction[i], 0, 0)), batch.num_rows())
            }
            (Query::Q7Highest, _) => {
                let (auction, bidder, price, at) = (
                    ints(&batch, "auction")?,
                    ints(&batch, "bidder")?,
                    ints(&batch, "price")?,
                    ints(&batch, "date_time")?,
                );
                let size = self.window_ms;
                let ends: Vec<i64> = at.iter().map(|t| (t.div_euclid(size) + 1) * size).collect();
                self.best_of(
                    &ends,
                    |i| (price[i], (auction[i], bidder[i], at[i])),
                    batch.num_rows(),
                )
            }
        }
    }

    fn on_timers(&mut self, fired: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        let keys: Vec<i64> = fired.iter().filter_map(Timer::key_i64).collect();
        match self.query {
            Query::Q4Winners => {
                let open = self.open.get_many(&keys)?;
                let (mut cats, mut ids, mut finals) = (Vec::new(), Vec::new(), Vec::new());
                for (id, o) in keys.iter().zip(open) {
                    if let Some(Open {
                        category,
                        best: Some(best),
                        ..
                    }) = o
                    {
                        cats.push(category);
                        ids.push(*id);
                        finals.push(best);
                    }
                    self.open.clear(id)?;
                }
                if !ids.is_empty() {
                    out.emit(batch_of(vec![
                        ("category", Arc::new(Int64Array::from(cats)) as ArrayRef),
                        ("auction", Arc::new(Int64Array::from(ids))),
                        ("final", Arc::new(Int64Array::from(finals))),
                    ])?);
                }
            }
            Query::Q5Hottest | Query::Q7Highest => {
                let best = self.best.get_many(&keys)?;
                let (mut ends, mut a, mut b, mut c, mut v) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (end, best) in keys.iter().zip(best) {
                    let Some(best) = best else { continue };
                    for (x, y, z) in best.rows {
                        ends.push(*end);
                        a.push(x);
                        b.push(y);
                        c.push(z);
                        v.push(best.value);
                    }
                    self.best.clear(end)?;
                }
                if ends.is_empty() {
                    return Ok(());
                }
                let columns: Vec<(&str, ArrayRef)> = if self.query == Query::Q5Hottest {
                    vec![
                        ("window_end", ts(ends)),
                        ("auction", Arc::new(Int64Array::from(a))),
                        ("bids", Arc::new(Int64Array::from(v))),
                    ]
                } else {
                    vec![
                        ("window_end", ts(ends)),
                        ("auction", Arc::new(Int64Array::from(a))),
                        ("bidder", Arc::new(Int64Array::from(b))),
                        ("price", Arc::new(Int64Array::from(v))),
                        ("date_time", ts(c)),
                    ]
                };
                out.emit(batch_of(columns)?);
            }
            Query::Q4Average => {}
        }
        Ok(())
    }
}

fn batch_of(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, AgentError> {
    Ok(RecordBatch::try_from_iter(columns)?)
}

impl Nexmark {
    /// Keeps, per window end, the largest value and the rows that reached it; closes the window
    /// on an event-time timer at its last millisecond.
    fn best_of(
        &mut self,
        ends: &[i64],
        row: impl Fn(usize) -> (i64, (i64, i64, i64)),
        rows: usize,
    ) -> Result<(), AgentError> {
        let mut keys: Vec<i64> = ends.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut best: Vec<Option<Best>> = self.best.get_many(&keys)?;
        for (i, end) in ends.iter().enumerate().take(rows) {
            let k = keys.binary_search(end).expect("a key of the batch");
            let (value, r) = row(i);
            let b = best[k].get_or_insert_with(|| Best {
                value,
                rows: Vec::new(),
            });
            if value > b.value {
                b.value = value;
                b.rows.clear();
            }
            if value == b.value {
                b.rows.push(r);
            }
        }
        for end in &keys {
            timers::register_event_time(end, end - 1);
        }
        let writes: Vec<(i64, Best)> = keys
            .into_iter()
            .zip(best)
            .filter_map(|(k, b)| b.map(|b| (k, b)))
            .collect();
        self.best.set_many(&writes)
    }
}

sabot_sdk::export_agent!(Nexmark);
