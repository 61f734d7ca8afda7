//! Checkpoints in object storage: S3 and the stores that speak its API, through `object_store`.
//!
//! A run still writes each checkpoint into its local directory first (RocksDB checkpoints are
//! hard links, and restoring at the same parallelism links files back into the working
//! database). Completing a checkpoint then uploads its files, several at a time, and its
//! metadata last, with a conditional put where the store supports one:
//!
//! ```text
//! s3://BUCKET/PREFIX/PIPELINE/chk-0000000042/state/AGENT/INSTANCE/…
//! s3://BUCKET/PREFIX/PIPELINE/chk-0000000042/_metadata     written last
//! ```
//!
//! The store never renames, so a checkpoint exists when its `_metadata` object does, and is
//! usable when every file the metadata lists is there with its size: an upload cut short (its
//! files without metadata, or a multipart upload never completed, which is no object at all) is
//! passed over like a local checkpoint whose metadata was never written. Recovery reads the
//! bucket, not the local directory: the newest usable checkpoint is downloaded (several files at
//! a time) unless the local directory already holds exactly that checkpoint.
//!
//! Requests are retried by `object_store` (backoff, up to [`RETRY_TIMEOUT`]): a store that is
//! down for less than that stalls a checkpoint, it does not fail the run.

use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use super::store::{FileEntry, METADATA};
use super::{CheckpointError, StorageSpec};

