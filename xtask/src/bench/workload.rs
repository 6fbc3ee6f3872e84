//! What the HTTP benchmarks send: a workload is a route and the request bodies sent to it in
//! turn, one JSON document per line of a file that `bench/wrk/report.lua` reads.
//!
//! A service has one of:
//!
//! - a corpus of texts, `bench/corpus/<service>.txt` (one text per line), from which two
//!   workloads are made for the OpenAI route `/v1/embeddings`: `single` (one text per request)
//!   and `batch-32` (32 texts per request, at 8 connections at most), each text in turn;
//! - a script, `bench/fastapi/<service>/workloads.py`, run with the twin's Python, that writes
//!   its workloads' bodies (files made at set-up, such as rendered images) and names them on a
//!   line `WORKLOADS [{"name", "path", "bodies", "max_connections"}, ...]`;
//! - one request, `bench/requests/<service>.json`, sent to `/v1/predict` over and over.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

/// Texts per request of the corpus's batched workload.
const BATCH: usize = 32;

/// The most connections the batched workload runs with: 8 requests of 32 texts keep 256
/// texts in flight, enough to fill any batch.
const BATCH_CONNECTIONS: u32 = 8;

/// The model name corpus requests give (a service answers any name with its own model).
const CORPUS_MODEL: &str = "all-MiniLM-L6-v2";

/// A route and the request bodies sent to it in turn.
pub(super) struct Workload {
    /// What results and tables call it.
    pub(super) name: String,
    /// The route, e.g. `/v1/predict`.
    pub(super) path: String,
    /// One request body per line.
    pub(super) bodies: PathBuf,
    /// The most connections it is run with: many requests of many texts each would only
    /// queue for seconds.
    pub(super) max_connections: u32,
}

impl Workload {
    /// Those of `connections` it is run with.
    pub(super) fn connections(&self, connections: &[u32]) -> Vec<u32> {
        connections.iter().copied().filter(|&c| c <= self.max_connections).collect()
    }
}

/// Where a service's workloads come from, which decides what its ceiling is.
pub(super) enum Source {
    /// One request to `/v1/predict`: the ceiling is HTTP itself.
    Request,
    /// Real inputs for a model whose runs dominate (a corpus of texts, a script's images):
    /// the ceiling is ONNX Runtime alone on the same requests.
    Model,
}

/// The service's workloads, with the kind of input they came from. Bodies made from a corpus
/// or by a script (run with `python`) are written under `scratch`.
pub(super) fn of_service(
    root: &Path,
    service: &str,
    scratch: &Path,
    python: &Path,
) -> anyhow::Result<(Source, Vec<Workload>)> {
    let corpus = root.join("bench/corpus").join(format!("{service}.txt"));
    if corpus.is_file() {
        let text = std::fs::read_to_string(&corpus)?;
        let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        std::fs::create_dir_all(scratch)?;
        let workloads = [("single", 1, u32::MAX), ("batch-32", BATCH, BATCH_CONNECTIONS)]
            .into_iter()
            .map(|(name, per_request, max_connections)| {
                let bodies = scratch.join(format!("{service}-{name}.jsonl"));
                std::fs::write(&bodies, corpus_bodies(&texts, per_request)?)?;
                let path = "/v1/embeddings".into();
                Ok(Workload { name: name.into(), path, bodies, max_connections })
            })
            .collect::<anyhow::Result<_>>()?;
        return Ok((Source::Model, workloads));
    }
    let script = root.join("bench/fastapi").join(service).join("workloads.py");
    if script.is_file() {
        return Ok((Source::Model, scripted(python, &script, scratch)?));
    }
    Ok((Source::Request, vec![request(root, service)?]))
}

/// The workloads `script` writes under `scratch` and names on its `WORKLOADS` line.
fn scripted(python: &Path, script: &Path, scratch: &Path) -> anyhow::Result<Vec<Workload>> {
    let output = std::process::Command::new(python)
        .arg(script)
        .arg("--out")
        .arg(scratch)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(line) = text.lines().find_map(|line| line.strip_prefix("WORKLOADS ")) else {
        bail!(
            "{} named no workloads: {text}{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let named: Vec<serde_json::Value> = serde_json::from_str(line)?;
    named
        .iter()
        .map(|n| {
            let text = |key: &str| {
                n[key].as_str().map(String::from).with_context(|| format!("a workload's {key}"))
            };
            let max_connections = n["max_connections"].as_u64().context("max_connections")?;
            Ok(Workload {
                name: text("name")?,
                path: text("path")?,
                bodies: text("bodies")?.into(),
                max_connections: u32::try_from(max_connections)?,
            })
        })
        .collect()
}

/// The service's one request, `bench/requests/<service>.json`, on `/v1/predict`.
pub(super) fn request(root: &Path, service: &str) -> anyhow::Result<Workload> {
    let bodies = root.join("bench/requests").join(format!("{service}.json"));
    if !bodies.is_file() {
        bail!("{service} has neither bench/requests/{service}.json nor bench/corpus/{service}.txt");
    }
    let path = "/v1/predict".into();
    Ok(Workload { name: "predict".into(), path, bodies, max_connections: u32::MAX })
}

/// OpenAI embeddings bodies, one per line, of `per_request` texts each: every text once, in
/// order (a last, shorter request is topped up from the start).
fn corpus_bodies(texts: &[&str], per_request: usize) -> anyhow::Result<String> {
    if texts.len() < per_request {
        bail!("the corpus holds {} texts, fewer than the {per_request} of a request", texts.len());
    }
    let mut lines = String::new();
    for start in (0..texts.len()).step_by(per_request) {
        let chunk: Vec<&str> =
            texts.iter().cycle().skip(start).take(per_request).copied().collect();
        let input = if per_request == 1 { json!(chunk[0]) } else { json!(chunk) };
        let body = json!({"model": CORPUS_MODEL, "input": input});
        lines.push_str(&serde_json::to_string(&body).context("writing a request body")?);
        lines.push('\n');
    }
    Ok(lines)
}

/// The first body of `workload`, as sent.
pub(super) fn first_body(workload: &Workload) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(&workload.bodies)?;
    let line = text.lines().find(|l| !l.trim().is_empty()).context("no request body")?;
    Ok(line.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_requests_take_every_text_in_turn() {
        let texts = ["a", "b \"quoted\"", "c", "d", "e"];
        let single = corpus_bodies(&texts, 1).unwrap();
        let inputs: Vec<serde_json::Value> =
            single.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect();
        assert_eq!(inputs.len(), 5);
        assert_eq!(inputs[1]["input"], "b \"quoted\"");
        assert_eq!(inputs[0]["model"], CORPUS_MODEL);

        let batched = corpus_bodies(&texts, 2).unwrap();
        let inputs: Vec<serde_json::Value> = batched
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["input"].clone())
            .collect();
        assert_eq!(inputs, [json!(["a", "b \"quoted\""]), json!(["c", "d"]), json!(["e", "a"])]);
        assert!(corpus_bodies(&texts, 6).is_err());
    }
}
