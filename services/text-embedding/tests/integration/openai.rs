//! OpenAI's official Python client (`openai`, in the test venv) calls `/v1/embeddings` of the
//! running service: see `openai_client.py`.

use std::path::PathBuf;

use oxiserve::testing::TestApp;
use oxiserve_test_support::python_checks;
use text_embedding::TextEmbedding;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_client_gets_pythons_embeddings() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let app = TestApp::start(TextEmbedding, models).await.expect("the model loads");
    let server = app.serve().await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    let printed = python_checks(script, &[server.url(), fixture.to_string()]).await;
    assert!(printed.contains("float and base64"), "{printed}");
}
