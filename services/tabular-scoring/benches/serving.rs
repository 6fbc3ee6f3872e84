//! Serving throughput of tabular-scoring in process: the real router, JSON, engine, batching,
//! cache and ONNX Runtime, without sockets (HTTP itself is measured by `docs/benchmarks.md`'s
//! wrk runs). Compares, in one run:
//!
//! - `batching/{off,on}/{1,8,64}`: dynamic batching off (`max_batch_size = 1`) and on (32
//!   rows, no added delay) at 1, 8 and 64 concurrent clients, response cache off;
//! - `cache/{off,hit}/8`: the same request from 8 clients with the cache off, and with every
//!   answer a cache hit.
//!
//! Run with `cargo xtask bench` (extra arguments go to criterion, e.g.
//! `cargo xtask bench -- --quick`). Criterion reports each as requests per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oxiserve::Config;
use oxiserve::testing::TestApp;
use tabular_scoring::{Mode, PenguinInput, TabularScoring};
use tokio::runtime::Runtime;

/// Distinct requests that the clients cycle through.
const BODIES: usize = 64;

/// The service on its bundled models, two sessions per model, with `max_batch_size` and a
/// response cache of `cache_capacity` answers (0: off).
fn app(
    runtime: &Runtime,
    max_batch_size: usize,
    cache_capacity: u64,
) -> Arc<TestApp<TabularScoring>> {
    let mut config = Config::default();
    config.models.uri = concat!(env!("CARGO_MANIFEST_DIR"), "/models").into();
    config.models.sessions = 2;
    config.models.poll_interval = Duration::ZERO;
    config.models.batching.max_batch_size = max_batch_size;
    config.cache.capacity = cache_capacity;
    let app = runtime.block_on(TestApp::with_config(TabularScoring, config));
    Arc::new(app.expect("the bundled models load"))
}

/// Request bodies: `count` different penguins, every mode.
fn bodies(count: usize) -> Arc<Vec<Vec<u8>>> {
    let modes = [Mode::Fast, Mode::Accurate, Mode::Ensemble];
    let bodies = (0..count)
        .map(|i| {
            let input = PenguinInput {
                island: ["Biscoe", "Dream", "Torgersen"][i % 3].into(),
                bill_length_mm: Some(35.0 + i as f64 * 0.25),
                bill_depth_mm: Some(14.0 + (i % 7) as f64),
                flipper_length_mm: Some(180.0 + (i % 40) as f64),
                body_mass_g: Some(3500.0 + (i * 25) as f64),
                mode: Some(modes[i % 3]),
                ..PenguinInput::default()
            };
            serde_json::to_vec(&input).expect("an input serialises")
        })
        .collect();
    Arc::new(bodies)
}

/// Sends `requests` requests from `clients` concurrent clients; returns the time taken.
async fn drive(
    app: &Arc<TestApp<TabularScoring>>,
    bodies: &Arc<Vec<Vec<u8>>>,
    clients: u64,
    requests: u64,
) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (app, bodies) = (Arc::clone(app), Arc::clone(bodies));
            let share = requests / clients + u64::from(client < requests % clients);
            tokio::spawn(async move {
                for n in 0..share {
                    let body = bodies[((client * 7 + n) % bodies.len() as u64) as usize].clone();
                    let response = app.post_json("/v1/predict", body).await;
                    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client finished");
    }
    start.elapsed()
}

fn batching(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let bodies = bodies(BODIES);
    let mut group = c.benchmark_group("batching");
    group.throughput(Throughput::Elements(1));
    let apps = [("off", app(&runtime, 1, 0)), ("on", app(&runtime, 32, 0))];
    // Off and on alternate at each client count, so that drift on a noisy machine hits both.
    for clients in [1, 8, 64] {
        for (label, app) in &apps {
            group.bench_function(BenchmarkId::new(*label, clients), |b| {
                b.iter_custom(|requests| runtime.block_on(drive(app, &bodies, clients, requests)));
            });
        }
    }
    group.finish();
}

fn cache(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let same = bodies(1);
    let mut group = c.benchmark_group("cache");
    group.throughput(Throughput::Elements(1));
    for (label, capacity) in [("off", 0), ("hit", 10_000)] {
        let app = app(&runtime, 32, capacity);
        group.bench_function(BenchmarkId::new(label, 8), |b| {
            b.iter_custom(|requests| runtime.block_on(drive(&app, &same, 8, requests)));
        });
    }
    group.finish();
}

criterion_group!(benches, batching, cache);
criterion_main!(benches);
