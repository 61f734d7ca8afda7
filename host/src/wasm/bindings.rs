//! The one place that knows the WIT world: host bindings generated from `wit/`.

wasmtime::component::bindgen!({
    world: "agent",
    path: "../wit",
});

pub use sabot::agent::types::ErrorKind;
