//! The shared tier of the response cache: Redis, so that replicas share answers.
//!
//! Redis makes answers cheaper; it is never needed for an answer. Every command has a
//! deadline (`cache.redis_timeout_ms`). The first failure or timeout marks Redis down: for
//! [`RETRY_AFTER`] requests skip it entirely, then one background task tries to
//! reconnect while requests keep skipping it. So a stopped Redis costs nothing per request,
//! and a hung one costs at most one deadline per request in flight when it hung.
//! `oxiserve_cache_redis_up` and `oxiserve_cache_redis_errors_total` say so.
//!
//! A value is the versions of the models that ran, as a JSON array of `[name, version]`, a
//! newline, then the JSON body. Keys are `oxiserve:<pipeline>:<hex of the cache key>`, and
//! expire after `cache.ttl_ms`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use redis::aio::MultiplexedConnection;

use super::CachedAnswer;
use crate::error::{Error, Result};
use crate::timings::Timings;

/// How long Redis is skipped after a failure before a reconnection is tried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis server shared by the replicas of a service.
#[derive(Debug, Clone)]
pub(super) struct SharedCache {
    client: redis::Client,
    prefix: String,
    ttl_ms: u64,
    timeout: Duration,
    link: Arc<Mutex<Link>>,
}

/// The state of the connection.
#[derive(Debug)]
enum Link {
    /// Connected; commands go through this multiplexed connection.
    Up(MultiplexedConnection),
    /// A background task is connecting.
    Connecting,
    /// Skipped until `retry_at`.
    Down { retry_at: Instant },
}

impl SharedCache {
    /// A client for `url` that keeps answers of `pipeline` for `ttl_ms`, with `timeout` per
    /// command. Tries to connect once (a Redis that is down is not an error, only a warning);
    /// fails only for a malformed URL.
    pub(super) async fn connect(
        url: &str,
        pipeline: &str,
        ttl_ms: u64,
        timeout: Duration,
    ) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            let message = format!("cache.redis_url is not a Redis URL: {:?}", e.kind());
            Error::from(figment::Error::from(message))
        })?;
        let cache = Self {
            client,
            prefix: format!("oxiserve:{pipeline}:"),
            ttl_ms,
            timeout,
            link: Arc::new(Mutex::new(Link::Connecting)),
        };
        let connected = cache.open().await;
        cache.settle(connected);
        Ok(cache)
    }

    /// The stored answer for `key`, or `None` on a miss or when Redis is unavailable. Its
    /// timings are zero: it was computed elsewhere.
    pub(super) async fn get(&self, key: &[u8; 32]) -> Option<CachedAnswer> {
        let mut connection = self.connection()?;
        let command = redis::cmd("GET").arg(self.redis_key(key)).to_owned();
        let found: Option<Vec<u8>> = self.run(&mut connection, "get", &command).await?;
        let answer = found.and_then(|value| {
            let decoded = decode(value);
            if decoded.is_none() {
                tracing::warn!("an entry in the Redis cache is not an answer; ignored");
            }
            decoded
        });
        super::record_lookup("redis", answer.is_some());
        answer
    }

    /// Stores `answer` under `key`, so that it is shared before it is sent; failures only
    /// count and log.
    pub(super) async fn put(&self, key: &[u8; 32], answer: &CachedAnswer) {
        let Some(mut connection) = self.connection() else { return };
        let command = redis::cmd("SET")
            .arg(self.redis_key(key))
            .arg(encode(answer))
            .arg("PX")
            .arg(self.ttl_ms)
            .to_owned();
        let _: Option<()> = self.run(&mut connection, "set", &command).await;
    }

    /// Runs `command` within the deadline; a failure marks Redis down.
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut MultiplexedConnection,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> Option<T> {
        let error = match tokio::time::timeout(self.timeout, command.query_async(connection)).await
        {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        count_failure(operation);
        let mut link = self.lock();
        // Only the first failure of an outage logs and marks it; a reconnection may be running.
        if matches!(*link, Link::Up(_)) {
            tracing::warn!(%error, operation, "Redis failed; serving without it for now");
            mark_down(&mut link);
        }
        None
    }

    /// The connection when Redis is up. When it is down and due for a retry, starts one
    /// reconnection in the background and still answers `None`.
    fn connection(&self) -> Option<MultiplexedConnection> {
        let mut link = self.lock();
        match &*link {
            Link::Up(connection) => Some(connection.clone()),
            Link::Connecting => None,
            Link::Down { retry_at } if Instant::now() < *retry_at => None,
            Link::Down { .. } => {
                *link = Link::Connecting;
                let cache = self.clone();
                tokio::spawn(async move {
                    let connected = cache.open().await;
                    cache.settle(connected);
                });
                None
            }
        }
    }

    async fn open(&self) -> std::result::Result<MultiplexedConnection, String> {
        let connecting = self.client.get_multiplexed_async_connection();
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no connection within {} ms", CONNECT_TIMEOUT.as_millis())),
        }
    }

    /// Records the outcome of a connection attempt.
    fn settle(&self, connected: std::result::Result<MultiplexedConnection, String>) {
        let mut link = self.lock();
        match connected {
            Ok(connection) => {
                tracing::info!("Redis cache connected");
                *link = Link::Up(connection);
                metrics::gauge!("oxiserve_cache_redis_up").set(1.0);
            }
            Err(error) => {
                tracing::warn!(%error, "Redis cache unavailable; serving without it");
                count_failure("connect");
                mark_down(&mut link);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        // The state stays consistent even if a holder panicked: every write is one assignment.
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn redis_key(&self, key: &[u8; 32]) -> String {
        let mut text = String::with_capacity(self.prefix.len() + 64);
        text.push_str(&self.prefix);
        for byte in key {
            let _ = write!(text, "{byte:02x}");
        }
        text
    }
}

/// Counts a Redis `operation` that failed or missed its deadline.
fn count_failure(operation: &'static str) {
    metrics::counter!("oxiserve_cache_redis_errors_total", "operation" => operation).increment(1);
}

/// Skips Redis for [`RETRY_AFTER`], and says so in `oxiserve_cache_redis_up`.
fn mark_down(link: &mut Link) {
    *link = Link::Down { retry_at: Instant::now() + RETRY_AFTER };
    metrics::gauge!("oxiserve_cache_redis_up").set(0.0);
}

/// An answer as a Redis value: its versions as JSON, a newline, its body.
fn encode(answer: &CachedAnswer) -> Vec<u8> {
    let mut value = serde_json::to_vec(&answer.versions).expect("names and numbers serialise");
    value.push(b'\n');
    value.extend_from_slice(&answer.body);
    value
}

/// The answer in a Redis value, if it is one.
fn decode(mut value: Vec<u8>) -> Option<CachedAnswer> {
    let newline = value.iter().position(|&byte| byte == b'\n')?;
    let versions = serde_json::from_slice(&value[..newline]).ok()?;
    let body = Bytes::from(value.split_off(newline + 1));
    Some(CachedAnswer { body, versions, timings: Timings::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_the_trip_through_a_value() {
        let answer = CachedAnswer {
            body: Bytes::from_static(b"{\"label\":\"Gentoo\\n\"}"),
            versions: vec![("forest".into(), 3), ("linear".into(), 12)],
            timings: Timings::default(),
        };
        let decoded = decode(encode(&answer)).unwrap();
        assert_eq!(decoded.body, answer.body);
        assert_eq!(decoded.versions, answer.versions);
        assert!(decode(b"not an answer".to_vec()).is_none());
    }
}
