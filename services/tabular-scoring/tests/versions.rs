//! Model versions while serving: new versions published into the repository are picked up by
//! the poll loop, broken ones are recorded and never served, and swaps fail no request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use oxiserve::Config;
use oxiserve::testing::TestApp;
use serde_json::Value;
use tabular_scoring::{FOREST, PenguinInput, TabularScoring};

const POLL: Duration = Duration::from_millis(50);

/// The service on a private copy of the bundled repository, polling every [`POLL`].
async fn polling_app(root: &std::path::Path) -> TestApp<TabularScoring> {
    common::copy_dir(&common::models_dir(), root);
    let mut config = Config::default();
    config.models.uri = root.to_path_buf();
    config.models.sessions = 1;
    config.models.poll_interval = POLL;
    TestApp::with_config(TabularScoring, config).await.expect("the bundled models load")
}

fn input() -> PenguinInput {
    PenguinInput { island: "Dream".into(), bill_length_mm: Some(49.0), ..PenguinInput::default() }
}

/// The forest version that answers a request now.
async fn forest_version(app: &TestApp<TabularScoring>) -> u64 {
    let prediction = app.predict(&input()).await.expect("predictions keep working");
    prediction.models.iter().find(|m| m.name == FOREST).expect("the forest ran").version
}

/// Waits until the forest answers with `version`, failing after a generous bound.
async fn wait_for_version(app: &TestApp<TabularScoring>, version: u64) -> Duration {
    let start = Instant::now();
    while forest_version(app).await != version {
        assert!(start.elapsed() < Duration::from_secs(20), "version {version} was never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn forest_status(app: &TestApp<TabularScoring>) -> Value {
    let models: Value = app.get("/v1/models").await.json();
    models["models"].as_array().unwrap().iter().find(|m| m["name"] == FOREST).unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_is_served_and_named_in_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let app = polling_app(tmp.path()).await;
    assert_eq!(forest_version(&app).await, 1);
    common::publish(tmp.path(), FOREST, 2);
    wait_for_version(&app, 2).await;
    let response = app.post_json("/v1/predict", serde_json::to_vec(&input()).unwrap()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers["x-model-version"], "penguins-forest=2");
    assert_eq!(forest_status(&app).await["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_never_served_and_do_not_block_later_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let app = polling_app(tmp.path()).await;

    // Version 2: a checksum mismatch. Version 3: files without a manifest (an upload that
    // never finished), so not published at all.
    common::publish(tmp.path(), FOREST, 2);
    let graph = tmp.path().join(FOREST).join("2/model.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&graph, bytes).unwrap();
    common::publish(tmp.path(), FOREST, 3);
    std::fs::remove_file(tmp.path().join(FOREST).join("3/manifest.json")).unwrap();

    let start = Instant::now();
    loop {
        let status = forest_status(&app).await;
        if let Some(failed) = status["failed_versions"].as_array().filter(|f| !f.is_empty()) {
            assert_eq!(failed[0]["version"], 2, "{status}");
            assert!(failed[0]["error"].as_str().unwrap().contains("sha256 mismatch"), "{status}");
            assert_eq!(status["state"], "ready", "version 1 still serves: {status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version 2 was never rejected");
        assert_eq!(forest_version(&app).await, 1);
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(POLL * 4).await;
    assert_eq!(forest_version(&app).await, 1, "neither broken version is served");

    common::publish(tmp.path(), FOREST, 4);
    wait_for_version(&app, 4).await;
    let failed = forest_status(&app).await["failed_versions"].as_array().unwrap().len();
    assert_eq!(failed, 1, "the manifest-less version was never attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_under_load_fail_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let app = Arc::new(polling_app(tmp.path()).await);
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, done) = (Arc::clone(&app), Arc::clone(&done));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let response =
                        app.post_json("/v1/predict", serde_json::to_vec(&input()).unwrap()).await;
                    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
                    let header = response.headers["x-model-version"].to_str().unwrap().to_string();
                    seen.push(header);
                }
                seen
            })
        })
        .collect();

    let published: Vec<u64> = (2..=6).collect();
    for &version in &published {
        common::publish(tmp.path(), FOREST, version);
        wait_for_version(&app, version).await;
    }
    done.store(true, Ordering::Relaxed);

    let mut answered = 0;
    for client in clients {
        for header in client.await.expect("no client saw a failed request") {
            let version: u64 = header.strip_prefix("penguins-forest=").unwrap().parse().unwrap();
            assert!(version == 1 || published.contains(&version), "{header}");
            answered += 1;
        }
    }
    assert!(answered > 100, "the clients kept the service busy: {answered} requests");
}
