//! Fraud rules over card transactions, stateless and stateful.
//!
//! Judged on the transaction alone:
//! - `over_limit`: the amount is more than `over_limit_factor` times the card's limit;
//! - `blacklisted_merchant`: the merchant is on the blacklist;
//! - `high_risk_country`: the transaction happened in a high-risk country.
//!
//! Judged against the card's history, kept by the host in keyed state (one `ValueState` per card,
//! read and written once per batch for all the batch's cards):
//! - `velocity`: more than `velocity.max_transactions` transactions on the card within
//!   `velocity.within_ms` of event time;
//! - `amount_anomaly`: with at least `amount_anomaly.min_history` earlier transactions, an
//!   amount more than `amount_anomaly.stddevs` standard deviations above the card's mean;
//! - `impossible_travel`: another country than the card's previous transaction, within
//!   `impossible_travel.within_ms` of it.
//!
//! A flagged transaction does not update the card's profile (a blocked payment does not move
//! the card, nor teach the model what the card usually spends).
//!
//! Port 0: the flagged transactions with one more column, `reason`, naming the first rule that
//! matched (in the order above); a batch of no rows is answered with no rows of those columns
//! (what SQL asks a table function). Port 1: per batch, for each value of the `fraud` label column
//! when there is one (`none` for legitimate rows), how many rows carried it and how many of them
//! were flagged — what `fraud-score` turns into precision and recall.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sabot_sdk::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray, UInt32Array,
    UInt64Array,
};
use sabot_sdk::arrow::compute::take;
use sabot_sdk::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sabot_sdk::state::ValueState;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_factor")]
    over_limit_factor: f64,
    #[serde(default)]
    blacklisted_merchants: Vec<String>,
    #[serde(default)]
    high_risk_countries: Vec<String>,
    velocity: Option<Velocity>,
    amount_anomaly: Option<AmountAnomaly>,
    impossible_travel: Option<ImpossibleTravel>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Velocity {
    max_transactions: usize,
    within_ms: i64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct AmountAnomaly {
    min_history: u32,
    stddevs: f64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct ImpossibleTravel {
    within_ms: i64,
}

fn default_factor() -> f64 {
    1.5
}

/// What the agent remembers about a card.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct CardProfile {
    /// Event times of the card's latest transactions, oldest first (at most the velocity limit).
    recent: Vec<i64>,
    /// Count, mean and sum of squared deviations of its amounts (Welford).
    n: u32,
    mean: f64,
    m2: f64,
    /// Where and when its latest transaction happened.
    last_country: String,
    last_ts: i64,
}

impl CardProfile {
    fn stddev(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / f64::from(self.n - 1)).sqrt()
        }
    }

    fn learn(&mut self, amount: f64, country: &str, ts: i64) {
        self.n += 1;
        let delta = amount - self.mean;
        self.mean += delta / f64::from(self.n);
        self.m2 += delta * (amount - self.mean);
        if self.last_country != country {
            self.last_country.clear();
            self.last_country.push_str(country);
        }
        self.last_ts = ts;
    }
}

/// The fraud rules.
pub struct FraudRules {
    settings: Settings,
    blacklist: HashSet<String>,
    high_risk: HashSet<String>,
    profiles: ValueState<CardProfile>,
    output_schema: Option<(SchemaRef, SchemaRef)>,
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
    expected: &str,
) -> Result<&'a T, AgentError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            AgentError::invalid_input(format!(
                "fraud-rules needs a column `{name}` of type {expected}; the batch has columns {:?}",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
            ))
        })
}

impl FraudRules {
    fn stateful(&self) -> bool {
        self.settings.velocity.is_some()
            || self.settings.amount_anomaly.is_some()
            || self.settings.impossible_travel.is_some()
    }

    fn output_schema(&mut self, input: &SchemaRef) -> SchemaRef {
        match &self.output_schema {
            Some((seen, out)) if seen == input => out.clone(),
            _ => {
                let mut fields: Vec<Field> =
                    input.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields.push(Field::new("reason", DataType::Utf8, false));
                let out = Arc::new(Schema::new(fields));
                self.output_schema = Some((input.clone(), out.clone()));
                out
            }
        }
    }

