//! `cargo xtask publish-model`: publish a model version to a repository (a local directory
//! or `s3://bucket/prefix`), files first and the manifest last, by running the core's
//! `oxiserve-publish` tool. Every argument is passed through, so the options are defined
//! once, there: `--model NAME --version V --from DIR --to URI [--force]`.

use std::path::Path;

use xshell::{Shell, cmd};

/// Options of `cargo xtask publish-model`: those of `oxiserve-publish`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct Args {
    /// Passed to `oxiserve-publish` (try `--help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    let args = &args.args;
    cmd!(sh, "cargo run --quiet --package oxiserve --bin oxiserve-publish -- {args...}").run()?;
    Ok(())
}
