//! The on-disk cache of compiled components, keyed by the module's content hash and the engine's
//! settings, so a second start of the same module does not recompile it.
//!
//! Entries are written to a temporary file and renamed into place, so a crash never leaves a
//! torn entry under a valid name; an entry that fails to load (corrupt, or from an incompatible
//! build) is deleted and recompiled.
//!
//! Entries are native code: they are loaded only from a directory this user owns that no other
//! user can write (it is created `0700`), and only from regular files (not symbolic links) this
//! user owns. A runtime refuses to start on a cache directory failing that check
//! ([`CompileCache::verify`]); an entry failing it is removed and compiled again. The
//! cache has a size budget: after each store, the least recently used entries (by modification
//! time, which a hit refreshes) are removed until it fits.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    /// Not compiled: a built-in operator running natively ([`Builtins`](super::Builtins)).
    Native,
}

/// The compile cache: a directory of `.cwasm` files.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// The most bytes its entries may hold together.
    budget: u64,
    /// The outcome of the ownership check (unset: not checked yet).
    trusted: std::sync::Arc<OnceLock<Result<(), String>>>,
}

/// The default size budget of a compile cache.
pub const DEFAULT_CACHE_MB: u64 = 1024;

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
        CompileCache {
            dir,
            budget: DEFAULT_CACHE_MB << 20,
            trusted: Default::default(),
        }
    }

    /// The cache with its entries limited to `bytes` together.
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = bytes;
        self
    }

    /// Checks, once, that the directory is safe to load native code from: created if missing,
    /// owned by this user and writable by nobody else. The reason when it is not.
    pub fn verify(&self) -> Result<(), String> {
        let Some(dir) = self.dir.as_deref() else {
            return Ok(());
        };
        self.trusted
            .get_or_init(|| {
                secure_dir(dir).inspect_err(|reason| {
                    tracing::warn!(dir = %dir.display(), %reason, "not using the compile cache: its entries would be loaded as native code");
                })
            })
            .clone()
    }

    /// The directory when it passed [`verify`](Self::verify).
    fn trusted_dir(&self) -> Option<&Path> {
        self.verify().ok()?;
        self.dir.as_deref()
    }

    /// The entry of the module whose sha256 is `hash`.
    fn entry(dir: &Path, engine: &Engine, hash: &str) -> PathBuf {
        dir.join(format!("{hash}-{}.cwasm", engine_key(engine)))
    }

    /// Compiles `bytes` (whose sha256 is `hash`) into the cache unless it is there; nothing is
    /// kept in memory. For a process that compiles on behalf of another. Without a usable cache
    /// it compiles and discards the result.
    pub fn precompile(&self, engine: &Engine, bytes: &[u8], hash: &str) -> wasmtime::Result<()> {
        let Some(dir) = self.trusted_dir() else {
            // No cache to share: compiling still tells whether the module is valid and how
            // much it costs; the caller compiles it again.
            engine.precompile_component(bytes)?;
            return Ok(());
        };
        let entry = Self::entry(dir, engine, hash);
        if entry.is_file() {
            return Ok(());
        }
        let serialized = engine.precompile_component(bytes)?;
        store(&entry, &serialized)?;
        self.evict(dir, &entry);
        Ok(())
    }

    /// Removes the entry of `hash`, if any (a module that was refused after compiling).
    pub fn remove(&self, engine: &Engine, hash: &str) {
        if let Some(dir) = self.trusted_dir() {
            let _ = std::fs::remove_file(Self::entry(dir, engine, hash));
        }
    }

    /// Bytes held by the cache's entries.
    pub fn size_bytes(&self) -> u64 {
        self.trusted_dir()
            .map_or(0, |dir| entries(dir).iter().map(|e| e.1).sum())
    }

    /// Removes the least recently used entries (never `keep`) until the cache fits its budget.
    fn evict(&self, dir: &Path, keep: &Path) {
        let mut all = entries(dir);
        let mut total: u64 = all.iter().map(|e| e.1).sum();
        if total <= self.budget {
            return;
        }
        all.sort_by_key(|e| e.2);
        for (path, len, _) in all {
            if total <= self.budget {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::debug!(path = %path.display(), bytes = len, "compile cache: evicted");
            }
        }
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
        let Some(dir) = self.trusted_dir() else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        let entry = Self::entry(dir, engine, hash);
        match read_entry(&entry) {
            Ok(Some(serialized)) => {
                // SAFETY: the bytes were written by `Component::serialize` of this same engine
                // configuration (the key covers it) into a directory only this user can write,
                // from a regular file this user owns (`read_entry`, `secure_dir`); wasmtime checks
                // the header and the engine compatibility before using them, and a file that
                // fails is removed and recompiled below.
                match unsafe { Component::deserialize(engine, &serialized) } {
                    Ok(component) => {
                        touch(&entry);
                        return Ok((component, CacheOutcome::Hit));
                    }
                    Err(e) => {
                        tracing::warn!(path = %entry.display(), error = %e, "discarding an unreadable compile-cache entry");
                        let _ = std::fs::remove_file(&entry);
                    }
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(path = %entry.display(), %reason, "discarding a compile-cache entry");
                let _ = std::fs::remove_file(&entry);
            }
        }
        let component = Component::new(engine, bytes)?;
        match component
            .serialize()
            .and_then(|serialized| store(&entry, &serialized))
        {
            Ok(()) => {
                self.evict(dir, &entry);
                Ok((component, CacheOutcome::Miss))
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not write the compile cache; going on without it");
                Ok((component, CacheOutcome::Disabled))
            }
        }
    }
}

