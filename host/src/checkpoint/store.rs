//! Checkpoints on disk: one directory per checkpoint, completed by writing its metadata last;
//! with [`Remote`] storage, also uploaded to an object store, which recovery then reads.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CheckpointError;
use super::remote::{self, Remote};
use crate::state::BackendKind;

/// The metadata format this host writes and reads.
const FORMAT: u32 = 1;
/// The name of a checkpoint's metadata file, the last one written.
pub(super) const METADATA: &str = "_metadata";
/// Where the final snapshots of a run are gathered before they get their checkpoint id.
const FINAL_STAGING: &str = "final.partial";

/// A file of a checkpoint, with its size, checked before the checkpoint is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
}

/// What a complete checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format: u32,
    pub pipeline: String,
    pub id: u64,
    /// Written when the run's input had ended.
    pub last: bool,
    pub created_unix_ms: u64,
    /// Each source's position after the last row it emitted before the barrier.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Each agent's parallelism and backend when the snapshot was taken.
    pub agents: BTreeMap<String, AgentEntry>,
    /// Each sink's pre-committed, not yet known to be committed, output.
    pub sinks: BTreeMap<String, serde_json::Value>,
    pub files: Vec<FileEntry>,
    /// xxh3-64 of the metadata serialized with this field empty.
    #[serde(default)]
    pub checksum: String,
}

/// An agent in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEntry {
    pub parallelism: usize,
    pub backend: BackendKind,
}

impl Metadata {
    /// Metadata for checkpoint `id` of `pipeline`, without files or checksum yet.
    pub fn new(pipeline: &str, id: u64, last: bool) -> Self {
        Metadata {
            format: FORMAT,
            pipeline: pipeline.to_owned(),
            id,
            last,
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            sources: BTreeMap::new(),
            agents: BTreeMap::new(),
            sinks: BTreeMap::new(),
            files: Vec::new(),
            checksum: String::new(),
        }
    }

    fn compute_checksum(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.checksum.clear();
        let bytes = serde_json::to_vec(&unsigned).expect("metadata serializes");
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
    }

    /// Parses and checks the metadata of checkpoint `id` read from `place`: format, checksum, id.
    fn check(bytes: &[u8], id: u64, place: &str) -> Result<Metadata, String> {
        let metadata: Metadata =
            serde_json::from_slice(bytes).map_err(|e| format!("{place} does not parse: {e}"))?;
        if metadata.format != FORMAT {
            return Err(format!(
                "{place} has format {}, this host reads format {FORMAT}",
                metadata.format
            ));
        }
        if metadata.checksum != metadata.compute_checksum() {
            return Err(format!("{place} fails its checksum"));
        }
        if metadata.id != id {
            return Err(format!(
                "{place} names checkpoint {}, not {id}",
                metadata.id
            ));
        }
        Ok(metadata)
    }
}

/// A checkpoint chosen for recovery.
#[derive(Debug, Clone)]
pub struct Restored {
    pub metadata: Metadata,
    pub dir: PathBuf,
    /// Newer checkpoints that could not be used, and why.
    pub skipped: Vec<String>,
}

