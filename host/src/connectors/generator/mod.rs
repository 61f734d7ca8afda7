//! The built-in transaction generator: card transactions with injected, labelled fraud.
//!
//! A legitimate transaction is made in the card's home country, at a random merchant, for 0.5–1.5
//! × the card's typical amount (a fixed function of the card, 2–6 % of its limit). With
//! probability `fraud_rate` the generator injects fraud instead, and the `fraud` column names the
//! pattern on the transaction a detector should flag:
//!
//! | `fraud` | what was injected |
//! |---|---|
//! | `over_limit` | an amount 2–6 × the card's limit (legitimate amounts never exceed it) |
//! | `blacklisted_merchant` | a merchant from `blacklisted_merchants` (never used otherwise) |
//! | `high_risk_country` | a country from `high_risk_countries` (never used otherwise) |
//! | `amount_anomaly` | 5–15 × the card's typical amount, still within its limit |
//! | `velocity` | the last of 6 consecutive transactions of one card (a burst within 6 events) |
//! | `impossible_travel` | a transaction from another country right after one from home |
//!
//! The output is a pure function of the settings and `seed`: two runs produce the same events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::{ConnectorError, Source};

/// `type = "generator"` in a pipeline's `[sources.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSpec {
    /// How many transactions to produce; endless (until Ctrl-C) when absent.
    pub count: Option<u64>,
    /// Transactions per second; `0` (the default) produces as fast as the pipeline consumes.
    #[serde(default)]
    pub rate: f64,
    /// With a `rate`: how long the rows that are due may wait for more to fill a batch (up to
    /// the pipeline's `batch_size`). `0` (the default) hands on what is due at once: the least
    /// latency, and at high rates the most batches (one agent call each).
    #[serde(default)]
    pub max_batch_delay_ms: u64,
    /// Seed of the pseudo-random sequence.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Probability that a transaction is fraudulent.
    #[serde(default = "default_fraud_rate")]
    pub fraud_rate: f64,
    /// How many distinct cards transact.
    #[serde(default = "default_cards")]
    pub cards: u64,
    /// How many distinct (legitimate) merchants there are.
    #[serde(default = "default_merchants")]
    pub merchants: u64,
    /// Merchants that only fraudulent transactions use.
    #[serde(default = "default_blacklist")]
    pub blacklisted_merchants: Vec<String>,
    /// Countries that only fraudulent transactions come from.
    #[serde(default = "default_high_risk")]
    pub high_risk_countries: Vec<String>,
    /// Event time of the first transaction, in milliseconds since the Unix epoch
    /// (default 2026-01-01T00:00:00Z).
    #[serde(default = "default_start")]
    pub start_time_ms: i64,
    /// Event-time spacing between consecutive transactions, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: i64,
    /// Event time, e.g. `event_time = { column = "ts" }`.
    pub event_time: Option<crate::time::EventTimeSpec>,
}

fn default_seed() -> u64 {
    42
}
fn default_fraud_rate() -> f64 {
    0.01
}
fn default_cards() -> u64 {
    10_000
}
fn default_merchants() -> u64 {
    1_000
}
fn default_blacklist() -> Vec<String> {
    ["m99001", "m99002", "m99003"].map(String::from).to_vec()
}
fn default_high_risk() -> Vec<String> {
    ["KP", "IR", "SY"].map(String::from).to_vec()
}
fn default_start() -> i64 {
    1_767_225_600_000
}
fn default_interval() -> i64 {
    1
}

/// Countries legitimate transactions come from.
const COUNTRIES: [&str; 15] = [
    "US", "GB", "FR", "DE", "ES", "IT", "NL", "SE", "JP", "CA", "AU", "BR", "IN", "MX", "PL",
];