    fn stateless_reason(
        &self,
        amount: f64,
        limit: f64,
        merchant: &str,
        country: &str,
    ) -> Option<&'static str> {
        if amount > limit * self.settings.over_limit_factor {
            Some("over_limit")
        } else if self.blacklist.contains(merchant) {
            Some("blacklisted_merchant")
        } else if self.high_risk.contains(country) {
            Some("high_risk_country")
        } else {
            None
        }
    }

    /// Judges one transaction against `profile`, then updates it (unless flagged, here or by a
    /// stateless rule: `flagged`).
    fn stateful_reason(
        &self,
        p: &mut CardProfile,
        amount: f64,
        country: &str,
        ts: i64,
        flagged: bool,
    ) -> Option<&'static str> {
        let mut reason = None;
        if let Some(v) = self.settings.velocity {
            p.recent.retain(|t| *t > ts - v.within_ms);
            if p.recent.len() >= v.max_transactions {
                reason = Some("velocity");
            }
        }
        if reason.is_none()
            && let Some(a) = self.settings.amount_anomaly
            && p.n >= a.min_history
            && amount > p.mean + a.stddevs * p.stddev()
        {
            reason = Some("amount_anomaly");
        }
        if reason.is_none()
            && let Some(t) = self.settings.impossible_travel
            && p.n > 0
            && p.last_country != country
            && ts - p.last_ts < t.within_ms
        {
            reason = Some("impossible_travel");
        }
        if let Some(v) = self.settings.velocity {
            // Every attempt counts towards velocity, flagged or not.
            if p.recent.len() >= v.max_transactions {
                p.recent.remove(0);
            }
            p.recent.push(ts);
        }
        if reason.is_none() && !flagged {
            p.learn(amount, country, ts);
        }
        reason
    }
}

/// Event times in milliseconds, from a timestamp[ms] or int64 column `ts`.
fn event_times(batch: &RecordBatch) -> Result<&[i64], AgentError> {
    if let Some(ts) = batch
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
    {
        return Ok(ts.values());
    }
    Ok(column::<Int64Array>(batch, "ts", "Timestamp(ms) or Int64")?.values())
}

