//! A test agent whose behaviour is chosen by its config, so one component covers every way an
//! agent can go wrong. `{"mode": "..."}`:
//!
//! - `pass` (default): emits each batch unchanged;
//! - `error`: returns an `invalid-input` error naming row 1;
//! - `panic`: panics with a recognisable message;
//! - `trap-after`: passes `count` batches, then panics (for re-instantiation tests);
//! - `sleep`: sleeps `count` ms on each batch, then passes it on (a slow agent);
//! - `loop`: spins forever;
//! - `bomb`: allocates until memory runs out;
//! - `huge-output`: emits one batch of `bytes` bytes;
//! - `bad-ipc`: returns bytes that are not Arrow IPC (bypassing the SDK's encoder);
//! - `bad-config`: refuses its config;
//! - `log`: logs a line and bumps a counter for each batch, then passes it on;
//! - `state`: keeps, per `card_id`, a count (`ValueState`), an amount sum (`ReducingState`), a
//!   mean (`AggregatingState`), distinct merchants (`MapState`) and amounts (`ListState`), and
//!   emits one row per card of the batch with the values after it;
//!   (with `count`: traps before touching state after `count` batches per instance);
//! - `tally`: counts the batches it handles in `ValueState<u64>` `tally` under the key `all`
//!   (the `plain` guest's `tally`, built against `0.1.0`), and passes each on;
//! - `count`: counts rows per `card_id` in a `ReducingState` (one batched read and write per
//!   batch) and passes the batch on;
//! - `steal`: reads state for keys 0..64 whatever its input, which other instances own;
//! - `split`: sends the rows whose utf8 `column` is `right` to port 1 and the others to port 0, in
//!   that order, without that column (one upstream for both inputs of a join, in a known order).
//!
//! Hostile modes, each aimed at one budget of the host (`limits`):
//!
//! - `long-error`: returns an `invalid-input` error whose message is `bytes` bytes long;
//! - `log-flood`: logs `count` error lines of `bytes` bytes per batch, and writes as many to
//!   stderr;
//! - `null-rows`: emits one batch of `count` rows of a null-typed column (a few bytes of IPC);
//! - `dict-bomb`: emits `count` rows of a dictionary column whose one value is `bytes` bytes;
//! - `stores`: reads `count` stores of new names per batch;
//! - `state-flood`: writes `count` new entries of `bytes` bytes per batch;
//! - `timer-flood`: registers `count` new event-time timers per batch, and passes the batch on.

// Natively (`cargo test --workspace`) nothing exports the agent, so its types look unused.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::sync::Arc;

use sabot_sdk::arrow::array::{ArrayRef, BinaryArray};
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Settings {
    mode: String,
    count: u64,
    bytes: usize,
    column: String,
}

struct Misbehave {
    settings: Settings,
    seen: u64,
}

