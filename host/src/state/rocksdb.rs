//! The RocksDB backend: state on local disk, so it can outgrow memory.
//!
//! One database per agent, under the run's data directory. The write-ahead log is off: a
//! database is rebuilt from a checkpoint after a crash, never replayed from its own log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::{BackendError, Entries, StateBackend};

/// State kept in a RocksDB database.
pub struct RocksBackend {
    db: DB,
    path: PathBuf,
    /// Whether anything was ever written: an empty database needs no snapshot.
    has_data: AtomicBool,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn failed(action: &str, path: &Path, e: rocksdb::Error) -> BackendError {
    BackendError(format!("RocksDB at {}: {action}: {e}", path.display()))
}

impl RocksBackend {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        std::fs::create_dir_all(path).map_err(|e| {
            BackendError(format!(
                "cannot create the state directory {}: {e}",
                path.display()
            ))
        })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.increase_parallelism(2);
        options.set_write_buffer_size(64 << 20);
        // Most reads of keyed state miss (a key's first event, a window's first row): bloom
        // filters, in the memtable and in every table file, answer those without a search.
        options.set_memtable_prefix_bloom_ratio(0.01);
        options.set_memtable_whole_key_filtering(true);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, path).map_err(|e| failed("open", path, e))?;
        let has_data = db.iterator(IteratorMode::Start).next().is_some();
        Ok(RocksBackend {
            db,
            path: path.to_owned(),
            has_data: AtomicBool::new(has_data),
        })
    }

    /// Every entry of the database at `path`, opened read-only, in key order.
    pub fn read_all(
        path: &Path,
        mut each: impl FnMut(Vec<u8>, Vec<u8>),
    ) -> Result<(), BackendError> {
        let db = DB::open_for_read_only(&Options::default(), path, false)
            .map_err(|e| failed("open read-only", path, e))?;
        for item in db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(|e| failed("read", path, e))?;
            each(k.into_vec(), v.into_vec());
        }
        Ok(())
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateBackend for RocksBackend {
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map_err(|e| failed("read", &self.path, e)))
            .collect()
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), BackendError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.has_data.store(true, Ordering::Relaxed);
        let mut batch = WriteBatch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| failed("write", &self.path, e))
    }

    fn snapshot(&self, dir: &Path) -> Result<(), BackendError> {
        if !self.has_data.load(Ordering::Relaxed) {
            return Ok(()); // restoring finds no database: empty state
        }
        // The write-ahead log is off: flush the memtable so the checkpoint holds every write.
        self.db
            .flush()
            .map_err(|e| failed("flush", &self.path, e))?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|e| failed("checkpoint", &self.path, e))?;
        checkpoint
            .create_checkpoint(dir.join(super::snapshot::ROCKSDB_DIR))
            .map_err(|e| failed("checkpoint", &self.path, e))
    }

    fn size_bytes(&self) -> u64 {
        let property = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        property("rocksdb.estimate-live-data-size") + property("rocksdb.cur-size-all-mem-tables")
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, BackendError> {
        let start = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| failed("scan", &self.path, e))?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            if after.is_some_and(|a| &*k == a) {
                continue;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    /// The same operations on both backends give the same answers.
    #[test]
    fn rocksdb_answers_like_the_memory_backend() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksBackend::open(dir.path()).unwrap();
        let memory = MemoryBackend::default();
        let mut rng = fastrand::Rng::with_seed(3);
        for round in 0..200 {
            let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..20)
                .map(|_| {
                    let key = vec![rng.u8(0..4), rng.u8(0..8)];
                    let value = (rng.u8(0..4) > 0).then(|| vec![round as u8, rng.u8(..)]);
                    (key, value)
                })
                .collect();
            rocks.write(writes.clone()).unwrap();
            memory.write(writes).unwrap();
            let probe: Vec<Vec<u8>> = (0..10).map(|_| vec![rng.u8(0..4), rng.u8(0..8)]).collect();
            assert_eq!(
                rocks.get_many(&probe).unwrap(),
                memory.get_many(&probe).unwrap()
            );
            let prefix = vec![rng.u8(0..4)];
            let after = vec![prefix[0], rng.u8(0..8)];
            assert_eq!(
                rocks.scan(&prefix, None, 5).unwrap(),
                memory.scan(&prefix, None, 5).unwrap()
            );
            assert_eq!(
                rocks.scan(&prefix, Some(&after), 100).unwrap(),
                memory.scan(&prefix, Some(&after), 100).unwrap()
            );
        }
    }
}
