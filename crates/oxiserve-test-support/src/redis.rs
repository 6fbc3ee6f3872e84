//! [`RedisServer`]: a real Redis (Debian's `redis-server`) on 127.0.0.1 and a free port, for
//! tests.
//!
//! `cargo xtask test` installs `redis-server` when it is missing; `REDIS_SERVER` may name
//! another binary. The server keeps nothing on disk, and is stopped when the value is
//! dropped, even when the test fails.

use crate::process::{self, ServerProcess};
use anyhow::Result;

/// A Redis server process that a test can stop, restart on the same port, or freeze.
#[derive(Debug)]
pub struct RedisServer {
    process: Option<ServerProcess>,
    port: u16,
}

impl RedisServer {
    /// Starts Redis on a free port and waits until it listens.
    pub async fn start() -> Result<Self> {
        let port = process::free_port()?;
        Ok(Self { process: Some(launch(port).await?), port })
    }

    /// `redis://127.0.0.1:PORT`: what `cache.redis_url` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would: its data is gone and connections drop.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts an empty server again on the same port (stopping the running one, if any).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.process = Some(launch(self.port).await?);
        Ok(())
    }

    /// Freezes the server (SIGSTOP): connections are accepted but never answered, like a hung
    /// Redis. [`RedisServer::resume`] undoes it.
    pub fn pause(&self) -> Result<()> {
        self.process.as_ref().map_or(Ok(()), ServerProcess::pause)
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.process.as_ref().map_or(Ok(()), ServerProcess::resume)
    }
}

async fn launch(port: u16) -> Result<ServerProcess> {
    let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let args =
        ["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"]
            .map(String::from);
    let hint = "install Debian's redis-server, or run `cargo xtask test`";
    ServerProcess::start(&program, &args, port, hint).await
}
