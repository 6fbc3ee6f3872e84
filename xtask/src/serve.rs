//! `cargo xtask serve`: run a service on its bundled model repository, no S3 or other server
//! needed; or, with `--baseline fastapi`, its Python twin from `bench/fastapi/<service>/` on the
//! same models, for anyone who wants to measure both with their own tools.

use std::path::Path;

use xshell::{Shell, cmd};

use crate::{setup, venv};

/// Options of `cargo xtask serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service crate under `services/`.
    #[arg(long, default_value = "tabular-scoring")]
    service: String,
    /// Port to listen on (127.0.0.1 unless `OXISERVE_HTTP__HOST` says otherwise).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Build with the release profile (slower to build, faster to serve).
    #[arg(long)]
    release: bool,
    /// Serve the service's Python baseline instead of the service.
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
}

/// The Python implementations a service can be compared with.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Baseline {
    /// FastAPI + pydantic + onnxruntime under uvicorn, one worker per core.
    Fastapi,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let models = root.join("services").join(&args.service).join("models");
    let port = args.port.to_string();
    if let Some(Baseline::Fastapi) = args.baseline {
        let python = venv::baseline(&sh, root)?;
        let app_dir = root.join("bench/fastapi").join(&args.service);
        anyhow::ensure!(app_dir.is_dir(), "{} has no FastAPI baseline", args.service);
        let workers = std::thread::available_parallelism().map_or(1, usize::from).to_string();
        let _models = sh.push_env("MODELS_DIR", &models);
        cmd!(sh, "{python} -m uvicorn app:app --app-dir {app_dir} --host 127.0.0.1 --port {port}")
            .args(["--workers", &workers, "--loop", "uvloop", "--http", "httptools"])
            .arg("--no-access-log")
            .run()?;
        return Ok(());
    }
    let library = setup::run(root)?;
    let service = &args.service;
    let profile = args.release.then_some("--release");
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let _port = sh.push_env("OXISERVE_HTTP__PORT", &port);
    let _models = sh.push_env("OXISERVE_MODELS__URI", &models);
    // For the person at the terminal; production keeps the JSON default.
    let _pretty = sh.push_env("OXISERVE_LOG__FORMAT", "pretty");
    cmd!(sh, "cargo run --quiet {profile...} --package {service}").run()?;
    Ok(())
}