/// Creates `dir` (`0700`) if missing, and checks that it is a directory this user owns that no
/// other user can write.
fn secure_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {me}); use a directory of your own (--cache-dir, SABOT_CACHE_DIR)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "its mode is {:o}: other users can write it (expected no group or other write permission, e.g. 700)",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// The bytes of an entry: `None` when there is none; an error when it is not a regular file
/// this user owns (a symbolic link is not followed).
fn read_entry(entry: &Path) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(entry)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it (a symbolic link is refused): {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    // SAFETY: as in `secure_dir`.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me {
        return Err(format!(
            "it is not a regular file owned by this user (uid {}, not {me})",
            meta.uid()
        ));
    }
    // Read into memory rather than mapping the file: a mapped file changed by another process
    // under us would fault the host.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(Some(bytes))
}

/// Marks an entry as just used.
fn touch(entry: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new().append(true).open(entry) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// The cache's entries: path, size, last use.
fn entries(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.len(), meta.modified().ok()?))
        })
        .collect()
}

fn store(entry: &Path, serialized: &[u8]) -> wasmtime::Result<()> {
    let dir = entry.parent().expect("entries live in the cache directory");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn component(n: u32) -> Vec<u8> {
        wat::parse_str(format!(
            "(component (core module (func (export \"f{n}\") (result i32) i32.const {n})))"
        ))
        .unwrap()
    }

    fn engine() -> Engine {
        crate::wasm::new_engine().unwrap()
    }

    fn load(cache: &CompileCache, bytes: &[u8]) -> CacheOutcome {
        cache
            .load_or_compile(&engine(), bytes, &sha256_hex(bytes))
            .unwrap()
            .1
    }

    #[test]
    fn a_new_cache_directory_is_private_and_a_second_load_hits() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("cache");
        let cache = CompileCache::new(Some(dir.clone()));
        assert_eq!(load(&cache, &component(1)), CacheOutcome::Miss);
        assert_eq!(load(&cache, &component(1)), CacheOutcome::Hit);
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "created private, not {mode:o}");
    }

    #[test]
    fn a_directory_others_can_write_or_another_user_owns_is_refused_with_the_reason() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = CompileCache::new(Some(open.clone()));
        let reason = cache.verify().unwrap_err();
        assert!(
            reason.contains("777") && reason.contains("write"),
            "{reason}"
        );
        assert_eq!(load(&cache, &component(2)), CacheOutcome::Disabled);
        assert_eq!(
            std::fs::read_dir(&open).unwrap().count(),
            0,
            "nothing written to a directory that cannot be trusted"
        );
        // SAFETY: `geteuid` has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = root.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let reason = CompileCache::new(Some(theirs)).verify().unwrap_err();
            assert!(reason.contains("owned by uid 65534"), "{reason}");
        }
    }

    #[test]
    fn an_entry_that_is_a_symlink_or_not_ours_is_discarded_and_compiled_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = CompileCache::new(Some(dir.clone()));
        let bytes = component(3);
        assert_eq!(load(&cache, &bytes), CacheOutcome::Miss);
        let entry = CompileCache::entry(&dir, &engine(), &sha256_hex(&bytes));
        let elsewhere = root.path().join("planted.cwasm");
        std::fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert_eq!(
            load(&cache, &bytes),
            CacheOutcome::Miss,
            "the link is not followed"
        );
        assert!(!entry.is_symlink(), "the link was replaced by a real entry");
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::lchown(&entry, Some(65534), None).unwrap();
            assert_eq!(
                load(&cache, &bytes),
                CacheOutcome::Miss,
                "another user's entry is not loaded"
            );
            assert_eq!(std::fs::metadata(&entry).unwrap().uid(), 0);
        }
    }

    #[test]
    fn the_cache_keeps_to_its_budget_by_evicting_the_least_recently_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let probe = CompileCache::new(Some(root.path().join("probe")));
        load(&probe, &component(10));
        let one = probe.size_bytes();
        assert!(one > 0);
        // Room for two entries, not three.
        let cache = CompileCache::new(Some(dir.clone())).with_budget(one * 5 / 2);
        let (a, b, c) = (component(10), component(11), component(12));
        load(&cache, &a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        load(&cache, &b);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            load(&cache, &a),
            CacheOutcome::Hit,
            "a is now the most recent"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        load(&cache, &c);
        assert!(
            cache.size_bytes() <= one * 5 / 2,
            "{} > budget",
            cache.size_bytes()
        );
        assert_eq!(load(&cache, &a), CacheOutcome::Hit, "recently used: kept");
        assert_eq!(
            load(&cache, &b),
            CacheOutcome::Miss,
            "least recently used: evicted"
        );
    }

    #[test]
    fn a_removed_entry_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(Some(root.path().join("cache")));
        let bytes = component(20);
        cache
            .precompile(&engine(), &bytes, &sha256_hex(&bytes))
            .unwrap();
        assert!(cache.size_bytes() > 0);
        cache.remove(&engine(), &sha256_hex(&bytes));
        assert_eq!(cache.size_bytes(), 0);
    }
}
