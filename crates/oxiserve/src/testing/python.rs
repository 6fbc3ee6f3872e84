//! [`python_checks`]: runs a Python script of checks (a real client such as `tritonclient`)
//! with the test venv's python, which `cargo xtask test` names in `XTASK_TEST_PYTHON`.

/// Runs `script` with `args` under the test python on a blocking thread and returns what it
/// printed. Panics, with everything the script wrote, when the python is unknown or a check
/// failed (the script exited non-zero): this is an assertion for tests.
pub async fn python_checks(script: &str, args: &[String]) -> String {
    let python = std::env::var("XTASK_TEST_PYTHON")
        .expect("XTASK_TEST_PYTHON names the test venv's python: run `cargo xtask test`");
    let (script, args) = (script.to_string(), args.to_vec());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).arg(script).args(args).output()
    })
    .await
    .expect("the blocking task runs")
    .expect("the test python starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the script's checks failed:\n{stdout}\n{stderr}");
    stdout
}
