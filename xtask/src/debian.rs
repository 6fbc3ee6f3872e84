//! Debian packages that commands need (a browser and Redis for tests, wrk for benchmarks),
//! installed with apt when missing.

use std::path::Path;

use anyhow::ensure;
use xshell::{Shell, cmd};

/// Installs every `(package, file)` whose `file` is missing; needs root, as on CI.
pub(crate) fn ensure_installed(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, file)| !Path::new(file).is_file())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sh = Shell::new()?;
    let user = cmd!(sh, "id -u").read()?;
    ensure!(user == "0", "install the Debian packages {missing:?} (needs root)");
    eprintln!("xtask: installing {missing:?}");
    let _quiet = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(sh, "apt-get install -y -qq --no-install-recommends {missing...}").run()?;
    Ok(())
}
