//! Parity with Python on committed fixtures (`tests/fixtures/parity.json`, written by
//! `trainer/build_minilm_fixture.py` with the `tokenizers` library, onnxruntime and
//! sentence-transformers' pooling): every text alone, all of them in one request, and all of
//! them as concurrent requests that the core batches together, short and truncated, ASCII and
//! not. Then a check of meaning, and the limits.

use std::path::PathBuf;
use std::sync::Arc;

use oxiserve::testing::TestApp;
use serde_json::{Value, json};
use text_embedding::{EmbedOutput, TextEmbedding, Vector};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

async fn app() -> TestApp<TextEmbedding> {
    TestApp::start(TextEmbedding, models_dir())
        .await
        .expect("the model loads (`cargo xtask setup` fetches it)")
}

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn numbers(vector: &Vector) -> &[f32] {
    match vector {
        Vector::Float(values) => values,
        Vector::Base64(_) => panic!("asked for numbers"),
    }
}

async fn embed(app: &TestApp<TextEmbedding>, body: Value) -> EmbedOutput {
    let response = app.post_json("/v1/predict", body.to_string()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_equal_pythons_alone_batched_and_across_concurrent_requests() {
    let app = Arc::new(app().await);
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let check = |got: &[f32], case: &Value, how: &str| {
        let expected = floats(&case["embedding"]);
        assert_eq!(got.len(), 384);
        let similarity = cosine(got, &expected);
        assert!(similarity >= 0.99999, "{how}: {:?} has cosine {similarity}", case["text"]);
    };

    // Alone, one request each: the same tokens (counted with [CLS] and [SEP]), the same vector.
    for case in cases {
        let output = embed(&app, json!({"inputs": [case["text"]]})).await;
        assert_eq!(output.tokens[0], case["ids"].as_array().unwrap().len(), "{:?}", case["text"]);
        check(numbers(&output.embeddings[0]), case, "alone");
    }
    // One request with every text: one inference per text, batched and padded together.
    let output = embed(&app, json!({"inputs": texts})).await;
    for (vector, case) in output.embeddings.iter().zip(cases) {
        check(numbers(vector), case, "in one request");
    }
    // Concurrent requests of different lengths, batched across requests.
    let answers = futures_util::future::join_all(cases.iter().map(|case| {
        let app = Arc::clone(&app);
        let body = json!({"inputs": [case["text"]]}).to_string();
        async move { app.post_json("/v1/predict", body).await.json::<EmbedOutput>() }
    }))
    .await;
    for (answer, case) in answers.iter().zip(cases) {
        check(numbers(&answer.embeddings[0]), case, "concurrently");
    }
    // Token ids give what their text gives ([CLS] and [SEP] added).
    let case = &cases[3];
    let ids = case["ids"].as_array().unwrap();
    let inner: Vec<&Value> = ids[1..ids.len() - 1].iter().collect();
    let output = embed(&app, json!({"inputs": [inner]})).await;
    check(numbers(&output.embeddings[0]), case, "as token ids");
    // base64: the same little-endian floats.
    let output = embed(&app, json!({"inputs": [case["text"]], "encoding": "base64"})).await;
    let Vector::Base64(text) = &output.embeddings[0] else { panic!("asked for base64") };
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
    let decoded: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    check(&decoded, case, "base64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paraphrases_are_closer_than_unrelated_sentences() {
    let app = app().await;
    for triple in fixture()["meaning"].as_array().unwrap() {
        let body = json!({"inputs": [triple["text"], triple["paraphrase"], triple["unrelated"]]});
        let output = embed(&app, body).await;
        let [text, paraphrase, unrelated] =
            [0, 1, 2].map(|i| numbers(&output.embeddings[i]).to_vec());
        let (close, far) = (cosine(&text, &paraphrase), cosine(&text, &unrelated));
        assert!(close > far + 0.2, "{triple}: paraphrase {close:.3}, unrelated {far:.3}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_422s_naming_the_input() {
    let app = app().await;
    let long = "embedding ".repeat(400);
    let many: Vec<&str> = vec!["x"; text_embedding::MAX_ITEMS + 1];
    let huge = "x".repeat(text_embedding::MAX_CHARS + 1);
    let cases = [
        (json!({"inputs": []}), "inputs", "at least one input"),
        (json!({"inputs": ["fine", ""]}), "inputs[1]", "is empty"),
        (json!({"inputs": many}), "inputs", "at most 256"),
        (json!({"inputs": [huge]}), "inputs[0]", "more than 20000 characters"),
        (json!({"inputs": [long], "truncate": false}), "inputs[0]", "more than the model's 256"),
        (json!({"inputs": [[1, 2, 40000]]}), "inputs[0]", "40000 is not a token id below"),
        (json!({"inputs": [[]]}), "inputs[0]", "holds no token id"),
    ];
    for (body, field, detail) in cases {
        let response = app.post_json("/v1/predict", body.to_string()).await;
        assert_eq!(response.status, 422, "{body}: {}", response.text());
        let problem: Value = response.json();
        assert_eq!(problem["field"], field, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{problem}");
    }
    // Truncated by default: the long text is read as its first 256 tokens.
    let output = embed(&app, json!({"inputs": [long]})).await;
    assert_eq!(output.tokens, [256]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tei_route_answers_bare_vectors_and_refuses_long_texts_unless_told_to_truncate() {
    let app = app().await;
    let fixture = fixture();
    let case = &fixture["cases"][1];
    let one = app.post_json("/embed", json!({"inputs": case["text"]}).to_string()).await;
    assert_eq!(one.status, 200, "{}", one.text());
    let vectors: Vec<Vec<f32>> = one.json();
    assert_eq!(vectors.len(), 1);
    assert!(cosine(&vectors[0], &floats(&case["embedding"])) >= 0.99999);
    // Not normalised: the same direction, another length.
    let body = json!({"inputs": [case["text"], "x"], "normalize": false}).to_string();
    let raw: Vec<Vec<f32>> = app.post_json("/embed", body).await.json();
    let length = raw[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((length - 1.0).abs() > 0.01 && cosine(&raw[0], &vectors[0]) >= 0.99999, "{length}");
    // TEI refuses a text past the model's limit unless `truncate` is set.
    let long = "embedding ".repeat(400);
    let refused = app.post_json("/embed", json!({"inputs": [long]}).to_string()).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    let cut =
        app.post_json("/embed", json!({"inputs": [long], "truncate": true}).to_string()).await;
    assert_eq!(cut.status, 200);
}

/// The raw model over KServe v2: the caller tokenises and pools, as a client of Triton would.
/// Two texts of different lengths in one padded request give Python's embeddings once their
/// states are mean-pooled over the real tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_model_answers_over_kserve_v2_with_pythons_states() {
    let app = app().await;
    let fixture = fixture();
    let cases = [&fixture["cases"][0], &fixture["cases"][1]];
    let ids: Vec<Vec<i64>> = cases
        .iter()
        .map(|c| c["ids"].as_array().unwrap().iter().map(|i| i.as_i64().unwrap()).collect())
        .collect();
    let width = ids.iter().map(Vec::len).max().unwrap();
    let padded = |value: &dyn Fn(i64) -> i64| -> Vec<i64> {
        ids.iter()
            .flat_map(|row| (0..width).map(|i| row.get(i).map_or(0, |&id| value(id))))
            .collect()
    };
    let (tokens, mask) = (padded(&|id| id), padded(&|_| 1));
    let tensor = |name: &str, data: &[i64]| json!({"name": name, "shape": [2, width], "datatype": "INT64", "data": data});
    let body = json!({"inputs": [
        tensor("input_ids", &tokens),
        tensor("attention_mask", &mask),
        tensor("token_type_ids", &vec![0; tokens.len()]),
    ]});
    let response = app.post_json("/v2/models/minilm/infer", body.to_string()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let reply: Value = response.json();
    let output = &reply["outputs"][0];
    assert_eq!(output["name"], "last_hidden_state");
    assert_eq!(output["shape"], json!([2, width, 384]));
    let states = floats(&output["data"]);
    for (row, case) in cases.iter().enumerate() {
        let real = ids[row].len();
        let mut pooled = vec![0f32; 384];
        for token in 0..real {
            let start = (row * width + token) * 384;
            for (sum, state) in pooled.iter_mut().zip(&states[start..start + 384]) {
                *sum += state / real as f32;
            }
        }
        let similarity = cosine(&pooled, &floats(&case["embedding"]));
        assert!(similarity >= 0.99999, "{}: cosine {similarity}", case["text"]);
    }
}
