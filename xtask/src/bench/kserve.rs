//! `cargo xtask bench --kserve`: KServe v2 gRPC infer throughput of the service against
//! MLServer, on the same trained model (oxiserve runs its ONNX graph, MLServer the pickled
//! scikit-learn estimator beside it).
//!
//! Builds the service and `crates/oxiserve/examples/kserve_bench.rs` in release, starts the
//! service (cache off) with gRPC on a free port, and runs the example, which starts MLServer
//! from its venv and drives both servers alternately with concurrent `ModelInfer` calls.
//! Results go to `bench/results/<timestamp>-kserve.json`, with the ratios printed.

use std::path::Path;

use anyhow::Context;
use oxiserve_xtask::onnxruntime;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use super::Args;
use super::http::{Launch, free_port, start_rust, target_dir, wait_ready};
use crate::venv;

pub(super) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let mlserver = venv::mlserver(&sh, root)?;
    let service = &args.service;
    cmd!(sh, "cargo build --release --quiet --package {service}").run()?;
    cmd!(sh, "cargo build --release --quiet --package oxiserve --example kserve_bench").run()?;
    let models = root.join("services").join(service).join("models");
    let model = models.join(&args.model);
    let version = newest_version(&model)?;
    let grpc_port = free_port()?;
    let release = Launch::release();
    let oxiserve = ("oxiserve", [].as_slice());
    let server = start_rust(root, (service, &release), &models, &library, grpc_port, oxiserve)?;
    wait_ready(&server)?;

    let bench = target_dir(root).join("release/examples/kserve_bench");
    let endpoint = format!("http://127.0.0.1:{grpc_port}");
    let dir = model.join(version.to_string());
    let seconds = args.duration.to_string();
    let counts = args.connections.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let _mlserver = sh.push_env("MLSERVER", &mlserver);
    let output = cmd!(sh, "{bench} {endpoint} {dir} {seconds} {counts}").read()?;
    drop(server);
    let runs: Vec<Value> = output
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context(output.clone())?;

    let mut ratios = Vec::new();
    println!(
        "| concurrency | throughput oxiserve / MLServer | p99 MLServer / oxiserve | oxiserve req/s, p99 | MLServer req/s, p99 |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for &concurrency in &args.connections {
        let find = |server: &str| {
            runs.iter().find(|r| r["server"] == server && r["concurrency"] == concurrency)
        };
        let (Some(ours), Some(theirs)) = (find("oxiserve"), find("mlserver")) else { continue };
        let rate = |run: &Value| run["requests_per_second"].as_f64().unwrap_or(0.0);
        let p99 = |run: &Value| run["p99_us"].as_f64().unwrap_or(0.0);
        let throughput = rate(ours) / rate(theirs).max(f64::MIN_POSITIVE);
        let latency = p99(theirs) / p99(ours).max(1.0);
        println!(
            "| {concurrency} | {throughput:.1} | {latency:.1} | {:.0}, {:.1} ms | {:.0}, {:.1} ms |",
            rate(ours),
            p99(ours) / 1e3,
            rate(theirs),
            p99(theirs) / 1e3
        );
        ratios.push(json!({"concurrency": concurrency, "throughput": throughput, "p99": latency}));
    }
    let command = format!(
        "cargo xtask bench --kserve --service {service} --model {} {}",
        args.model,
        args.load_flags()
    );
    let fields = json!({"model": args.model, "runs": runs, "ratios": ratios});
    let results = super::results(&sh, service, command, fields)?;
    let path = super::save(root, &results, "-kserve")?;
    eprintln!("bench: results in {}", path.display());
    Ok(())
}

/// The highest numbered version directory of a model.
fn newest_version(model: &Path) -> anyhow::Result<u64> {
    std::fs::read_dir(model)
        .with_context(|| format!("reading {}", model.display()))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .max()
        .with_context(|| format!("{} has no version", model.display()))
}
