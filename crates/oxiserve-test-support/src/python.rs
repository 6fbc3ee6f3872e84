//! Python tools of the test venv, which `cargo xtask test` names in `XTASK_TEST_PYTHON`:
//! [`python_checks`] runs a script of checks with a real client (such as `tritonclient`),
//! [`schemathesis`] checks a service against its OpenAPI document.

use std::path::PathBuf;
use std::process::Command;

/// Runs `script` with `args` under the test python on a blocking thread and returns what it
/// printed. Panics, with everything the script wrote, when the python is unknown or a check
/// failed (the script exited non-zero): this is an assertion for tests.
pub async fn python_checks(script: &str, args: &[String]) -> String {
    let mut command = Command::new(test_python());
    command.arg(script).args(args);
    succeeded(command, "the script's checks failed").await
}

/// Runs schemathesis (from the test venv) against the OpenAPI document at `openapi_url` with
/// every check, `examples` cases per operation and a fixed seed, on the operations whose path
/// matches `paths` (a regular expression). Panics with its report when a check fails.
///
/// Every request carries an empty `x-model-version` (no version asked for): schemathesis
/// draws header values from letters and digits only, so it cannot write a valid
/// `<model>=<version>`, and would report the 400 that its values earn as a valid request
/// refused. The header is tested with real values elsewhere.
pub async fn schemathesis(openapi_url: &str, paths: &str, examples: u32) -> String {
    // Schemathesis keeps what it found in its working directory: not the repository.
    let workdir = std::env::temp_dir().join("oxiserve-schemathesis");
    std::fs::create_dir_all(&workdir).expect("a scratch directory for schemathesis");
    let mut command = Command::new(test_python().with_file_name("st"));
    command.current_dir(workdir).args([
        "--no-color".to_string(),
        "run".into(),
        openapi_url.to_string(),
        "--checks=all".into(),
        format!("--include-path-regex={paths}"),
        format!("--max-examples={examples}"),
        "--seed=20261202".into(),
        "--workers=1".into(),
        "--header=x-model-version:".into(),
    ]);
    succeeded(command, "schemathesis found failures").await
}

/// The test venv's python.
fn test_python() -> PathBuf {
    std::env::var_os("XTASK_TEST_PYTHON")
        .expect("XTASK_TEST_PYTHON names the test venv's python: run `cargo xtask test`")
        .into()
}

/// Runs `command` on a blocking thread and returns what it printed; panics with `failure`
/// and everything it wrote when it does not start or exits non-zero.
async fn succeeded(mut command: Command, failure: &str) -> String {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task runs")
        .expect("the test tool starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{failure}:\n{stdout}\n{stderr}");
    stdout
}
