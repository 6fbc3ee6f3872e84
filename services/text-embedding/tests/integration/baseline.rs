//! The FastAPI baseline (`bench/fastapi/text-embedding`, what `cargo xtask bench --service
//! text-embedding` measures oxiserve against) answers like this service on every fixture text,
//! on the OpenAI route and TEI's, so the benchmark compares equal work. `cargo xtask test`
//! creates its venv and points `BASELINE_PYTHON` at it.

use std::path::PathBuf;

use oxiserve::testing::TestApp;
use oxiserve_test_support::{fastapi_twin, http_request};
use serde_json::{Value, json};
use text_embedding::TextEmbedding;

fn cosine(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap()).sum();
    let norm = |v: &Vec<Value>| v.iter().map(|x| x.as_f64().unwrap().powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fastapi_baseline_answers_like_the_service() {
    let baseline = fastapi_twin("text-embedding").await;
    let address = format!("127.0.0.1:{}", baseline.port());
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let app = TestApp::start(TextEmbedding, models).await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let texts: Vec<&Value> =
        fixture["cases"].as_array().unwrap().iter().map(|c| &c["text"]).collect();

    for (route, body) in [
        ("/v1/embeddings", json!({"model": "all-MiniLM-L6-v2", "input": texts})),
        ("/embed", json!({"inputs": texts, "truncate": true})),
    ] {
        let ours = app.post_json(route, body.to_string()).await;
        assert_eq!(ours.status, 200, "{}", ours.text());
        let ours: Value = ours.json();
        let (status, theirs) = http_request(&address, "POST", route, &body.to_string());
        assert_eq!(status, 200, "{theirs}");
        let theirs: Value = serde_json::from_str(&theirs).unwrap();
        let vectors = |answer: &Value| -> Vec<Value> {
            match answer["data"].as_array() {
                Some(data) => data.iter().map(|d| d["embedding"].clone()).collect(),
                None => answer.as_array().unwrap().clone(),
            }
        };
        let (a, b) = (vectors(&ours), vectors(&theirs));
        assert_eq!(a.len(), texts.len());
        for ((x, y), text) in a.iter().zip(&b).zip(&texts) {
            assert!(cosine(x, y) >= 0.99999, "{route}: {text}");
        }
        assert_eq!(ours["usage"], theirs["usage"], "{route}");
    }
    // Both refuse an empty text, and a text past the limit on TEI's route by default.
    let (status, _) = http_request(&address, "POST", "/embed", r#"{"inputs": [""]}"#);
    assert_eq!(status, 422);
    assert_eq!(app.post_json("/embed", r#"{"inputs": [""]}"#).await.status, 422);
}