impl Agent for FraudRules {
    fn init(config: Config) -> Result<Self, AgentError> {
        let s: Settings = config.parse()?;
        if !(s.over_limit_factor.is_finite() && s.over_limit_factor > 0.0) {
            return Err(AgentError::invalid_config(format!(
                "over_limit_factor must be a positive number, got {}",
                s.over_limit_factor
            )));
        }
        if s.velocity
            .is_some_and(|v| v.max_transactions == 0 || v.within_ms <= 0)
        {
            return Err(AgentError::invalid_config(
                "velocity needs max_transactions ≥ 1 and within_ms > 0",
            ));
        }
        if s.amount_anomaly
            .is_some_and(|a| !(a.stddevs.is_finite() && a.stddevs > 0.0))
        {
            return Err(AgentError::invalid_config(
                "amount_anomaly.stddevs must be a positive number",
            ));
        }
        Ok(FraudRules {
            blacklist: s.blacklisted_merchants.iter().cloned().collect(),
            high_risk: s.high_risk_countries.iter().cloned().collect(),
            settings: s,
            profiles: ValueState::new("profile"),
            output_schema: None,
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let amount = column::<Float64Array>(&batch, "amount", "Float64")?;
        let limit = column::<Float64Array>(&batch, "card_limit", "Float64")?;
        let merchant = column::<StringArray>(&batch, "merchant_id", "Utf8")?;
        let country = column::<StringArray>(&batch, "country", "Utf8")?;
        let n = batch.num_rows();

        // The profiles of the batch's cards: one read for the whole batch.
        let stateful = self.stateful();
        let (cards, times) = if stateful {
            (
                column::<Int64Array>(&batch, "card_id", "Int64")?
                    .values()
                    .as_ref(),
                event_times(&batch)?,
            )
        } else {
            (&[][..], &[][..])
        };
        if n == 0 {
            // Asked what it returns (SQL plans it as a table function this way): no rows of
            // the columns it would emit on port 0.
            let schema = self.output_schema(&batch.schema());
            out.emit(RecordBatch::new_empty(schema));
            return Ok(());
        }
        let mut slot_of: HashMap<i64, usize> = HashMap::with_capacity(if stateful { n } else { 0 });
        let mut keys: Vec<i64> = Vec::new();
        for card in cards {
            slot_of.entry(*card).or_insert_with(|| {
                keys.push(*card);
                keys.len() - 1
            });
        }
        let mut profiles: Vec<CardProfile> = if stateful {
            self.profiles
                .get_many(&keys)?
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect()
        } else {
            Vec::new()
        };

        let mut rows = Vec::new();
        let mut reasons = Vec::new();
        let mut flagged = vec![false; n];
        for i in 0..n {
            if amount.is_null(i) || limit.is_null(i) || merchant.is_null(i) || country.is_null(i) {
                return Err(AgentError::invalid_input(
                    "amount, card_limit, merchant_id and country must not be null",
                )
                .at_row(i));
            }
            let mut reason = self.stateless_reason(
                amount.value(i),
                limit.value(i),
                merchant.value(i),
                country.value(i),
            );
            if stateful {
                let profile = &mut profiles[slot_of[&cards[i]]];
                let judged = self.stateful_reason(
                    profile,
                    amount.value(i),
                    country.value(i),
                    times[i],
                    reason.is_some(),
                );
                reason = reason.or(judged);
            }
            if let Some(reason) = reason {
                rows.push(i as u32);
                reasons.push(reason);
                flagged[i] = true;
            }
        }
        if stateful {
            let entries: Vec<(i64, CardProfile)> = keys.into_iter().zip(profiles).collect();
            self.profiles.set_many(&entries)?;
        }

        // Port 1: rows and flagged rows per label.
        if let Some(labels) = batch
            .column_by_name("fraud")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        {
            let mut counts: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for (i, hit) in flagged.iter().enumerate() {
                let label = if labels.is_valid(i) {
                    labels.value(i)
                } else {
                    "none"
                };
                let c = counts.entry(label).or_default();
                c.0 += 1;
                c.1 += u64::from(*hit);
            }
            out.emit_to(
                1,
                RecordBatch::try_from_iter([
                    (
                        "label",
                        Arc::new(StringArray::from(
                            counts.keys().copied().collect::<Vec<_>>(),
                        )) as ArrayRef,
                    ),
                    (
                        "rows",
                        Arc::new(UInt64Array::from(
                            counts.values().map(|c| c.0).collect::<Vec<_>>(),
                        )) as ArrayRef,
                    ),
                    (
                        "flagged",
                        Arc::new(UInt64Array::from(
                            counts.values().map(|c| c.1).collect::<Vec<_>>(),
                        )) as ArrayRef,
                    ),
                ])?,
            );
        }

        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        columns.push(Arc::new(StringArray::from(reasons)));
        let schema = self.output_schema(&batch.schema());
        out.emit(RecordBatch::try_new(schema, columns)?);
        Ok(())
    }
}

sabot_sdk::export_agent!(FraudRules);

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(config: &str) -> FraudRules {
        FraudRules::init(Config::new(config)).unwrap()
    }

    #[test]
    fn velocity_flags_the_transaction_over_the_limit_within_the_window() {
        let r = rules(r#"{"velocity": {"max_transactions": 2, "within_ms": 100}}"#);
        let mut p = CardProfile::default();
        assert_eq!(r.stateful_reason(&mut p, 1.0, "FR", 0, false), None);
        assert_eq!(r.stateful_reason(&mut p, 1.0, "FR", 50, false), None);
        assert_eq!(
            r.stateful_reason(&mut p, 1.0, "FR", 60, false),
            Some("velocity")
        );
        assert_eq!(
            r.stateful_reason(&mut p, 1.0, "FR", 200, false),
            None,
            "the window moved on"
        );
    }

    #[test]
    fn an_amount_far_above_the_cards_history_is_an_anomaly_and_is_not_learned() {
        let r = rules(r#"{"amount_anomaly": {"min_history": 3, "stddevs": 4}}"#);
        let mut p = CardProfile::default();
        for (i, a) in [10.0, 12.0, 11.0, 9.0].into_iter().enumerate() {
            assert_eq!(r.stateful_reason(&mut p, a, "FR", i as i64, false), None);
        }
        assert_eq!(
            r.stateful_reason(&mut p, 100.0, "FR", 10, false),
            Some("amount_anomaly")
        );
        assert_eq!(p.n, 4, "the anomaly is not part of the profile");
        assert_eq!(r.stateful_reason(&mut p, 13.0, "FR", 11, false), None);
    }

    #[test]
    fn another_country_right_after_is_impossible_travel_but_later_is_a_trip() {
        let r = rules(r#"{"impossible_travel": {"within_ms": 1000}}"#);
        let mut p = CardProfile::default();
        assert_eq!(r.stateful_reason(&mut p, 1.0, "FR", 0, false), None);
        assert_eq!(
            r.stateful_reason(&mut p, 1.0, "JP", 10, false),
            Some("impossible_travel")
        );
        assert_eq!(
            r.stateful_reason(&mut p, 1.0, "FR", 20, false),
            None,
            "the flagged one did not move the card"
        );
        assert_eq!(r.stateful_reason(&mut p, 1.0, "JP", 5_000, false), None);
    }
}
