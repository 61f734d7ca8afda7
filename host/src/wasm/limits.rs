//! The budget of one agent instance: everything an agent can make the host spend, with its
//! default and its range, and how going over it is named.
//!
//! Every field of [`Limits`] can be set for all agents of a pipeline (`[pipeline.limits]`) and for
//! one agent (`[agents.NAME] limits = { … }`). Going over a budget is an
//! [`AgentFailure`](super::AgentFailure) that the agent's `on_error` policy handles like a trap;
//! its message names the `limits.FIELD` and the figure. Two budgets never fail a call: error
//! messages are cut (with a marker) and log lines over the rate are dropped (and counted).

use arrow_array::RecordBatch;
use arrow_data::ArrayData;
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $field:ident = $default:expr, $min:expr, $max:expr, $unit:literal; )*) => {
        /// Per-instance sandbox budgets. See the README's sandbox section for what each costs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct Limits {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $field: $default, )* }
            }
        }

        /// A `limits` table: the fields it sets replace those of the limits it applies to.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct LimitsOverride {
            $( #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<u64>, )*
        }

        impl LimitsOverride {
            /// `base` with the fields this table sets replaced.
            pub fn over(self, base: Limits) -> Limits {
                Limits { $( $field: self.$field.unwrap_or(base.$field), )* }
            }
        }

        impl Limits {
            /// Every field with its range: `Err((field, what was expected))` for the first one
            /// outside it.
            pub fn check(&self) -> Result<(), (&'static str, String)> {
                $(
                    if !($min..=$max).contains(&self.$field) {
                        return Err((
                            stringify!($field),
                            format!("expected {} to {} {}, got {}", $min, $max, $unit, self.$field),
                        ));
                    }
                )*
                Ok(())
            }
        }
    };
}

limits! {
    /// Longest a single call (`init`, one `process`, one timer or watermark call) may run, in
    /// milliseconds.
    deadline_ms = 2_000, 1, 3_600_000, "ms";
    /// Most memory an instance may hold, in MiB: all its linear memories and tables together
    /// (a table element counts [`TABLE_ELEMENT_BYTES`]).
    memory_mb = 256, 1, 4096, "MiB";
    /// Most linear memories an instance may create (all its core instances together).
    max_memories = 16, 1, 10_000, "memories";
    /// Most tables an instance may create.
    max_tables = 64, 1, 10_000, "tables";
    /// Most core instances one agent instance may create.
    max_instances = 64, 1, 10_000, "instances";
    /// Most output one call may return, in MiB: both the Arrow IPC bytes and what the decoded
    /// batches expand to when written out (dictionary values counted per row).
    max_output_mb = 64, 1, 4096, "MiB";
    /// Most rows one call may emit, all output ports together.
    max_output_rows = 1_000_000, 1, 1_000_000_000, "rows";
    /// Most rows a `process` call may emit per input row; a call may always emit
    /// [`OUTPUT_ROWS_FLOOR`] rows, and never more than `max_output_rows`.
    max_output_ratio = 100, 1, 1_000_000, "rows per input row";
    /// Longest error message kept from an agent, in bytes; longer ones are cut with a marker.
    max_error_bytes = 4_096, 64, 1_048_576, "bytes";
    /// Most guest log lines (log interface, stdout, stderr together) per second; more are dropped
    /// and counted.
    log_lines_per_s = 100, 1, 1_000_000, "lines/s";
    /// Most guest log bytes per second.
    log_bytes_per_s = 65_536, 1_024, 1_073_741_824, "bytes/s";
    /// Most keyed state an instance may keep, in MiB (keys and values; for RocksDB the live
    /// data RocksDB estimates plus its memtables).
    state_mb = 4_096, 1, 1_048_576, "MiB";
    /// Most state stores (tables) an instance may use.
    max_stores = 64, 1, 4_096, "stores";
    /// Most timers an instance may have registered at once.
    max_timers = 1_000_000, 1, 100_000_000, "timers";
    /// Most memory an instance's timers may hold, in MiB (keys, and [`TIMER_OVERHEAD`] bytes each).
    timers_mb = 64, 1, 4_096, "MiB";
}

/// What one table element costs in [`Limits::memory_mb`]: a reference.
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// A `process` call may emit this many rows whatever its input.
pub const OUTPUT_ROWS_FLOOR: u64 = 8_192;
pub use crate::time::TIMER_OVERHEAD;

