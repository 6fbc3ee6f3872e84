//! `cargo xtask bench`: the criterion benchmarks, with ONNX Runtime provisioned.
//!
//! Today that is `services/tabular-scoring/benches/serving.rs`: batching off vs on at 1, 8
//! and 64 clients, and cache hits vs cache off, all in one run so that the ratios compare
//! like with like. Arguments after `--` go to criterion (`-- --quick`, `-- cache`).

use std::path::Path;

use xshell::{Shell, cmd};

use crate::setup;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Passed to criterion: a benchmark name filter, `--quick`, `--save-baseline NAME`, ...
    #[arg(last = true)]
    criterion: Vec<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = setup::run(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let criterion = &args.criterion;
    cmd!(sh, "cargo bench --package tabular-scoring --bench serving -- {criterion...}").run()?;
    Ok(())
}
