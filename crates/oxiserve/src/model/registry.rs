//! [`Models`]: the models a service serves, their current versions and their state.
//!
//! Swapping a version is replacing one `Arc<Model>` under a short write lock. Requests that
//! already hold the old `Arc` finish on it; the old version is freed when the last one ends.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::Model;
use crate::error::{Error, Result};

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// No version serves yet: the first one is being loaded.
    Loading,
    /// A version serves requests.
    Ready,
    /// No version could be loaded; `error` in [`ModelStatus`] says why.
    Failed,
}

/// One model as `GET /v1/models` reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelStatus {
    /// Model name.
    pub name: String,
    /// State of the model.
    pub state: ModelState,
    /// The version serving requests, once one is loaded.
    pub version: Option<u64>,
    /// When that version was trained.
    pub created_at: Option<String>,
    /// The latest load failure, when there was one.
    pub error: Option<String>,
    /// Versions that failed to load and will not be served, with the reason.
    pub failed_versions: Vec<FailedVersion>,
    /// Why the last look at the remote model store failed, while it keeps failing.
    pub sync_error: Option<String>,
}

/// A version that failed verification, loading or warm-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FailedVersion {
    /// The version number.
    pub version: u64,
    /// Why it failed.
    pub error: String,
}

/// The models of a service: for each name, its state and the version serving requests.
#[derive(Debug)]
pub struct Models {
    entries: RwLock<BTreeMap<String, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    current: Option<Arc<Model>>,
    error: Option<String>,
    failed: BTreeMap<u64, String>,
    sync_error: Option<String>,
}

impl Entry {
    fn empty() -> Self {
        Self { current: None, error: None, failed: BTreeMap::new(), sync_error: None }
    }

    fn state(&self) -> ModelState {
        match (&self.current, &self.error) {
            (Some(_), _) => ModelState::Ready,
            (None, None) => ModelState::Loading,
            (None, Some(_)) => ModelState::Failed,
        }
    }
}

impl Models {
    /// A set of models, all [`ModelState::Loading`].
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let entries = names.into_iter().map(|name| (name, Entry::empty())).collect();
        Self { entries: RwLock::new(entries) }
    }

    /// The version of `name` that serves requests now.
    pub fn get(&self, name: &str) -> Result<Arc<Model>> {
        self.read()
            .get(name)
            .and_then(|entry| entry.current.clone())
            .ok_or_else(|| Error::ModelNotLoaded(name.to_string()))
    }

    /// The names of all models, loaded or not.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Whether every model has a version serving requests.
    pub fn all_ready(&self) -> bool {
        self.read().values().all(|entry| entry.current.is_some())
    }

    /// Whether `version` of `name` is worth trying: newer than the one serving and not known
    /// to be broken.
    pub fn is_candidate(&self, name: &str, version: u64) -> bool {
        self.read().get(name).is_some_and(|entry| {
            !entry.failed.contains_key(&version)
                && entry.current.as_ref().is_none_or(|current| version > current.version())
        })
    }

    /// What `GET /v1/models` reports.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.read()
            .iter()
            .map(|(name, entry)| ModelStatus {
                name: name.clone(),
                state: entry.state(),
                version: entry.current.as_ref().map(|m| m.version()),
                created_at: entry.current.as_ref().map(|m| m.manifest().created_at.clone()),
                error: entry.error.clone(),
                failed_versions: entry
                    .failed
                    .iter()
                    .map(|(&version, error)| FailedVersion { version, error: error.clone() })
                    .collect(),
                sync_error: entry.sync_error.clone(),
            })
            .collect()
    }

    /// A copy of this set in which `candidate` serves its name: used to warm a candidate up
    /// through the whole pipeline before it replaces the version serving.
    pub(crate) fn with_candidate(&self, candidate: &Arc<Model>) -> Self {
        let mut entries = self.read().clone();
        entries.entry(candidate.name().to_string()).or_insert_with(Entry::empty).current =
            Some(Arc::clone(candidate));
        Self { entries: RwLock::new(entries) }
    }

    /// Makes `model` the version serving requests for its name.
    pub(crate) fn install(&self, model: Arc<Model>) {
        let mut entries = self.write();
        let entry = entries.entry(model.name().to_string()).or_insert_with(Entry::empty);
        entry.current = Some(model);
        entry.error = None;
    }

    /// Records that `version` of `name` failed: it will not be tried again, and a version
    /// already serving keeps serving.
    pub(crate) fn fail(&self, name: &str, version: Option<u64>, error: &Error) {
        let mut entries = self.write();
        let entry = entries.entry(name.to_string()).or_insert_with(Entry::empty);
        entry.error = Some(error.to_string());
        if let Some(version) = version {
            entry.failed.insert(version, error.to_string());
        }
    }

    /// Records how the last look at the remote store for `name` went.
    pub(crate) fn report_sync(&self, name: &str, error: Option<&Error>) {
        let mut entries = self.write();
        entries.entry(name.to_string()).or_insert_with(Entry::empty).sync_error =
            error.map(ToString::to_string);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().expect("no code panics while holding the models lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().expect("no code panics while holding the models lock")
    }
}