/// Files moved at once by one upload or download.
const PARALLEL_TRANSFERS: usize = 8;
/// How long a request is retried before the operation fails.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(120);
/// Files larger than this are uploaded in parts of this size.
const PART_BYTES: usize = 8 << 20;
/// The largest metadata object read (a checkpoint of a million files lists ~100 MiB less).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// One pipeline's checkpoints under an `s3://` URL.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `PREFIX/PIPELINE`.
    prefix: Path,
    /// `s3://BUCKET/PREFIX/PIPELINE`, for messages.
    url: String,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// `s3://BUCKET/PREFIX` split into bucket and prefix, or what is wrong with it.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        format!("`{url}` is not an object store URL: expected s3://BUCKET/PREFIX")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(format!(
            "`{bucket}` in `{url}` is not a bucket name: expected 3 to 63 lowercase letters, digits, `-` or `.`"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|p| p == "." || p == ".." || (p.is_empty() && !prefix.is_empty()))
    {
        return Err(format!(
            "the prefix `{prefix}` in `{url}` has an empty, `.` or `..` part"
        ));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

impl Remote {
    /// The checkpoints of `pipeline` under `spec.url` (with an empty `pipeline`, the URL's
    /// prefix itself: see [`Remote::names`]). Settings the spec leaves out come from the
    /// `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`, …).
    pub fn open(spec: &StorageSpec, pipeline: &str) -> Result<Self, CheckpointError> {
        let (bucket, prefix) =
            parse_url(&spec.url).map_err(|m| CheckpointError::remote(&spec.url, m))?;
        // HTTPS to the store goes through rustls with ring, like the server's.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            // One `DELETE` per object: not every S3-compatible store implements the bulk
            // `DeleteObjects` call (S3Proxy answers 501).
            .with_config(AmazonS3ConfigKey::DisableBulkDelete, "true")
            // Bounded by time, not by count: a refused connection fails at once, so a count
            // would run out within seconds of a store that restarts.
            .with_retry(object_store::RetryConfig {
                retry_timeout: RETRY_TIMEOUT,
                max_retries: 1_000,
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
            })
            // Set one by one: a whole `ClientOptions` would replace what came from `AWS_*`.
            .with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::Timeout),
                "60s",
            );
        if let Some(endpoint) = &spec.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        // An `http://` endpoint (a store on the local network), from the spec or `AWS_*`.
        if builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        if let Some(region) = &spec.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (&spec.access_key_id, &spec.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| CheckpointError::remote(&spec.url, with_sources(&e)))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sabot-object-store")
            .enable_all()
            .build()
            .map_err(|e| CheckpointError::remote(&spec.url, format!("no I/O runtime: {e}")))?;
        let prefix = match (prefix.is_empty(), pipeline.is_empty()) {
            (_, true) => Path::from(prefix.as_str()),
            (true, false) => Path::from(pipeline),
            (false, false) => Path::from(prefix.as_str()).join(pipeline),
        };
        Ok(Remote {
            store: Arc::new(store),
            url: format!("s3://{bucket}/{prefix}"),
            prefix,
            runtime: Arc::new(runtime),
        })
    }

    /// `s3://BUCKET/PREFIX/PIPELINE`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, action: &str, e: &(dyn std::error::Error + 'static)) -> CheckpointError {
        CheckpointError::remote(&self.url, format!("cannot {action}: {}", with_sources(e)))
    }

    fn chk(&self, id: u64) -> Path {
        self.prefix.clone().join(format!("chk-{id:010}"))
    }

    /// Runs `f` on the store's runtime, from any thread (also from inside another runtime).
    fn block_on<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| self.runtime.block_on(f))
                    .join()
                    .expect("object store I/O panicked")
            })
        } else {
            self.runtime.block_on(f)
        }
    }

    /// The ids of the checkpoints in the store, complete or not, newest first.
    pub fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        let listed = self
            .block_on(self.store.list_with_delimiter(Some(&self.prefix)))
            .map_err(|e| self.error("list the checkpoints", &e))?;
        let mut ids: Vec<u64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// The metadata bytes of checkpoint `id`, `None` when it has none (incomplete), an inner
    /// `Err` saying why when the object is too large to be a checkpoint's metadata (it is not
    /// read: a hostile or broken bucket cannot make the host load an object of any size).
    #[allow(clippy::type_complexity)]
    pub fn metadata(&self, id: u64) -> Result<Option<Result<Vec<u8>, String>>, CheckpointError> {
        let path = self.chk(id).join(METADATA);
        self.block_on(async {
            let result = match self.store.get(&path).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if result.meta.size > MAX_METADATA_BYTES {
                return Ok(Some(Err(format!(
                    "its metadata is {} bytes, more than the {MAX_METADATA_BYTES} a checkpoint's metadata may be",
                    result.meta.size
                ))));
            }
            result.bytes().await.map(|b| Some(Ok(b.to_vec())))
        })
        .map_err(|e| self.error(&format!("read {path}"), &e))
    }

    /// Why the files of checkpoint `id` do not match `files`, if they do not.
    pub fn check_files(
        &self,
        id: u64,
        files: &[FileEntry],
    ) -> Result<Option<String>, CheckpointError> {
        let dir = self.chk(id);
        let listed: Vec<object_store::ObjectMeta> = self
            .block_on(self.store.list(Some(&dir)).try_collect())
            .map_err(|e| self.error(&format!("list {dir}"), &e))?;
        let sizes: std::collections::HashMap<String, u64> = listed
            .into_iter()
            .filter_map(|m| {
                let rel = m
                    .location
                    .prefix_match(&dir)?
                    .map(|p| p.as_ref().to_owned());
                Some((rel.collect::<Vec<_>>().join("/"), m.size))
            })
            .collect();
        for f in files {
            match sizes.get(&f.path) {
                Some(&size) if size == f.size => {}
                Some(&size) => {
                    return Ok(Some(format!(
                        "{}/{} is {size} bytes, the metadata says {}",
                        self.url_of(id),
                        f.path,
                        f.size
                    )));
                }
                None => {
                    return Ok(Some(format!("{}/{} is missing", self.url_of(id), f.path)));
                }
            }
        }
        Ok(None)
    }

    /// `s3://…/chk-N`.
    pub fn url_of(&self, id: u64) -> String {
        format!("{}/chk-{id:010}", self.url)
    }

    /// Uploads checkpoint `id`'s `files` from `dir`, several at a time, then its metadata: the
    /// checkpoint exists in the store when this returns. When the metadata already exists,
    /// another run writes the same checkpoints: an error, and that checkpoint is left alone.
    pub fn upload(
        &self,
        id: u64,
        dir: &LocalPath,
        files: &[FileEntry],
        metadata: Vec<u8>,
    ) -> Result<(), CheckpointError> {
        let chk = self.chk(id);
        let uploads: Vec<_> = files
            .iter()
            .map(|f| {
                let local = dir.join(&f.path);
                let key = join_rel(&chk, &f.path);
                async move {
                    upload_file(&self.store, &local, &key).await.map_err(|e| {
                        self.error(&format!("upload {} to {key}", local.display()), &*e)
                    })
                }
            })
            .collect();
        self.block_on(async {
            futures_util::stream::iter(uploads)
                .buffer_unordered(PARALLEL_TRANSFERS)
                .try_collect::<Vec<()>>()
                .await?;
            let key = chk.clone().join(METADATA);
            let payload = PutPayload::from(metadata);
            let put = |mode| PutOptions {
                mode,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&key, payload.clone(), put(PutMode::Create))
                .await
            {
                Ok(_) => Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => Err(CheckpointError::remote(
                    &self.url,
                    format!(
                        "checkpoint {id} is already complete in the store: another run is writing this pipeline's checkpoints under the same URL"
                    ),
                )),
                // Stores without conditional puts: the key is unique to this checkpoint.
                Err(object_store::Error::NotImplemented { .. })
                | Err(object_store::Error::NotSupported { .. }) => self
                    .store
                    .put_opts(&key, payload, put(PutMode::Overwrite))
                    .await
                    .map(|_| ())
                    .map_err(|e| self.error(&format!("write {key}"), &e)),
                Err(e) => Err(self.error(&format!("write {key}"), &e)),
            }
        })
    }

    /// Downloads checkpoint `id`'s `files` into `dir` (which exists and is empty), several at
    /// a time.
    pub fn download(
        &self,
        id: u64,
        files: &[FileEntry],
        dir: &LocalPath,
    ) -> Result<(), CheckpointError> {
        let chk = self.chk(id);
        let downloads: Vec<_> = files
            .iter()
            .map(|f| {
                let local = dir.join(&f.path);
                let key = join_rel(&chk, &f.path);
                async move {
                    download_file(&self.store, &key, &local)
                        .await
                        .map_err(|e| self.error(&format!("download {key}"), &*e))
                }
            })
            .collect();
        self.block_on(async {
            futures_util::stream::iter(downloads)
                .buffer_unordered(PARALLEL_TRANSFERS)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| ())
        })
    }

    /// Removes checkpoint `id`: its metadata first, so that a removal cut short leaves an
    /// incomplete checkpoint, never a damaged one.
    pub fn delete(&self, id: u64) -> Result<(), CheckpointError> {
        let chk = self.chk(id);
        self.block_on(async {
            match self.store.delete(&chk.clone().join(METADATA)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            self.delete_under(&chk).await
        })
        .map_err(|e| self.error(&format!("remove {}", self.url_of(id)), &e))
    }

    /// Removes every checkpoint of the pipeline (`--fresh`).
    pub fn clear(&self) -> Result<(), CheckpointError> {
        self.block_on(self.delete_under(&self.prefix))
            .map_err(|e| self.error("remove the checkpoints", &e))
    }

    async fn delete_under(&self, prefix: &Path) -> object_store::Result<()> {
        let locations = self.store.list(Some(prefix)).map_ok(|m| m.location).boxed();
        self.store
            .delete_stream(locations)
            .try_for_each(|_| async { Ok(()) })
            .await
    }

    /// Writes `bytes` to `REL` under the prefix, unless an object is there already (the keys
    /// written this way name their content, such as a module's sha256).
    pub fn put_once(&self, rel: &str, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        let key = join_rel(&self.prefix, rel);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(bytes);
        self.block_on(async {
            match self.store.put_opts(&key, payload.clone(), options).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                Err(object_store::Error::NotImplemented { .. })
                | Err(object_store::Error::NotSupported { .. }) => {
                    self.store.put(&key, payload).await.map(drop)
                }
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.error(&format!("write {key}"), &e))
    }

    /// The bytes of `REL` under the prefix, `None` when there is no such object; refused when
    /// it is larger than `limit`, before it is read.
    pub fn get_bounded(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, CheckpointError> {
        let key = join_rel(&self.prefix, rel);
        self.block_on(async {
            let result = match self.store.get(&key).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(with_sources(&e)),
            };
            if result.meta.size > limit {
                return Err(format!(
                    "it is {} bytes, more than the {limit} expected at most",
                    result.meta.size
                ));
            }
            result
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| with_sources(&e))
        })
        .map_err(|e| CheckpointError::remote(&self.url, format!("cannot read {key}: {e}")))
    }

    /// The names directly under this prefix (opened with an empty pipeline name: the
    /// pipelines that keep checkpoints there).
    pub fn names(&self) -> Result<Vec<String>, CheckpointError> {
        let listed = self
            .block_on(self.store.list_with_delimiter(Some(&self.prefix)))
            .map_err(|e| self.error("list the pipelines", &e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    /// Removes everything under `NAME/` (see [`Remote::clear`]).
    pub fn clear_name(&self, name: &str) -> Result<(), CheckpointError> {
        let prefix = self.prefix.clone().join(name);
        self.block_on(self.delete_under(&prefix))
            .map_err(|e| self.error(&format!("remove {}/{name}", self.url), &e))
    }

    /// Whether checkpoint `id` has its metadata.
    pub fn is_complete(&self, id: u64) -> Result<bool, CheckpointError> {
        let key = self.chk(id).join(METADATA);
        match self.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(&format!("read {key}"), &e)),
        }
    }
}

/// `base/REL` for a relative path with `/` separators.
/// An error's message with those of its sources that it does not already include (an HTTP
/// client's "builder error" says nothing without its cause, e.g. no CA certificates found).
fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !message.contains(&part) {
            message = format!("{message}: {part}");
        }
        source = s.source();
    }
    message
}