impl Agent for Misbehave {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        if settings.mode == "bad-config" {
            return Err(AgentError::invalid_config(
                "mode `bad-config` always refuses its config (expected any other mode)",
            ));
        }
        if settings.mode == "bad-ipc" {
            BAD_IPC.with(|b| b.set(true));
        }
        Ok(Misbehave { settings, seen: 0 })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.seen += 1;
        match self.settings.mode.as_str() {
            "split" => {
                use sabot_sdk::arrow::array::{BooleanArray, StringArray};
                use sabot_sdk::arrow::compute::filter_record_batch;
                let name = self.settings.column.clone();
                let at = batch
                    .schema()
                    .index_of(&name)
                    .map_err(|_| AgentError::invalid_input(format!("split: no column `{name}`")))?;
                let side = batch
                    .column(at)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| AgentError::invalid_input("split: the column must be utf8"))?;
                let right: BooleanArray = side.iter().map(|v| Some(v == Some("right"))).collect();
                let left: BooleanArray = right.iter().map(|v| v.map(|b| !b)).collect();
                let mut rest = batch.clone();
                rest.remove_column(at);
                out.emit_to(1, filter_record_batch(&rest, &right)?);
                out.emit_to(0, filter_record_batch(&rest, &left)?);
            }
            "" | "pass" | "bad-ipc" => out.emit(batch),
            "sleep" => {
                // A slow agent: `count` ms a batch, within the call deadline.
                std::thread::sleep(std::time::Duration::from_millis(self.settings.count));
                out.emit(batch);
            }
            "error" => {
                return Err(AgentError::invalid_input("misbehave refuses this row").at_row(1));
            }
            "panic" => panic!("misbehave was told to panic"),
            "trap-after" => {
                if self.seen > self.settings.count {
                    panic!("misbehave traps after {} batches", self.settings.count);
                }
                out.emit(batch);
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge-output" => {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "blob",
                    DataType::Binary,
                    false,
                )]));
                let blob = vec![7u8; self.settings.bytes];
                let column: ArrayRef = Arc::new(BinaryArray::from(vec![blob.as_slice()]));
                out.emit(RecordBatch::try_new(schema, vec![column])?);
            }
            "log" => {
                sabot_sdk::log::info(&format!("misbehave saw {} rows", batch.num_rows()));
                sabot_sdk::metrics::counter_add("misbehave_rows", batch.num_rows() as u64);
                sabot_sdk::metrics::gauge_set("misbehave_last_batch_rows", batch.num_rows() as f64);
                sabot_sdk::metrics::histogram_record(
                    "misbehave_batch_rows",
                    batch.num_rows() as f64,
                );
                out.emit(batch);
            }
            "state" => {
                // With `count`, a fresh instance handles `count` batches, then traps on the next
                // before touching state: the host's state must outlive the instance.
                if self.settings.count > 0 && self.seen > self.settings.count {
                    panic!("misbehave traps after {} batches", self.settings.count);
                }
                out.emit(self.keep_state(&batch)?)
            }
            "tally" => {
                // The `plain` guest's `tally`, through `packed-state@0.1.1`: what one writes,
                // the other reads (a swap between them keeps the count).
                let tally: sabot_sdk::state::ValueState<u64> =
                    sabot_sdk::state::ValueState::new("tally");
                let n = tally.get(&"all")?.unwrap_or(0) + 1;
                tally.set(&"all", &n)?;
                out.emit(batch);
            }
            "count" => {
                // The batched path alone: one read and one write crossing per batch.
                use sabot_sdk::arrow::array::{Array, Int64Array};
                let cards = batch
                    .column_by_name("card_id")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .ok_or_else(|| {
                        AgentError::invalid_input("count mode needs an Int64 card_id")
                    })?;
                let seen: sabot_sdk::state::ReducingState<u64> =
                    sabot_sdk::state::ReducingState::new("seen", |a, b| a + b);
                seen.add_many(cards.values().iter().map(|c| (*c, 1u64)).collect())?;
                out.emit(batch);
            }
            "long-error" => {
                return Err(AgentError::invalid_input("x".repeat(self.settings.bytes)));
            }
            "log-flood" => {
                let line = "l".repeat(self.settings.bytes);
                for _ in 0..self.settings.count {
                    sabot_sdk::log::error(&line);
                    eprintln!("{line}");
                }
                out.emit(batch);
            }
            "null-rows" => {
                use sabot_sdk::arrow::array::NullArray;
                let schema = Arc::new(Schema::new(vec![Field::new("z", DataType::Null, true)]));
                let column: ArrayRef = Arc::new(NullArray::new(self.settings.count as usize));
                out.emit(RecordBatch::try_new(schema, vec![column])?);
            }
            "dict-bomb" => {
                use sabot_sdk::arrow::array::Array;
                use sabot_sdk::arrow::array::types::Int32Type;
                use sabot_sdk::arrow::array::{DictionaryArray, Int32Array, StringArray};
                let big = "d".repeat(self.settings.bytes);
                let values = StringArray::from(vec![big.as_str()]);
                let keys = Int32Array::from(vec![0; self.settings.count as usize]);
                let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values))?;
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "d",
                    dict.data_type().clone(),
                    false,
                )]));
                out.emit(RecordBatch::try_new(
                    schema,
                    vec![Arc::new(dict) as ArrayRef],
                )?);
            }
            "stores" => {
                for i in 0..self.settings.count {
                    let store = format!("s{}-{i}", self.seen);
                    sabot_sdk::state::ValueState::<u64>::new(&store).get_many(&[0i64])?;
                }
                out.emit(batch);
            }
            "state-flood" => {
                let value = vec![5u8; self.settings.bytes];
                let base = self.seen as i64 * self.settings.count as i64;
                // Raw: each value is exactly `bytes` bytes in the host.
                let entries: Vec<sabot_sdk::state::RawWrite<i64>> = (0..self.settings.count as i64)
                    .map(|i| (base + i, Vec::new(), Some(value.clone())))
                    .collect();
                sabot_sdk::state::RawState::new("flood").write_many(&entries)?;
                out.emit(batch);
            }
            "timer-flood" => {
                let base = self.seen as i64 * self.settings.count as i64;
                for i in 0..self.settings.count as i64 {
                    sabot_sdk::timers::register_event_time(&(base + i), i64::MAX - 1);
                }
                out.emit(batch);
            }
            "steal" => {
                let keys: Vec<i64> = (0..64).collect();
                sabot_sdk::state::ValueState::<u64>::new("seen").get_many(&keys)?;
                out.emit(batch);
            }
            other => {
                return Err(AgentError::invalid_config(format!(
                    "unknown mode {other:?} (expected pass, error, panic, trap-after, loop, bomb, \
                     huge-output, bad-ipc, bad-config or log)"
                )));
            }
        }
        Ok(())
    }
}

