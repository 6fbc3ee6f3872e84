//! `/metrics` read with a Prometheus text parser (`prometheus-parse`): a known sequence of
//! requests moves the request counters and the stage histograms by exactly what it should.
//! One test in this binary, since the metrics registry belongs to the process.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use oxiserve::grpc::proto::pipeline::PredictRequest;
use oxiserve::grpc::proto::pipeline::pipeline_client::PipelineClient;
use oxiserve::model::Manifest;
use oxiserve::testing::TestApp;
use prometheus_parse::{Scrape, Value};
use tabular_scoring::{FOREST, LINEAR, Mode, PenguinInput, TabularScoring};
use tonic::Code;

/// Scrapes the app's `/metrics`.
async fn scrape(app: &TestApp<TabularScoring>) -> Scrape {
    let response = app.get("/metrics").await;
    assert_eq!(response.status, 200);
    let text = response.text();
    Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("valid Prometheus text")
}

/// The value of the sample `metric` whose labels include `labels` (0 when there is none): a
/// counter, a gauge, or a histogram's `_count` / `_sum`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching = scrape.samples.iter().filter(|sample| {
        sample.metric == metric && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
    });
    matching
        .map(|sample| match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a number"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_move_counters_and_stage_histograms_by_exactly_their_number() {
    let mut config = common::bundled_config();
    // Every request reaches the models.
    config.cache.capacity = 0;
    let app = TestApp::with_config(TabularScoring, config).await.unwrap();
    let before = scrape(&app).await;

    // 5 fast (linear), 3 accurate (forest), 2 ensemble (both); one malformed; one model list.
    let send = |mode, count| {
        let app = &app;
        async move {
            for _ in 0..count {
                let input = PenguinInput { mode: Some(mode), ..common::input() };
                app.predict(&input).await.unwrap();
            }
        }
    };
    send(Mode::Fast, 5).await;
    send(Mode::Accurate, 3).await;
    send(Mode::Ensemble, 2).await;
    assert_eq!(app.post_json("/v1/predict", r#"{"island": 7}"#).await.status, 422);
    assert_eq!(app.get("/v1/models").await.status, 200);
    // Over gRPC: 2 typed predictions (forest) and one malformed.
    let grpc = app.serve_grpc().await.unwrap();
    let mut client = PipelineClient::connect(format!("http://{}", grpc.address())).await.unwrap();
    let input_json = serde_json::to_string(&common::input()).unwrap();
    for _ in 0..2 {
        let request = PredictRequest { input_json: input_json.clone(), model_version: None };
        client.predict(request).await.unwrap();
    }
    let malformed = PredictRequest { input_json: "{".into(), model_version: None };
    assert_eq!(client.predict(malformed).await.unwrap_err().code(), Code::InvalidArgument);
    let after = scrape(&app).await;

    let delta = |metric: &str, labels: &[(&str, &str)]| {
        value(&after, metric, labels) - value(&before, metric, labels)
    };
    let requests = "oxiserve_http_requests_total";
    let predict = [("route", "/v1/predict"), ("method", "POST")];
    assert_eq!(delta(requests, &[predict[0], predict[1], ("status", "2xx")]), 10.0);
    assert_eq!(delta(requests, &[predict[0], predict[1], ("status", "4xx")]), 1.0);
    let models = [("route", "/v1/models"), ("method", "GET"), ("status", "2xx")];
    assert_eq!(delta(requests, &models), 1.0);
    let durations = "oxiserve_http_request_duration_seconds_count";
    assert_eq!(delta(durations, &[predict[0], ("status", "2xx")]), 10.0);

    let grpc_requests = "oxiserve_grpc_requests_total";
    let grpc_predict = ("method", "/oxiserve.v1.Pipeline/Predict");
    assert_eq!(delta(grpc_requests, &[grpc_predict, ("code", "Ok")]), 2.0);
    assert_eq!(delta(grpc_requests, &[grpc_predict, ("code", "InvalidArgument")]), 1.0);
    let grpc_durations = "oxiserve_grpc_request_duration_seconds_count";
    assert_eq!(delta(grpc_durations, &[grpc_predict]), 3.0);

    // Stages per model: the linear model ran for 7 requests, the forest for 5 over HTTP and 2
    // over gRPC.
    let stage = "oxiserve_model_stage_seconds_count";
    for (model, runs) in [(LINEAR, 7.0), (FOREST, 7.0)] {
        for name in ["queue", "inference"] {
            let labels = [("model", model), ("version", "1"), ("stage", name)];
            assert_eq!(delta(stage, &labels), runs, "{model} {name}");
        }
        // One row per request, however they were batched.
        let rows = delta("oxiserve_model_batch_rows_sum", &[("model", model), ("version", "1")]);
        assert_eq!(rows, runs, "{model} rows");
        let failures = delta("oxiserve_model_failures_total", &[("model", model)]);
        assert_eq!(failures, 0.0);
    }
    // The pipeline's own stages ran once per successful request.
    for name in ["preprocess", "postprocess"] {
        let labels = [("pipeline", "tabular-scoring"), ("stage", name)];
        assert_eq!(delta("oxiserve_pipeline_stage_seconds_count", &labels), 12.0, "{name}");
    }

    // The model store: each model's loaded version with its checksum, one sync at start-up
    // (the local repository answers), nothing failed or downloaded.
    for model in [LINEAR, FOREST] {
        let dir = common::models_dir().join(model).join("1");
        let manifest = Manifest::read(&dir, model, 1).unwrap();
        let sha256 = &manifest.files["model.onnx"].sha256[..12];
        let info = [("model", model), ("version", "1"), ("sha256", sha256)];
        assert_eq!(value(&after, "oxiserve_model_version_info", &info), 1.0, "{model}");
        let labels = [("model", model)];
        assert_eq!(value(&after, "oxiserve_model_sync_attempts_total", &labels), 1.0);
        assert_eq!(value(&after, "oxiserve_model_sync_failures_total", &labels), 0.0);
        assert_eq!(value(&after, "oxiserve_model_download_bytes_total", &labels), 0.0);
        let synced = value(&after, "oxiserve_model_last_sync_timestamp_seconds", &labels);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(synced > now - 300.0 && synced <= now, "last sync at {synced}, now {now}");
    }
    assert_eq!(value(&after, "oxiserve_ready", &[("pipeline", "tabular-scoring")]), 1.0);
    // The process: memory, CPU and descriptors, read at each scrape.
    assert!(value(&after, "oxiserve_process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&after, "oxiserve_process_open_fds", &[]) > 3.0);
    // Whole CPU seconds (a counter): a test process may not have used one yet.
    assert!(after.samples.iter().any(|s| s.metric == "oxiserve_process_cpu_seconds_total"));
    let build = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(value(&after, "oxiserve_build_info", &build), 1.0);
    // Histograms have real buckets, from 100 µs up.
    let text = app.get("/metrics").await.text();
    assert!(text.contains(r#"oxiserve_model_stage_seconds_bucket{"#), "no buckets");
    assert!(text.contains(r#"le="0.0001""#), "no sub-millisecond bucket");
}
