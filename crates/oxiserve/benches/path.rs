//! The path around a model, in process and without HTTP: one request through the engine
//! (`Engine::predict`: preprocess, the model run, postprocess) with `identity`, a model that
//! costs nothing, so that what is measured is the framework's own cost per request and
//! regressions in it show without a socket in the way. Compares, in one run:
//!
//! - `identity/{inline,queued}/{1,8}`: from 1 and 8 concurrent clients, with small runs made
//!   on the request's thread (the default) and with every run handed to an inference thread
//!   (`inline_max_us = 0`);
//! - `tanh-chain/{1,64}`: the slow model (milliseconds per row) from 1 and 64 clients; after
//!   the 64-client runs it prints the rows per run, which must stay above 1 (batching).
//!
//! Run with `cargo xtask bench --engine`. Criterion reports each as requests per second.

#[path = "../tests/common/cost.rs"]
#[allow(dead_code, reason = "shared with the tests")]
mod cost;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oxiserve::Config;
use oxiserve::testing::TestApp;
use tokio::runtime::Runtime;

use crate::cost::{Cost, IDENTITY, Row, SLOW};

/// The cost models, one session per core, no response cache; `inline_max_us` as given.
fn app(runtime: &Runtime, inline_max_us: u64) -> Arc<TestApp<Cost>> {
    let mut config = Config::default();
    config.models.uri = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/models").into();
    config.models.poll_interval = Duration::ZERO;
    config.models.batching.inline_max_us = inline_max_us;
    config.cache.capacity = 0;
    let app = runtime.block_on(TestApp::with_config(Cost, config));
    Arc::new(app.expect("the cost models load"))
}

/// Sends `requests` requests for `model` through the engine from `clients` concurrent
/// clients; returns the time taken.
async fn drive(app: &Arc<TestApp<Cost>>, model: &str, clients: u64, requests: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (app, row) = (Arc::clone(app), Row::of(model, 0.5));
            let share = requests / clients + u64::from(client < requests % clients);
            tokio::spawn(async move {
                for _ in 0..share {
                    let answer = app.engine().predict(row.clone(), None).await;
                    answer.expect("the model answers");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client finished");
    }
    start.elapsed()
}

fn identity(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group(IDENTITY);
    group.throughput(Throughput::Elements(1));
    let apps = [("inline", app(&runtime, 100)), ("queued", app(&runtime, 0))];
    // The two alternate at each client count, so that drift on a noisy machine hits both.
    for clients in [1, 8] {
        for (label, app) in &apps {
            group.bench_function(BenchmarkId::new(*label, clients), |b| {
                b.iter_custom(|requests| runtime.block_on(drive(app, IDENTITY, clients, requests)));
            });
        }
    }
    group.finish();
}

fn slow(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let app = app(&runtime, 100);
    let mut group = c.benchmark_group(SLOW);
    group.throughput(Throughput::Elements(1)).sample_size(10);
    let model = app.engine().models().get(SLOW).expect("loaded");
    let stats = model.stats();
    for clients in [1, 64] {
        let (runs, rows) = (stats.runs(), stats.rows());
        group.bench_function(BenchmarkId::from_parameter(clients), |b| {
            b.iter_custom(|requests| runtime.block_on(drive(&app, SLOW, clients, requests)));
        });
        let (runs, rows) = (stats.runs() - runs, stats.rows() - rows);
        println!("{SLOW}/{clients}: {:.1} rows per run", rows as f64 / runs.max(1) as f64);
    }
    group.finish();
}

criterion_group!(benches, identity, slow);
criterion_main!(benches);
