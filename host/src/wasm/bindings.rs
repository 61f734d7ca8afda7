//! The one place that knows the WIT worlds: host bindings generated from `wit/`.
//!
//! Generated for `timed-agent`, the larger world; a component of the plain `agent` world is
//! instantiated through the same bindings, without the `time-handler` export.

wasmtime::component::bindgen!({
    world: "timed-agent",
    path: "../wit",
    imports: {
        // Lists that break the packing are the SDK's bug: they trap, naming what is wrong.
        "sabot:agent/packed-state": trappable,
    },
});

pub use exports::sabot::agent::handler::GuestIndices as HandlerIndices;
pub use exports::sabot::agent::time_handler::GuestIndices as TimeHandlerIndices;
pub use sabot::agent::types::ErrorKind;
