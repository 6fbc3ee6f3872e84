//! The command line of a service in a repository of its own, as `cargo xtask new NAME
//! --standalone DIR` generates it: the service's package at the root of a workspace whose
//! `xtask` binary calls [`main`]. Its two set-up commands are the ones this repository has:
//! `cargo xtask serve` (the service on its bundled `models/`) and `cargo xtask test` (what its
//! `.ci/run` runs).

use std::path::Path;

use clap::{Parser, Subcommand};

use crate::service::Deprecated;
use crate::upgrade::{self, UpgradeArgs};
use crate::{fetched, onnxruntime, service};

#[derive(Debug, Parser)]
#[command(about = "tasks of an oxiserve service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision ONNX Runtime into `.cache/`, and the models `fetched-models.json` declares
    /// into `models/` (run implicitly by `serve` and `test`).
    Setup,
    /// Build and run the service on its bundled model repository (`models/`).
    Serve(service::ServeArgs),
    /// Check formatting and lints with warnings denied (but deprecations, which stay warnings
    /// until the service moves off them), then run every test: what CI runs.
    Test,
    /// Move the core crates to a newer release (the newest unless `--to`), build, run the
    /// tests, and print what changed and the deprecated items the service uses; on failure
    /// `Cargo.toml` and `Cargo.lock` stay as they were.
    Upgrade(UpgradeArgs),
}

/// Runs the command on the command line for service `package`, whose project (and package)
/// root is `root`.
pub fn main(root: &Path, package: &str) -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if matches!(command, Command::Setup | Command::Serve(_) | Command::Test) {
        fetched::provision(root, &root.join(".cache/wheels"))?;
    }
    match command {
        Command::Setup => onnxruntime::provision(root).map(drop),
        Command::Serve(args) => service::serve(root, package, &root.join("models"), &args),
        Command::Test => service::check_with(root, package, Deprecated::Warn),
        Command::Upgrade(args) => upgrade::upgrade(root, &args),
    }
}
