//! Turning a core WebAssembly module into an agent component: for languages whose compilers
//! emit WASI preview-1 core modules (Go's `wasip1` target), not components.
//!
//! The module must implement the agent world's canonical ABI by hand (the Go SDK does): export
//! `sabot:agent/handler@0.1.1#init` and friends and `cabi_realloc`, import
//! `sabot:agent/packed-state@0.1.1` and friends. [`componentize`] embeds the WIT of the world it
//! targets, at the version the module's `handler` exports name (`0.1.0` or `0.1.1`: both are
//! compiled into this binary, so the two cannot drift) and wraps the module with the WASI
//! preview-1 *reactor* adapter of the wasmtime release the host runs, so its WASI calls reach the
//! host's WASI preview 2.
//!
//! The adapter needs a little memory of its own (its state and a 64 KiB stack), which it asks the
//! module for on its first WASI call. Go's runtime cannot give it: it makes WASI calls from its
//! system stack, where Go code cannot be re-entered, and it owns every page of linear memory it
//! did not see grown. So the Go SDK reserves an arena in its data segment, marked by
//! [`ARENA_MAGIC`], and [`componentize`] adds a `cabi_realloc_adapter` to the module, in plain
//! Wasm, that hands out that arena: wit-component gives the adapter that function.

use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{ConstExpr, ExportKind, Function, GlobalType, Instruction, ValType};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{Resolve, SourceMap};

/// `(file name, text)` of the WIT files `$file` in `wit/$dir`, compiled into this binary.
macro_rules! contract {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../wit/", $dir, $file)))),*]
    };
}

/// The agent contract, as compiled into this binary: `wit/*.wit`, its newest version.
pub const WIT: &[(&str, &str)] = contract!("": "handler.wit", "packed-state.wit", "log.wit",
    "metrics.wit", "state.wit", "timers.wit", "types.wit", "worlds.wit");

/// The contract's first version, `wit/0.1.0/*.wit`, as released: modules built against it
/// (their exports named `…@0.1.0#…`) are componentized against it.
pub const WIT_0_1_0: &[(&str, &str)] = contract!("0.1.0/": "handler.wit", "log.wit",
    "metrics.wit", "state.wit", "timers.wit", "types.wit", "worlds.wit");

/// The contract version `core` was built against: the one its `handler` exports name.
fn contract_of(core: &[u8]) -> &'static [(&'static str, &'static str)] {
    let built_against_0_1_0 = wasmparser::Parser::new(0)
        .parse_all(core)
        .filter_map(|payload| match payload {
            Ok(wasmparser::Payload::ExportSection(reader)) => Some(reader),
            _ => None,
        })
        .flat_map(|reader| reader.into_iter().flatten())
        .any(|export| export.name.starts_with("sabot:agent/handler@0.1.0#"));
    if built_against_0_1_0 { WIT_0_1_0 } else { WIT }
}

/// Why a core module could not be made a component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    /// The input is already a component.
    #[error("{module} is already a component: it needs no componentize step")]
    AlreadyAComponent { module: String },
    /// The input is not a core WebAssembly module.
    #[error("{module} is not a core WebAssembly module (expected the output of a wasip1 build)")]
    NotWasm { module: String },
    /// The world name is not one of the contract's.
    #[error(
        "there is no world `{world}` in the agent contract (expected `agent` or `timed-agent`)"
    )]
    UnknownWorld { world: String },
    /// The module does not fit the world: a missing export, an import the world does not have…
    #[error("{module} does not fit the `{world}` world: {message}")]
    Encode {
        module: String,
        world: String,
        message: String,
    },
}

/// A component of the contract's `world` (`agent` or `timed-agent`) from the core module
/// `core`. `module` names it in errors.
pub fn componentize(core: &[u8], module: &str, world: &str) -> Result<Vec<u8>, ComponentizeError> {
    if wasmparser::Parser::is_component(core) {
        return Err(ComponentizeError::AlreadyAComponent {
            module: module.into(),
        });
    }
    if !wasmparser::Parser::is_core_wasm(core) {
        return Err(ComponentizeError::NotWasm {
            module: module.into(),
        });
    }
    let mut sources = SourceMap::new();
    for (name, text) in contract_of(core) {
        sources.push(std::path::Path::new(name), *text);
    }
    let mut resolve = Resolve::default();
    let group = sources.parse().unwrap_or_else(|(_, e)| {
        panic!("the agent contract compiled into this binary does not parse: {e}")
    });
    let package = resolve
        .push_group(group)
        .expect("the agent contract compiled into this binary resolves");
    let world_id = resolve.select_world(&[package], Some(world)).map_err(|_| {
        ComponentizeError::UnknownWorld {
            world: world.into(),
        }
    })?;
    let encode_error = |e: anyhow::Error| ComponentizeError::Encode {
        module: module.into(),
        world: world.into(),
        message: format!("{e:#}"),
    };
    let mut core = match adapter_arena(core) {
        Some(arena) => {
            with_adapter_realloc(core, arena).map_err(|message| ComponentizeError::Encode {
                module: module.into(),
                world: world.into(),
                message,
            })?
        }
        None => core.to_vec(),
    };
    wit_component::embed_component_metadata(&mut core, &resolve, world_id, StringEncoding::UTF8)
        .map_err(encode_error)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&core)
        .map_err(encode_error)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(encode_error)?
        .encode()
        .map_err(encode_error)
}

