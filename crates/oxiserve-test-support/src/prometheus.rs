//! [`PrometheusServer`]: a real Prometheus (Debian's `prometheus` package) on 127.0.0.1 and a
//! free port, scraping the given targets every second and evaluating the given rule files
//! (sending alerts to an Alertmanager when given one), with its HTTP query API for tests.
//!
//! `cargo xtask test` installs the package when it is missing; `PROMETHEUS` may name another
//! binary. Its configuration and storage live in a private temporary directory, removed with
//! the server.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::process::{self, ServerProcess};
use anyhow::{Context as _, Result, anyhow};

/// How long Prometheus may take to open its storage and load its rules.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A Prometheus server process.
#[derive(Debug)]
pub struct PrometheusServer {
    /// Stopped before its directory is removed.
    process: Option<ServerProcess>,
    port: u16,
    dir: PathBuf,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `/metrics` of every target each second, with the alerting
    /// and recording `rules` files loaded, and waits until it listens.
    pub async fn start(targets: &[SocketAddr], rules: &[&Path]) -> Result<Self> {
        Self::start_alerting(targets, rules, None).await
    }

    /// [`PrometheusServer::start`], sending its firing alerts to the Alertmanager at
    /// `alertmanager` (`host:port`) when one is given.
    pub async fn start_alerting(
        targets: &[SocketAddr],
        rules: &[&Path],
        alertmanager: Option<&str>,
    ) -> Result<Self> {
        let port = process::free_port()?;
        let dir = std::env::temp_dir().join(format!("oxiserve-prometheus-{port}"));
        std::fs::create_dir_all(&dir).with_context(|| "creating Prometheus's directory")?;
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        let targets = list(targets.iter().map(|t| format!("'{t}'")).collect());
        let rules = list(rules.iter().map(|r| format!("'{}'", r.display())).collect());
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: {rules}\n\
             scrape_configs:\n  - job_name: oxiserve\n    static_configs:\n      - targets: {targets}\n"
        );
        if let Some(alertmanager) = alertmanager {
            config.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config)
            .with_context(|| "writing Prometheus's configuration")?;
        let program = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let args = [
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let hint = "install Debian's prometheus, or run `cargo xtask test`";
        let process = ServerProcess::start(&program, &args, port, hint).await;
        let process = process.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        let server = Self { process: Some(process), port, dir };
        server.wait_until_ready().await?;
        Ok(server)
    }

    /// Waits until `/-/ready` says 200: Prometheus listens before its storage is open.
    async fn wait_until_ready(&self) -> Result<()> {
        let start = std::time::Instant::now();
        loop {
            let status = self.request("/-/ready").map(|(status, _)| status);
            if status.as_ref().is_ok_and(|status| *status == 200) {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(anyhow!("Prometheus is not ready: {status:?}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Runs an instant `promql` query and returns `data.result`; a query Prometheus rejects is
    /// an error with its message.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let answer = self.get(&format!("/api/v1/query?query={}", encode(promql)))?;
        match answer["status"].as_str() {
            Some("success") => Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default()),
            _ => Err(anyhow!("Prometheus rejected `{promql}`: {}", answer["error"])),
        }
    }

    /// The state of every scrape target, from `/api/v1/targets`: `up`, `down` or `unknown`.
    pub fn target_health(&self) -> Result<Vec<String>> {
        let answer = self.get("/api/v1/targets")?;
        let targets = answer["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        Ok(targets.iter().map(|t| t["health"].as_str().unwrap_or_default().to_string()).collect())
    }

    /// The alerts that are pending or firing now, by name, from `/api/v1/alerts`.
    pub fn active_alerts(&self) -> Result<Vec<String>> {
        let answer = self.get("/api/v1/alerts")?;
        let alerts = answer["data"]["alerts"].as_array().cloned().unwrap_or_default();
        Ok(alerts
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap_or_default().into())
            .collect())
    }

    /// The name of every rule loaded from the rule files, from `/api/v1/rules`.
    pub fn rules(&self) -> Result<Vec<String>> {
        let answer = self.get("/api/v1/rules")?;
        let groups = answer["data"]["groups"].as_array().cloned().unwrap_or_default();
        let rules = groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default());
        Ok(rules.map(|rule| rule["name"].as_str().unwrap_or_default().to_string()).collect())
    }

    /// `GET path` as JSON.
    fn get(&self, path: &str) -> Result<Value> {
        let (status, body) = self.request(path)?;
        serde_json::from_str(&body)
            .map_err(|e| anyhow!("Prometheus answered {path} with {status} and non-JSON: {e}"))
    }

    /// `GET path`: the status and body, over HTTP/1.0 so that the body comes whole, never
    /// chunked.
    fn request(&self, path: &str) -> Result<(u16, String)> {
        let failed = |e: std::io::Error| anyhow::Error::from(e).context("asking Prometheus");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).map_err(failed)?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n");
        stream.write_all(request.as_bytes()).map_err(failed)?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).map_err(failed)?;
        let status = reply.split(' ').nth(1).and_then(|code| code.parse().ok());
        let status = status.ok_or_else(|| anyhow!("not HTTP: {reply}"))?;
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok((status, body.to_string()))
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `text` percent-encoded for a URL query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
