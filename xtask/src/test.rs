//! `cargo xtask test`: everything CI checks, with everything the tests need.
//!
//! Order: provision ONNX Runtime, install Chromium for the docs UI test when it is missing,
//! check formatting, run clippy with warnings denied, then run every test of the workspace.

use std::path::Path;

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::setup;

/// Where Debian's chromium package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let library = setup::run(root)?;
    install_chromium()?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("code is not formatted: run `cargo fmt --all`")?;
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --all-features -- -D warnings"
    )
    .run()?;
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    let _browser = sh.push_env("CHROMIUM", CHROMIUM);
    cmd!(sh, "cargo test --workspace --all-features").run()?;
    Ok(())
}

/// Installs Debian's chromium when it is not there; needs root, as on CI.
fn install_chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    let sh = Shell::new()?;
    let user = cmd!(sh, "id -u").read()?;
    ensure!(
        user == "0",
        "{CHROMIUM} is missing: install Debian's `chromium` package (needs root)"
    );
    eprintln!("test: installing chromium for the docs UI test");
    let _quiet = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(
        sh,
        "apt-get install -y -qq --no-install-recommends chromium"
    )
    .run()?;
    Ok(())
}
