//! The on-disk cache of compiled components, keyed by the module's content hash and the engine's
//! settings, so a second start of the same module does not recompile it.
//!
//! Entries are written to a temporary file and renamed into place, so a crash never leaves a
//! torn entry under a valid name; an entry that fails to load (corrupt, or from an incompatible
//! build) is deleted and recompiled.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from on this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded precompiled from the cache.
    Hit,
    /// Compiled now, and stored.
    Miss,
    /// Compiled now; no cache is configured (or it could not be written).
    Disabled,
    /// Already compiled by this process.
    Reused,
}

/// The compile cache: a directory of `.cwasm` files.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

/// A `Hasher` that feeds sha256, so the engine key is stable across processes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn engine_key(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

impl CompileCache {
    /// A cache in `dir` (created on first use), or none.
    pub fn new(dir: Option<PathBuf>) -> Self {
        CompileCache { dir }
    }

    /// The default directory: `$SABOT_CACHE_DIR`, else `$XDG_CACHE_HOME/sabot/components`, else
    /// `$HOME/.cache/sabot/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("SABOT_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("sabot").join("components"))
    }

    /// The cache directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Loads the compiled form of `bytes` (whose sha256 is `hash`), compiling and storing it on a
    /// miss. Compile errors are returned as they are.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        let entry = dir.join(format!("{hash}-{}.cwasm", engine_key(engine)));
        if entry.is_file() {
            // Read into memory rather than mapping the file: a mapped file changed by another
            // process under us would fault the host.
            let loaded = std::fs::read(&entry)
                .map_err(wasmtime::Error::from)
                .and_then(|bytes| {
                    // SAFETY: the bytes were written by `Component::serialize` of this same engine
                    // configuration (the key covers it) into a directory only this user writes;
                    // wasmtime checks the header and the engine compatibility before using them, and
                    // a file that fails is removed and recompiled below.
                    unsafe { Component::deserialize(engine, &bytes) }
                });
            match loaded {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %entry.display(), error = %e, "discarding an unreadable compile-cache entry");
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        match store(&entry, &component) {
            Ok(()) => Ok((component, CacheOutcome::Miss)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not write the compile cache; going on without it");
                Ok((component, CacheOutcome::Disabled))
            }
        }
    }
}

fn store(entry: &Path, component: &Component) -> wasmtime::Result<()> {
    let dir = entry.parent().expect("entries live in the cache directory");
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize()?;
    let tmp = tempfile_in(dir)?;
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, entry).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}

/// A temporary file name no other writer (thread or process) uses.
fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-{}-{n}", std::process::id())))
}
