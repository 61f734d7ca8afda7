//! Agent-defined metrics kept by the host: `wit/metrics.wit`.
//!
//! Each call crosses the sandbox boundary: record per batch, not per row.

use crate::wit::sabot::agent::metrics;

/// Adds `delta` to the monotonic counter `name`.
pub fn counter_add(name: &str, delta: u64) {
    metrics::counter_add(name, delta);
}

/// Sets the gauge `name` to `value`.
pub fn gauge_set(name: &str, value: f64) {
    metrics::gauge_set(name, value);
}

/// Records one observation of `value` in the histogram `name`.
pub fn histogram_record(name: &str, value: f64) {
    metrics::histogram_record(name, value);
}
