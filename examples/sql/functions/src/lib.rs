//! Functions for SQL pipelines, called as `risk(amount, country)`, `tier(merchant_id)` and
//! (an aggregate) `median(amount)` once a pipeline declares them:
//!
//! ```sql
//! CREATE FUNCTION risk AS 'sql_functions.wasm';
//! CREATE FUNCTION tier AS 'sql_functions.wasm';
//! CREATE AGGREGATE median AS 'sql_functions.wasm';
//! ```
//!
//! The same functions exist in JavaScript (`risk.js` beside this crate) and give the same
//! results, bit for bit.

use std::sync::Arc;

use sabot_sdk::AgentError;
use sabot_sdk::arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use sabot_sdk::arrow::datatypes::DataType;
use sabot_sdk::function::{ScalarFunction, Signature};
use sabot_sdk::state::Aggregator;

/// Countries whose transactions carry extra risk.
pub const HIGH_RISK: [&str; 3] = ["KP", "IR", "SY"];

/// A risk score: the amount in thousands, plus 2 in a high-risk country, plus 0.5 above 5 000.
/// NULL when the amount or the country is NULL.
pub struct Risk;

impl Risk {
    /// The score of one transaction.
    pub fn score(amount: f64, country: &str) -> f64 {
        let mut score = amount / 1000.0;
        if HIGH_RISK.contains(&country) {
            score += 2.0;
        }
        if amount > 5000.0 {
            score += 0.5;
        }
        score
    }
}

impl ScalarFunction for Risk {
    fn signature(&self) -> Signature {
        Signature::new([DataType::Float64, DataType::Utf8], DataType::Float64)
    }

    fn call(&self, args: &[ArrayRef]) -> Result<ArrayRef, AgentError> {
        let amount = args[0]
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("the signature's type");
        let country = args[1]
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("the signature's type");
        let scores: Float64Array = amount
            .iter()
            .zip(country.iter())
            .map(|(a, c)| Some(Risk::score(a?, c?)))
            .collect();
        Ok(Arc::new(scores))
    }
}

/// A merchant's tier from its id (`m00042`): `gold` below 100, `silver` below 1 000, else
/// `bronze`; `unknown` for an id that is not `m` and digits.
pub struct Tier;

impl Tier {
    /// The tier of one merchant id.
    pub fn of(merchant: &str) -> &'static str {
        let digits = merchant.strip_prefix('m').unwrap_or_default();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return "unknown";
        }
        match digits.parse::<u64>() {
            Ok(n) if n < 100 => "gold",
            Ok(n) if n < 1000 => "silver",
            // Past u64: a very large number.
            _ => "bronze",
        }
    }
}

impl ScalarFunction for Tier {
    fn signature(&self) -> Signature {
        Signature::new([DataType::Utf8], DataType::Utf8)
    }

    fn call(&self, args: &[ArrayRef]) -> Result<ArrayRef, AgentError> {
        let merchant = args[0]
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("the signature's type");
        let tiers: StringArray = merchant.iter().map(|m| m.map(Tier::of)).collect();
        Ok(Arc::new(tiers))
    }
}

/// The median of a group's values (the mean of the two middle ones for an even count); NULL
/// for a group without values. An aggregate: `CREATE AGGREGATE median AS '…'`.
pub struct Median;

impl Aggregator<f64, Vec<f64>, Option<f64>> for Median {
    fn create(&self) -> Vec<f64> {
        Vec::new()
    }

    fn add(&self, values: &mut Vec<f64>, value: f64) {
        values.push(value);
    }

    fn result(&self, values: &Vec<f64>) -> Option<f64> {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }
}

sabot_sdk::export_functions!(
    "risk" => Risk,
    "tier" => Tier,
    "median" => sabot_sdk::function::aggregate(Median),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_adds_country_and_size() {
        assert_eq!(Risk::score(1500.0, "FR"), 1.5);
        assert_eq!(Risk::score(1500.0, "KP"), 3.5);
        assert_eq!(Risk::score(6000.0, "SY"), 8.5);
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two() {
        let median = |values: &[f64]| Median.result(&values.to_vec());
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn tiers_follow_the_merchant_number() {
        assert_eq!(Tier::of("m00042"), "gold");
        assert_eq!(Tier::of("m00420"), "silver");
        assert_eq!(Tier::of("m99001"), "bronze");
        assert_eq!(Tier::of("shop"), "unknown");
    }
}
