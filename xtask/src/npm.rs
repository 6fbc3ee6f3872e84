//! Node tools that the project installs itself, each from a committed `package.json` and
//! `package-lock.json` (every package pinned with its integrity hash) into `.cache/`, with
//! `npm ci`.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

/// Renovate's package files.
const RENOVATE_PACKAGE: &str = "xtask/renovate";
/// Where Renovate is installed.
const RENOVATE: &str = ".cache/renovate";
/// The oldest Node that the pinned Renovate runs on.
const NODE_MAJOR: u32 = 20;

/// Renovate's `bin` directory (`renovate`, `renovate-config-validator`), installed if needed.
pub(crate) fn renovate(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let version = cmd!(sh, "node --version").quiet().read().context(
        "Node.js is needed for Renovate (`apt-get install nodejs`, version 20 or later)",
    )?;
    let major: Option<u32> =
        version.trim().trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok());
    ensure!(
        major.is_some_and(|major| major >= NODE_MAJOR),
        "Renovate needs Node.js {NODE_MAJOR} or later; this machine has {version}"
    );
    let install = root.join(RENOVATE);
    let bin = install.join("node_modules/.bin");
    let lock = std::fs::read(root.join(RENOVATE_PACKAGE).join("package-lock.json"))?;
    // The lock file is copied last, once `npm ci` succeeded: it marks what is installed.
    let installed = install.join("installed-lock.json");
    if bin.join("renovate").is_file() && std::fs::read(&installed).is_ok_and(|had| had == lock) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&install)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(root.join(RENOVATE_PACKAGE).join(file), install.join(file))?;
    }
    let _dir = sh.push_dir(&install);
    // Renovate's optional packages are native modules (`re2`, `better-sqlite3`,
    // `dtrace-provider`) that node-gyp compiles from source when their prebuilt binaries cannot
    // be fetched, three of `npm ci`'s four minutes; Renovate runs without them (JavaScript's
    // own regular expressions, no SQLite package cache).
    cmd!(sh, "npm ci --omit=optional --no-audit --no-fund --loglevel=error").run()?;
    std::fs::write(installed, lock)?;
    Ok(bin)
}
