//! [`S3Server`]: a real S3-compatible server (moto) on 127.0.0.1 and a free port, for tests.
//!
//! `cargo xtask test` installs `moto[server]` into `.cache/test-venv` and points `MOTO_SERVER`
//! at its `moto_server`; otherwise `moto_server` is looked up on `PATH`. The server is stopped
//! when the value is dropped, even when the test fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use crate::config::S3Config;
use crate::error::{Error, Result};
use crate::store::s3;

/// A moto server process.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Starts moto on a free port and waits until it answers.
    ///
    /// Credentials for clients come from the environment like in production; moto accepts any,
    /// so tests set `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` if the environment has none.
    pub async fn start() -> Result<Self> {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|e| Error::io("finding a free port", e))?
            .port();
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::io(format!("starting {program} (run `cargo xtask test` to install it)"), e)
            })?;
        let server = Self { child, port };
        server.wait_until_up().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Client settings pointing at this server.
    pub fn config(&self) -> S3Config {
        S3Config { endpoint: Some(self.endpoint()), ..S3Config::default() }
    }

    /// A client for this server.
    pub async fn client(&self) -> Client {
        s3::client(&self.config()).await
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
        self.signal("-STOP")
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .map_err(|e| Error::io("signalling the S3 server", e))?;
        if status.success() { Ok(()) } else { Err(Error::Remote(format!("kill {signal} failed"))) }
    }

    async fn wait_until_up(&self) -> Result<()> {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Error::Remote(format!(
                    "moto did not listen on port {} within 30 s",
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn remote(error: &dyn std::error::Error) -> Error {
    Error::Remote(aws_sdk_s3::error::DisplayErrorContext(error).to_string())
}