const MIB: u64 = 1 << 20;

impl Limits {
    /// `memory_mb` in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }

    /// `max_output_mb` in bytes.
    pub fn output_bytes(&self) -> usize {
        usize::try_from(self.max_output_mb.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }

    /// The most rows a call may emit: for a `process` call on `input_rows` rows, relative to
    /// them; for timer and watermark calls (`None`), `max_output_rows`.
    pub fn output_rows(&self, input_rows: Option<usize>) -> u64 {
        match input_rows {
            Some(n) => (n as u64)
                .saturating_mul(self.max_output_ratio)
                .max(OUTPUT_ROWS_FLOOR)
                .min(self.max_output_rows),
            None => self.max_output_rows,
        }
    }
}

impl Limits {
    /// The state part of the budget.
    pub fn state_budget(&self) -> crate::state::StateBudget {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        crate::state::StateBudget {
            bytes: self.state_mb.saturating_mul(MIB),
            stores: count(self.max_stores),
            timers: count(self.max_timers),
            timer_bytes: self.timers_mb.saturating_mul(MIB),
        }
    }
}

/// One budget of [`Limits`], as named in metrics (`budget="…"`) and messages (`limits.FIELD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    Deadline,
    Memory,
    Memories,
    Tables,
    Instances,
    OutputBytes,
    OutputRows,
    StateBytes,
    Stores,
    Timers,
    TimerBytes,
}

impl Budget {
    /// Every budget, for metrics.
    pub const ALL: [Budget; 11] = [
        Budget::Deadline,
        Budget::Memory,
        Budget::Memories,
        Budget::Tables,
        Budget::Instances,
        Budget::OutputBytes,
        Budget::OutputRows,
        Budget::StateBytes,
        Budget::Stores,
        Budget::Timers,
        Budget::TimerBytes,
    ];

    /// The name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Budget::Deadline => "deadline",
            Budget::Memory => "memory",
            Budget::Memories => "memories",
            Budget::Tables => "tables",
            Budget::Instances => "instances",
            Budget::OutputBytes => "output_bytes",
            Budget::OutputRows => "output_rows",
            Budget::StateBytes => "state_bytes",
            Budget::Stores => "stores",
            Budget::Timers => "timers",
            Budget::TimerBytes => "timer_bytes",
        }
    }

    /// The [`Limits`] field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            Budget::Deadline => "deadline_ms",
            Budget::Memory => "memory_mb",
            Budget::Memories => "max_memories",
            Budget::Tables => "max_tables",
            Budget::Instances => "max_instances",
            Budget::OutputBytes => "max_output_mb",
            Budget::OutputRows => "max_output_rows",
            Budget::StateBytes => "state_mb",
            Budget::Stores => "max_stores",
            Budget::Timers => "max_timers",
            Budget::TimerBytes => "timers_mb",
        }
    }

    /// The budget set by `field`.
    pub fn from_field(field: &str) -> Option<Budget> {
        Budget::ALL.into_iter().find(|b| b.field() == field)
    }
}

/// A budget an instance went over, and by how much: what
/// [`AgentFailure::Budget`](super::AgentFailure::Budget) reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exceeded its budget `limits.{}`: {message}", budget.field())]
pub struct BudgetExceeded {
    pub budget: Budget,
    /// The figure and the limit.
    pub message: String,
}

impl BudgetExceeded {
    pub fn new(budget: Budget, message: impl Into<String>) -> Self {
        BudgetExceeded {
            budget,
            message: message.into(),
        }
    }
}

/// Cuts `message` to at most `max` bytes (on a character boundary), ending it with a marker that
/// says how long it was.
pub fn cut_message(message: String, max: u64) -> String {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if message.len() <= max {
        return message;
    }
    let total = message.len();
    let kept = super::truncate(&message, max);
    format!("{kept}… [cut: {total} bytes in all, limits.max_error_bytes = {max}]")
}

/// Caps what an instance's store may hold: memory and tables in bytes, all of them together,
/// and how many instances, memories and tables it creates (wasmtime counts those).
pub(crate) struct InstanceLimiter {
    max_bytes: usize,
    counts: (usize, usize, usize),
    /// Bytes of linear memory and tables now held, all together.
    held: usize,
    /// The last growth allowed, undone if wasmtime then fails to grow.
    pending: usize,
    /// The most held at once.
    pub peak: usize,
    /// The budget the instance went over, if it did.
    pub exceeded: Option<BudgetExceeded>,
}

