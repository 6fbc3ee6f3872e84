//! [`AlertmanagerServer`]: a real Alertmanager (Debian's `prometheus-alertmanager` package) on
//! 127.0.0.1 and a free port, with the routing configuration a test gives it, clustering off.
//!
//! `cargo xtask test` installs the package when it is missing; `ALERTMANAGER` may name another
//! binary. Its configuration and storage live in a private temporary directory, removed with
//! the server.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::process::{self, ServerProcess};

/// An Alertmanager process.
#[derive(Debug)]
pub struct AlertmanagerServer {
    /// Stopped before its directory is removed.
    process: Option<ServerProcess>,
    port: u16,
    dir: PathBuf,
}

impl AlertmanagerServer {
    /// Starts Alertmanager with `config` (the text of an `alertmanager.yml`) and waits until
    /// it listens.
    pub async fn start(config: &str) -> Result<Self> {
        let port = process::free_port()?;
        let dir = std::env::temp_dir().join(format!("oxiserve-alertmanager-{port}"));
        std::fs::create_dir_all(&dir).with_context(|| "creating Alertmanager's directory")?;
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, config)
            .with_context(|| "writing Alertmanager's configuration")?;
        let program =
            std::env::var("ALERTMANAGER").unwrap_or_else(|_| "prometheus-alertmanager".into());
        let args = [
            format!("--config.file={}", config_file.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // One instance: no gossip port to bind.
            "--cluster.listen-address=".to_string(),
        ];
        let hint = "install Debian's prometheus-alertmanager, or run `cargo xtask test`";
        let process = ServerProcess::start(&program, &args, port, hint).await;
        let process = process.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        Ok(Self { process: Some(process), port, dir })
    }

    /// `127.0.0.1:PORT`, what Prometheus sends alerts to.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for AlertmanagerServer {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
