//! What a module says it returns: SQL's `CREATE FUNCTION` is type-checked by asking the module
//! itself, at planning time, before any row flows.
//!
//! A function module is an agent that appends its result to every row it gets (the protocol of
//! `sabot_sdk::function`). Given a batch with no rows, it answers with no rows of the columns it
//! would produce, or refuses argument types it does not take with an `invalid-input` error
//! saying what it expected. An agent called as a table function is asked the same way (and may
//! answer nothing: its columns are then known only when it runs). One instance, with the
//! default sandbox limits, answers once and is dropped.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::{AgentInstance, AgentMetrics, Limits, ModuleSource, Tags, WasmRuntime};
use crate::state::StateScope;

/// What a module configured with `config` (JSON) answers a batch of no rows of `input`'s
/// columns with: the columns of each batch it returns, with its output port — or why it
/// refuses them (its `init` or `process` failed).
pub fn answer(
    runtime: &Arc<WasmRuntime>,
    source: &ModuleSource,
    config: &str,
    input: &SchemaRef,
) -> Result<Vec<(u32, SchemaRef)>, String> {
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
    Ok(outputs
        .into_iter()
        .map(|(port, batch)| (port, batch.schema()))
        .collect())
}

/// [`answer`] for modules named as `CREATE FUNCTION` names them on the command line: a file
/// relative to `base` (the pipeline's directory), or `builtin:NAME`.
pub fn local<'a>(
    runtime: &'a Arc<WasmRuntime>,
    base: &'a Path,
) -> impl Fn(&str, &str, &SchemaRef) -> Result<Vec<(u32, SchemaRef)>, String> + 'a {
    move |module, config, input| answer(runtime, &super::resolve(base, module), config, input)
}