impl InstanceLimiter {
    pub fn new(limits: &Limits) -> Self {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        InstanceLimiter {
            max_bytes: limits.memory_bytes(),
            counts: (
                count(limits.max_instances),
                count(limits.max_memories),
                count(limits.max_tables),
            ),
            held: 0,
            pending: 0,
            peak: 0,
            exceeded: None,
        }
    }

    fn grow(&mut self, what: &str, current: usize, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|m| desired > m) {
            // wasmtime refuses it anyway: not ours to count.
            self.pending = 0;
            return false;
        }
        let delta = desired.saturating_sub(current);
        let total = self.held.saturating_add(delta);
        if total > self.max_bytes {
            self.exceeded = Some(BudgetExceeded::new(
                Budget::Memory,
                format!(
                    "growing a {what} to {} would hold {} of memories and tables in all, over the cap of {}",
                    mib(desired),
                    mib(total),
                    mib(self.max_bytes)
                ),
            ));
            self.pending = 0;
            return false;
        }
        self.held = total;
        self.pending = delta;
        self.peak = self.peak.max(total);
        true
    }

    /// Bytes of memories and tables held now.
    pub fn held(&self) -> usize {
        self.held
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow("linear memory", current, desired, maximum))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.held = self.held.saturating_sub(std::mem::take(&mut self.pending));
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            "table",
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
            maximum.map(|m| m.saturating_mul(TABLE_ELEMENT_BYTES)),
        ))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.held = self.held.saturating_sub(std::mem::take(&mut self.pending));
        Ok(())
    }

    fn instances(&self) -> usize {
        self.counts.0
    }

    fn memories(&self) -> usize {
        self.counts.1
    }

    fn tables(&self) -> usize {
        self.counts.2
    }
}

/// The count budget a wasmtime instantiation error reports going over, if it is one (wasmtime
/// says "resource limit exceeded: {instance|memory|table} count too high at N").
pub(crate) fn count_exceeded(error: &wasmtime::Error, limits: &Limits) -> Option<BudgetExceeded> {
    let text = format!("{error:#}");
    let at = text.find("count too high at ")?;
    let figure = text[at + "count too high at ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("?");
    let (budget, noun, limit) = if text.contains("instance count") {
        (Budget::Instances, "core instances", limits.max_instances)
    } else if text.contains("memory count") {
        (Budget::Memories, "linear memories", limits.max_memories)
    } else if text.contains("table count") {
        (Budget::Tables, "tables", limits.max_tables)
    } else {
        return None;
    };
    Some(BudgetExceeded::new(
        budget,
        format!("instantiating it would create {figure} {noun}, over the limit of {limit}"),
    ))
}

/// What the columns of `batch` amount to when every row is written out: their buffers, with a
/// dictionary's or run-end encoding's values counted once per row that refers to them and view
/// arrays at the length of every value. This is what a few bytes of IPC can expand to in a sink.
pub fn expanded_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| data_bytes(&c.to_data()))
        .fold(0, u64::saturating_add)
}

fn own_buffers(d: &ArrayData) -> u64 {
    let nulls = d.nulls().map_or(0, |n| n.buffer().len() as u64);
    d.buffers()
        .iter()
        .map(|b| b.len() as u64)
        .fold(nulls, u64::saturating_add)
}

fn data_bytes(d: &ArrayData) -> u64 {
    match d.data_type() {
        DataType::Dictionary(_, _) => {
            let per_row = d.child_data().first().map_or(0, widest_value);
            own_buffers(d).saturating_add((d.len() as u64).saturating_mul(per_row))
        }
        DataType::RunEndEncoded(_, _) => {
            let per_row = d.child_data().get(1).map_or(0, widest_value);
            own_buffers(d).saturating_add((d.len() as u64).saturating_mul(per_row))
        }
        DataType::Utf8View | DataType::BinaryView => {
            let views = d.buffer::<u128>(0);
            let values: u64 = views.iter().map(|v| u64::from(*v as u32)).sum();
            (views.len() as u64)
                .saturating_mul(16)
                .saturating_add(values)
        }
        _ => d
            .child_data()
            .iter()
            .map(data_bytes)
            .fold(own_buffers(d), u64::saturating_add),
    }
}

