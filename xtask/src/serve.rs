//! `cargo xtask serve`: run a service on its bundled model repository, no S3 or other server
//! needed (`oxiserve_xtask::service::serve`, which says which settings win); or, with
//! `--baseline fastapi`, its Python twin from `bench/fastapi/<service>/` on the same models,
//! for anyone who wants to measure both with their own tools.

use std::path::Path;

use oxiserve_xtask::service::{self, ServeArgs};
use xshell::{Shell, cmd};

use crate::venv;

/// Options of `cargo xtask serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service crate under `services/`.
    #[arg(long, default_value = "tabular-scoring")]
    service: String,
    #[command(flatten)]
    serve: ServeArgs,
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
    crate::models::provision(root)?;
    let models = root.join("services").join(&args.service).join("models");
    let Some(Baseline::Fastapi) = args.baseline else {
        return service::serve(root, &args.service, &models, &args.serve);
    };
    let sh = Shell::new()?;
    sh.change_dir(root);
    let environment = service::environment(&args.serve, &models, |key| std::env::var(key).ok());
    let port = &environment[0].1;
    let python = venv::baseline(&sh, root)?;
    let app_dir = root.join("bench/fastapi").join(&args.service);
    anyhow::ensure!(app_dir.is_dir(), "{} has no FastAPI baseline", args.service);
    let workers = std::thread::available_parallelism().map_or(1, usize::from).to_string();
    let _models = sh.push_env("MODELS_DIR", &models);
    cmd!(sh, "{python} -m uvicorn app:app --app-dir {app_dir} --host 127.0.0.1 --port {port}")
        .args(["--workers", &workers, "--loop", "uvloop", "--http", "httptools"])
        .arg("--no-access-log")
        .run()?;
    Ok(())
}
