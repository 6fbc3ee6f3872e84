//! `/metrics` read with a Prometheus text parser (`prometheus-parse`): a known sequence of
//! requests moves the request counters and the stage histograms by exactly what it should.
//! One test in this binary, since the metrics registry belongs to the process.

mod common;

use std::time::Duration;

use oxiserve::Config;
use oxiserve::testing::TestApp;
use prometheus_parse::{Scrape, Value};
use tabular_scoring::{FOREST, LINEAR, Mode, PenguinInput, TabularScoring};

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
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.poll_interval = Duration::ZERO;
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

    // Stages per model: the linear model ran for 7 requests, the forest for 5.
    let stage = "oxiserve_model_stage_seconds_count";
    for (model, runs) in [(LINEAR, 7.0), (FOREST, 5.0)] {
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
        assert_eq!(delta("oxiserve_pipeline_stage_seconds_count", &labels), 10.0, "{name}");
    }
    // Histograms have real buckets, from 100 µs up.
    let text = app.get("/metrics").await.text();
    assert!(text.contains(r#"oxiserve_model_stage_seconds_bucket{"#), "no buckets");
    assert!(text.contains(r#"le="0.0001""#), "no sub-millisecond bucket");
}