impl GeneratorSpec {
    /// Checks the settings; the message names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.fraud_rate) {
            return Err((
                "fraud_rate".into(),
                format!(
                    "expected a probability between 0 and 1, got {}",
                    self.fraud_rate
                ),
            ));
        }
        super::check_rate(self.rate)?;
        super::check_batch_delay(self.max_batch_delay_ms, self.event_time.as_ref())?;
        if self.cards == 0 {
            return Err(("cards".into(), "expected at least 1 card".into()));
        }
        if self.merchants == 0 {
            return Err(("merchants".into(), "expected at least 1 merchant".into()));
        }
        if self.blacklisted_merchants.is_empty() {
            return Err((
                "blacklisted_merchants".into(),
                "expected at least one merchant".into(),
            ));
        }
        if self.high_risk_countries.is_empty() {
            return Err((
                "high_risk_countries".into(),
                "expected at least one country".into(),
            ));
        }
        if self.interval_ms < 0 {
            return Err((
                "interval_ms".into(),
                format!("expected ≥ 0, got {}", self.interval_ms),
            ));
        }
        Ok(())
    }

    /// The schema of the generated batches.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("txn_id", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("card_id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, false),
            Field::new("card_limit", DataType::Float64, false),
            Field::new("merchant_id", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("fraud", DataType::Utf8, true),
        ]))
    }

    /// A generator producing `batch_size` rows per batch.
    pub fn open(&self, batch_size: usize) -> Generator {
        Generator {
            merchant_names: (0..self.merchants).map(|m| format!("m{m:05}")).collect(),
            spec: self.clone(),
            batch_size,
            rng: fastrand::Rng::with_seed(self.seed),
            produced: 0,
            pattern: None,
            resumed_at: 0,
            started: None,
            born: None,
            schema: Self::schema(),
        }
    }
}

/// A running transaction generator.
#[derive(Debug)]
pub struct Generator {
    spec: GeneratorSpec,
    batch_size: usize,
    rng: fastrand::Rng,
    produced: u64,
    /// A multi-row fraud pattern under way.
    pattern: Option<Pattern>,
    /// Where this run started producing (after a seek).
    resumed_at: u64,
    started: Option<Instant>,
    /// With a rate: when the first row of the batch last returned was due.
    born: Option<Instant>,
    merchant_names: Vec<String>,
    schema: SchemaRef,
}

/// The credit limit of a card: a fixed function of its id, from 500 to 10 000.
pub fn card_limit(card: i64) -> f64 {
    500.0 * (1 + (card.unsigned_abs().wrapping_mul(2_654_435_761) % 20)) as f64
}

/// A card's typical amount: a fixed function of its id, 2–6 % of its limit.
pub fn typical_amount(card: i64) -> f64 {
    let fraction = 0.02 + 0.04 * ((card.unsigned_abs().wrapping_mul(40_503) % 101) as f64 / 100.0);
    card_limit(card) * fraction
}

/// The country a card's legitimate transactions come from.
pub fn home_country(card: i64) -> &'static str {
    COUNTRIES[(card.unsigned_abs() as usize) % COUNTRIES.len()]
}

/// How many transactions a `velocity` burst has.
pub const VELOCITY_BURST: u32 = 6;

