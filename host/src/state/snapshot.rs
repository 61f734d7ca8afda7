//! Snapshots of an instance's state, and opening an instance's backend from them.
//!
//! A memory backend's snapshot is one file, `memory.bin`: entries as `[len u32 LE][key][len u32
//! LE][value]`, then the xxh3-64 of everything before (8 bytes LE). A RocksDB backend's snapshot is
//! a RocksDB checkpoint (hard links to its immutable files) in `rocksdb/`. An instance that never
//! held state writes neither.
//!
//! Restoring at the same parallelism into RocksDB links the snapshot's files into the working
//! database: recovery time does not grow with the size of the state. Any other case (another
//! parallelism, another backend) reads the snapshots of every old instance and keeps the entries
//! of the key groups the new instance owns.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BackendError, BackendKind, MemoryBackend, RocksBackend, StateBackend};

pub(super) const MEMORY_FILE: &str = "memory.bin";
pub(super) const ROCKSDB_DIR: &str = "rocksdb";

fn io(action: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError(format!("cannot {action} {}: {e}", path.display()))
}

/// Writes `entries` as a memory snapshot into `dir`.
pub(super) fn write_memory_snapshot<'a>(
    dir: &Path,
    entries: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), BackendError> {
    let path = dir.join(MEMORY_FILE);
    let file = File::create(&path).map_err(|e| io("create", &path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut put = |bytes: &[u8]| -> std::io::Result<()> {
        hasher.update(bytes);
        out.write_all(bytes)
    };
    for (k, v) in entries {
        put(&(k.len() as u32).to_le_bytes())
            .and_then(|()| put(k))
            .and_then(|()| put(&(v.len() as u32).to_le_bytes()))
            .and_then(|()| put(v))
            .map_err(|e| io("write", &path, e))?;
    }
    let digest = hasher.digest();
    out.write_all(&digest.to_le_bytes())
        .map_err(|e| io("write", &path, e))?;
    let file = out
        .into_inner()
        .map_err(|e| io("write", &path, e.into_error()))?;
    file.sync_all().map_err(|e| io("sync", &path, e))
}

/// Reads a memory snapshot, checking its checksum.
fn read_memory_snapshot(
    dir: &Path,
    mut each: impl FnMut(Vec<u8>, Vec<u8>),
) -> Result<(), BackendError> {
    let path = dir.join(MEMORY_FILE);
    let mut bytes = Vec::new();
    BufReader::new(File::open(&path).map_err(|e| io("open", &path, e))?)
        .read_to_end(&mut bytes)
        .map_err(|e| io("read", &path, e))?;
    let damaged = |what: &str| {
        BackendError(format!(
            "state snapshot {} is damaged: {what}",
            path.display()
        ))
    };
    if bytes.len() < 8 {
        return Err(damaged("too short"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 8);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != digest {
        return Err(damaged("checksum mismatch"));
    }
    let mut rest = body;
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, BackendError> {
        if rest.len() < 4 {
            return Err(damaged("truncated entry"));
        }
        let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + n {
            return Err(damaged("truncated entry"));
        }
        let out = rest[4..4 + n].to_vec();
        *rest = &rest[4 + n..];
        Ok(out)
    };
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        each(k, v);
    }
    Ok(())
}

/// The snapshots an instance restores from: the snapshot directories of every instance of the
/// agent at checkpoint time, in instance order, and the backend that wrote them.
#[derive(Debug, Clone)]
pub struct SnapshotSource {
    pub dirs: Vec<PathBuf>,
    pub kind: BackendKind,
}

/// Calls `each` with every entry of snapshot `dir` whose key group is in `owned`.
fn read_owned(
    dir: &Path,
    kind: BackendKind,
    owned: &Range<u32>,
    mut each: impl FnMut(Vec<u8>, Vec<u8>),
) -> Result<(), BackendError> {
    let mut keep = |k: Vec<u8>, v: Vec<u8>| {
        if k.len() >= 2 && owned.contains(&u32::from(u16::from_be_bytes([k[0], k[1]]))) {
            each(k, v);
        }
    };
    // An instance with no state wrote no snapshot file.
    match kind {
        BackendKind::Memory if dir.join(MEMORY_FILE).exists() => {
            read_memory_snapshot(dir, &mut keep)
        }
        BackendKind::Rocksdb if dir.join(ROCKSDB_DIR).exists() => {
            RocksBackend::read_all(&dir.join(ROCKSDB_DIR), &mut keep)
        }
        _ => Ok(()),
    }
}

/// Links (or copies, where linking is not possible) every file of `from` into `to`.
fn link_tree(from: &Path, to: &Path) -> Result<(), BackendError> {
    fs::create_dir_all(to).map_err(|e| io("create", to, e))?;
    for entry in fs::read_dir(from).map_err(|e| io("list", from, e))? {
        let entry = entry.map_err(|e| io("list", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let name = entry.file_name();
        let immutable = name.to_string_lossy().ends_with(".sst");
        if entry.file_type().map_err(|e| io("stat", &src, e))?.is_dir() {
            link_tree(&src, &dst)?;
        } else if !(immutable && fs::hard_link(&src, &dst).is_ok()) {
            // Files RocksDB rewrites (MANIFEST, OPTIONS, CURRENT) are copied, never shared.
            fs::copy(&src, &dst).map_err(|e| io("copy", &src, e))?;
        }
    }
    Ok(())
}

/// Opens the state backend of one instance: empty, or restored from `from`, behind a write-back
/// cache of `cache_bytes` for RocksDB (none when 0).
///
/// `work_dir` is where a RocksDB instance keeps its working database (emptied first); `owned` is
/// the range of key groups the instance owns; `instance` is its index, used to link a snapshot
/// directly when the parallelism did not change.
pub fn open_instance(
    kind: BackendKind,
    work_dir: &Path,
    from: Option<&SnapshotSource>,
    instance: usize,
    parallelism: usize,
    owned: Range<u32>,
    cache_bytes: usize,
) -> Result<Arc<dyn StateBackend>, BackendError> {
    let backend = open_uncached(kind, work_dir, from, instance, parallelism, owned)?;
    Ok(if kind == BackendKind::Rocksdb && cache_bytes > 0 {
        Arc::new(super::CachedBackend::new(backend, cache_bytes))
    } else {
        backend
    })
}

fn open_uncached(
    kind: BackendKind,
    work_dir: &Path,
    from: Option<&SnapshotSource>,
    instance: usize,
    parallelism: usize,
    owned: Range<u32>,
) -> Result<Arc<dyn StateBackend>, BackendError> {
    if kind == BackendKind::Rocksdb && work_dir.exists() {
        fs::remove_dir_all(work_dir).map_err(|e| io("clear the state directory", work_dir, e))?;
    }
    let empty = || -> Result<Arc<dyn StateBackend>, BackendError> {
        Ok(match kind {
            BackendKind::Memory => Arc::new(MemoryBackend::default()),
            BackendKind::Rocksdb => Arc::new(RocksBackend::open(work_dir)?),
        })
    };
    let Some(from) = from else {
        return empty();
    };
    let same_layout = from.dirs.len() == parallelism && from.kind == kind;
    match kind {
        BackendKind::Rocksdb if same_layout => {
            let snapshot = from.dirs[instance].join(ROCKSDB_DIR);
            if snapshot.exists() {
                link_tree(&snapshot, work_dir)?;
            }
            Ok(Arc::new(RocksBackend::open(work_dir)?))
        }
        BackendKind::Memory if same_layout => {
            let mut entries = Vec::new();
            read_owned(&from.dirs[instance], from.kind, &owned, |k, v| {
                entries.push((k, v))
            })?;
            Ok(Arc::new(MemoryBackend::from_entries(entries)))
        }
        _ => {
            let backend = empty()?;
            for dir in &from.dirs {
                let mut batch = Vec::new();
                let mut result = Ok(());
                read_owned(dir, from.kind, &owned, |k, v| {
                    batch.push((k, Some(v)));
                    if batch.len() >= 64 * 1024 && result.is_ok() {
                        result = backend.write(std::mem::take(&mut batch));
                    }
                })?;
                result?;
                backend.write(batch)?;
            }
            Ok(backend)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{StateScope, owned_key_groups};

    fn fill(scope: &StateScope, n: i64) {
        for i in 0..n {
            let key = i.to_le_bytes().to_vec();
            if scope.owns(&key).is_ok() {
                scope
                    .write("s", vec![((key, vec![]), Some(i.to_string().into_bytes()))])
                    .unwrap();
            }
        }
    }

    fn snapshot_of(kind: BackendKind, root: &Path, parallelism: usize, n: i64) -> SnapshotSource {
        let mut dirs = Vec::new();
        for i in 0..parallelism {
            let backend = open_instance(
                kind,
                &root.join(format!("work-{i}")),
                None,
                i,
                parallelism,
                owned_key_groups(i, parallelism),
                64 << 10,
            )
            .unwrap();
            let scope = StateScope::new(backend.clone(), "a", i, parallelism, true);
            fill(&scope, n);
            let dir = root.join(format!("snap-{i}"));
            fs::create_dir_all(&dir).unwrap();
            backend.snapshot(&dir).unwrap();
            // Writes after the snapshot are not in it.
            scope
                .write(
                    "late",
                    vec![((0i64.to_le_bytes().to_vec(), vec![]), Some(b"x".to_vec()))],
                )
                .ok();
            dirs.push(dir);
        }
        SnapshotSource { dirs, kind }
    }

    fn count(kind: BackendKind, root: &Path, from: &SnapshotSource, parallelism: usize) -> usize {
        let mut total = 0;
        for i in 0..parallelism {
            let backend = open_instance(
                kind,
                &root.join(format!("restored-{i}")),
                Some(from),
                i,
                parallelism,
                owned_key_groups(i, parallelism),
                64 << 10,
            )
            .unwrap();
            let scope = StateScope::new(backend, "a", i, parallelism, true);
            for k in 0..1_000i64 {
                let key = k.to_le_bytes().to_vec();
                if scope.owns(&key).is_ok() {
                    let got = scope.get_many("s", &[(key.clone(), vec![])]).unwrap();
                    assert_eq!(got[0], Some(k.to_string().into_bytes()));
                    assert_eq!(scope.get_many("late", &[(key, vec![])]).unwrap()[0], None);
                    total += 1;
                }
            }
        }
        total
    }

    #[test]
    fn state_is_restored_at_the_same_and_at_another_parallelism_and_backend() {
        for from_kind in [BackendKind::Memory, BackendKind::Rocksdb] {
            for to_kind in [BackendKind::Memory, BackendKind::Rocksdb] {
                let tmp = tempfile::tempdir().unwrap();
                let snap = snapshot_of(from_kind, tmp.path(), 2, 1_000);
                for p in [2, 3, 1] {
                    let dir = tmp.path().join(format!("to-{p}"));
                    assert_eq!(
                        count(to_kind, &dir, &snap, p),
                        1_000,
                        "{from_kind:?} → {to_kind:?} at {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_damaged_memory_snapshot_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = snapshot_of(BackendKind::Memory, tmp.path(), 1, 10);
        let file = snap.dirs[0].join(MEMORY_FILE);
        let mut bytes = fs::read(&file).unwrap();
        bytes[3] ^= 1;
        fs::write(&file, bytes).unwrap();
        let e = open_instance(
            BackendKind::Memory,
            &tmp.path().join("w"),
            Some(&snap),
            0,
            1,
            owned_key_groups(0, 1),
            0,
        )
        .unwrap_err();
        assert!(e.0.contains("checksum mismatch"), "{e}");
    }
}