/// The mark of the Go SDK's arena marker, a statically initialised variable: the mark, the
/// arena's size in bytes (u32) and its address (u64), little-endian.
pub const ARENA_MAGIC: &[u8; 20] = b"SABOT:ADAPTER-ARENA:";

/// Where the module's adapter arena lies: `[start, end)` of linear memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arena {
    start: u32,
    end: u32,
}

/// The adapter arena of `core`, if its data segments carry the mark.
fn adapter_arena(core: &[u8]) -> Option<Arena> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        let Ok(wasmparser::Payload::DataSection(reader)) = payload else {
            continue;
        };
        for data in reader.into_iter().flatten() {
            if !matches!(data.kind, wasmparser::DataKind::Active { .. }) {
                continue;
            }
            let Some(at) = data
                .data
                .windows(ARENA_MAGIC.len())
                .position(|w| w == ARENA_MAGIC)
            else {
                continue;
            };
            let fields = at + ARENA_MAGIC.len();
            let size = u32::from_le_bytes(data.data.get(fields..fields + 4)?.try_into().ok()?);
            let start =
                u64::from_le_bytes(data.data.get(fields + 4..fields + 12)?.try_into().ok()?);
            let start = u32::try_from(start).ok()?;
            return Some(Arena {
                start,
                end: start.checked_add(size)?,
            });
        }
    }
    None
}

/// `core` with one more export, `cabi_realloc_adapter`: a bump allocator over `arena` that
/// never calls into the module.
fn with_adapter_realloc(core: &[u8], arena: Arena) -> Result<Vec<u8>, String> {
    let mut counts = Counts::default();
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload.map_err(|e| e.to_string())? {
            wasmparser::Payload::TypeSection(r) => counts.types = r.count(),
            wasmparser::Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    if let wasmparser::TypeRef::Func(_) = import.map_err(|e| e.to_string())?.ty {
                        counts.imported_funcs += 1;
                    }
                }
            }
            wasmparser::Payload::FunctionSection(r) => counts.funcs = r.count(),
            wasmparser::Payload::GlobalSection(r) => {
                counts.globals = r.count();
                counts.has_globals = true;
            }
            wasmparser::Payload::ExportSection(r) => {
                for export in r {
                    if export.map_err(|e| e.to_string())?.name == "cabi_realloc_adapter" {
                        return Err("the module already exports cabi_realloc_adapter".into());
                    }
                }
            }
            _ => {}
        }
    }
    if counts.types == 0 || counts.funcs == 0 || !counts.has_globals {
        return Err("a module with an adapter arena must have types, functions and globals (a Go SDK build)".into());
    }
    let mut injector = Injector { arena, counts };
    let mut module = wasm_encoder::Module::new();
    injector
        .parse_core_module(&mut module, wasmparser::Parser::new(0), core)
        .map_err(|e| format!("cannot add the adapter's allocator: {e}"))?;
    Ok(module.finish())
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    types: u32,
    imported_funcs: u32,
    funcs: u32,
    globals: u32,
    has_globals: bool,
}

struct Injector {
    arena: Arena,
    counts: Counts,
}

impl Reencode for Injector {
    type Error = std::convert::Infallible;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.counts.types);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_global_section(self, globals, section)?;
        globals.global(
            GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const(self.arena.start as i32),
        );
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_export_section(self, exports, section)?;
        exports.export(
            "cabi_realloc_adapter",
            ExportKind::Func,
            self.counts.imported_funcs + self.counts.funcs,
        );
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_code_section(self, code, section)?;
        code.function(&bump_allocator(self.arena, self.counts.globals));
        Ok(())
    }
}

/// `(old_ptr, old_size, align, new_size) -> ptr` over `arena`, its next free byte in global
/// `next`; traps when the arena is used up. Grown blocks are copied, never freed.
fn bump_allocator(arena: Arena, next: u32) -> Function {
    use Instruction as I;
    let (old_ptr, old_size, align, new_size, p) = (0, 1, 2, 3, 4);
    let mut f = Function::new([(1, ValType::I32)]);
    for i in [
        // p = (next + align - 1) & -align
        I::GlobalGet(next),
        I::LocalGet(align),
        I::I32Add,
        I::I32Const(1),
        I::I32Sub,
        I::I32Const(0),
        I::LocalGet(align),
        I::I32Sub,
        I::I32And,
        I::LocalSet(p),
        // p + new_size must stay within the arena
        I::LocalGet(p),
        I::LocalGet(new_size),
        I::I32Add,
        I::I32Const(arena.end as i32),
        I::I32GtU,
        I::If(wasm_encoder::BlockType::Empty),
        I::Unreachable,
        I::End,
        I::LocalGet(p),
        I::LocalGet(new_size),
        I::I32Add,
        I::GlobalSet(next),
        // a grown block keeps its contents
        I::LocalGet(old_size),
        I::If(wasm_encoder::BlockType::Empty),
        I::LocalGet(p),
        I::LocalGet(old_ptr),
        I::LocalGet(old_size),
        I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        },
        I::End,
        I::LocalGet(p),
        I::End,
    ] {
        f.instruction(&i);
    }
    f
}
