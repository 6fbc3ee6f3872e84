//! The shared Redis tier of the response cache, against a real `redis-server`: replicas share
//! answers, and a Redis that is stopped, restarted empty or hung never fails a request. On the
//! test model `token-pool`.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use oxiserve::Config;
use oxiserve::config::Secret;
use oxiserve::testing::{TestApp, TestResponse};
use oxiserve_test_support::RedisServer;

use crate::common::{MODEL, TokenPool};

/// The metrics are process-wide and every test here moves them: one test at a time.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A replica of a service on the bundled test model, sharing `redis`.
async fn replica(redis: &RedisServer) -> TestApp<TokenPool> {
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = Duration::ZERO;
    config.cache.redis_url = Some(Secret::new(redis.url()));
    let pipeline = TokenPool::new();
    TestApp::with_config(pipeline, config).await.expect("the replica starts")
}

/// A request of its own for every `n` below 4096, so that no two miss or hit the same entry.
fn input(n: u32) -> String {
    format!(r#"{{"ids": [{}, {}, 1]}}"#, n % 64, n / 64 % 64)
}

/// Rows the model of `app` has run so far.
fn model_rows(app: &TestApp<TokenPool>) -> u64 {
    app.engine().models().get(MODEL).unwrap().stats().rows()
}

/// The `Server-Timing` header.
fn timing(response: &TestResponse) -> &str {
    response.headers["server-timing"].to_str().unwrap()
}

/// The sum of every series of the metric `name` in `/metrics` (0 when absent).
async fn metric(app: &TestApp<TokenPool>, name: &str) -> f64 {
    let text = app.get("/metrics").await.text();
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends a new request every 20 ms until `/metrics` says Redis is up again.
async fn wait_until_redis_is_used(app: &TestApp<TokenPool>, mut n: u32) {
    let start = Instant::now();
    while metric(app, "oxiserve_cache_redis_up").await != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "Redis was never used again");
        n += 1;
        assert_eq!(app.post_json("/v1/predict", input(n)).await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_answers_through_redis() {
    let _metrics = METRICS.lock().await;
    let redis = RedisServer::start().await.expect("redis-server starts");
    let (a, b) = (replica(&redis).await, replica(&redis).await);

    let computed = a.post_json("/v1/predict", input(1)).await;
    assert_eq!(computed.status, StatusCode::OK, "{}", computed.text());
    assert!(timing(&computed).starts_with("pre;dur="), "{}", timing(&computed));

    let rows = model_rows(&b);
    let shared = b.post_json("/v1/predict", input(1)).await;
    assert_eq!(shared.status, StatusCode::OK);
    assert_eq!(shared.body, computed.body, "the same answer, byte for byte");
    assert_eq!(shared.headers["x-model-version"], computed.headers["x-model-version"]);
    assert!(timing(&shared).starts_with("cache;desc=redis;dur="), "{}", timing(&shared));
    assert_eq!(model_rows(&b), rows, "the second replica ran no model");

    let again = b.post_json("/v1/predict", input(1)).await;
    assert!(timing(&again).starts_with("cache;desc=memory;dur="), "then it is kept in memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_then_restarted_redis_never_fails_a_request() {
    let _metrics = METRICS.lock().await;
    let mut redis = RedisServer::start().await.expect("redis-server starts");
    let app = replica(&redis).await;
    assert_eq!(app.post_json("/v1/predict", input(1)).await.status, StatusCode::OK);
    assert_eq!(metric(&app, "oxiserve_cache_redis_up").await, 1.0);
    let errors = metric(&app, "oxiserve_cache_redis_errors_total").await;

    redis.stop();
    for n in 100..120 {
        let response = app.post_json("/v1/predict", input(n)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert!(timing(&response).starts_with("pre;dur="), "computed without Redis");
    }
    assert_eq!(metric(&app, "oxiserve_cache_redis_up").await, 0.0, "the metric says Redis is down");
    assert!(metric(&app, "oxiserve_cache_redis_errors_total").await > errors);

    redis.restart().await.expect("redis-server starts again");
    wait_until_redis_is_used(&app, 200).await;
    let computed = app.post_json("/v1/predict", input(999)).await;
    let other = replica(&redis).await;
    let shared = other.post_json("/v1/predict", input(999)).await;
    assert_eq!(shared.body, computed.body);
    assert!(timing(&shared).starts_with("cache;desc=redis;"), "answers are shared again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_its_timeout() {
    let _metrics = METRICS.lock().await;
    let redis = RedisServer::start().await.expect("redis-server starts");
    let app = replica(&redis).await;
    assert_eq!(app.post_json("/v1/predict", input(1)).await.status, StatusCode::OK);

    redis.pause().unwrap();
    let timeout = Duration::from_millis(Config::default().cache.redis_timeout_ms);
    for n in 300..320 {
        let start = Instant::now();
        let response = app.post_json("/v1/predict", input(n)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert!(start.elapsed() < timeout * 10, "took {:?}", start.elapsed());
    }
    assert_eq!(metric(&app, "oxiserve_cache_redis_up").await, 0.0);

    redis.resume().unwrap();
    wait_until_redis_is_used(&app, 400).await;
}
