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

/// Runs schemathesis (from the test venv) against the OpenAPI document at `openapi_url` with
/// every check, `examples` cases per operation and a fixed seed, on the operations whose path
/// matches `paths` (a regular expression). Panics with its report when a check fails.
///
/// Every request carries an empty `x-model-version` (no version asked for): schemathesis
/// draws header values from letters and digits only, so it cannot write a valid
/// `<model>=<version>`, and would report the 400 that its values earn as a valid request
/// refused. The header is tested with real values elsewhere.
pub async fn schemathesis(openapi_url: &str, paths: &str, examples: u32) -> String {
    let python = std::env::var("XTASK_TEST_PYTHON")
        .expect("XTASK_TEST_PYTHON names the test venv's python: run `cargo xtask test`");
    let st = std::path::Path::new(&python).with_file_name("st");
    let args = [
        "--no-color".to_string(),
        "run".into(),
        openapi_url.to_string(),
        "--checks=all".into(),
        format!("--include-path-regex={paths}"),
        format!("--max-examples={examples}"),
        "--seed=20261202".into(),
        "--workers=1".into(),
        "--header=x-model-version:".into(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        // Schemathesis keeps what it found in its working directory: not the repository.
        let workdir = std::env::temp_dir().join("oxiserve-schemathesis");
        std::fs::create_dir_all(&workdir)?;
        std::process::Command::new(st).args(args).current_dir(workdir).output()
    })
    .await
    .expect("the blocking task runs")
    .expect("schemathesis starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis found failures:\n{stdout}\n{stderr}");
    stdout
}
