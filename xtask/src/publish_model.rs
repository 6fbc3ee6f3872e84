//! `cargo xtask publish-model`: publish a model version to a repository (a local directory
//! or `s3://bucket/prefix`), files first and the manifest last, by running the core's
//! `oxiserve-publish` tool.

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

/// Options of `cargo xtask publish-model`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model name.
    #[arg(long)]
    model: String,
    /// Version number to publish as.
    #[arg(long)]
    version: u64,
    /// Directory with the files and the trainer's manifest.json.
    #[arg(long)]
    from: PathBuf,
    /// Repository: a local directory or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL).
    #[arg(long)]
    to: String,
    /// Replace the version if it is already published.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let Args { model, version, from, to, force } = args;
    let version = version.to_string();
    let force = force.then_some("--force");
    cmd!(
        sh,
        "cargo run --quiet --package oxiserve --bin oxiserve-publish --
            --model {model} --version {version} --from {from} --to {to} {force...}"
    )
    .run()?;
    Ok(())
}
