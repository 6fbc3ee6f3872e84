//! What the core's integration tests share: `TokenPool`, a pipeline on the bundled test model
//! `token-pool` (token ids in, a pooled embedding and per-token embeddings out, its vocabulary
//! size read from the manifest as a model card), model repositories made from it, and how a
//! test watches which version serves.

#![allow(dead_code, reason = "each test binary uses its own subset of the helpers")]

pub(crate) mod cost;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use oxiserve::model::Manifest;
use oxiserve::testing::TestApp;
use oxiserve::{
    Context, Error, Inference, Model, Models, Outputs, Padding, Pipeline, Result, Tensor,
};
use serde::{Deserialize, Serialize};

pub(crate) const MODEL: &str = "token-pool";

/// Token ids in, their masked mean embedding and per-token embeddings out. It has no example
/// (so no warm-up request): only `prepare_model` checks each version's card before it serves.
pub(crate) struct TokenPool {
    pub(crate) padding: Padding,
}

/// The model card: how many token ids the model's embedding table holds.
pub(crate) struct Vocabulary(i64);

impl Vocabulary {
    fn from_manifest(manifest: &Manifest) -> Result<Self> {
        let size = manifest.metadata["vocabulary"].as_i64().filter(|&size| size > 0);
        size.map(Vocabulary)
            .ok_or_else(|| Error::pipeline("`vocabulary` is not a positive integer"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Tokens {
    pub(crate) ids: Vec<i64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Pooled {
    pub(crate) pooled: Vec<f32>,
    pub(crate) tokens: Vec<Vec<f32>>,
}

impl TokenPool {
    /// The pipeline with the default padding (no batching across requests of different
    /// lengths).
    pub(crate) fn new() -> Self {
        TokenPool { padding: Padding::new() }
    }
}

impl Pipeline for TokenPool {
    type Input = Tokens;
    type Output = Pooled;

    fn name(&self) -> &str {
        "token-pool"
    }

    fn models(&self) -> Vec<String> {
        vec![MODEL.into()]
    }

    fn preprocess(&self, input: &Tokens, _: &Context, models: &Models) -> Result<Inference> {
        if input.ids.is_empty() {
            return Err(Error::invalid_field("ids", "must hold at least one token"));
        }
        let model = models.get(MODEL)?;
        let Vocabulary(size) = model.cached(Vocabulary::from_manifest)?;
        if let Some(id) = input.ids.iter().find(|&&id| !(0..*size).contains(&id)) {
            return Err(Error::invalid_field(
                "ids",
                format!("{id} is not a token id below {size}"),
            ));
        }
        let shape = (1, input.ids.len());
        let ids = ndarray::Array2::from_shape_vec(shape, input.ids.clone())
            .map_err(|e| Error::pipeline(e.to_string()))?;
        let mask = ndarray::Array2::<i64>::ones(shape);
        Ok(Inference::new().run(
            &model,
            [("input_ids", Tensor::from(ids)), ("attention_mask", Tensor::from(mask))],
        ))
    }

    fn postprocess(&self, _: Tokens, _: &Context, outputs: Outputs) -> Result<Pooled> {
        let output = outputs.get(MODEL)?;
        let pooled = output.tensor("pooled")?.as_f32()?.iter().copied().collect();
        let tokens = output.tensor("token_embeddings")?.as_f32()?;
        let tokens = tokens.outer_iter().next().ok_or_else(|| Error::pipeline("no row"))?;
        let tokens = tokens.outer_iter().map(|token| token.iter().copied().collect()).collect();
        Ok(Pooled { pooled, tokens })
    }

    fn padding(&self, _: &str) -> Padding {
        self.padding.clone()
    }

    /// Answers depend on the token ids alone: cache them (tests that do not want a cache set
    /// `cache.capacity` to 0).
    fn cache_key(&self, input: &Tokens, _: &Context) -> Option<Vec<u8>> {
        oxiserve::cache::json_key(input)
    }

    fn prepare_model(&self, model: &Model) -> Result<()> {
        model.cached(Vocabulary::from_manifest).map(drop)
    }
}

/// The bundled test models.
pub(crate) fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

/// Publishes the bundled version 1 of `token-pool` as `version` under `root`, the way a
/// trainer does (the files first, `manifest.json` last), with `edit` applied to its manifest.
pub(crate) fn publish(root: &Path, version: u64, edit: impl FnOnce(&mut serde_json::Value)) {
    let bundled = models_dir().join(MODEL).join("1");
    let dir = root.join(MODEL).join(version.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(bundled.join("model.onnx"), dir.join("model.onnx")).unwrap();
    let text = std::fs::read_to_string(bundled.join("manifest.json")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["version"] = version.into();
    edit(&mut manifest);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

/// A request every version of `token-pool` answers.
pub(crate) const REQUEST: &str = r#"{"ids": [1, 2, 3]}"#;

/// The version of `token-pool` that answers [`REQUEST`] now.
pub(crate) async fn served_version(app: &TestApp<TokenPool>) -> u64 {
    let response = app.post_json("/v1/predict", REQUEST).await;
    assert_eq!(response.status, StatusCode::OK, "predictions keep working: {}", response.text());
    version_named(response.headers["x-model-version"].to_str().unwrap())
}

/// The version in an `x-model-version` response header.
fn version_named(header: &str) -> u64 {
    let version = header.strip_prefix("token-pool=").expect("names token-pool");
    version.parse().expect("a version number")
}

/// Waits until `version` answers, failing after a generous bound.
pub(crate) async fn wait_for_version(app: &TestApp<TokenPool>, version: u64) {
    let start = Instant::now();
    while served_version(app).await != version {
        assert!(start.elapsed() < Duration::from_secs(20), "version {version} was never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The state of `token-pool` in `GET /v1/models`.
pub(crate) async fn model_status(app: &TestApp<TokenPool>) -> serde_json::Value {
    let models: serde_json::Value = app.get("/v1/models").await.json();
    let models = models["models"].as_array().expect("a list of models");
    models.iter().find(|m| m["name"] == MODEL).expect("token-pool is listed").clone()
}

/// Fires requests from 8 concurrent clients while `publish` publishes versions 2 to 6, each
/// waited for until it serves. Asserts that no request failed and that every response names a
/// published version; returns how many requests were answered.
pub(crate) async fn swap_under_load<F, Fut>(app: Arc<TestApp<TokenPool>>, publish: F) -> usize
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, done) = (Arc::clone(&app), Arc::clone(&done));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let response = app.post_json("/v1/predict", REQUEST).await;
                    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
                    seen.push(version_named(response.headers["x-model-version"].to_str().unwrap()));
                    // A cache hit completes without ever waiting: yield, or these in-process
                    // clients would starve the poll loop that publishes versions.
                    tokio::task::yield_now().await;
                }
                seen
            })
        })
        .collect();
    let published: Vec<u64> = (2..=6).collect();
    for &version in &published {
        publish(version).await;
        wait_for_version(&app, version).await;
    }
    done.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for client in clients {
        for version in client.await.expect("no client saw a failed request") {
            assert!(version == 1 || published.contains(&version), "served version {version}");
            answered += 1;
        }
    }
    answered
}
