//! Model versions while serving: new versions published into the repository are picked up by
//! the poll loop, broken ones are recorded and never served, and swaps fail no request.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use oxiserve::Config;
use oxiserve::testing::TestApp;
use tabular_scoring::{FOREST, TabularScoring};

const POLL: Duration = Duration::from_millis(50);

/// The service on a private copy of the bundled repository, polling every [`POLL`].
async fn polling_app(root: &std::path::Path) -> TestApp<TabularScoring> {
    common::copy_dir(&common::models_dir(), root);
    let mut config = Config::default();
    config.models.uri = root.display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = POLL;
    TestApp::with_config(TabularScoring, config).await.expect("the bundled models load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_is_served_and_named_in_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let app = polling_app(tmp.path()).await;
    assert_eq!(common::forest_version(&app).await, 1);
    common::publish(tmp.path(), FOREST, 2);
    common::wait_for_version(&app, 2).await;
    let response =
        app.post_json("/v1/predict", serde_json::to_vec(&common::input()).unwrap()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers["x-model-version"], "penguins-forest=2");
    assert_eq!(common::forest_status(&app).await["version"], 2);
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
        let status = common::forest_status(&app).await;
        if let Some(failed) = status["failed_versions"].as_array().filter(|f| !f.is_empty()) {
            assert_eq!(failed[0]["version"], 2, "{status}");
            assert!(failed[0]["error"].as_str().unwrap().contains("size mismatch"), "{status}");
            assert_eq!(status["state"], "ready", "version 1 still serves: {status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version 2 was never rejected");
        assert_eq!(common::forest_version(&app).await, 1);
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(POLL * 4).await;
    assert_eq!(common::forest_version(&app).await, 1, "neither broken version is served");

    common::publish(tmp.path(), FOREST, 4);
    common::wait_for_version(&app, 4).await;
    let failed = common::forest_status(&app).await["failed_versions"].as_array().unwrap().len();
    assert_eq!(failed, 1, "the manifest-less version was never attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_under_load_fail_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let app = Arc::new(polling_app(tmp.path()).await);
    let answered = common::swap_under_load(app, |version| {
        common::publish(tmp.path(), FOREST, version);
        std::future::ready(())
    })
    .await;
    assert!(answered > 100, "the clients kept the service busy: {answered} requests");
}
