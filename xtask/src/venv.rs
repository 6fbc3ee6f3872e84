//! Python virtual environments that the project creates itself, one per tool set, each from a
//! pinned requirements file.

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

/// The venv of the FastAPI baseline (`bench/fastapi`).
pub(crate) const BASELINE: &str = ".cache/fastapi-venv";
/// The FastAPI baseline's requirements.
pub(crate) const BASELINE_REQUIREMENTS: &str = "bench/fastapi/requirements.txt";

/// The venv of MLServer, the KServe v2 server of the remote backend's tests.
pub(crate) const MLSERVER: &str = ".cache/mlserver-venv";
/// MLServer's requirements.
pub(crate) const MLSERVER_REQUIREMENTS: &str = "xtask/mlserver-requirements.txt";

/// The venv of the training service (`trainer/service`).
pub(crate) const TRAINER: &str = ".cache/trainer-venv";
/// The training service's requirements (the reference trainer's, and its web stack).
pub(crate) const TRAINER_REQUIREMENTS: &str = "trainer/service/requirements.txt";

/// The venv of the reference trainer (`trainer/`), which rebuilds the committed models and
/// imports a model into the `model` template.
const REFERENCE: &str = "trainer/.venv";
/// The reference trainer's requirements.
const REFERENCE_REQUIREMENTS: &str = "trainer/requirements.txt";

/// What a venv was last installed from: a copy of its requirements file, written once pip
/// succeeded.
const INSTALLED: &str = "requirements.installed";

/// Creates the venv at `venv` if needed and installs `requirements` into it, unless it was
/// installed from exactly these requirements already; returns its python.
pub(crate) fn ensure(sh: &Shell, venv: &Path, requirements: &Path) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    let wanted = std::fs::read(requirements)?;
    let installed = venv.join(INSTALLED);
    if python.is_file() && std::fs::read(&installed).is_ok_and(|had| had == wanted) {
        return Ok(python);
    }
    if !python.is_file() {
        cmd!(sh, "python3 -m venv {venv}").run()?;
    }
    // No bytecode compiled at install: half of pip's CPU for these packages (139 s against
    // 69 s for the test tools and MLServer), of which the tests import a small part (Python
    // compiles a module when it is first imported, once).
    let options = ["--quiet", "--disable-pip-version-check", "--no-compile"];
    cmd!(sh, "{python} -m pip install {options...} -r {requirements}").run()?;
    std::fs::write(installed, wanted)?;
    Ok(python)
}

/// The FastAPI baseline's python, its venv made ready.
pub(crate) fn baseline(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    ensure(sh, &root.join(BASELINE), &root.join(BASELINE_REQUIREMENTS))
}

/// The training service's python, its venv made ready.
pub(crate) fn trainer(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    ensure(sh, &root.join(TRAINER), &root.join(TRAINER_REQUIREMENTS))
}

/// The reference trainer's python, its venv made ready.
pub(crate) fn reference(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    ensure(sh, &root.join(REFERENCE), &root.join(REFERENCE_REQUIREMENTS))
}

/// MLServer's `mlserver` program, its venv made ready.
pub(crate) fn mlserver(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let python = ensure(sh, &root.join(MLSERVER), &root.join(MLSERVER_REQUIREMENTS))?;
    Ok(python.with_file_name("mlserver"))
}