fn join_rel(base: &Path, rel: &str) -> Path {
    rel.split('/').fold(base.clone(), |p, part| p.join(part))
}

async fn upload_file(
    store: &Arc<dyn ObjectStore>,
    local: &LocalPath,
    key: &Path,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut file = tokio::fs::File::open(local).await?;
    let mut writer =
        object_store::buffered::BufWriter::with_capacity(store.clone(), key.clone(), PART_BYTES);
    tokio::io::copy(&mut file, &mut writer).await?;
    writer.shutdown().await?;
    Ok(())
}

async fn download_file(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    local: &LocalPath,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(parent) = local.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut stream = store.get(key).await?.into_stream();
    let mut file = tokio::fs::File::create(local).await?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await?;
    }
    file.sync_all().await?;
    Ok(())
}

/// Where a downloaded checkpoint is put together before it replaces the local one.
pub fn download_dir(root: &LocalPath, id: u64) -> PathBuf {
    root.join(format!("chk-{id:010}.download"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        assert_eq!(
            parse_url("s3://sabot-ckpt/team/fraud/").unwrap(),
            ("sabot-ckpt".into(), "team/fraud".into())
        );
        assert_eq!(
            parse_url("s3://bucket").unwrap(),
            ("bucket".into(), "".into())
        );
        let e = parse_url("/mnt/checkpoints").unwrap_err();
        assert!(e.contains("expected s3://BUCKET/PREFIX"), "{e}");
        let e = parse_url("s3://Bad_Bucket/x").unwrap_err();
        assert!(
            e.contains("`Bad_Bucket`") && e.contains("not a bucket name"),
            "{e}"
        );
        let e = parse_url("s3://bucket/a/../b").unwrap_err();
        assert!(e.contains("`..`"), "{e}");
        let e = parse_url("s3://bucket/a//b").unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
