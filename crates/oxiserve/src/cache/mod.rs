//! The response cache: answers of pipelines that opt in, kept in process with a size and a
//! time limit, and optionally in Redis so that replicas share them.
//!
//! A pipeline opts in by returning a key from [`Pipeline::cache_key`] (usually
//! [`json_key`]). The cache key adds the version of every model that would answer, so a model
//! swap never serves an answer computed by another version. A lookup tries memory, then Redis
//! (when `cache.redis_url` is set), then computes; a computed answer is stored in both.
//! Identical requests arriving while the first is being computed wait for it and share its
//! answer (single flight). Errors are never cached. Redis is optional at every moment: see
//! the `shared` module.
//!
//! Metrics: `oxiserve_cache_lookups_total{layer, result}` with `layer` `memory` or `redis` and
//! `result` `hit` or `miss`.
//!
//! [`Pipeline::cache_key`]: crate::Pipeline::cache_key

#[cfg(feature = "redis")]
mod shared;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

#[cfg(feature = "redis")]
use self::shared::SharedCache;
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::timings::Timings;

/// A serialised answer: the JSON body, the versions that produced it, and its timings.
#[derive(Debug)]
pub struct CachedAnswer {
    /// The response body.
    pub body: Bytes,
    /// `(model, version)` of every model run.
    pub versions: Vec<(String, u64)>,
    /// How long the stages took when it was computed (zero for an answer from Redis).
    pub timings: Timings,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The in-process cache, or a computation already in flight for the same key.
    Memory,
    /// The shared Redis cache.
    Redis,
    /// Computed for this request.
    Computed,
}

impl Source {
    /// The cache layer that answered (`memory` or `redis`), or `None` when computed.
    pub fn layer(self) -> Option<&'static str> {
        match self {
            Source::Memory => Some("memory"),
            Source::Redis => Some("redis"),
            Source::Computed => None,
        }
    }
}

/// What stands for the Redis cache in a build without the `redis` feature: a type with no
/// value, so a `cache.redis_url` is refused at start-up and the lookups provably never run.
#[cfg(not(feature = "redis"))]
#[derive(Debug, Clone)]
enum SharedCache {}

#[cfg(not(feature = "redis"))]
impl SharedCache {
    async fn connect(_: &str, _: &str, _: u64, _: Duration) -> Result<Self> {
        Err(crate::config::missing_feature("cache.redis_url", "redis"))
    }

    async fn get(&self, _: &[u8; 32]) -> Option<CachedAnswer> {
        match *self {}
    }

    async fn put(&self, _: &[u8; 32], _: &CachedAnswer) {
        match *self {}
    }
}

/// The response cache of one pipeline: in process, and optionally shared through Redis.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    entries: moka::future::Cache<[u8; 32], Arc<CachedAnswer>>,
    shared: Option<SharedCache>,
}

impl ResponseCache {
    /// The cache of `pipeline` per `config`, or `None` when its capacity is 0. With a Redis
    /// URL it tries to connect once; Redis being down is logged, not an error. Fails only on
    /// a malformed URL.
    pub async fn new(config: &CacheConfig, pipeline: &str) -> Result<Option<Self>> {
        if config.capacity == 0 {
            return Ok(None);
        }
        let shared = match &config.redis_url {
            Some(url) => {
                let timeout = Duration::from_millis(config.redis_timeout_ms);
                Some(SharedCache::connect(url.expose(), pipeline, config.ttl_ms, timeout).await?)
            }
            None => None,
        };
        let entries = moka::future::Cache::builder()
            .max_capacity(config.capacity)
            .time_to_live(Duration::from_millis(config.ttl_ms))
            .build();
        Ok(Some(Self { entries, shared }))
    }

    /// The cached answer for `key`, computing it with `compute` once however many requests
    /// ask at the same time, and where it came from.
    pub async fn get_or_compute<F>(
        &self,
        key: [u8; 32],
        compute: F,
    ) -> (Result<Arc<CachedAnswer>, Arc<Error>>, Source)
    where
        F: Future<Output = Result<CachedAnswer, Error>>,
    {
        let mut source = Source::Memory;
        let result = self
            .entries
            .try_get_with(key, async {
                if let Some(shared) = &self.shared
                    && let Some(answer) = shared.get(&key).await
                {
                    source = Source::Redis;
                    return Ok(Arc::new(answer));
                }
                source = Source::Computed;
                let answer = compute.await?;
                if let Some(shared) = &self.shared {
                    shared.put(&key, &answer).await;
                }
                Ok(Arc::new(answer))
            })
            .await;
        record_lookup("memory", source == Source::Memory);
        (result, source)
    }
}

/// Counts one lookup of `layer`.
fn record_lookup(layer: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("oxiserve_cache_lookups_total", "layer" => layer, "result" => result)
        .increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "redis"))]
    #[tokio::test]
    async fn a_build_without_redis_refuses_a_redis_url() {
        let config = CacheConfig {
            redis_url: Some(crate::config::Secret::new("redis://127.0.0.1:6379")),
            ..CacheConfig::default()
        };
        let error = ResponseCache::new(&config, "p").await.unwrap_err();
        assert!(error.to_string().contains("`redis` feature"), "{error}");
    }

    #[tokio::test]
    async fn a_cache_of_no_capacity_is_none() {
        let config = CacheConfig { capacity: 0, ..CacheConfig::default() };
        assert!(ResponseCache::new(&config, "p").await.unwrap().is_none());
    }
}
