//! [`MlServer`]: a real KServe v2 server (Seldon's MLServer with its scikit-learn runtime, the
//! same protocol as Triton) on 127.0.0.1 and free ports, serving fitted scikit-learn models,
//! for the remote backend's tests.
//!
//! `cargo xtask test` creates MLServer's venv and points `MLSERVER` at its `mlserver` program.
//! The model repository is written to a private temporary directory, removed with the server.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::process::{self, ServerProcess};
use anyhow::{Context as _, Result};
use oxiserve::model::TensorSpec;

/// A fitted scikit-learn model for MLServer: its name, the `joblib` file, and the signature the
/// server declares (MLServer's outputs are `predict` and `predict_proba`).
#[derive(Debug, Clone)]
pub struct SklearnModel {
    /// The name the server serves it under.
    pub name: String,
    /// The pickled estimator (`joblib.dump`).
    pub joblib: PathBuf,
    /// Declared inputs.
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs.
    pub outputs: Vec<TensorSpec>,
}

/// An MLServer process that a test can stop and restart on the same ports.
#[derive(Debug)]
pub struct MlServer {
    process: Option<ServerProcess>,
    repository: PathBuf,
    grpc_port: u16,
}

impl MlServer {
    /// Starts MLServer serving `models` and waits until its gRPC port listens.
    pub async fn start(models: &[SklearnModel]) -> Result<Self> {
        let grpc_port = process::free_port()?;
        let repository = std::env::temp_dir().join(format!("oxiserve-mlserver-{grpc_port}"));
        write_repository(&repository, grpc_port, models)?;
        let process = Some(launch(&repository, grpc_port).await?);
        Ok(Self { process, repository, grpc_port })
    }

    /// `http://127.0.0.1:PORT`: the gRPC endpoint, as `models.remote.<model>.endpoint` takes it.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts the server again on the same ports (stopping the running one, if any).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.process = Some(launch(&self.repository, self.grpc_port).await?);
        Ok(())
    }
}

impl Drop for MlServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.repository);
    }
}

/// Writes MLServer's `settings.json` (one process, loopback, the given gRPC port and free
/// HTTP and metrics ports) and a `model-settings.json` beside each model's estimator.
fn write_repository(root: &Path, grpc_port: u16, models: &[SklearnModel]) -> Result<()> {
    let write = |path: PathBuf, value: serde_json::Value| {
        std::fs::write(&path, value.to_string())
            .with_context(|| format!("writing {}", path.display()))
    };
    let tensors = |specs: &[TensorSpec]| -> serde_json::Value {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": s.datatype, "shape": s.shape}))
            .collect()
    };
    std::fs::create_dir_all(root).with_context(|| "creating MLServer's repository")?;
    let settings = json!({
        "debug": false,
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "grpc_port": grpc_port,
        "http_port": process::free_port()?,
        "metrics_port": process::free_port()?,
        "metrics_endpoint": null,
    });
    write(root.join("settings.json"), settings)?;
    for model in models {
        let dir = root.join(&model.name);
        std::fs::create_dir_all(&dir).with_context(|| "creating a model directory")?;
        std::fs::copy(&model.joblib, dir.join("model.joblib"))
            .with_context(|| format!("copying {}", model.joblib.display()))?;
        let settings = json!({
            "name": model.name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "1"},
            "inputs": tensors(&model.inputs),
            "outputs": tensors(&model.outputs),
        });
        write(dir.join("model-settings.json"), settings)?;
    }
    Ok(())
}

async fn launch(repository: &Path, grpc_port: u16) -> Result<ServerProcess> {
    let program = std::env::var("MLSERVER").unwrap_or_else(|_| "mlserver".into());
    let args = ["start".to_string(), repository.display().to_string()];
    let hint = "run `cargo xtask test`, which creates MLServer's venv";
    ServerProcess::start(&program, &args, grpc_port, hint).await
}
