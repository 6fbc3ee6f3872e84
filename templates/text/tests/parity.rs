//! Parity with Python: `tests/fixtures/parity.json` holds texts with the token ids and the
//! embeddings Python gave (the `tokenizers` library, onnxruntime, mean pooling and L2
//! normalisation; written by `trainer/build_minilm_fixture.py --texts template` of the
//! oxiserve repository). The service must agree for each text alone and for all of them in
//! one request, and paraphrases must be closer than unrelated sentences.

use oxiserve::testing::TestApp;
use serde::Deserialize;

use {{crate}}::{Input, Output};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    meaning: Vec<Meaning>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<i64>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Meaning {
    text: String,
    paraphrase: String,
    unrelated: String,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture is committed"))
        .expect("the fixture parses")
}

async fn app() -> TestApp<{{crate}}::{{Pipeline}}> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    app.expect("the model loads (`cargo xtask setup` fetches it)")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

async fn embed(app: &TestApp<{{crate}}::{{Pipeline}}>, texts: &[&str]) -> Output {
    let input = Input { texts: texts.iter().map(|text| text.to_string()).collect() };
    app.predict(&input).await.unwrap_or_else(|problem| panic!("{problem:?}"))
}

#[tokio::test]
async fn embeddings_match_python_alone_and_in_one_request() {
    let fixture = fixture();
    assert!(!fixture.cases.is_empty());
    let app = app().await;
    let check = |output: &Output, index: usize, case: &Case| {
        let embedding = &output.embeddings[index];
        assert_eq!(embedding.tokens, case.ids.len(), "{:?}: tokens", case.text);
        let similarity = cosine(&embedding.vector, &case.embedding);
        assert!(similarity >= 0.99999, "{:?}: cosine {similarity}", case.text);
    };
    for case in &fixture.cases {
        check(&embed(&app, &[&case.text]).await, 0, case);
    }
    let texts: Vec<&str> = fixture.cases.iter().map(|case| case.text.as_str()).collect();
    let output = embed(&app, &texts).await;
    for (index, case) in fixture.cases.iter().enumerate() {
        check(&output, index, case);
    }
}

#[tokio::test]
async fn paraphrases_are_closer_than_unrelated_sentences() {
    let app = app().await;
    for set in fixture().meaning {
        let output = embed(&app, &[&set.text, &set.paraphrase, &set.unrelated]).await;
        let [text, paraphrase, unrelated] = [0, 1, 2].map(|i| &output.embeddings[i].vector);
        let (near, far) = (cosine(text, paraphrase), cosine(text, unrelated));
        assert!(near > far + 0.2, "{:?}: paraphrase {near}, unrelated {far}", set.text);
    }
}
