//! A test agent in event time. It counts the rows of each key (int64 column `key`, or the
//! column `key_column` names) in tumbling
//! windows of `size_ms` over the event time in column `ts` (timestamp[ms] or int64), keeping the
//! counts in a `MapState` and firing each window with an event-time timer at its last
//! millisecond:
//!
//! - port 0: one row per fired window: `key`, `window_end`, `count`;
//! - port 1: the input rows that arrived after their window had fired (late), unchanged;
//! - port 2: one row per `on-watermark` call: `watermark`.
//!
//! With `{"library": WINDOW_CONFIG}` it runs `sabot_operators::window::Windows` instead, as a user
//! agent would, with a user-defined aggregate `spread` (max − min of column `v`, an SDK
//! `Aggregator` that can merge, so it works in session windows too) beside the configured ones.
//!
//! With `{"processing_ms": N}` it also registers, for each key it sees for the first time, a
//! processing-time timer N ms after the wall clock, and emits `key`, `window_end = -1`,
//! `count = 0` on port 0 when it fires.

// Natively (`cargo test --workspace`) nothing exports the agent, so its types look unused.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::sync::Arc;

use sabot_sdk::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray,
};
use sabot_sdk::arrow::compute::filter_record_batch;
use sabot_sdk::state::{MapState, ValueState};
use sabot_sdk::timers::{self, TimeDomain, Timer};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

#[derive(serde::Deserialize)]
struct Settings {
    #[serde(default)]
    size_ms: i64,
    #[serde(default)]
    library: Option<sabot_operators::window::WindowConfig>,
    #[serde(default)]
    processing_ms: Option<i64>,
    #[serde(default = "default_key")]
    key_column: String,
}

fn default_key() -> String {
    "key".into()
}

/// `max − min` of the inputs: a user-defined aggregate, as the SDK's `Aggregator`.
struct Spread;

impl sabot_sdk::state::Aggregator<i64, Option<(i64, i64)>, Option<i64>> for Spread {
    fn create(&self) -> Option<(i64, i64)> {
        None
    }

    fn add(&self, acc: &mut Option<(i64, i64)>, v: i64) {
        *acc = Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
    }

    fn result(&self, acc: &Option<(i64, i64)>) -> Option<i64> {
        acc.map(|(lo, hi)| hi - lo)
    }

    fn merge(
        &self,
        acc: &mut Option<(i64, i64)>,
        other: Option<(i64, i64)>,
    ) -> Result<(), AgentError> {
        if let Some((lo, hi)) = other {
            *acc = Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
        Ok(())
    }
}

struct Timed {
    windows: Option<sabot_operators::window::Windows>,
    settings: Settings,
    counts: MapState<i64, i64>,
    seen: ValueState<bool>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, AgentError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            AgentError::invalid_input(format!("expected column `{name}` of the right type"))
        })
}

fn times(batch: &RecordBatch) -> Result<Vec<i64>, AgentError> {
    if let Ok(ts) = column::<TimestampMillisecondArray>(batch, "ts") {
        return Ok(ts.values().to_vec());
    }
    Ok(column::<Int64Array>(batch, "ts")?.values().to_vec())
}

fn row(key: i64, window_end: i64, count: i64) -> Result<RecordBatch, AgentError> {
    Ok(RecordBatch::try_from_iter([
        ("key", Arc::new(Int64Array::from(vec![key])) as ArrayRef),
        (
            "window_end",
            Arc::new(Int64Array::from(vec![window_end])) as ArrayRef,
        ),
        ("count", Arc::new(Int64Array::from(vec![count])) as ArrayRef),
    ])?)
}

impl Agent for Timed {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        let windows = match &settings.library {
            Some(c) => Some(
                sabot_operators::window::Windows::new("lib", c.clone())?.with_aggregator(
                    "spread",
                    Some("v"),
                    Spread,
                ),
            ),
            None => None,
        };
        if windows.is_none() && settings.size_ms <= 0 {
            return Err(AgentError::invalid_config("size_ms must be positive"));
        }
        Ok(Timed {
            windows,
            settings,
            counts: MapState::new("counts"),
            seen: ValueState::new("seen"),
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        if let Some(w) = &mut self.windows {
            return w.process(&batch, out);
        }
        let keys = column::<Int64Array>(&batch, &self.settings.key_column)?;
        let ts = times(&batch)?;
        let watermark = timers::watermark().unwrap_or(i64::MIN);
        let size = self.settings.size_ms;
        let mut late = Vec::with_capacity(batch.num_rows());
        for (i, t) in ts.iter().enumerate() {
            let key = keys.value(i);
            let end = (t.div_euclid(size) + 1) * size;
            let is_late = end - 1 <= watermark;
            late.push(is_late);
            if is_late {
                continue;
            }
            let n = self.counts.get(&key, &end)?.unwrap_or(0);
            self.counts.put(&key, &end, &(n + 1))?;
            timers::register_event_time(&key, end - 1);
            if let Some(ms) = self.settings.processing_ms
                && self.seen.get(&key)?.is_none()
            {
                self.seen.set(&key, &true)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                timers::register_processing_time(&key, now + ms);
            }
        }
        out.emit_to(1, filter_record_batch(&batch, &BooleanArray::from(late))?);
        Ok(())
    }

    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        if let Some(w) = &mut self.windows {
            return w.on_timers(&timers, out);
        }
        for timer in timers {
            self.on_timer(timer, out)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Emitter) -> Result<(), AgentError> {
        let key = timer
            .key_i64()
            .ok_or_else(|| AgentError::internal("a timer key is not an int64"))?;
        if timer.domain == TimeDomain::ProcessingTime {
            out.emit(row(key, -1, 0)?);
            return Ok(());
        }
        let end = timer.ts + 1;
        let count = self
            .counts
            .get(&key, &end)?
            .ok_or_else(|| AgentError::internal(format!("no count for key {key} window {end}")))?;
        self.counts.remove(&key, &end)?;
        out.emit(row(key, end, count)?);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Emitter) -> Result<(), AgentError> {
        if self.windows.is_some() {
            return Ok(());
        }
        out.emit_to(
            2,
            RecordBatch::try_from_iter([(
                "watermark",
                Arc::new(Int64Array::from(vec![watermark])) as ArrayRef,
            )])?,
        );
        Ok(())
    }
}

sabot_sdk::export_agent!(Timed);
