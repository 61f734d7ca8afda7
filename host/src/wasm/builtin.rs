//! The operators shipped inside the `sabot` binary: `module = "builtin:NAME"` in a pipeline.
//!
//! They are ordinary agents, built from `operators/` with the same SDK users use, by this crate's
//! build script, and embedded here.

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

/// The names of the built-in operators.
pub fn names() -> Vec<&'static str> {
    embedded::BUILTINS.iter().map(|(name, _)| *name).collect()
}

/// The component bytes of the built-in operator `name`.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    embedded::BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