/// Sum and count, for a running mean.
struct Mean;

impl sabot_sdk::state::Aggregator<f64, (f64, u64), f64> for Mean {
    fn create(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, u64), input: f64) {
        acc.0 += input;
        acc.1 += 1;
    }
    fn result(&self, acc: &(f64, u64)) -> f64 {
        acc.0 / acc.1 as f64
    }
}

impl Misbehave {
    fn keep_state(&self, batch: &RecordBatch) -> Result<RecordBatch, AgentError> {
        use sabot_sdk::arrow::array::{Array, Float64Array, Int64Array, StringArray, UInt64Array};
        use sabot_sdk::state::{AggregatingState, ListState, MapState, ReducingState, ValueState};
        let cards = batch
            .column_by_name("card_id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| AgentError::invalid_input("state mode needs an Int64 card_id"))?;
        let amounts = batch
            .column_by_name("amount")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .ok_or_else(|| AgentError::invalid_input("state mode needs a Float64 amount"))?;
        let merchants = batch
            .column_by_name("merchant_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| AgentError::invalid_input("state mode needs a Utf8 merchant_id"))?;

        let seen: ReducingState<u64> = ReducingState::new("seen", |a, b| a + b);
        let sums: ReducingState<f64> = ReducingState::new("sum", |a, b| a + b);
        let means = AggregatingState::new("mean", Mean);
        let distinct: MapState<String, u64> = MapState::new("merchants");
        let amounts_list: ListState<f64> = ListState::new("amounts");
        let last_card: ValueState<i64> = ValueState::new("last");

        let counts = seen.add_many(cards.values().iter().map(|c| (*c, 1u64)).collect())?;
        let totals = sums.add_many(
            cards
                .values()
                .iter()
                .zip(amounts.values().iter())
                .map(|(c, a)| (*c, *a))
                .collect(),
        )?;
        let avgs = means.add_many(
            cards
                .values()
                .iter()
                .zip(amounts.values().iter())
                .map(|(c, a)| (*c, *a))
                .collect(),
        )?;
        amounts_list.add_many(
            cards
                .values()
                .iter()
                .zip(amounts.values().iter())
                .map(|(c, a)| (*c, *a))
                .collect(),
        )?;
        for i in 0..batch.num_rows() {
            let card = cards.value(i);
            let merchant = merchants.value(i).to_owned();
            let n = distinct.get(&card, &merchant)?.unwrap_or(0);
            distinct.put(&card, &merchant, &(n + 1))?;
        }
        last_card.set_many(&counts.iter().map(|(c, _)| (*c, *c)).collect::<Vec<_>>())?;

        let mut out_cards = Vec::new();
        let mut out_seen = Vec::new();
        let mut out_sum = Vec::new();
        let mut out_mean = Vec::new();
        let mut out_merchants = Vec::new();
        let mut out_list = Vec::new();
        for (((card, n), (_, sum)), (_, mean)) in counts.iter().zip(&totals).zip(&avgs) {
            if last_card.get(card)? != Some(*card) {
                return Err(AgentError::internal("ValueState lost a write"));
            }
            out_cards.push(*card);
            out_seen.push(*n);
            out_sum.push(*sum);
            out_mean.push(*mean);
            out_merchants.push(distinct.entries(card)?.len() as u64);
            out_list.push(amounts_list.get(card)?.len() as u64);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("card_id", DataType::Int64, false),
            Field::new("seen", DataType::UInt64, false),
            Field::new("sum", DataType::Float64, false),
            Field::new("mean", DataType::Float64, false),
            Field::new("merchants", DataType::UInt64, false),
            Field::new("amounts", DataType::UInt64, false),
        ]));
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(out_cards)),
                Arc::new(UInt64Array::from(out_seen)),
                Arc::new(Float64Array::from(out_sum)),
                Arc::new(Float64Array::from(out_mean)),
                Arc::new(UInt64Array::from(out_merchants)),
                Arc::new(UInt64Array::from(out_list)),
            ],
        )?)
    }
}

