//! The retraining loop end to end, with real components: moto for S3, the project's training
//! service (FastAPI) publishing there, and the service polling it under load from concurrent
//! clients. A job asked for on demand is served within the poll interval plus warm-up with no
//! failed request; a version whose golden outputs were tampered with is refused while the
//! one serving goes on; and the quality signal starts a job by itself: Prometheus evaluates
//! the deployed rule (`deploy/observability/retraining.yml`) over the service's metrics and
//! Alertmanager, with the deployed routing, posts to the training service's webhook.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oxiserve::testing::TestApp;
use oxiserve_test_support::{AlertmanagerServer, PrometheusServer, S3Server, TrainingService};
use serde_json::Value;
use tabular_scoring::{FOREST, LINEAR, TabularScoring};

const BUCKET: &str = "models";
const POLL: Duration = Duration::from_millis(200);

/// Publishes the bundled version 1 of both models to `s3://models/prod`, files first.
async fn publish_bundled(s3: &S3Server) {
    for model in [LINEAR, FOREST] {
        let dir = common::models_dir().join(model).join("1");
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort_by_key(|path| path.ends_with("manifest.json"));
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let key = format!("prod/{model}/1/{name}");
            s3.put(BUCKET, &key, std::fs::read(&path).unwrap()).await.unwrap();
        }
    }
}

/// The bytes of `prod/<model>/<version>/<file>`.
async fn read(s3: &S3Server, model: &str, version: u64, file: &str) -> Vec<u8> {
    let key = format!("prod/{model}/{version}/{file}");
    let object = s3.client().await.get_object().bucket(BUCKET).key(key).send().await.unwrap();
    object.body.collect().await.unwrap().into_bytes().to_vec()
}

/// The `penguins-forest` version in an `x-model-version` header of an ensemble answer.
fn forest_version(header: &str) -> u64 {
    let named = header.split(',').find_map(|part| part.trim().strip_prefix("penguins-forest="));
    named.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no forest in {header}"))
}

/// The entry of `model` in `GET /v1/models`.
async fn model_status(app: &TestApp<TabularScoring>, model: &str) -> Value {
    let models: Value = app.get("/v1/models").await.json();
    let models = models["models"].as_array().unwrap();
    models.iter().find(|m| m["name"] == model).unwrap().clone()
}

