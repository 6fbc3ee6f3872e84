//! Metrics as operators see them, with the real tools: a Prometheus server (Debian's package)
//! scrapes a service (on the test model `token-pool`) on loopback with the alert rules of `deploy/observability/` loaded.
//! After traffic, its query API answers a p99 over the inference stage, every query of the
//! Grafana dashboard runs and names only metrics the service exports, and no alert fires on
//! the healthy service. `promtool` checks the rules and runs their unit tests.
//! `cargo xtask test` installs the package and sets `PROMETHEUS` and `PROMTOOL`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oxiserve::Config;
use oxiserve::grpc::proto::pipeline::PredictRequest;
use oxiserve::grpc::proto::pipeline::pipeline_client::PipelineClient;
use oxiserve::testing::TestApp;
use oxiserve_test_support::{PrometheusServer, http_request};
use serde_json::Value;

use crate::common::TokenPool;

/// `deploy/observability/`.
fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability")
}

/// The p99 of the inference stage over every model, as an operator would ask for it.
const INFERENCE_P99: &str = r#"histogram_quantile(0.99, sum by (le) (rate(oxiserve_model_stage_seconds_bucket{stage="inference"}[30s])))"#;

/// Every PromQL query of the dashboard (its panels' targets), with Grafana's variables given
/// values Prometheus accepts.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(observability().join("grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let panels = dashboard["panels"].as_array().expect("the dashboard has panels");
    let queries: Vec<String> = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("every target has a query").to_string())
        .map(|expr| {
            expr.replace("$__rate_interval", "30s").replace("$job", ".+").replace("$model", ".+")
        })
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

/// The `oxiserve_*` metric names a query reads.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(start) = rest.find("oxiserve_") {
        let tail = &rest[start..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The names of every sample the service exports now.
async fn exported(app: &TestApp<TokenPool>) -> BTreeSet<String> {
    let text = app.get("/metrics").await.text();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_service_and_answers_the_dashboards_queries() {
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.poll_interval = Duration::ZERO;
    let app = TestApp::with_config(TokenPool::new(), config).await.unwrap();
    let http = app.serve().await.unwrap();
    let grpc = app.serve_grpc().await.unwrap();
    let mut client = PipelineClient::connect(format!("http://{}", grpc.address())).await.unwrap();
    let alerts = observability().join("alerts.yml");
    let prometheus = PrometheusServer::start(&[http.address()], &[&alerts])
        .await
        .expect("Prometheus starts (run `cargo xtask test`)");
    let written = std::fs::read_to_string(&alerts).unwrap();
    let alert_count = written.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    assert!(alert_count >= 6, "{alert_count} alerts in alerts.yml");
    assert_eq!(prometheus.rules().unwrap().len(), alert_count, "every alert rule loaded");

    // Traffic, a round every 200 ms, until Prometheus has seen the inference histogram move
    // over at least two scrapes. Inputs differ so that the response cache misses.
    let address = http.address().to_string();
    let start = Instant::now();
    let mut sent = 0u32;
    let p99 = loop {
        for length in 1..=3 {
            sent += 1;
            let ids: Vec<u32> = (0..length).map(|at| (sent + at) % 64).collect();
            let body = serde_json::json!({ "ids": ids }).to_string();
            let (status, answer) = http_request(&address, "POST", "/v1/predict", &body);
            assert_eq!(status, 200, "{answer}");
            let request = PredictRequest { input_json: body, model_version: None };
            client.predict(request).await.expect("gRPC predict answers");
        }
        let answer = prometheus.query(INFERENCE_P99).unwrap();
        let value = answer.first().and_then(|sample| sample["value"][1].as_str()?.parse().ok());
        if let Some(p99) = value.filter(|p99: &f64| p99.is_finite()) {
            break p99;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no p99 after {sent} requests: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(p99 > 0.0 && p99 <= 10.0, "the inference p99 is {p99} s");
    assert_eq!(prometheus.target_health().unwrap(), ["up"]);

    // Every dashboard query runs, on metrics the service really exports.
    let exported = exported(&app).await;
    for query in dashboard_queries() {
        prometheus.query(&query).unwrap_or_else(|e| panic!("{e}"));
        for name in metric_names(&query) {
            assert!(exported.contains(&name), "the dashboard reads {name}, which is not exported");
        }
    }
    let firing = prometheus.active_alerts().unwrap();
    assert!(firing.is_empty(), "alerts on a healthy service: {firing:?}");
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests_pass() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts-test.yml"]] {
        let output = Command::new(&promtool)
            .args(args)
            .current_dir(observability())
            .output()
            .expect("promtool runs (run `cargo xtask test`)");
        let said =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "promtool {}: {said}", args.join(" "));
    }
}
