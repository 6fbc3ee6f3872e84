//! Where a model runs: a model that costs nothing runs on the request's own thread once its
//! cost is known (no hand-off to an inference thread), unless `inline_max_us` is 0 or a
//! batching delay is set, and a burst of requests to it batches there; a slow
//! model always runs on the inference threads, so that requests to it hold up neither the
//! health checks nor a cheap request on a runtime with a single thread, and under load its
//! requests still share batches. A request's future stays small, since it is copied as it
//! moves. On `identity` and `tanh-chain` (`common::cost`).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oxiserve::Config;
use oxiserve::testing::TestApp;
use oxiserve_test_support::http_request;

use crate::common::cost::{Cost, IDENTITY, Row, SLOW};

/// The two models from the test repository, one session each, no response cache (every
/// request must reach its model).
fn config() -> Config {
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = Duration::ZERO;
    config.cache.capacity = 0;
    config
}

async fn app(config: Config) -> TestApp<Cost> {
    TestApp::with_config(Cost, config).await.expect("the cost models load")
}

/// Sends `count` requests for `model` one after the other; each answers its row unchanged
/// (`identity`) or changed (`tanh-chain`).
async fn predict(app: &TestApp<Cost>, model: &str, count: usize) {
    for i in 0..count {
        let row = Row::of(model, (i + 1) as f32 / count as f32);
        let answer = app.predict(&row).await.unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(answer.y == row.x, model == IDENTITY, "{model}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_costs_nothing_runs_on_the_request_thread() {
    let app = app(config()).await;
    // Enough runs for the moving average to forget even a very slow first (cold) run.
    predict(&app, IDENTITY, 100).await;
    let model = app.engine().models().get(IDENTITY).unwrap();
    let stats = model.stats();
    assert_eq!(stats.runs(), 100);
    // The first run goes through the queue: until then its cost is unknown.
    assert!((1..100).contains(&stats.inline_runs()), "{} inline runs", stats.inline_runs());

    // Turned off, or a batching delay set (which asks for batches): every run queues.
    let mut off = config();
    off.models.batching.inline_max_us = 0;
    let mut delayed = config();
    delayed.models.batching.max_delay_us = 1;
    for config in [off, delayed] {
        let app = self::app(config).await;
        predict(&app, IDENTITY, 20).await;
        assert_eq!(app.engine().models().get(IDENTITY).unwrap().stats().inline_runs(), 0);
    }
}

/// One worker thread for the whole runtime: a model run on it would hold up every other
/// request until it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_model_runs_on_the_inference_threads_and_holds_up_nothing() {
    let mut config = config();
    config.models.overrides.entry(SLOW.into()).or_default().max_batch_size = Some(1);
    let app = app(config).await;
    predict(&app, SLOW, 3).await; // its cost is known from here on
    let server = app.serve().await.unwrap();
    let address = server.url().trim_start_matches("http://").to_string();
    let request = |row: Row| {
        let address = address.clone();
        let body = serde_json::to_string(&row).unwrap();
        tokio::task::spawn_blocking(move || http_request(&address, "POST", "/v1/predict", &body))
    };

    // 16 requests of a few milliseconds each, one at a time on the model's single session.
    let done = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..16)
        .map(|i| {
            let (reply, done) = (request(Row::of(SLOW, (i + 1) as f32 / 16.0)), Arc::clone(&done));
            tokio::spawn(async move {
                let reply = reply.await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                reply
            })
        })
        .collect();
    let queue_formed = || app.engine().models().get(SLOW).unwrap().stats().runs() > 3;
    while !queue_formed() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let address = server.url().trim_start_matches("http://").to_string();
    let live =
        tokio::task::spawn_blocking(move || http_request(&address, "GET", "/health/live", ""));
    assert_eq!(live.await.unwrap().0, 200);
    let (status, body) = request(Row::of(IDENTITY, 0.5)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(done.load(Ordering::SeqCst) < 16, "both answered while slow requests still waited");

    for reply in slow {
        let (status, body) = reply.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let model = app.engine().models().get(SLOW).unwrap();
    let stats = model.stats();
    assert_eq!((stats.runs(), stats.inline_runs()), (19, 0), "never inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_model_under_load_still_runs_batches() {
    let app = Arc::new(app(config()).await);
    predict(&app, SLOW, 3).await;
    let requests = (0..64).map(|i| {
        let app = Arc::clone(&app);
        async move { app.predict(&Row::of(SLOW, (i + 1) as f32 / 64.0)).await }
    });
    for answer in futures_util::future::join_all(requests).await {
        answer.unwrap_or_else(|p| panic!("{p:?}"));
    }
    let model = app.engine().models().get(SLOW).unwrap();
    let stats = model.stats();
    let (runs, rows) = (stats.runs() - 3, stats.rows() - 3);
    assert_eq!(rows, 64);
    assert!(runs < 32, "64 concurrent requests in {runs} runs: no batching");
    assert_eq!(stats.inline_runs(), 0);
}

/// A burst of requests to a model whose runs are short batches on the requests' own threads:
/// they meet work in progress, gather, and the first of them runs the batch, with no hand-off
/// to a worker. One at a time again, each runs alone on its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_short_model_batches_on_the_requests_threads() {
    // tanh-chain's runs (about a millisecond a row) count as short here, so requests overlap,
    // even on a loaded machine where a run takes many times that. A session for each of the
    // runtime's two threads: with fewer, a request that gathered while the other thread runs
    // a batch finds no free session and queues its batch.
    let mut config = config();
    config.models.batching.inline_max_us = 60_000_000;
    config.models.sessions = 2;
    let app = Arc::new(app(config).await);
    predict(&app, SLOW, 3).await; // its cost is known from here on
    let model = app.engine().models().get(SLOW).unwrap();
    let stats = model.stats();
    let (runs, inline) = (stats.runs(), stats.inline_runs());
    // The 32 requests start together, as connections that became readable at once.
    let (start, started) = tokio::sync::watch::channel(false);
    let requests: Vec<_> = (0..32)
        .map(|i| {
            let (app, mut started) = (Arc::clone(&app), started.clone());
            tokio::spawn(async move {
                started.wait_for(|&go| go).await.expect("the start is sent");
                app.predict(&Row::of(SLOW, (i + 1) as f32 / 32.0)).await
            })
        })
        .collect();
    start.send_replace(true);
    for request in requests {
        request.await.unwrap().unwrap_or_else(|p| panic!("{p:?}"));
    }
    let runs = stats.runs() - runs;
    assert!(runs < 16, "32 concurrent requests in {runs} runs: no batching");
    assert_eq!(stats.inline_runs() - inline, runs, "a batch of the burst went to a worker");

    // One at a time again: a run of its own for each, on its thread.
    let (runs, inline) = (stats.runs(), stats.inline_runs());
    predict(&app, SLOW, 2).await;
    assert_eq!((stats.runs() - runs, stats.inline_runs() - inline), (2, 2));
}

/// A request's future is copied whenever it moves (into the boxes of the HTTP stack among
/// others), so it stays small: the response cache's lookup, a future of kilobytes (moka's and
/// Redis's), is boxed apart and only built for a request that has a cache to look in. Before,
/// the answer was a future of 12.7 KB here, and of 15.7 KB in tabular-scoring.
#[tokio::test]
async fn a_requests_future_stays_small() {
    let app = app(Config { cache: Default::default(), ..config() }).await;
    assert!(app.engine().cache().is_some(), "the lookup's future is part of the answer's type");
    let answer = app.engine().answer(Row::of(IDENTITY, 0.5), None);
    let size = std::mem::size_of_val(&answer);
    assert!(size < 4096, "the answer's future takes {size} bytes");
    let answered = answer.await.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(answered.cached.is_none(), "the first request is computed");
}
