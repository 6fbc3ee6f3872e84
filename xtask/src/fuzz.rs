//! `cargo xtask fuzz`: the long campaign of the property tests that send hostile inputs to
//! every decoder of client bytes (JSON and binary KServe tensors, the binary header, BYTES
//! length prefixes, gRPC typed contents, manifests, and whole v2 requests through the
//! router). They are the tests whose names hold `hostile`; `cargo xtask test` runs them too,
//! with [`SHORT_CAMPAIGN`] cases each. cargo-fuzz would need a nightly toolchain; proptest
//! runs on stable.

use std::path::Path;

use oxiserve_xtask::onnxruntime;
use xshell::{Shell, cmd};

/// Cases per property in `cargo xtask test`.
pub(crate) const SHORT_CAMPAIGN: u32 = 2_000;

/// The filter that selects the property tests of hostile inputs.
const FILTER: &str = "hostile";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Cases per property.
    #[arg(long, default_value_t = 200_000)]
    cases: u32,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let library = onnxruntime::provision(root)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let _cases = sh.push_env("PROPTEST_CASES", args.cases.to_string());
    cmd!(sh, "cargo test --workspace --all-features {FILTER}").run()?;
    Ok(())
}
