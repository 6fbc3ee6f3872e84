//! The ONNX Runtime shared library, provisioned without any CDN (`cargo xtask setup`).
//!
//! The library comes from the PyPI wheel `onnxruntime==1.31.1` (fetched with pip, see
//! [`wheel`]), is taken out of the wheel into the project's `.cache/onnxruntime/` (where the
//! core looks for it), and is accepted only if its sha256 matches the one pinned here. A library already in place with
//! the right checksum is reused, and so is the one `ORT_DYLIB_PATH` names if it has that
//! checksum (a CI cache, or another checkout's).

use std::path::{Path, PathBuf};

use anyhow::ensure;

use crate::wheel::{self, Member};

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
        if wheel::is_pinned(&candidate, SHA256)? {
            return Ok(candidate);
        }
    }
    ensure!(
        cfg!(all(target_os = "linux", target_arch = "x86_64")),
        "provisioning ONNX Runtime is only scripted for Linux x86_64; set ORT_DYLIB_PATH instead"
    );
    let cache = library.parent().expect("the library path has a parent directory");
    let member = Member { path: MEMBER, sha256: SHA256, to: &library };
    wheel::extract("onnxruntime==1.31.1", Some("manylinux_2_28_x86_64"), cache, &[member])?;
    eprintln!("setup: ONNX Runtime ready at {}", library.display());
    Ok(library)
}