/// The checkpoints of one pipeline under a data directory, and in object storage when it has
/// a [`Remote`].
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    root: PathBuf,
    pipeline: String,
    remote: Option<Remote>,
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl CheckpointStore {
    /// The checkpoints of `pipeline` under `data_dir/checkpoints`.
    pub fn new(data_dir: &Path, pipeline: &str) -> Self {
        CheckpointStore {
            root: data_dir.join("checkpoints"),
            pipeline: pipeline.to_owned(),
            remote: None,
        }
    }

    /// Keeps the checkpoints in `remote` too: the local ones become a cache, and recovery
    /// reads the object store.
    pub fn with_remote(mut self, remote: Remote) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Whether checkpoints live in an object store (and so outlast the local directory).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Where recovery looks: the object store's URL, or the local directory.
    pub fn location(&self) -> PathBuf {
        match &self.remote {
            Some(r) => PathBuf::from(r.url()),
            None => self.root.clone(),
        }
    }

    /// Where checkpoints live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of checkpoint `id`.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("chk-{id:010}"))
    }

    /// Where the final snapshots of a run are gathered.
    pub fn final_dir(&self) -> PathBuf {
        self.root.join(FINAL_STAGING)
    }

    /// Creates an empty directory for checkpoint `id` (or the final one), replacing any leftover
    /// of an earlier attempt.
    pub fn prepare(&self, dir: &Path) -> Result<(), CheckpointError> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| CheckpointError::io("remove", dir, e))?;
        }
        fs::create_dir_all(dir).map_err(|e| CheckpointError::io("create", dir, e))
    }

    /// Completes a checkpoint whose snapshots are in `staged` (its own directory, or the final
    /// staging directory): moves them into place if needed, lists its files and writes its
    /// metadata atomically. Until this returns, the checkpoint does not exist for recovery.
    pub fn complete(&self, mut metadata: Metadata, staged: &Path) -> Result<(), CheckpointError> {
        let dir = self.dir(metadata.id);
        if staged != dir {
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(|e| CheckpointError::io("remove", &dir, e))?;
            }
            fs::create_dir_all(&self.root)
                .map_err(|e| CheckpointError::io("create", &self.root, e))?;
            if staged.exists() {
                fs::rename(staged, &dir).map_err(|e| CheckpointError::io("rename", staged, e))?;
            } else {
                fs::create_dir_all(&dir).map_err(|e| CheckpointError::io("create", &dir, e))?;
            }
        }
        metadata.files = list_files(&dir)?;
        metadata.checksum = metadata.compute_checksum();
        let bytes = serde_json::to_vec_pretty(&metadata).expect("metadata serializes");
        write_metadata(&dir, &bytes)?;
        sync_dir(&self.root);
        if let Some(remote) = &self.remote {
            let started = std::time::Instant::now();
            remote.upload(metadata.id, &dir, &metadata.files, bytes)?;
            tracing::debug!(
                checkpoint = metadata.id,
                url = %remote.url_of(metadata.id),
                bytes = metadata.files.iter().map(|f| f.size).sum::<u64>(),
                upload_ms = started.elapsed().as_secs_f64() * 1e3,
                "checkpoint uploaded"
            );
        }
        tracing::info!(
            checkpoint = metadata.id,
            last = metadata.last,
            files = metadata.files.len(),
            "checkpoint complete"
        );
        Ok(())
    }

    /// The ids of the checkpoint directories, complete or not, newest first.
    fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CheckpointError::io("list", &self.root, e)),
        };
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("chk-")?
                    .parse::<u64>()
                    .ok()
            })
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// Reads and checks checkpoint `id`: its metadata parses, its checksum matches, and every file
    /// it lists is there with its size. `Ok(None)` when it is incomplete (no metadata).
    pub fn read(&self, id: u64) -> Result<Option<Metadata>, String> {
        let dir = self.dir(id);
        let path = dir.join(METADATA);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let metadata = Metadata::check(&bytes, id, &path.display().to_string())?;
        for f in &metadata.files {
            let p = dir.join(&f.path);
            match fs::metadata(&p) {
                Ok(m) if m.len() == f.size => {}
                Ok(m) => {
                    return Err(format!(
                        "{} is {} bytes, the metadata says {}",
                        p.display(),
                        m.len(),
                        f.size
                    ));
                }
                Err(e) => return Err(format!("{} is missing: {e}", p.display())),
            }
        }
        Ok(Some(metadata))
    }

    /// The newest usable checkpoint. Incomplete ones (a crash mid-checkpoint) are passed over
    /// silently; damaged ones with a warning. When checkpoints exist but none is usable, an error:
    /// never a silent start from zero.
    pub fn latest(&self) -> Result<Option<Restored>, CheckpointError> {
        if let Some(remote) = &self.remote {
            return self.latest_remote(remote);
        }
        let mut skipped = Vec::new();
        for id in self.ids()? {
            match self.read(id) {
                Ok(None) => continue,
                Ok(Some(metadata)) => {
                    if metadata.pipeline != self.pipeline {
                        return Err(CheckpointError::OtherPipeline {
                            dir: self.root.clone(),
                            found: metadata.pipeline,
                            expected: self.pipeline.clone(),
                        });
                    }
                    for reason in &skipped {
                        tracing::warn!(reason = %reason, fallback = id, "skipped a damaged checkpoint");
                    }
                    return Ok(Some(Restored {
                        metadata,
                        dir: self.dir(id),
                        skipped,
                    }));
                }
                Err(reason) => skipped.push(format!("checkpoint {id}: {reason}")),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(CheckpointError::NoneUsable {
                dir: self.root.clone(),
                reasons: skipped.join("; "),
            })
        }
    }

    /// [`Self::latest`] from the object store: the newest usable checkpoint there, downloaded
    /// unless the local directory holds exactly that one.
    fn latest_remote(&self, remote: &Remote) -> Result<Option<Restored>, CheckpointError> {
        let mut skipped = Vec::new();
        for id in remote.ids()? {
            let bytes = match remote.metadata(id)? {
                None => continue,
                Some(Ok(bytes)) => bytes,
                Some(Err(reason)) => {
                    skipped.push(format!("checkpoint {id}: {reason}"));
                    continue;
                }
            };
            let place = format!("{}/{METADATA}", remote.url_of(id));
            let metadata = match Metadata::check(&bytes, id, &place) {
                Ok(m) => m,
                Err(reason) => {
                    skipped.push(format!("checkpoint {id}: {reason}"));
                    continue;
                }
            };
            if let Some(reason) = remote.check_files(id, &metadata.files)? {
                skipped.push(format!("checkpoint {id}: {reason}"));
                continue;
            }
            if metadata.pipeline != self.pipeline {
                return Err(CheckpointError::OtherPipeline {
                    dir: self.location(),
                    found: metadata.pipeline,
                    expected: self.pipeline.clone(),
                });
            }
            let dir = self.dir(id);
            let cached =
                matches!(self.read(id), Ok(Some(local)) if local.checksum == metadata.checksum);
            if !cached {
                let started = std::time::Instant::now();
                let staging = remote::download_dir(&self.root, id);
                self.prepare(&staging)?;
                remote.download(id, &metadata.files, &staging)?;
                write_metadata(&staging, &bytes)?;
                if dir.exists() {
                    fs::remove_dir_all(&dir).map_err(|e| CheckpointError::io("remove", &dir, e))?;
                }
                fs::rename(&staging, &dir)
                    .map_err(|e| CheckpointError::io("rename", &staging, e))?;
                sync_dir(&self.root);
                tracing::info!(
                    checkpoint = id,
                    url = %remote.url_of(id),
                    files = metadata.files.len(),
                    bytes = metadata.files.iter().map(|f| f.size).sum::<u64>(),
                    download_ms = started.elapsed().as_secs_f64() * 1e3,
                    "checkpoint downloaded"
                );
            }
            for reason in &skipped {
                tracing::warn!(reason = %reason, fallback = id, "skipped a damaged checkpoint");
            }
            return Ok(Some(Restored {
                metadata,
                dir,
                skipped,
            }));
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(CheckpointError::NoneUsable {
                dir: self.location(),
                reasons: skipped.join("; "),
            })
        }
    }

    /// Keeps the newest `keep` complete checkpoints (and anything newer than them) and removes
    /// older ones, complete or not; in the object store too.
    pub fn retain(&self, keep: usize) -> Result<(), CheckpointError> {
        if let Some(remote) = &self.remote {
            let mut complete = 0;
            for id in remote.ids()? {
                if complete >= keep.max(1) {
                    remote.delete(id)?;
                } else if remote.is_complete(id)? {
                    complete += 1;
                }
            }
        }
        let ids = self.ids()?;
        let mut complete = 0;
        for id in ids {
            if complete >= keep.max(1) {
                let dir = self.dir(id);
                fs::remove_dir_all(&dir).map_err(|e| CheckpointError::io("remove", &dir, e))?;
                continue;
            }
            if self.read(id).ok().flatten().is_some() {
                complete += 1;
            }
        }
        Ok(())
    }

    /// Removes incomplete checkpoints (left by a crash, or abandoned when a run stopped) and the
    /// staging directories; in the object store, every checkpoint newer than `restored` too
    /// (incomplete or damaged: the run writes those ids again). Only while no run uses the
    /// checkpoints.
    pub fn discard_incomplete(&self, restored: u64) -> Result<(), CheckpointError> {
        if let Some(remote) = &self.remote {
            for id in remote.ids()? {
                if id > restored || !remote.is_complete(id)? {
                    remote.delete(id)?;
                }
            }
            if let Ok(entries) = fs::read_dir(&self.root) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().ends_with(".download") {
                        let dir = e.path();
                        fs::remove_dir_all(&dir)
                            .map_err(|e| CheckpointError::io("remove", &dir, e))?;
                    }
                }
            }
        }
        for other in self.ids()? {
            if !self.dir(other).join(METADATA).exists() {
                let dir = self.dir(other);
                fs::remove_dir_all(&dir).map_err(|e| CheckpointError::io("remove", &dir, e))?;
            }
        }
        let staging = self.final_dir();
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| CheckpointError::io("remove", &staging, e))?;
        }
        Ok(())
    }

    /// Removes every checkpoint (`--fresh`), in the object store too.
    pub fn clear(&self) -> Result<(), CheckpointError> {
        if let Some(remote) = &self.remote {
            remote.clear()?;
        }
        if self.root.exists() {
            fs::remove_dir_all(&self.root)
                .map_err(|e| CheckpointError::io("remove", &self.root, e))?;
        }
        Ok(())
    }
}

