//! What the tests of xtask's commands share: the repository they run in, and podman with the
//! container settings that `cargo xtask deploy` gives it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// This repository's root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").into()
}

/// podman with `deploy/containers/` as its settings, as `cargo xtask deploy` runs it.
pub(crate) fn podman() -> Command {
    let settings = root().join("deploy/containers");
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_CONF", settings.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", settings.join("storage.conf"));
    command
}
