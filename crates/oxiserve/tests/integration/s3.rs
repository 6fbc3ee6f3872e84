//! A service on an S3 model repository, against a real S3-compatible server (moto), on the test
//! model `token-pool`: versions are mirrored into the local cache with every file checked,
//! broken uploads are never served, a hung or stopped store never fails a request, and a
//! restart with the store down serves from the cache.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use oxiserve::Config;
use oxiserve::store::Publication;
use oxiserve::testing::TestApp;
use oxiserve_test_support::S3Server;

use crate::common::{MODEL, TokenPool};

const BUCKET: &str = "models";
const URI: &str = "s3://models/prod";

/// Publishes the bundled version 1 of `token-pool` to the S3 repository as `version`.
async fn publish(s3: &S3Server, version: u64) {
    let publication = Publication {
        model: MODEL.into(),
        version,
        from: common::models_dir().join(MODEL).join("1"),
        to: URI.into(),
        force: false,
        s3: s3.config(),
    };
    publication.run(&|_, _, _| {}).await.expect("publishing to moto works");
}

/// The manifest of the bundled version 1 of `token-pool`, as `version`.
fn manifest_of(version: u64) -> serde_json::Value {
    let path = common::models_dir().join(MODEL).join("1/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["version"] = version.into();
    manifest
}

/// A store with version 1 of `token-pool`.
async fn store() -> S3Server {
    let s3 = S3Server::start().await.expect("moto starts: run `cargo xtask test` to install it");
    s3.create_bucket(BUCKET).await.unwrap();
    publish(&s3, 1).await;
    s3
}

fn config(endpoint: oxiserve::config::S3Config, cache: &Path) -> Config {
    let mut config = Config::default();
    config.models.uri = URI.into();
    config.models.cache_dir = cache.to_path_buf();
    config.models.s3 = endpoint;
    config.models.sessions = 1;
    config.models.poll_interval = Duration::from_millis(50);
    config
}

async fn app(s3: &S3Server, cache: &Path) -> TestApp<TokenPool> {
    TestApp::with_config(TokenPool::new(), config(s3.config(), cache))
        .await
        .expect("the service starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_versions_are_mirrored_checked_and_served() {
    let s3 = store().await;
    let cache = tempfile::tempdir().unwrap();
    let app = app(&s3, cache.path()).await;
    assert_eq!(common::served_version(&app).await, 1);
    assert!(cache.path().join("token-pool/1/manifest.json").is_file(), "mirrored into the cache");

    let published = Instant::now();
    publish(&s3, 2).await;
    common::wait_for_version(&app, 2).await;
    eprintln!("manifest upload to first response by v2: {:?}", published.elapsed());
    assert!(cache.path().join("token-pool/2/model.onnx").is_file());
    assert!(common::model_status(&app).await["sync_error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_uploads_are_never_served_and_later_good_versions_are() {
    let s3 = store().await;
    let cache = tempfile::tempdir().unwrap();
    let app = app(&s3, cache.path()).await;

    // v2: a file that does not match its manifest (replaced after the manifest was written, or
    // corrupted on the way). The file goes up before the manifest, as a publisher writes them:
    // published whole and then replaced, v2 was whole for a moment, and a poll in that moment
    // served it.
    s3.put(BUCKET, "prod/token-pool/2/model.onnx", b"not the graph".to_vec()).await.unwrap();
    let manifest = manifest_of(2).to_string().into_bytes();
    s3.put(BUCKET, "prod/token-pool/2/manifest.json", manifest).await.unwrap();
    // v3: files without a manifest: an upload still in progress, or abandoned.
    let graph = std::fs::read(common::models_dir().join("token-pool/1/model.onnx")).unwrap();
    s3.put(BUCKET, "prod/token-pool/3/model.onnx", graph).await.unwrap();

    let start = Instant::now();
    loop {
        let status = common::model_status(&app).await;
        if let Some(failed) = status["failed_versions"].as_array().filter(|f| !f.is_empty()) {
            assert_eq!(failed[0]["version"], 2, "{status}");
            let error = failed[0]["error"].as_str().unwrap();
            assert!(
                error.contains("mismatch")
                    && error.contains("s3://models/prod/token-pool/2/model.onnx"),
                "{error}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version 2 was never rejected");
        assert_eq!(common::served_version(&app).await, 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!cache.path().join("token-pool/2").exists(), "nothing of v2 reaches the cache");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::served_version(&app).await, 1, "neither broken version is served");

    publish(&s3, 4).await;
    common::wait_for_version(&app, 4).await;
    let failed = common::model_status(&app).await["failed_versions"].as_array().unwrap().len();
    assert_eq!(failed, 1, "the manifest-less version was never attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_manifests_fail_only_their_version() {
    let s3 = store().await;
    let cache = tempfile::tempdir().unwrap();
    let app = app(&s3, cache.path()).await;
    // `04` is not version 4: read as 4, the mirror asked for `4/manifest.json`, which is not
    // there, and reported the whole store unavailable for good.
    let zero_padded = manifest_of(4).to_string().into_bytes();
    s3.put(BUCKET, "prod/token-pool/04/manifest.json", zero_padded).await.unwrap();
    // Version 5 lists `extra` and `extra/words.txt`: no directory can hold both. Moving it into
    // place failed as an I/O error, counted as an unreachable store and retried forever.
    let mut clash = manifest_of(5);
    let entry = serde_json::json!({"sha256": "00", "size": 1});
    clash["files"]["extra"] = entry.clone();
    clash["files"]["extra/words.txt"] = entry;
    s3.put(BUCKET, "prod/token-pool/5/manifest.json", clash.to_string().into_bytes())
        .await
        .unwrap();

    let start = Instant::now();
    let failed = loop {
        let status = common::model_status(&app).await;
        if let Some(failed) = status["failed_versions"].as_array().filter(|f| !f.is_empty()) {
            assert!(status["sync_error"].is_null(), "the store is not blamed: {status}");
            break failed.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version 5 was never rejected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["version"], 5);
    assert!(failed[0]["error"].as_str().unwrap().contains("cannot be a directory"), "{failed:?}");
    publish(&s3, 6).await;
    common::wait_for_version(&app, 6).await;
    assert!(common::model_status(&app).await["sync_error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_stopped_store_never_fails_a_request() {
    let s3 = store().await;
    let cache = tempfile::tempdir().unwrap();
    let app = app(&s3, cache.path()).await;

    s3.pause().unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(common::served_version(&app).await, 1, "a hung store does not stop predictions");
    }
    s3.resume().unwrap();

    drop(s3);
    let start = Instant::now();
    loop {
        assert_eq!(
            common::served_version(&app).await,
            1,
            "a stopped store does not stop predictions"
        );
        let status = common::model_status(&app).await;
        if let Some(error) = status["sync_error"].as_str() {
            assert!(error.contains("model store unavailable"), "{error}");
            assert_eq!(status["state"], "ready");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the outage was never reported: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_store_down_serves_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let endpoint = {
        let s3 = store().await;
        publish(&s3, 2).await;
        drop(app(&s3, cache.path()).await);
        s3.config()
    }; // the store is gone from here on
    let restarted = TestApp::with_config(TokenPool::new(), config(endpoint, cache.path())).await;
    let restarted = restarted.expect("the service starts from its cache");
    assert_eq!(common::served_version(&restarted).await, 2);
    let status = common::model_status(&restarted).await;
    assert!(status["sync_error"].as_str().is_some_and(|e| e.contains("unavailable")), "{status}");
    assert_eq!(restarted.get("/health/ready").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_from_s3_under_load_fail_no_request() {
    let s3 = store().await;
    let cache = tempfile::tempdir().unwrap();
    let app = Arc::new(app(&s3, cache.path()).await);
    let answered = common::swap_under_load(app, |version| publish(&s3, version)).await;
    assert!(answered > 100, "the clients kept the service busy: {answered} requests");
}
