//! Paths of the guest components used by Sabot's tests and benchmarks, built from source by this
//! crate's build script (nothing `.wasm` is committed).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The workspace root, for examples and golden files.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}
