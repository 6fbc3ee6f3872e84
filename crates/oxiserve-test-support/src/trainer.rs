//! [`TrainingService`]: the project's Python training service (`trainer/service`, FastAPI
//! under uvicorn) on 127.0.0.1 and a free port, publishing to a model repository, with a small
//! client for its jobs API.
//!
//! `cargo xtask test` creates its venv (`.cache/trainer-venv`) and points `TRAINER_PYTHON` at
//! its python. The service is stopped when the value is dropped, even when the test fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use serde_json::Value;

use crate::http::http_request;
use crate::process::{self, ServerProcess};
use crate::s3::S3Server;

/// A training service process.
#[derive(Debug)]
pub struct TrainingService {
    process: ServerProcess,
}

impl TrainingService {
    /// Starts the service publishing to `models_uri` (`s3://bucket/prefix` on `s3`), and
    /// waits until it answers.
    pub async fn start(models_uri: &str, s3: &S3Server) -> Result<Self> {
        let port = process::free_port()?;
        let python = std::env::var("TRAINER_PYTHON").unwrap_or_else(|_| "python3".into());
        let trainer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../trainer");
        let mut command = Command::new(python);
        command
            .args(["-m", "uvicorn", "service.app:app", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .current_dir(trainer)
            .env("TRAINER_MODELS_URI", models_uri)
            .env("AWS_ENDPOINT_URL", s3.endpoint())
            // boto3 reads the region from here, not from `AWS_REGION`.
            .env("AWS_DEFAULT_REGION", std::env::var("AWS_REGION").unwrap_or("us-east-1".into()));
        let hint = "run `cargo xtask test`, which creates the training service's venv";
        let service = Self { process: ServerProcess::spawn(command, port, hint).await? };
        let (status, body) = service.call("GET", "/healthz", "")?;
        if status != 200 {
            return Err(anyhow!("the training service is not healthy: {status} {body}"));
        }
        Ok(service)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.process.port())
    }

    /// One request to the service: its status and JSON body.
    pub fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, Value)> {
        let (status, text) = http_request(&self.address(), method, path, body);
        let json = serde_json::from_str(&text)
            .with_context(|| format!("{method} {path} answered {status} with no JSON: {text}"))?;
        Ok((status, json))
    }

    /// Every job the service knows, oldest first.
    pub fn jobs(&self) -> Result<Vec<Value>> {
        let (_, body) = self.call("GET", "/v1/jobs", "")?;
        Ok(body["jobs"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until job `id` is no longer queued or running, and returns it.
    pub async fn finished(&self, id: &str, within: Duration) -> Result<Value> {
        let start = Instant::now();
        loop {
            let (_, job) = self.call("GET", &format!("/v1/jobs/{id}"), "")?;
            if !matches!(job["state"].as_str(), Some("queued" | "running")) {
                return Ok(job);
            }
            if start.elapsed() > within {
                return Err(anyhow!("job {id} did not finish within {within:?}: {job}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
