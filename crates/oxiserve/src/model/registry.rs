//! [`Models`]: the models a service serves, their current versions and their state.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::Model;
use crate::error::{Error, Result};

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// Being downloaded, verified, loaded or warmed up.
    Loading,
    /// Serving requests.
    Ready,
    /// Loading failed; `error` in [`ModelStatus`] says why.
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
    /// Why loading failed, when it did.
    pub error: Option<String>,
}

/// The models of a service: for each name, its state and the version serving requests.
#[derive(Debug)]
pub struct Models {
    entries: RwLock<BTreeMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    state: ModelState,
    current: Option<Arc<Model>>,
    error: Option<String>,
}

impl Models {
    /// A set of models, all [`ModelState::Loading`].
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let entries = names
            .into_iter()
            .map(|name| {
                (
                    name,
                    Entry {
                        state: ModelState::Loading,
                        current: None,
                        error: None,
                    },
                )
            })
            .collect();
        Self {
            entries: RwLock::new(entries),
        }
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
        self.read()
            .values()
            .all(|entry| entry.state == ModelState::Ready)
    }

    /// What `GET /v1/models` reports.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.read()
            .iter()
            .map(|(name, entry)| ModelStatus {
                name: name.clone(),
                state: entry.state,
                version: entry.current.as_ref().map(|m| m.version()),
                created_at: entry
                    .current
                    .as_ref()
                    .map(|m| m.manifest().created_at.clone()),
                error: entry.error.clone(),
            })
            .collect()
    }

    /// Makes `model` the version serving requests for its name.
    pub(crate) fn install(&self, model: Arc<Model>) {
        let mut entries = self
            .entries
            .write()
            .expect("no code panics while holding the models lock");
        entries.insert(
            model.name().to_string(),
            Entry {
                state: ModelState::Ready,
                current: Some(model),
                error: None,
            },
        );
    }

    /// Records that loading `name` failed; a version already serving keeps serving.
    pub(crate) fn fail(&self, name: &str, error: &Error) {
        let mut entries = self
            .entries
            .write()
            .expect("no code panics while holding the models lock");
        let entry = entries.entry(name.to_string()).or_insert(Entry {
            state: ModelState::Loading,
            current: None,
            error: None,
        });
        if entry.current.is_none() {
            entry.state = ModelState::Failed;
        }
        entry.error = Some(error.to_string());
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .read()
            .expect("no code panics while holding the models lock")
    }
}