/// moto with the bundled models published, the training service publishing there, and the
/// service polling it every [`POLL`] with its response cache off. The temporary directory is
/// the service's model cache.
async fn retraining_loop() -> (S3Server, TrainingService, TestApp<TabularScoring>, tempfile::TempDir)
{
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).await.unwrap();
    publish_bundled(&s3).await;
    let trainer = TrainingService::start("s3://models/prod", &s3).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut config = common::bundled_config();
    config.models.uri = "s3://models/prod".into();
    config.models.s3 = s3.config();
    config.models.cache_dir = cache.path().to_path_buf();
    config.models.poll_interval = POLL;
    config.cache.capacity = 0;
    let app = TestApp::with_config(TabularScoring, config).await.unwrap();
    (s3, trainer, app, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_demand_is_served_under_load_and_a_tampered_version_is_refused() {
    let (s3, trainer, app, _cache) = retraining_loop().await;
    let app = Arc::new(app);

    // Four clients ask for ensemble predictions (both models) all along, recording every
    // status and every forest version that answered.
    let done = Arc::new(AtomicBool::new(false));
    let body = serde_json::to_string(&common::input()).unwrap();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (app, done, body) = (Arc::clone(&app), Arc::clone(&done), body.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                let mut versions = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let response = app.post_json("/v1/predict", body.clone()).await;
                    *statuses.entry(response.status.as_u16()).or_default() += 1;
                    if let Some(header) = response.headers.get("x-model-version") {
                        versions.push(forest_version(header.to_str().unwrap()));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (statuses, versions)
            })
        })
        .collect();

    // A job on demand: trained, gated against v1, published as v2 with its golden examples,
    // which oxiserve reproduces (Rust ONNX Runtime against Python's) before adopting it.
    let request = r#"{"model": "penguins-forest", "hyperparameters": {"n_estimators": 40}}"#;
    let (status, job) = trainer.call("POST", "/v1/jobs", request).unwrap();
    assert_eq!(status, 202, "{job}");
    let job = trainer.finished(job["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    let job = job.unwrap();
    assert_eq!(job["state"], "published", "{job}");
    assert_eq!(job["version"], 2, "{job}");
    let published = Instant::now();
    loop {
        if model_status(&app, FOREST).await["version"] == 2 {
            break;
        }
        let waited = published.elapsed();
        assert!(waited < POLL + Duration::from_secs(10), "v2 not served after {waited:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served_after = published.elapsed();

    // v3: v2's graph, with a manifest whose first golden probability is off by 0.01. The
    // graph is valid; only the golden check can tell. Refused, and v2 goes on serving.
    let graph = read(&s3, FOREST, 2, "model.onnx").await;
    let mut manifest: Value =
        serde_json::from_slice(&read(&s3, FOREST, 2, "manifest.json").await).unwrap();
    manifest["version"] = 3.into();
    let first = &mut manifest["golden"]["examples"][0]["outputs"]["probabilities"]["data"][0];
    *first = (first.as_f64().unwrap() + 0.01).into();
    s3.put(BUCKET, "prod/penguins-forest/3/model.onnx", graph).await.unwrap();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    s3.put(BUCKET, "prod/penguins-forest/3/manifest.json", manifest_bytes).await.unwrap();
    let start = Instant::now();
    let refusal = loop {
        let status = model_status(&app, FOREST).await;
        let failed = status["failed_versions"].as_array().unwrap().clone();
        if let Some(refused) = failed.into_iter().find(|f| f["version"] == 3) {
            break refused["error"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "v3 was never refused: {status}");
        tokio::time::sleep(POLL).await;
    };
    assert!(refusal.contains("does not reproduce its golden outputs"), "{refusal}");
    assert!(refusal.contains("golden example 1 of 5: output `probabilities`"), "{refusal}");
    tokio::time::sleep(POLL * 3).await;
    assert_eq!(model_status(&app, FOREST).await["version"], 2, "v2 still serves");

    done.store(true, Ordering::Relaxed);
    let mut statuses = BTreeMap::<u16, usize>::new();
    let mut seen = Vec::new();
    for client in clients {
        let (answered, versions) = client.await.unwrap();
        answered
            .into_iter()
            .for_each(|(status, count)| *statuses.entry(status).or_default() += count);
        seen.extend(versions);
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "no request failed: {statuses:?}"
    );
    assert!(seen.contains(&1) && seen.contains(&2) && !seen.contains(&3), "versions answered");
    println!("v2 served {served_after:?} after the job published it; {statuses:?}");
}

/// `text` with every `from` replaced by `to`, which must occur.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` is not in the deployed file");
    text.replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_need_review_raise_the_alert_that_starts_a_job_which_publishes() {
    let (_s3, trainer, app, _cache) = retraining_loop().await;
    let observability =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability");

    // The deployed routing, checked by amtool, pointed at this training service and with its
    // half-minute group wait cut to a second.
    let routing = observability.join("alertmanager.yml");
    let amtool = std::env::var("AMTOOL").unwrap_or_else(|_| "amtool".into());
    let checked = std::process::Command::new(amtool).arg("check-config").arg(&routing).output();
    let checked = checked.expect("amtool runs (cargo xtask test installs it)");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
    let routing = std::fs::read_to_string(routing).unwrap();
    let routing = replaced(
        &routing,
        "http://oxiserve-trainer:8000",
        &format!("http://{}", trainer.address()),
    );
    let routing = replaced(&routing, "group_wait: 30s", "group_wait: 1s");
    let alertmanager = AlertmanagerServer::start(&routing).await.unwrap();

    // The deployed rule with its half-hour windows cut to seconds.
    let rules = std::fs::read_to_string(observability.join("retraining.yml")).unwrap();
    let rules = replaced(&replaced(&rules, "[30m]", "[10s]"), "for: 30m", "for: 0s");
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("retraining.yml");
    std::fs::write(&rules_file, rules).unwrap();
    let http = app.serve().await.unwrap();
    let prometheus = PrometheusServer::start_alerting(
        &[http.address()],
        &[rules_file.as_path()],
        Some(&alertmanager.address()),
    )
    .await
    .unwrap();

    // Every answer asks for 99.9% confidence, so nearly all need review.
    let unsure = tabular_scoring::PenguinInput { min_confidence: Some(0.999), ..common::input() };
    let body = serde_json::to_string(&unsure).unwrap();
    let start = Instant::now();
    let job = loop {
        for _ in 0..10 {
            assert_eq!(app.post_json("/v1/predict", body.clone()).await.status, 200);
        }
        let jobs = trainer.jobs().unwrap();
        let alerted =
            jobs.iter().find(|job| job["trigger"] == "alert TabularScoringNeedsReviewHigh");
        if let Some(job) = alerted {
            break job.clone();
        }
        let waited = start.elapsed();
        let alerts = prometheus.active_alerts().unwrap();
        assert!(waited < Duration::from_secs(90), "no job after {waited:?}; alerts {alerts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let model = job["model"].as_str().unwrap().to_string();
    let job =
        trainer.finished(job["id"].as_str().unwrap(), Duration::from_secs(120)).await.unwrap();
    assert_eq!(job["state"], "published", "{job}");
    assert_eq!(job["data"]["source"], "bundled", "{job}");
    let start = Instant::now();
    while model_status(&app, &model).await["version"] != job["version"] {
        assert!(start.elapsed() < Duration::from_secs(20), "the retrained {model} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
