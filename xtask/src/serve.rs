//! `cargo xtask serve`: run a service on its bundled model repository, no S3 or other server
//! needed; or, with `--baseline fastapi`, its Python twin from `bench/fastapi/<service>/` on the
//! same models, for anyone who wants to measure both with their own tools.
//!
//! What the user set wins: `--port` and `--grpc-port`, else `OXISERVE_HTTP__PORT` and
//! `OXISERVE_GRPC__PORT`, else 8080 and the HTTP port + 1 (so that two services started with
//! different `--port`s do not collide); `OXISERVE_MODELS__URI` (say, an `s3://` repository)
//! replaces the bundled models, and `OXISERVE_LOG__FORMAT` the pretty logs.

use std::path::Path;

use xshell::{Shell, cmd};

use crate::{setup, venv};

/// Options of `cargo xtask serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service crate under `services/`.
    #[arg(long, default_value = "tabular-scoring")]
    service: String,
    /// HTTP port (127.0.0.1 unless `OXISERVE_HTTP__HOST` says otherwise); default
    /// `OXISERVE_HTTP__PORT`, else 8080.
    #[arg(long)]
    port: Option<u16>,
    /// gRPC port; default `OXISERVE_GRPC__PORT`, else the HTTP port + 1.
    #[arg(long)]
    grpc_port: Option<u16>,
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
    let environment = service_environment(args, &models, |key| std::env::var(key).ok());
    if let Some(Baseline::Fastapi) = args.baseline {
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
        return Ok(());
    }
    let library = setup::run(root)?;
    let service = &args.service;
    let profile = args.release.then_some("--release");
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let _environment: Vec<_> =
        environment.iter().map(|(key, value)| sh.push_env(key, value)).collect();
    cmd!(sh, "cargo run --quiet {profile...} --package {service}").run()?;
    Ok(())
}

/// The service's environment: the HTTP port first, then the gRPC port, the model repository
/// and the log format, each as the user set it (`--port`, `--grpc-port`, the variable in
/// `env`) or else its default here.
fn service_environment(
    args: &Args,
    models: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let port_of =
        |flag: Option<u16>, key: &str| flag.map(|port| port.to_string()).or_else(|| env(key));
    let http = port_of(args.port, "OXISERVE_HTTP__PORT").unwrap_or_else(|| "8080".into());
    let grpc = port_of(args.grpc_port, "OXISERVE_GRPC__PORT").unwrap_or_else(|| {
        http.parse::<u16>().map_or_else(|_| http.clone(), |port| port.wrapping_add(1).to_string())
    });
    let models = env("OXISERVE_MODELS__URI").unwrap_or_else(|| models.display().to_string());
    // For the person at the terminal; production keeps the JSON default.
    let format = env("OXISERVE_LOG__FORMAT").unwrap_or_else(|| "pretty".into());
    vec![
        ("OXISERVE_HTTP__PORT", http),
        ("OXISERVE_GRPC__PORT", grpc),
        ("OXISERVE_MODELS__URI", models),
        ("OXISERVE_LOG__FORMAT", format),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(port: Option<u16>, grpc_port: Option<u16>) -> Args {
        Args { service: "tabular-scoring".into(), port, grpc_port, release: false, baseline: None }
    }

    fn environment(args: &Args, set: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let lookup = |key: &str| set.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        service_environment(args, Path::new("/bundled"), lookup)
    }

    #[test]
    fn defaults_serve_the_bundled_models_on_8080_and_8081() {
        let values: Vec<String> =
            environment(&args(None, None), &[]).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, ["8080", "8081", "/bundled", "pretty"]);
    }

    #[test]
    fn what_the_user_set_wins() {
        let set = [
            ("OXISERVE_MODELS__URI", "s3://bucket/models"),
            ("OXISERVE_LOG__FORMAT", "json"),
            ("OXISERVE_HTTP__PORT", "9000"),
        ];
        let values: Vec<String> =
            environment(&args(None, None), &set).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, ["9000", "9001", "s3://bucket/models", "json"]);
        let flags = environment(&args(Some(7000), Some(7100)), &set);
        assert_eq!((flags[0].1.as_str(), flags[1].1.as_str()), ("7000", "7100"));
        let grpc_set = environment(&args(Some(7000), None), &[("OXISERVE_GRPC__PORT", "50051")]);
        assert_eq!(grpc_set[1].1, "50051");
    }
}
