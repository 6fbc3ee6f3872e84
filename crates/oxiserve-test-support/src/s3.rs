//! [`S3Server`]: a real S3-compatible server (moto) on 127.0.0.1 and a free port, for tests.
//!
//! `cargo xtask test` installs `moto[server]` into `.cache/test-venv` and points `MOTO_SERVER`
//! at its `moto_server`; otherwise `moto_server` is looked up on `PATH`. The server is stopped
//! when the value is dropped, even when the test fails.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use crate::process::{self, ServerProcess};
use anyhow::{Result, anyhow};
use oxiserve::config::S3Config;
use oxiserve::store::s3_client;

/// A moto server process.
#[derive(Debug)]
pub struct S3Server {
    process: ServerProcess,
}

impl S3Server {
    /// Starts moto on a free port and waits until it answers.
    ///
    /// Credentials for clients come from the environment like in production; moto accepts any,
    /// so tests set `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` if the environment has none.
    pub async fn start() -> Result<Self> {
        let port = process::free_port()?;
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let args = ["-H".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        let hint = "run `cargo xtask test` to install it";
        Ok(Self { process: ServerProcess::start(&program, &args, port, hint).await? })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port())
    }

    /// Client settings pointing at this server.
    pub fn config(&self) -> S3Config {
        S3Config { endpoint: Some(self.endpoint()), ..S3Config::default() }
    }

    /// A client for this server.
    pub async fn client(&self) -> Client {
        s3_client(&self.config()).await
    }

    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.client().await.create_bucket().bucket(bucket).send().await.map_err(|e| remote(&e))?;
        Ok(())
    }

    /// Writes `bytes` to `bucket`/`key`.
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<()> {
        let client = self.client().await;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| remote(&e))?;
        Ok(())
    }

    /// Freezes the server (SIGSTOP): connections are accepted but never answered, like a hung
    /// store. [`S3Server::resume`] undoes it.
    pub fn pause(&self) -> Result<()> {
        self.process.pause()
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.process.resume()
    }
}

fn remote(error: &dyn std::error::Error) -> anyhow::Error {
    anyhow!(aws_sdk_s3::error::DisplayErrorContext(error).to_string())
}