/// A fraud pattern spanning several consecutive rows of one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
struct Pattern {
    card: i64,
    /// Rows still to come; the last one carries the label.
    remaining: u32,
    travel: bool,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Generator {
    /// How many of the next `wanted` rows are due by now, at the configured rate. When none is,
    /// waits for the next one, but at most `MAX_WAIT`, so the caller stays responsive (to
    /// checkpoint barriers, a stop, idleness) however slow the rate. With `max_batch_delay_ms`,
    /// fewer than `wanted` rows wait (0 is returned) until all `wanted` are due or the first of
    /// them has waited that long.
    fn due(&mut self, wanted: u64) -> u64 {
        if self.spec.rate <= 0.0 {
            return wanted;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let done = self.produced - self.resumed_at;
        let at = |row: u64| started + Duration::from_secs_f64(row as f64 / self.spec.rate);
        let by_now = (started.elapsed().as_secs_f64() * self.spec.rate) as u64 + 1;
        if by_now > done {
            let rows = (by_now - done).min(wanted);
            if rows < wanted && self.spec.max_batch_delay_ms > 0 {
                let held = at(done) + Duration::from_millis(self.spec.max_batch_delay_ms);
                let until = held.min(at(done + wanted - 1));
                let now = Instant::now();
                if now < until {
                    std::thread::sleep((until - now).min(MAX_WAIT));
                    return 0;
                }
            }
            self.born = Some(at(done));
            return rows;
        }
        let next = started + Duration::from_secs_f64(done as f64 / self.spec.rate);
        std::thread::sleep(next.saturating_duration_since(Instant::now()).min(MAX_WAIT));
        0
    }
}

/// The longest a rate-limited generator waits before returning (an empty batch if nothing is
/// due yet).
const MAX_WAIT: Duration = Duration::from_millis(20);

impl Source for Generator {
    fn schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    fn born(&self) -> Option<Instant> {
        self.born
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({
            "produced": self.produced,
            "rng": self.rng.get_seed(),
            "pattern": self.pattern,
        })
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), ConnectorError> {
        self.produced = super::position_u64(position, "produced", "generator")?;
        self.rng = fastrand::Rng::with_seed(super::position_u64(position, "rng", "generator")?);
        self.pattern = serde_json::from_value(position.get("pattern").cloned().unwrap_or_default())
            .map_err(|e| {
                ConnectorError::Internal(format!(
                    "generator: a checkpointed pattern does not parse: {e}"
                ))
            })?;
        // Pacing restarts from here: the rate applies to this run's events.
        self.started = None;
        self.resumed_at = self.produced;
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let remaining = match self.spec.count {
            Some(count) => count.saturating_sub(self.produced),
            None => u64::MAX,
        };
        if remaining == 0 {
            return Ok(None);
        }
        let rows = self.due(remaining.min(self.batch_size as u64)) as usize;

        let spec = &self.spec;
        let rng = &mut self.rng;
        let mut txn_id = Int64Builder::with_capacity(rows);
        let mut ts = TimestampMillisecondBuilder::with_capacity(rows);
        let mut card_id = Int64Builder::with_capacity(rows);
        let mut amount = Float64Builder::with_capacity(rows);
        let mut limit = Float64Builder::with_capacity(rows);
        let mut merchant = StringBuilder::with_capacity(rows, rows * 6);
        let mut country = StringBuilder::with_capacity(rows, rows * 2);
        let mut fraud = StringBuilder::with_capacity(rows, rows / 10);

        for i in 0..rows as u64 {
            let id = (self.produced + i) as i64;
            let card = match &self.pattern {
                Some(p) => p.card,
                None => rng.u64(0..spec.cards) as i64,
            };
            let card_max = card_limit(card);
            let home = home_country(card);
            let mut amt = cents(typical_amount(card) * (0.5 + rng.f64())).max(0.01);
            let mut merch = self.merchant_names[rng.usize(0..self.merchant_names.len())].as_str();
            let mut ctry = home;
            let mut label = None;
            if let Some(p) = &mut self.pattern {
                p.remaining -= 1;
                if p.remaining == 0 {
                    if p.travel {
                        let at = COUNTRIES.iter().position(|c| *c == home).unwrap_or(0);
                        ctry = COUNTRIES
                            [(at + 1 + rng.usize(0..COUNTRIES.len() - 1)) % COUNTRIES.len()];
                        label = Some("impossible_travel");
                    } else {
                        label = Some("velocity");
                    }
                    self.pattern = None;
                }
            } else if spec.fraud_rate > 0.0 && rng.f64() < spec.fraud_rate {
                match rng.u8(0..6) {
                    0 => {
                        amt = cents(card_max * (2.0 + 4.0 * rng.f64()));
                        label = Some("over_limit");
                    }
                    1 => {
                        let list = &spec.blacklisted_merchants;
                        merch = list[rng.usize(0..list.len())].as_str();
                        label = Some("blacklisted_merchant");
                    }
                    2 => {
                        let list = &spec.high_risk_countries;
                        ctry = list[rng.usize(0..list.len())].as_str();
                        label = Some("high_risk_country");
                    }
                    3 => {
                        amt = cents(typical_amount(card) * (5.0 + 10.0 * rng.f64()));
                        label = Some("amount_anomaly");
                    }
                    4 => {
                        self.pattern = Some(Pattern {
                            card,
                            remaining: VELOCITY_BURST - 1,
                            travel: false,
                        });
                    }
                    _ => {
                        self.pattern = Some(Pattern {
                            card,
                            remaining: 1,
                            travel: true,
                        });
                    }
                }
            }
            txn_id.append_value(id);
            ts.append_value(spec.start_time_ms + id * spec.interval_ms);
            card_id.append_value(card);
            amount.append_value(amt);
            limit.append_value(card_max);
            merchant.append_value(merch);
            country.append_value(ctry);
            fraud.append_option(label);
        }
        self.produced += rows as u64;

        let columns: Vec<ArrayRef> = vec![
            Arc::new(txn_id.finish()),
            Arc::new(ts.finish()),
            Arc::new(card_id.finish()),
            Arc::new(amount.finish()),
            Arc::new(limit.finish()),
            Arc::new(merchant.finish()),
            Arc::new(country.finish()),
            Arc::new(fraud.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| ConnectorError::Internal(format!("generator built an invalid batch: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Float64Array, StringArray};

    fn spec(count: u64, fraud_rate: f64) -> GeneratorSpec {
        toml::from_str(&format!("count = {count}\nfraud_rate = {fraud_rate}")).unwrap()
    }

    fn drain(mut g: Generator) -> Vec<RecordBatch> {
        std::iter::from_fn(|| g.next_batch().unwrap()).collect()
    }

    #[test]
    fn bounded_generator_produces_exactly_count_rows_in_batches() {
        let batches = drain(spec(10_000, 0.01).open(4096));
        let sizes: Vec<_> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![4096, 4096, 1808]);
    }

    #[test]
    fn same_seed_gives_same_events() {
        assert_eq!(
            drain(spec(5000, 0.1).open(1000)),
            drain(spec(5000, 0.1).open(1000))
        );
    }

    #[test]
    fn injected_fraud_is_labelled_and_legitimate_traffic_never_matches_the_patterns() {
        let s = spec(100_000, 0.02);
        let mut labels: std::collections::BTreeMap<String, usize> = Default::default();
        let mut last_cards: Vec<i64> = Vec::new();
        for batch in drain(s.open(8192)) {
            let col = |i: usize| batch.column(i).clone();
            let cards = col(2);
            let cards = cards
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            let amount = col(3);
            let amount = amount.as_any().downcast_ref::<Float64Array>().unwrap();
            let limit = col(4);
            let limit = limit.as_any().downcast_ref::<Float64Array>().unwrap();
            let merchant = col(5);
            let merchant = merchant.as_any().downcast_ref::<StringArray>().unwrap();
            let country = col(6);
            let country = country.as_any().downcast_ref::<StringArray>().unwrap();
            let fraud = col(7);
            let fraud = fraud.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                let card = cards.value(i);
                let typical = typical_amount(card);
                let label = fraud.is_valid(i).then(|| fraud.value(i));
                let black = s
                    .blacklisted_merchants
                    .iter()
                    .any(|m| m == merchant.value(i));
                let risky = s.high_risk_countries.iter().any(|c| c == country.value(i));
                let away = country.value(i) != home_country(card);
                assert_eq!(
                    amount.value(i) > limit.value(i),
                    label == Some("over_limit"),
                    "row {i}"
                );
                assert_eq!(black, label == Some("blacklisted_merchant"), "row {i}");
                assert_eq!(risky, label == Some("high_risk_country"), "row {i}");
                assert_eq!(
                    away && !risky,
                    label == Some("impossible_travel"),
                    "row {i}"
                );
                let unusual = amount.value(i) > 1.5 * typical + 0.01;
                assert_eq!(
                    unusual && label != Some("over_limit"),
                    label == Some("amount_anomaly"),
                    "row {i}"
                );
                if label == Some("amount_anomaly") {
                    assert!(amount.value(i) <= limit.value(i));
                }
                last_cards.push(card);
                let n = last_cards.len();
                if label == Some("velocity") || label == Some("impossible_travel") {
                    let run = if label == Some("velocity") {
                        VELOCITY_BURST as usize
                    } else {
                        2
                    };
                    assert!(
                        n >= run && last_cards[n - run..].iter().all(|c| *c == card),
                        "row {i}: {label:?} without its run"
                    );
                }
                if let Some(l) = label {
                    *labels.entry(l.to_owned()).or_default() += 1;
                }
            }
        }
        assert_eq!(labels.len(), 6, "every pattern injected: {labels:?}");
        // About 2 % of rows start a pattern (multi-row ones cover several rows).
        let total: usize = labels.values().sum();
        assert!((1_300..2_100).contains(&total), "{labels:?}");
    }

    #[test]
    fn rate_limit_paces_production() {
        let mut s = spec(300, 0.0);
        s.rate = 1000.0;
        let started = Instant::now();
        let batches = drain(s.open(100));
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            300
        );
        assert!(batches.iter().all(|b| b.num_rows() <= 100));
        // 300 events at 1000 events/s: the last is due at 299 ms.
        assert!(started.elapsed() >= Duration::from_millis(290));
    }

    #[test]
    fn a_slow_generator_returns_empty_batches_instead_of_blocking() {
        let mut s = spec(10, 0.0);
        s.rate = 1.0;
        let mut g = s.open(100);
        assert_eq!(
            g.next_batch().unwrap().unwrap().num_rows(),
            1,
            "the first row is due at once"
        );
        let started = Instant::now();
        assert_eq!(g.next_batch().unwrap().unwrap().num_rows(), 0);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn invalid_settings_name_the_field() {
        assert_eq!(spec(1, 1.5).validate().unwrap_err().0, "fraud_rate");
        let mut s = spec(1, 0.0);
        s.max_batch_delay_ms = 10_001;
        let (field, message) = s.validate().unwrap_err();
        assert_eq!(field, "max_batch_delay_ms");
        assert!(message.contains("expected 0 to 10000"), "{message}");
        let s: GeneratorSpec = toml::from_str(
            "rate = 100\nmax_batch_delay_ms = 500\nevent_time = { column = \"ts\", idle_timeout_ms = 500 }",
        )
        .unwrap();
        let (field, message) = s.validate().unwrap_err();
        assert_eq!(field, "max_batch_delay_ms");
        assert!(
            message.contains("not less than event_time.idle_timeout_ms (500 ms)"),
            "{message}"
        );
    }

    /// The sizes of the batches with rows of `s` read in batches of `batch_size`.
    fn sizes(s: GeneratorSpec, batch_size: usize) -> Vec<usize> {
        drain(s.open(batch_size))
            .iter()
            .map(RecordBatch::num_rows)
            .filter(|n| *n > 0)
            .collect()
    }

    #[test]
    fn a_batch_delay_holds_due_rows_until_the_first_has_waited_it_or_the_batch_is_full() {
        // 1 000 rows/s, held up to 50 ms: every batch but the last has waited for the rows due
        // in the 50 ms after its first (however late the thread wakes, never fewer).
        let mut s = spec(400, 0.0);
        s.rate = 1000.0;
        s.max_batch_delay_ms = 50;
        let held = sizes(s.clone(), 1000);
        assert_eq!(held.iter().sum::<usize>(), 400);
        assert!(held[..held.len() - 1].iter().all(|n| *n >= 50), "{held:?}");
        // A full batch leaves without waiting out the delay.
        s.max_batch_delay_ms = 10_000;
        let full = sizes(s.clone(), 20);
        assert!(full.iter().all(|n| *n == 20), "{full:?}");
        // Without a delay, what is due leaves at once: more, smaller batches.
        s.max_batch_delay_ms = 0;
        let at_once = sizes(s, 1000);
        assert_eq!(at_once.iter().sum::<usize>(), 400);
        assert!(at_once.len() > held.len(), "{at_once:?} vs {held:?}");
    }
}
