//! [`S3Mirror`]: copies published model versions from S3 into the local cache.
//!
//! Protocol (see `docs/operations.md`): a version `<prefix>/<model>/<version>/` is published
//! once its `manifest.json` exists; the manifest lists every file with its sha256 and size.
//! Mirroring a version downloads the manifest, then every file into a staging directory
//! (`<cache>/<model>/.staging-<version>/`), checks each one, writes the manifest last and
//! renames the staging directory into place, so the cache never holds a partial version.
//! Files already in staging with the right checksum are kept, so an interrupted download
//! resumes after a restart. Downloads are bounded by a semaphore shared by all models.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::DisplayErrorContext;
use futures_util::future::try_join_all;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::LocalRepository;
use crate::config::S3Config;
use crate::error::{Error, Result};
use crate::manifest::{self, FileEntry, Manifest};
use crate::telemetry;

/// An S3 client configured from `config` and the standard AWS chain (environment, profile,
/// instance role); the endpoint from `config.endpoint` or `AWS_ENDPOINT_URL`. Custom endpoints
/// use path-style addressing. Connects to nothing until used.
pub async fn client(config: &S3Config) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if config.endpoint.is_some() || shared.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    if shared.region().is_none() {
        builder = builder.region(aws_sdk_s3::config::Region::new(config.region.clone()));
    }
    Client::from_conf(builder.build())
}

/// `prefix/rest`, or `rest` when the prefix is empty.
pub(crate) fn join_key(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() { rest.to_string() } else { format!("{prefix}/{rest}") }
}

/// A mirror of `s3://bucket/prefix` in a local cache directory.
#[derive(Debug, Clone)]
pub struct S3Mirror {
    client: Client,
    bucket: String,
    prefix: String,
    cache: LocalRepository,
    downloads: Arc<Semaphore>,
}

impl S3Mirror {
    /// A mirror of `bucket`/`prefix` into `cache`, with an S3 client configured from
    /// `config` and the standard AWS chain.
    pub async fn new(bucket: String, prefix: String, cache: PathBuf, config: &S3Config) -> Self {
        Self {
            client: client(config).await,
            bucket,
            prefix,
            cache: LocalRepository::new(cache),
            downloads: Arc::new(Semaphore::new(config.max_concurrent_downloads.max(1))),
        }
    }

    /// The local cache the mirror writes into.
    pub fn cache(&self) -> &LocalRepository {
        &self.cache
    }

    /// The published versions of `model` in the bucket, in increasing order.
    pub async fn versions(&self, model: &str) -> Result<Vec<u64>> {
        let prefix = self.key(&format!("{model}/"));
        let mut versions = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.unreachable(&prefix, e))?;
            versions.extend(page.contents().iter().filter_map(|object| {
                let rest = object.key()?.strip_prefix(&prefix)?;
                let (version, file) = rest.split_once('/')?;
                (file == manifest::FILE_NAME).then(|| super::parse_version(version)).flatten()
            }));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// Whether the cache already holds `model` at `version`.
    pub fn is_cached(&self, model: &str, version: u64) -> bool {
        self.cache.version_dir(model, version).join(manifest::FILE_NAME).is_file()
    }

    /// Copies `model` at `version` into the cache, checking every file. Nothing appears in the
    /// cache unless the whole version is good.
    pub async fn mirror(&self, model: &str, version: u64) -> Result<()> {
        if self.is_cached(model, version) {
            return Ok(());
        }
        let start = std::time::Instant::now();
        let base = format!("{model}/{version}/");
        let manifest_key = self.key(&format!("{base}{}", manifest::FILE_NAME));
        let manifest_bytes = self.get(&manifest_key, manifest::MAX_MANIFEST_BYTES).await?;
        let manifest = Manifest::parse(&manifest_bytes, &self.url(&manifest_key), model, version)?;
        let staging = self.cache.model_dir(model).join(format!(".staging-{version}"));
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        try_join_all(manifest.files.iter().map(|(file, entry)| {
            let key = self.key(&format!("{base}{file}"));
            self.download(model, key, staging.join(file), entry)
        }))
        .await?;
        let write = |path: PathBuf, bytes: Vec<u8>| async move {
            tokio::fs::write(&path, bytes)
                .await
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))
        };
        write(staging.join(manifest::FILE_NAME), manifest_bytes).await?;
        let target = self.cache.version_dir(model, version);
        tokio::fs::rename(&staging, &target)
            .await
            .map_err(|e| Error::io(format!("moving {} into place", staging.display()), e))?;
        let download_ms = start.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            model,
            version,
            files = manifest.files.len(),
            download_ms,
            "mirrored from S3"
        );
        Ok(())
    }

    /// Downloads one object of `model` to `path` unless a checked copy is already there.
    async fn download(
        &self,
        model: &str,
        key: String,
        path: PathBuf,
        entry: &FileEntry,
    ) -> Result<()> {
        let resumable = tokio::fs::metadata(&path)
            .await
            .is_ok_and(|metadata| metadata.is_file() && metadata.len() == entry.size);
        if resumable
            && let Ok(existing) = tokio::fs::read(&path).await
            && entry.check(&existing).is_ok()
        {
            return Ok(());
        }
        let _permit =
            self.downloads.acquire().await.expect("the download semaphore is never closed");
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.unreachable(&key, e))?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        // `model.onnx.partial`, not `model.partial`: files that differ only in their extension
        // (`model.onnx`, `model.joblib`) download at the same time.
        let mut partial = path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let result = self.stream_to(response.body, &partial, entry).await;
        if result.is_ok() {
            telemetry::store::downloaded(model, entry.size);
        }
        let finished = match result {
            Ok(()) => tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| Error::io(format!("moving {} into place", partial.display()), e)),
            Err(error) => Err(error),
        };
        if finished.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        finished.map_err(|error| match error {
            Error::Artifact { detail, .. } => Error::Artifact { path: self.url(&key), detail },
            other => other,
        })
    }

    /// Writes `body` to `path`, hashing as it goes, and checks size and sha256 at the end.
    async fn stream_to(
        &self,
        mut body: aws_sdk_s3::primitives::ByteStream,
        path: &Path,
        entry: &FileEntry,
    ) -> Result<()> {
        let io = |e| Error::io(format!("writing {}", path.display()), e);
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Error::Remote(format!("reading {}: {e}", path.display())))?;
            if size + chunk.len() as u64 > entry.size {
                return Err(Error::artifact(
                    path,
                    format!("is larger than the {} bytes the manifest says", entry.size),
                ));
            }
            size += chunk.len() as u64;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        entry
            .check_digest(size, &manifest::hex(&hasher.finalize()))
            .map_err(|detail| Error::artifact(path, detail))
    }

    /// The object at `key`, refused unless S3 says it holds at most `limit` bytes.
    async fn get(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.unreachable(key, e))?;
        let size = response.content_length().unwrap_or(i64::MAX);
        if u64::try_from(size).map_or(true, |size| size > limit) {
            let detail = format!("size mismatch: has {size} bytes, at most {limit} expected");
            return Err(Error::artifact(self.url(key), detail));
        }
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|e| Error::Remote(format!("reading {}: {e}", self.url(key).display())))?;
        Ok(bytes.to_vec())
    }

    fn key(&self, rest: &str) -> String {
        join_key(&self.prefix, rest)
    }

    fn url(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.bucket))
    }

    fn unreachable(&self, key: &str, error: impl std::error::Error) -> Error {
        Error::Remote(format!("{}: {}", self.url(key).display(), DisplayErrorContext(error)))
    }
}
