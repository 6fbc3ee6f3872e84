//! `cargo xtask train`: rebuild the committed models and parity fixtures with the Python
//! reference trainer, in its own virtual environment under `trainer/.venv`: the tabular-scoring
//! models, `token-pool`, the variable-length model of the core crate's padding tests,
//! `dtype-echo`, a model with every datatype, for the core crate's KServe v2 tests, `blobs`,
//! a scikit-learn classifier for the core crate's remote-backend tests, scikit-learn's binary
//! classifiers and tree regressors for the ONNX-ML interpreter's tests (`build_sklearn.py`),
//! and `identity` and `tanh-chain`, a model that costs nothing and a slow one, for the core
//! crate's tests and benchmarks of where models run; and the models of the `tabular` and
//! `blank` service templates; and the parity fixture of `services/text-embedding` on its
//! fetched model. Also the training service's own tests (`test`).

use std::path::Path;

use xshell::{Shell, cmd};

use crate::venv;

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let trainer = root.join("trainer");
    sh.change_dir(&trainer);
    let python = venv::reference(&sh, root)?;
    let service = root.join("services/tabular-scoring");
    let models = service.join("models");
    let fixtures = service.join("tests/fixtures/parity.json");
    cmd!(sh, "{python} train_penguins.py --models {models} --fixtures {fixtures}").run()?;
    let core_tests = root.join("crates/oxiserve/tests");
    let models = core_tests.join("models");
    let fixtures = core_tests.join("fixtures/token_pool.json");
    cmd!(sh, "{python} build_token_pool.py --models {models} --fixtures {fixtures}").run()?;
    cmd!(sh, "{python} build_dtype_echo.py --models {models}").run()?;
    let fixtures = core_tests.join("fixtures/blobs.json");
    cmd!(sh, "{python} build_blobs.py --models {models} --fixtures {fixtures}").run()?;
    cmd!(sh, "{python} build_cost_models.py --models {models}").run()?;
    let fixtures = core_tests.join("fixtures/sklearn.json");
    cmd!(sh, "{python} build_sklearn.py --models {models} --fixtures {fixtures}").run()?;
    for (kind, script) in [("tabular", "build_tabular.py"), ("blank", "build_blank.py")] {
        let template = root.join("templates").join(kind);
        let models = template.join("models");
        let fixtures = template.join("tests/fixtures/parity.json");
        cmd!(sh, "{python} {script} --models {models} --fixtures {fixtures}").run()?;
    }
    crate::models::provision(root)?;
    let minilm = root.join("services/text-embedding/models/minilm/1");
    let (graph, tokenizer) = (minilm.join("model.onnx"), minilm.join("tokenizer.json"));
    let fixture = root.join("services/text-embedding/tests/fixtures/parity.json");
    cmd!(
        sh,
        "{python} build_minilm_fixture.py --model {graph} --tokenizer {tokenizer} --out {fixture}"
    )
    .run()?;
    Ok(())
}

/// Runs the training service's tests (`trainer/tests`, pytest) with `python`, its venv's: real
/// moto (the `MOTO_SERVER` program, which the caller sets) and the service under uvicorn.
pub(crate) fn test(sh: &Shell, python: &Path) -> anyhow::Result<()> {
    let _dir = sh.push_dir("trainer");
    cmd!(sh, "{python} -m pytest -q -p no:cacheprovider tests").run()?;
    Ok(())
}
