//! A model repository in a local directory: the default store, and the cache that remote
//! stores mirror into.
//!
//! Layout: `<root>/<model>/<version>/` holding `model.onnx` and `manifest.json`, with versions
//! as positive integers.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::manifest;

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

    /// The directory that holds every version of `model`.
    pub fn model_dir(&self, model: &str) -> PathBuf {
        self.root.join(model)
    }

    /// The directory that holds `model` at `version`.
    pub fn version_dir(&self, model: &str, version: u64) -> PathBuf {
        self.root.join(model).join(version.to_string())
    }

    /// Fails unless each of `files` of `model` at `version` that exists resolves, through any
    /// symbolic links, to a place inside the repository: a link out of it would let the
    /// service read, and report on, any file the process can read.
    pub fn check_inside(&self, model: &str, version: u64, files: &[&str]) -> Result<()> {
        let root = std::fs::canonicalize(&self.root).map_err(|e| Error::artifact(&self.root, e))?;
        let dir = self.version_dir(model, version);
        for file in files {
            let path = dir.join(file);
            let resolved = match std::fs::canonicalize(&path) {
                Ok(resolved) => resolved,
                // A missing file is for its reader to report.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::artifact(&path, error)),
            };
            if !resolved.starts_with(&root) {
                return Err(Error::artifact(&path, "links to a file outside the model repository"));
            }
        }
        Ok(())
    }

    /// The published versions of `model`, in increasing order. A version is published once
    /// its `manifest.json` exists (writers put it last); directories whose names are not
    /// versions ([`super::parse_version`]: staging, stray files, `06`) are ignored.
    pub fn versions(&self, model: &str) -> Result<Vec<u64>> {
        let dir = self.root.join(model);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::artifact(&dir, format!("cannot list model versions: {e}")))?;
        let mut versions: Vec<u64> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join(manifest::FILE_NAME).is_file())
            .filter_map(|entry| super::parse_version(entry.file_name().to_str()?))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_the_highest_numeric_version() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["m/2", "m/10", "m/9", "m/.staging", "m/notes", "m/09", "m/+11", "m/0"] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
            std::fs::write(tmp.path().join(dir).join(manifest::FILE_NAME), "{}").unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("m/11")).unwrap(); // upload in progress
        let repo = LocalRepository::new(tmp.path());
        assert_eq!(repo.versions("m").unwrap(), vec![2, 9, 10]);
        assert_eq!(repo.version_dir("m", 10), tmp.path().join("m/10"));
    }

    #[test]
    fn links_may_stay_inside_the_repository_but_not_leave_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let dir = tmp.path().join("repo/m/1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), "graph").unwrap();
        std::os::unix::fs::symlink(dir.join("model.onnx"), dir.join("inside")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.join("outside")).unwrap();
        let repo = LocalRepository::new(tmp.path().join("repo"));
        repo.check_inside("m", 1, &["model.onnx", "inside"]).unwrap();
        let error = repo.check_inside("m", 1, &["model.onnx", "outside"]).unwrap_err();
        assert!(error.to_string().contains("outside the model repository"), "{error}");
    }

    #[test]
    fn a_missing_model_names_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
        let repo = LocalRepository::new(tmp.path());
        assert!(repo.versions("absent").unwrap_err().to_string().contains("absent"));
        assert_eq!(repo.versions("empty").unwrap(), Vec::<u64>::new());
    }
}
