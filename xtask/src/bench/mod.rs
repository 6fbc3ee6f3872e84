//! `cargo xtask bench`: the benchmarks, with everything they need provisioned.
//!
//! - By default, the HTTP comparison with the service's Python twin (`http`): both servers on
//!   loopback, driven alternately by wrk at each connection count, results written to
//!   `bench/results/<timestamp>.json` and summarised as ratios.
//! - With `--engine`, the criterion suites: the core's `path` (one request through the engine
//!   with a model that costs nothing, inline and queued runs; a slow model's batching), and
//!   those of `services/tabular-scoring/benches/`: `serving` (batching off vs on at 1, 8 and
//!   64 clients, cache hits vs cache off, in process) and `inference` (ONNX Runtime alone, the
//!   inference ceiling). Arguments after `--` go to criterion (`-- --quick`, `-- cache`).
//! - With `--kserve`, KServe v2 gRPC infer throughput against MLServer on the same trained
//!   model (`kserve`).
//! - With `--telemetry`, the service's throughput with its telemetry defaults against metrics
//!   off and everything off (`telemetry`).
//! - With `--instructions`, the instructions a request costs the service and the HTTP
//!   ceiling, counted by valgrind's callgrind: the same from run to run, where throughput
//!   spreads by a quarter (`instructions`).

mod chart;
mod http;
mod instructions;
mod kserve;
mod telemetry;
mod workload;

use std::path::{Path, PathBuf};

use oxiserve_xtask::onnxruntime;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service to measure (its Python twin lives in `bench/fastapi/<service>/`).
    #[arg(long, default_value = "tabular-scoring")]
    service: String,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Connection counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    connections: Vec<u32>,
    /// With the HTTP comparison: runs of every server at each connection count; the table
    /// shows each count's median round (see `bench::http`). With `--instructions`: counts of
    /// each server; the table shows the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Run the in-process criterion suite instead of the HTTP comparison.
    #[arg(long)]
    engine: bool,
    /// Compare KServe v2 gRPC infer throughput with MLServer instead (connection counts are
    /// the concurrent clients).
    #[arg(long, conflicts_with = "engine")]
    kserve: bool,
    /// Measure what telemetry costs: defaults against metrics off and everything off.
    #[arg(long, conflicts_with_all = ["engine", "kserve"])]
    telemetry: bool,
    /// Count the instructions a request costs the service and the HTTP ceiling (callgrind).
    #[arg(long, conflicts_with_all = ["engine", "kserve", "telemetry"])]
    instructions: bool,
    /// With `--kserve`: the model to call.
    #[arg(long, default_value = "penguins-linear")]
    model: String,
    /// With `--engine`: passed to criterion (a filter, `--quick`, `--save-baseline NAME`).
    #[arg(last = true)]
    criterion: Vec<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    if args.kserve {
        return kserve::run(root, args);
    }
    if args.telemetry {
        return telemetry::run(root, args);
    }
    if args.instructions {
        return instructions::run(root, args);
    }
    if !args.engine {
        return http::run(root, args);
    }
    let library = onnxruntime::provision(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let criterion = &args.criterion;
    cmd!(sh, "cargo bench --package oxiserve --bench path -- {criterion...}").run()?;
    cmd!(sh, "cargo bench --package tabular-scoring --benches -- {criterion...}").run()?;
    Ok(())
}

/// A run's results: `fields` after what every run records (when, the service, `command` to
/// repeat it, the machine). The first key is `timestamp`, which names the file.
fn results(sh: &Shell, service: &str, command: String, fields: Value) -> anyhow::Result<Value> {
    let mut results = json!({
        "timestamp": cmd!(sh, "date -u +%Y%m%dT%H%M%SZ").read()?,
        "service": service,
        "command": command,
        "machine": http::machine(sh)?,
    });
    if let (Some(all), Value::Object(fields)) = (results.as_object_mut(), fields) {
        all.extend(fields);
    }
    Ok(results)
}

/// Writes `results` to `bench/results/<timestamp><suffix>.json` and returns the path.
fn save(root: &Path, results: &Value, suffix: &str) -> anyhow::Result<PathBuf> {
    let timestamp = results["timestamp"].as_str().unwrap_or("undated");
    let path = root.join("bench/results").join(format!("{timestamp}{suffix}.json"));
    std::fs::create_dir_all(path.parent().expect("the results path has a parent"))?;
    std::fs::write(&path, serde_json::to_string_pretty(results)? + "\n")?;
    Ok(path)
}

impl Args {
    /// `--duration N --connections A,B,...` as given, for the command that repeats a run.
    fn load_flags(&self) -> String {
        let connections: Vec<String> = self.connections.iter().map(u32::to_string).collect();
        format!("--duration {} --connections {}", self.duration, connections.join(","))
    }
}
