//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: nothing is downloaded at build time, and the library is
//! opened at start-up from, in order, the configured path, `ORT_DYLIB_PATH`, or the cache that
//! `cargo xtask setup` fills. A missing library is an error naming what was tried.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use crate::config::RuntimeConfig;
use crate::error::{Error, Result};

/// The library file that `cargo xtask setup` provisions, relative to the repository root.
pub(crate) const CACHED_LIBRARY: &str = ".cache/onnxruntime/libonnxruntime.so.1.31.1";

/// The process-wide environment. `ort` can load the library only once per process.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The ONNX Runtime environment, loading the library on first use.
pub(crate) fn environment(config: &RuntimeConfig) -> Result<Environment> {
    let mut slot = ENVIRONMENT.lock().expect("no code panics while holding the environment lock");
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    let library = locate(config)?;
    let builder = ort::init_from(&library).map_err(|e| {
        Error::Runtime(format!("failed to load ONNX Runtime from {}: {e}", library.display()))
    })?;
    let environment = builder.with_name("oxiserve").build().map_err(|e| {
        Error::Runtime(format!("failed to start ONNX Runtime from {}: {e}", library.display()))
    })?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    *slot = Some(environment.clone());
    Ok(environment)
}

/// The library path to load: configured, then `ORT_DYLIB_PATH`, then the setup cache.
fn locate(config: &RuntimeConfig) -> Result<PathBuf> {
    let explicit = config
        .onnxruntime_library
        .clone()
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Runtime(format!(
                "ONNX Runtime library {} does not exist; run `cargo xtask setup` to provision it",
                path.display()
            )))
        };
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the working directory", e))?;
    cached_library_above(&cwd).ok_or_else(|| {
        Error::Runtime(format!(
            "ONNX Runtime library not found: runtime.onnxruntime_library and ORT_DYLIB_PATH are \
             unset and no {CACHED_LIBRARY} exists in {} or its parents; run `cargo xtask setup` \
             to provision it",
            cwd.display()
        ))
    })
}

/// The setup cache in `dir` or the nearest parent that has one.
fn cached_library_above(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join(CACHED_LIBRARY)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_library_that_is_missing_names_the_file_and_the_fix() {
        let config =
            RuntimeConfig { onnxruntime_library: Some("/nonexistent/libonnxruntime.so".into()) };
        let error = locate(&config).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/libonnxruntime.so"), "{error}");
        assert!(error.contains("cargo xtask setup"), "{error}");
    }

    #[test]
    fn the_cache_is_found_from_a_subdirectory() {
        let tmp = tempfile::tempdir().unwrap();
        let library = tmp.path().join(CACHED_LIBRARY);
        std::fs::create_dir_all(library.parent().unwrap()).unwrap();
        std::fs::write(&library, b"").unwrap();
        let nested = tmp.path().join("services/x");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(cached_library_above(&nested), Some(library));
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(cached_library_above(elsewhere.path()), None);
    }
}
