//! [`fastapi_twin`]: a service's Python twin (`bench/fastapi/<service>/app.py`, what
//! `cargo xtask bench` measures it against) under uvicorn, for the tests that check both answer
//! alike.

use std::path::Path;

use crate::process::{ServerProcess, free_port};

/// Starts the FastAPI twin of `service` with uvicorn (one worker) on a free port, with the
/// Python of `BASELINE_PYTHON` (`cargo xtask test` creates its venv), else `python3`.
pub async fn fastapi_twin(service: &str) -> ServerProcess {
    let python = std::env::var("BASELINE_PYTHON").unwrap_or_else(|_| "python3".into());
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/fastapi").join(service);
    let port = free_port().expect("a free port");
    let args = ["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--no-access-log", "--port"]
        .into_iter()
        .map(String::from)
        .chain([port.to_string(), "--app-dir".into(), app_dir.display().to_string()])
        .collect::<Vec<_>>();
    let hint = "run `cargo xtask test`, which creates the baseline's venv";
    ServerProcess::start(&python, &args, port, hint).await.expect("the FastAPI twin starts")
}
