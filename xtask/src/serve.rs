//! `cargo xtask serve`: run a service on its bundled model repository, no S3 or other server
//! needed.

use std::path::Path;

use xshell::{Shell, cmd};

use crate::setup;

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
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = setup::run(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let models = root.join("services").join(&args.service).join("models");
    let port = args.port.to_string();
    let service = &args.service;
    let profile = args.release.then_some("--release");
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let _port = sh.push_env("OXISERVE_HTTP__PORT", &port);
    let _models = sh.push_env("OXISERVE_MODELS__URI", &models);
    cmd!(sh, "cargo run --quiet {profile...} --package {service}").run()?;
    Ok(())
}
