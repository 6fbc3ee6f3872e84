//! The model repository: where model versions are found.
//!
//! Layout: `<root>/<model>/<version>/` holding `model.onnx` and `manifest.json`, with versions
//! as positive integers. A local directory is the default store, so nothing needs S3 to run.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A model repository on the local file system.
#[derive(Debug, Clone)]
pub struct LocalRepository {
    root: PathBuf,
}

impl LocalRepository {
    /// A repository rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that holds `model` at `version`.
    pub fn version_dir(&self, model: &str, version: u64) -> PathBuf {
        self.root.join(model).join(version.to_string())
    }

    /// The versions of `model` present, in increasing order. Entries that are not numbers
    /// (staging directories, stray files) are ignored.
    pub fn versions(&self, model: &str) -> Result<Vec<u64>> {
        let dir = self.root.join(model);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::artifact(&dir, format!("cannot list model versions: {e}")))?;
        let mut versions: Vec<u64> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The highest version of `model`, or an error naming the directory searched.
    pub fn latest(&self, model: &str) -> Result<u64> {
        self.versions(model)?
            .pop()
            .ok_or_else(|| Error::artifact(self.root.join(model), "holds no version directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_the_highest_numeric_version() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["m/2", "m/10", "m/9", "m/.staging", "m/notes"] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        }
        let repo = LocalRepository::new(tmp.path());
        assert_eq!(repo.versions("m").unwrap(), vec![2, 9, 10]);
        assert_eq!(repo.latest("m").unwrap(), 10);
        assert_eq!(repo.version_dir("m", 10), tmp.path().join("m/10"));
    }

    #[test]
    fn a_missing_model_names_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
        let repo = LocalRepository::new(tmp.path());
        assert!(
            repo.latest("absent")
                .unwrap_err()
                .to_string()
                .contains("absent")
        );
        assert!(
            repo.latest("empty")
                .unwrap_err()
                .to_string()
                .contains("no version")
        );
    }
}