/// Writes a checkpoint's metadata into `dir` atomically: a temporary file, fsync, rename.
fn write_metadata(dir: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let tmp = dir.join(format!("{METADATA}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| CheckpointError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CheckpointError::io("write", &tmp, e))?;
    drop(file);
    let path = dir.join(METADATA);
    fs::rename(&tmp, &path).map_err(|e| CheckpointError::io("rename", &tmp, e))?;
    sync_dir(dir);
    Ok(())
}

/// Every file under `dir` (but the metadata), with its size, in path order.
fn list_files(dir: &Path) -> Result<Vec<FileEntry>, CheckpointError> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> Result<(), CheckpointError> {
        let entries = fs::read_dir(dir).map_err(|e| CheckpointError::io("list", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CheckpointError::io("list", dir, e))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| CheckpointError::io("stat", &path, e))?;
            if meta.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .into_owned();
                if rel != METADATA && rel != format!("{METADATA}.tmp") {
                    out.push(FileEntry {
                        path: rel,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(store: &CheckpointStore, id: u64) {
        let dir = store.dir(id);
        store.prepare(&dir).unwrap();
        fs::create_dir_all(dir.join("state/a/0")).unwrap();
        fs::write(dir.join("state/a/0/memory.bin"), vec![id as u8; 10]).unwrap();
        let mut m = Metadata::new("p", id, false);
        m.sources
            .insert("s".into(), serde_json::json!({ "rows": id }));
        store.complete(m, &dir).unwrap();
    }

    #[test]
    fn the_newest_complete_checkpoint_is_restored_and_incomplete_ones_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path(), "p");
        assert!(
            store.latest().unwrap().is_none(),
            "nothing yet: start fresh"
        );
        complete(&store, 1);
        complete(&store, 2);
        // A crash mid-checkpoint: snapshots written, metadata not.
        store.prepare(&store.dir(3)).unwrap();
        fs::write(store.dir(3).join("x"), b"half").unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(r.metadata.id, 2);
        assert_eq!(r.metadata.sources["s"], serde_json::json!({ "rows": 2 }));
        assert!(r.skipped.is_empty());
        store.discard_incomplete(2).unwrap();
        assert!(!store.dir(3).exists());
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path(), "p");
        complete(&store, 1);
        complete(&store, 2);
        complete(&store, 3);
        // 3: a snapshot file lost; 2: metadata edited.
        fs::remove_file(store.dir(3).join("state/a/0/memory.bin")).unwrap();
        let meta = store.dir(2).join(METADATA);
        let text = fs::read_to_string(&meta)
            .unwrap()
            .replace("\"rows\": 2", "\"rows\": 9");
        fs::write(&meta, text).unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(r.metadata.id, 1);
        assert_eq!(r.skipped.len(), 2);
        assert!(r.skipped[0].contains("is missing"), "{:?}", r.skipped);
        assert!(r.skipped[1].contains("checksum"), "{:?}", r.skipped);
    }

    #[test]
    fn when_no_checkpoint_is_usable_recovery_stops_instead_of_starting_from_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path(), "p");
        complete(&store, 1);
        fs::write(store.dir(1).join(METADATA), b"{ not json").unwrap();
        let e = store.latest().unwrap_err().to_string();
        assert!(e.contains("no usable checkpoint"), "{e}");
        assert!(e.contains("does not parse"), "{e}");
        assert!(e.contains("--fresh"), "{e}");
    }

    #[test]
    fn another_pipelines_checkpoints_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        complete(&CheckpointStore::new(tmp.path(), "p"), 1);
        let e = CheckpointStore::new(tmp.path(), "q")
            .latest()
            .unwrap_err()
            .to_string();
        assert!(e.contains("belong to pipeline `p`, not `q`"), "{e}");
    }

    #[test]
    fn retention_keeps_the_newest_complete_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path(), "p");
        for id in 1..=5 {
            complete(&store, id);
        }
        store.retain(2).unwrap();
        assert_eq!(store.ids().unwrap(), vec![5, 4]);
    }

    #[test]
    fn the_final_checkpoint_moves_its_staged_snapshots_into_place() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(tmp.path(), "p");
        let staging = store.final_dir();
        store.prepare(&staging).unwrap();
        fs::write(staging.join("f"), b"abc").unwrap();
        store
            .complete(Metadata::new("p", 4, true), &staging)
            .unwrap();
        let r = store.latest().unwrap().unwrap();
        assert!(r.metadata.last);
        assert_eq!(
            r.metadata.files,
            vec![FileEntry {
                path: "f".into(),
                size: 3
            }]
        );
        assert!(!staging.exists());
    }
}