std::thread_local! {
    static BAD_IPC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// The SDK never produces malformed IPC, so `bad-ipc` wraps the exported handler by hand: it runs
// the agent through the SDK's runtime, then corrupts every output batch.
mod component {
    use sabot_sdk::wit::exports::sabot::agent::handler::Guest;
    use sabot_sdk::wit::sabot::agent::types::{AgentError, Output};

    std::thread_local! {
        static SLOT: std::cell::RefCell<sabot_sdk::runtime::Slot<super::Misbehave>> =
            std::cell::RefCell::new(Default::default());
    }

    struct Component;

    impl Guest for Component {
        fn init(config: String) -> Result<(), AgentError> {
            SLOT.with(|slot| sabot_sdk::runtime::init::<super::Misbehave>(slot, config))
        }

        fn process(port: u32, batch: Vec<u8>) -> Result<Vec<Output>, AgentError> {
            let mut outputs = SLOT
                .with(|slot| sabot_sdk::runtime::process::<super::Misbehave>(slot, port, batch))?;
            if super::BAD_IPC.with(|b| b.get()) {
                for output in &mut outputs {
                    output.batch = b"these bytes are not Arrow IPC".to_vec();
                }
            }
            Ok(outputs)
        }
    }

    impl sabot_sdk::wit::exports::sabot::agent::time_handler::Guest for Component {
        fn on_watermark(watermark: i64) -> Result<Vec<Output>, AgentError> {
            SLOT.with(|slot| sabot_sdk::runtime::on_watermark::<super::Misbehave>(slot, watermark))
        }

        fn on_timers(
            timers: Vec<sabot_sdk::wit::sabot::agent::timers::Timer>,
        ) -> Result<Vec<Output>, AgentError> {
            SLOT.with(|slot| sabot_sdk::runtime::on_timers::<super::Misbehave>(slot, timers))
        }
    }

    #[cfg(target_arch = "wasm32")]
    sabot_sdk::wit::__export_agent_world!(Component with_types_in sabot_sdk::wit);
}
