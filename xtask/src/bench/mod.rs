//! `cargo xtask bench`: the benchmarks, with everything they need provisioned.
//!
//! - By default, the HTTP comparison with the service's Python twin (`http`): both servers on
//!   loopback, driven alternately by wrk at each connection count, results written to
//!   `bench/results/<timestamp>.json` and summarised as ratios.
//! - With `--engine`, the criterion suites of `services/tabular-scoring/benches/`: `serving`
//!   (batching off vs on at 1, 8 and 64 clients, cache hits vs cache off, in process) and
//!   `inference` (ONNX Runtime alone, the inference ceiling). Arguments after `--` go to
//!   criterion (`-- --quick`, `-- cache`).
//! - With `--kserve`, KServe v2 gRPC infer throughput against MLServer on the same trained
//!   model (`kserve`).

mod chart;
mod http;
mod kserve;

use std::path::Path;

use xshell::{Shell, cmd};

use crate::setup;

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
    /// Run the in-process criterion suite instead of the HTTP comparison.
    #[arg(long)]
    engine: bool,
    /// Compare KServe v2 gRPC infer throughput with MLServer instead (connection counts are
    /// the concurrent clients).
    #[arg(long, conflicts_with = "engine")]
    kserve: bool,
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
    if !args.engine {
        return http::run(root, args);
    }
    let library = setup::run(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let criterion = &args.criterion;
    cmd!(sh, "cargo bench --package tabular-scoring --benches -- {criterion...}").run()?;
    Ok(())
}
