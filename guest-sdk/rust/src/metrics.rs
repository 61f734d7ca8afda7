//! Agent-defined metrics kept by the host: `wit/metrics.wit`.
//!
//! Each call crosses the sandbox boundary: record per batch, not per row.

use crate::imports;

/// Adds `delta` to the monotonic counter `name`.
pub fn counter_add(name: &str, delta: u64) {
    imports::counter_add(name, delta);
}

/// Sets the gauge `name` to `value`.
pub fn gauge_set(name: &str, value: f64) {
    imports::gauge_set(name, value);
}

/// Records one observation of `value` in the histogram `name`.
pub fn histogram_record(name: &str, value: f64) {
    imports::histogram_record(name, value);
}
