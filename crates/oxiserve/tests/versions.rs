//! Model versions while serving, on a repository on disk: new versions published into it are
//! picked up by the poll loop, broken ones are recorded and never served, requests may ask for
//! any loaded version, and swaps fail no request and serve nothing cached from the old version.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Request, StatusCode};
use oxiserve::Config;
use oxiserve::config::VersionPolicy;
use oxiserve::testing::TestApp;

use crate::common::{MODEL, REQUEST, TokenPool};

const POLL: Duration = Duration::from_millis(50);

/// Settings on the repository at `root` (version 1 of `token-pool` published there), one
/// session, polling every [`POLL`].
fn repository_config(root: &Path) -> Config {
    common::publish(root, 1, |_| {});
    let mut config = Config::default();
    config.models.uri = root.display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = POLL;
    config
}

async fn polling_app(root: &Path) -> TestApp<TokenPool> {
    TestApp::with_config(TokenPool::new(), repository_config(root)).await.expect("version 1 loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_is_served_and_named_in_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let app = polling_app(tmp.path()).await;
    assert_eq!(common::served_version(&app).await, 1);
    common::publish(tmp.path(), 2, |_| {});
    common::wait_for_version(&app, 2).await;
    let response = app.post_json("/v1/predict", REQUEST).await;
    assert_eq!(response.headers["x-model-version"], "token-pool=2");
    assert_eq!(common::model_status(&app).await["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_never_served_and_do_not_block_later_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let app = polling_app(tmp.path()).await;

    // Version 2: a checksum mismatch. Version 3: files without a manifest (an upload that
    // never finished), so not published at all.
    // Both are made before a manifest could be read: a poll never sees them half made.
    let graph = tmp.path().join(MODEL).join("2/model.onnx");
    common::publish(tmp.path(), 2, |_| {
        let mut bytes = std::fs::read(&graph).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&graph, bytes).unwrap();
    });
    let unfinished = tmp.path().join(MODEL).join("3");
    std::fs::create_dir_all(&unfinished).unwrap();
    let bundled = common::models_dir().join(MODEL).join("1/model.onnx");
    std::fs::copy(bundled, unfinished.join("model.onnx")).unwrap();

    let start = Instant::now();
    loop {
        let status = common::model_status(&app).await;
        if let Some(failed) = status["failed_versions"].as_array().filter(|f| !f.is_empty()) {
            assert_eq!(failed[0]["version"], 2, "{status}");
            assert!(failed[0]["error"].as_str().unwrap().contains("size mismatch"), "{status}");
            assert_eq!(status["state"], "ready", "version 1 still serves: {status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version 2 was never rejected");
        assert_eq!(common::served_version(&app).await, 1);
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(POLL * 4).await;
    assert_eq!(common::served_version(&app).await, 1, "neither broken version is served");

    common::publish(tmp.path(), 4, |_| {});
    common::wait_for_version(&app, 4).await;
    let failed = common::model_status(&app).await["failed_versions"].as_array().unwrap().len();
    assert_eq!(failed, 1, "the manifest-less version was never attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_under_load_fail_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let app = Arc::new(polling_app(tmp.path()).await);
    let answered = common::swap_under_load(app, |version| {
        common::publish(tmp.path(), version, |_| {});
        std::future::ready(())
    })
    .await;
    assert!(answered > 100, "the clients kept the service busy: {answered} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_may_ask_for_any_loaded_version() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = repository_config(tmp.path());
    config.models.policy = VersionPolicy::Latest(2);
    let app = TestApp::with_config(TokenPool::new(), config).await.unwrap();
    common::publish(tmp.path(), 2, |_| {});
    common::wait_for_version(&app, 2).await;
    assert_eq!(common::model_status(&app).await["versions"], serde_json::json!([1, 2]));

    let by_path = app.post_json("/v1/models/token-pool/versions/1/predict", REQUEST).await;
    assert_eq!(by_path.status, StatusCode::OK, "{}", by_path.text());
    assert_eq!(by_path.headers["x-model-version"], "token-pool=1");

    let request = |header: &'static str| {
        Request::post("/v1/predict")
            .header("content-type", "application/json")
            .header("x-model-version", header)
            .body(axum::body::Body::from(REQUEST))
            .unwrap()
    };
    let by_header = app.request(request("token-pool=1")).await;
    assert_eq!(by_header.status, StatusCode::OK, "{}", by_header.text());
    assert_eq!(by_header.headers["x-model-version"], "token-pool=1");
    assert_eq!(app.request(request("token-pool")).await.problem().status, 400);
    assert_eq!(app.request(request("token-pool=9")).await.problem().status, 404);

    let missing = app.post_json("/v1/models/token-pool/versions/9/predict", REQUEST).await;
    assert_eq!(missing.problem().status, 404);
    let unknown = app.post_json("/v1/models/nothing/versions/1/predict", REQUEST).await;
    assert_eq!(unknown.problem().status, 404);

    common::publish(tmp.path(), 3, |_| {});
    common::wait_for_version(&app, 3).await;
    let versions = &common::model_status(&app).await["versions"];
    assert_eq!(versions, &serde_json::json!([2, 3]), "keeps the newest 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_policy_ignores_new_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = repository_config(tmp.path());
    config.models.policies.insert(MODEL.into(), VersionPolicy::Pinned(vec![1]));
    let app = TestApp::with_config(TokenPool::new(), config).await.unwrap();
    common::publish(tmp.path(), 2, |_| {});
    tokio::time::sleep(POLL * 6).await;
    assert_eq!(common::served_version(&app).await, 1);
    assert_eq!(common::model_status(&app).await["versions"], serde_json::json!([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_are_identical_computed_once_and_dropped_by_a_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let app = Arc::new(polling_app(tmp.path()).await);
    let model = app.engine().models().get(MODEL).unwrap();
    let rows = || model.stats().rows();
    let before = rows();

    // 16 identical requests at once: one computation (single flight), identical bodies.
    let answers = futures_util::future::join_all((0..16).map(|_| {
        let app = Arc::clone(&app);
        async move { app.post_json("/v1/predict", REQUEST).await }
    }))
    .await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK && a.body == answers[0].body));
    assert_eq!(rows() - before, 1, "computed once for 16 identical requests");
    let hit = app.post_json("/v1/predict", REQUEST).await;
    assert_eq!(hit.body, answers[0].body);
    assert!(hit.headers["server-timing"].to_str().unwrap().starts_with("cache;desc=memory;dur="));
    assert_eq!(rows() - before, 1, "a hit runs no model");

    // A new version changes the key: answers now come from it, never from the cache of v1
    // (whose answer says `token-pool=1`).
    common::publish(tmp.path(), 2, |_| {});
    common::wait_for_version(&app, 2).await;
    let after_swap = app.post_json("/v1/predict", REQUEST).await;
    assert_eq!(after_swap.headers["x-model-version"], "token-pool=2");
}

/// Golden examples for `token-pool` from the parity fixture (what Python onnxruntime gave),
/// with `shift` added to the first expected value.
fn golden(shift: f64) -> serde_json::Value {
    let fixture = common::models_dir().join("../fixtures/token_pool.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let examples: Vec<serde_json::Value> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|case| {
            let ids = case["ids"].as_array().unwrap();
            let mut pooled = case["pooled"].clone();
            pooled[0] = (pooled[0].as_f64().unwrap() + shift).into();
            let ints = |data: serde_json::Value| {
                serde_json::json!({"datatype": "INT64", "shape": [1, ids.len()], "data": data})
            };
            serde_json::json!({
                "inputs": {"input_ids": ints(ids.clone().into()), "attention_mask": ints(vec![1; ids.len()].into())},
                "outputs": {"pooled": {"datatype": "FP32", "shape": [1, 8], "data": pooled}},
            })
        })
        .collect();
    serde_json::json!({"absolute": 1e-5, "examples": examples})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_does_not_reproduce_its_golden_outputs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = polling_app(tmp.path()).await;
    // Version 2 reproduces what Python onnxruntime gave: adopted.
    common::publish(tmp.path(), 2, |manifest| manifest["golden"] = golden(0.0));
    common::wait_for_version(&app, 2).await;

    // Version 3 is the same graph, but its manifest expects one value 0.001 off: refused at
    // load, with the value named, while version 2 keeps answering.
    common::publish(tmp.path(), 3, |manifest| manifest["golden"] = golden(0.001));
    let start = Instant::now();
    let failed = loop {
        let status = common::model_status(&app).await;
        if let Some(failed) = status["failed_versions"].as_array().filter(|f| !f.is_empty()) {
            break failed[0].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version 3 was never refused");
        assert_eq!(common::served_version(&app).await, 2);
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(failed["version"], 3);
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("does not reproduce its golden outputs"), "{error}");
    assert!(error.contains("golden example 1 of 3: output `pooled` differs at 1 of 8"), "{error}");
    tokio::time::sleep(POLL * 4).await;
    assert_eq!(common::served_version(&app).await, 2, "the refused version is never served");
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "oxiserve_model_golden_failures_total{model=\"token-pool\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_fails_requests_is_rolled_back_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = repository_config(tmp.path());
    config.cache.capacity = 0;
    config.models.watch.min_requests = 20;
    config.models.watch.window = Duration::from_secs(60);
    let app = Arc::new(TestApp::with_config(TokenPool::new(), config).await.unwrap());

    // Clients keep asking: for ids the model has (always answered) and for id 100, which v1's
    // card (vocabulary 64) refuses as the client's mistake.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (app, done) = (Arc::clone(&app), Arc::clone(&done));
            tokio::spawn(async move {
                let body = if client % 2 == 0 { REQUEST } else { r#"{"ids": [100]}"# };
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = app.post_json("/v1/predict", body).await.status.as_u16();
                    *statuses.entry(status).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Version 2 is the same graph with a card that claims 1000 token ids: it loads and its
    // signature matches, but every request for an id past the graph's 64 rows now reaches
    // ONNX Runtime and fails there (a 500), half of all requests.
    common::publish(tmp.path(), 2, |manifest| manifest["metadata"]["vocabulary"] = 1000.into());
    common::wait_for_version(&app, 2).await;
    let start = Instant::now();
    let retired = loop {
        let status = common::model_status(&app).await;
        let failed = status["failed_versions"].as_array().unwrap().clone();
        if let Some(retired) = failed.into_iter().find(|f| f["version"] == 2) {
            break retired;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "v2 was never rolled back: {status}");
        tokio::time::sleep(POLL).await;
    };
    let reason = retired["error"].as_str().unwrap();
    assert!(reason.starts_with("rolled back automatically: "), "{reason}");
    assert!(reason.contains("requests failed, against 0.0% for v1"), "{reason}");
    assert_eq!(common::served_version(&app).await, 1, "v1 serves again");

    // Never adopted again, though it is still the newest published version.
    tokio::time::sleep(POLL * 6).await;
    assert_eq!(common::served_version(&app).await, 1);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for client in clients {
        for (status, count) in client.await.unwrap() {
            *statuses.entry(status).or_default() += count;
        }
    }
    assert!(statuses[&500] >= 1 && statuses[&422] >= 1 && statuses[&200] > 20, "{statuses:?}");
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.lines().any(|l| l == "oxiserve_model_rollbacks_total{model=\"token-pool\"} 1"),
        "{metrics}"
    );
}
