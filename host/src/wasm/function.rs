//! What a function module says a call returns: SQL's `CREATE FUNCTION` is type-checked by
//! asking the module itself, at planning time, before any row flows.
//!
//! A function module is an agent that appends its result to every row it gets (the protocol of
//! `sabot_sdk::function`). Given a batch with no rows, it answers with no rows of the columns it
//! would produce, or refuses argument types it does not take with an `invalid-input` error
//! saying what it expected. One instance, with the default sandbox limits, answers once and is
//! dropped.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::{AgentInstance, AgentMetrics, Limits, ModuleSource, Tags, WasmRuntime};
use crate::state::StateScope;

/// The columns a function module returns for a call configured with `config` (JSON) over rows
/// of `input`, or why it refuses them.
pub fn result_schema(
    runtime: &Arc<WasmRuntime>,
    source: &ModuleSource,
    config: &str,
    input: &SchemaRef,
) -> Result<SchemaRef, String> {
    let module = runtime.load(source).map_err(|e| e.to_string())?;
    let mut instance = AgentInstance::start(
        runtime.clone(),
        module,
        config.to_owned(),
        Limits::default(),
        Tags::default(),
        Arc::new(AgentMetrics::default()),
        StateScope::standalone("function"),
    )
    .map_err(|e| e.to_string())?;
    let outputs = instance
        .process(0, &RecordBatch::new_empty(input.clone()))
        .map_err(|e| e.to_string())?;
    match outputs.as_slice() {
        [(0, batch)] => Ok(batch.schema()),
        other => Err(format!(
            "answered a batch of no rows with {} batch(es) on port(s) {:?}; a function module returns one batch on port 0, every row it got with the result appended",
            other.len(),
            other.iter().map(|(p, _)| *p).collect::<Vec<_>>()
        )),
    }
}

/// [`result_schema`] for modules named as `CREATE FUNCTION` names them on the command line: a
/// file relative to `base` (the pipeline's directory), or `builtin:NAME`.
pub fn local<'a>(
    runtime: &'a Arc<WasmRuntime>,
    base: &'a Path,
) -> impl Fn(&str, &str, &SchemaRef) -> Result<SchemaRef, String> + 'a {
    move |module, config, input| {
        result_schema(runtime, &super::resolve(base, module), config, input)
    }
}
