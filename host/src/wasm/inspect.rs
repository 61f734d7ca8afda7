//! `sabot inspect`: what a module is, what it imports and exports, and which SDK built it.

use serde::Serialize;
use wasmparser::{Parser, Payload};

use super::{TIMED_WORLD, WORLD, WasmRuntime};

/// What `sabot inspect` reports about a module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleInfo {
    /// `component`, `core module`, or `not WebAssembly`.
    pub kind: String,
    /// Size in bytes.
    pub size: usize,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// The agent world it implements, if it does.
    pub world: Option<String>,
    /// Why it is not a usable agent, if it is not.
    pub problem: Option<String>,
    /// Imported instances and functions, by name.
    pub imports: Vec<String>,
    /// Exported instances and functions, by name.
    pub exports: Vec<String>,
    /// The `sabot-sdk` version that built it, when built with the Rust SDK.
    pub sdk_version: Option<String>,
}

/// Inspects `bytes`, named `name` in messages.
pub fn inspect(runtime: &WasmRuntime, name: &str, bytes: &[u8]) -> ModuleInfo {
    let mut info = ModuleInfo {
        kind: if Parser::is_component(bytes) {
            "component".into()
        } else if Parser::is_core_wasm(bytes) {
            "core module".into()
        } else {
            "not WebAssembly".into()
        },
        size: bytes.len(),
        sha256: super::cache::sha256_hex(bytes),
        world: None,
        problem: None,
        imports: Vec::new(),
        exports: Vec::new(),
        sdk_version: sdk_version(bytes),
    };
    let mut timed = None;
    let component = match runtime.load_bytes(name, bytes) {
        Ok(module) => {
            timed = Some(module.has_time_handler());
            module.component().cloned()
        }
        Err(e) => {
            info.problem = Some(e.to_string());
            // A component of another world still has imports and exports worth showing.
            (info.kind == "component")
                .then(|| wasmtime::component::Component::new(runtime.engine(), bytes).ok())
                .flatten()
        }
    };
    if let Some(component) = component {
        let ty = component.component_type();
        info.imports = ty
            .imports(runtime.engine())
            .map(|(n, _)| n.to_owned())
            .collect();
        info.exports = ty
            .exports(runtime.engine())
            .map(|(n, _)| n.to_owned())
            .collect();
    }
    info.world = timed.map(|timed| {
        let world = if timed { TIMED_WORLD } else { WORLD };
        built_against(world, &info.exports)
    });
    info
}

/// `world` at the contract version the component's `handler` export names (`agent@0.1.0` for a
/// component built before `0.1.1`), or as the host names it when the export has no version.
fn built_against(world: &str, exports: &[String]) -> String {
    let version = exports
        .iter()
        .find_map(|e| e.strip_prefix("sabot:agent/handler@"));
    match (version, world.split_once('@')) {
        (Some(version), Some((name, _))) => format!("{name}@{version}"),
        _ => world.to_owned(),
    }
}

/// The contents of the `sabot-sdk` custom section, searched in every nested module.
pub fn sdk_version(bytes: &[u8]) -> Option<String> {
    for payload in Parser::new(0).parse_all(bytes) {
        if let Ok(Payload::CustomSection(section)) = payload
            && section.name() == "sabot-sdk"
        {
            return std::str::from_utf8(section.data()).ok().map(str::to_owned);
        }
    }
    None
}