/// The most bytes one value of `values` takes when written out.
fn widest_value(values: &ArrayData) -> u64 {
    if values.is_empty() {
        return 0;
    }
    match values.data_type() {
        DataType::Utf8 | DataType::Binary => values
            .buffer::<i32>(0)
            .windows(2)
            .map(|w| (w[1] - w[0]).max(0) as u64)
            .max()
            .unwrap_or(0),
        DataType::LargeUtf8 | DataType::LargeBinary => values
            .buffer::<i64>(0)
            .windows(2)
            .map(|w| (w[1] - w[0]).max(0) as u64)
            .max()
            .unwrap_or(0),
        DataType::Utf8View | DataType::BinaryView => values
            .buffer::<u128>(0)
            .iter()
            .map(|v| u64::from(*v as u32) + 16)
            .max()
            .unwrap_or(0),
        _ => data_bytes(values).div_ceil(values.len() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, NullArray, StringArray};
    use std::sync::Arc;

    #[test]
    fn overrides_replace_only_the_fields_they_set_and_ranges_are_checked() {
        let o = LimitsOverride {
            memory_mb: Some(32),
            ..Default::default()
        };
        let l = o.over(Limits::default());
        assert_eq!(l.memory_mb, 32);
        assert_eq!(l.deadline_ms, Limits::default().deadline_ms);
        assert!(l.check().is_ok());
        let bad = LimitsOverride {
            max_stores: Some(0),
            ..Default::default()
        }
        .over(l);
        let (field, expected) = bad.check().unwrap_err();
        assert_eq!(field, "max_stores");
        assert!(
            expected.contains("expected 1 to 4096 stores, got 0"),
            "{expected}"
        );
    }

    #[test]
    fn every_budget_names_a_limits_field() {
        let fields = serde_json::to_value(Limits::default()).unwrap();
        for b in Budget::ALL {
            assert!(fields.get(b.field()).is_some(), "{}", b.field());
            assert_eq!(Budget::from_field(b.field()), Some(b));
        }
    }

    #[test]
    fn long_messages_are_cut_with_a_marker_on_a_character_boundary() {
        let m = cut_message("é".repeat(100), 65);
        assert!(m.starts_with(&"é".repeat(32)), "{m}");
        assert!(m.contains("[cut: 200 bytes in all"), "{m}");
        assert_eq!(cut_message("short".into(), 64), "short");
    }

    #[test]
    fn output_rows_are_relative_to_the_input_with_a_floor_and_a_ceiling() {
        let l = Limits::default();
        assert_eq!(l.output_rows(Some(1)), OUTPUT_ROWS_FLOOR);
        assert_eq!(l.output_rows(Some(1_000)), 100_000);
        assert_eq!(l.output_rows(Some(100_000)), 1_000_000);
        assert_eq!(l.output_rows(None), 1_000_000);
    }

    #[test]
    fn dictionaries_count_their_values_once_per_row() {
        let big = "x".repeat(1 << 20);
        let values = StringArray::from(vec![big.as_str(), "y"]);
        let keys = arrow_array::Int32Array::from(vec![0; 1000]);
        let dict: DictionaryArray<Int32Type> =
            DictionaryArray::try_new(keys, Arc::new(values)).unwrap();
        let batch = RecordBatch::try_from_iter([("d", Arc::new(dict) as ArrayRef)]).unwrap();
        assert!(expanded_bytes(&batch) >= 1000 << 20);

        let plain = RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(vec![1; 1000])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(expanded_bytes(&plain), 8000);

        // Null columns carry no buffers: rows, not bytes, bound them.
        let nulls =
            RecordBatch::try_from_iter([("z", Arc::new(NullArray::new(1 << 30)) as ArrayRef)])
                .unwrap();
        assert_eq!(expanded_bytes(&nulls), 0);
    }

    #[test]
    fn memory_and_tables_are_counted_together_against_one_cap() {
        let limits = Limits {
            memory_mb: 1,
            ..Limits::default()
        };
        let mut l = InstanceLimiter::new(&limits);
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        assert!(l.memory_growing(0, 256 << 10, None).unwrap());
        // 32 Ki elements of a table: 256 KiB more, at the cap exactly.
        assert!(l.table_growing(0, 32 << 10, None).unwrap());
        assert!(!l.memory_growing(0, 64 << 10, None).unwrap());
        let e = l.exceeded.clone().unwrap();
        assert_eq!(e.budget, Budget::Memory);
        assert!(e.to_string().contains("limits.memory_mb"), "{e}");
        assert_eq!(l.held(), 1 << 20);
    }
}
