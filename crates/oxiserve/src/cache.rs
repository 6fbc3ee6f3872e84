//! The response cache: answers of pipelines that opt in, kept in process with a size and a
//! time limit.
//!
//! A pipeline opts in by returning a key from [`Pipeline::cache_key`] (usually
//! [`json_key`]). The cache key adds the version of every model that would answer, so a model
//! swap never serves an answer computed by another version. Identical requests arriving while
//! the first is being computed wait for it and share its answer (single flight). Errors are
//! never cached.
//!
//! [`Pipeline::cache_key`]: crate::Pipeline::cache_key

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

use crate::config::CacheConfig;
use crate::engine::Timings;
use crate::error::Error;

/// A serialised answer: the JSON body, the versions that produced it, and its timings.
#[derive(Debug)]
pub struct CachedAnswer {
    /// The response body.
    pub body: Bytes,
    /// `(model, version)` of every model run.
    pub versions: Vec<(String, u64)>,
    /// How long the stages took when it was computed.
    pub timings: Timings,
}

/// The in-process cache of serialised answers.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    entries: moka::future::Cache<[u8; 32], Arc<CachedAnswer>>,
}

impl ResponseCache {
    /// A cache per `config`, or `None` when its capacity is 0.
    pub fn new(config: &CacheConfig) -> Option<Self> {
        (config.capacity > 0).then(|| Self {
            entries: moka::future::Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(Duration::from_millis(config.ttl_ms))
                .build(),
        })
    }

    /// The cached answer for `key`, computing it with `compute` once however many requests
    /// ask at the same time. Returns whether it was a hit.
    pub async fn get_or_compute<F>(
        &self,
        key: [u8; 32],
        compute: F,
    ) -> (Result<Arc<CachedAnswer>, Arc<Error>>, bool)
    where
        F: Future<Output = Result<CachedAnswer, Error>>,
    {
        let mut computed = false;
        let result = self
            .entries
            .try_get_with(key, async {
                computed = true;
                compute.await.map(Arc::new)
            })
            .await;
        (result, !computed)
    }
}

/// The cache key of a pipeline's own key under the given model versions.
pub fn key(pipeline_key: &[u8], versions: &[(String, u64)]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((pipeline_key.len() as u64).to_le_bytes());
    hasher.update(pipeline_key);
    for (name, version) in versions {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(version.to_le_bytes());
    }
    hasher.finalize().into()
}

/// A pipeline key from the input's JSON serialisation: the usual [`Pipeline::cache_key`].
///
/// [`Pipeline::cache_key`]: crate::Pipeline::cache_key
pub fn json_key<T: serde::Serialize>(input: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(input).ok()
}
