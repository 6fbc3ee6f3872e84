//! [`Models`]: the models a service serves, the versions loaded, and which one serves.
//!
//! Swapping a version is replacing one `Arc<Model>` under a short write lock. Requests that
//! already hold the old `Arc` finish on it; the old version is freed when the last one ends.
//!
//! Every request looks its models up here, on whichever core it runs. The service's set is
//! kept in one copy per shard (`crate::shards`), each behind its own lock: a lookup takes the
//! read lock of its thread's copy, whose word stays in that core's cache, instead of one lock
//! word that every core writes to on every request (`docs/benchmarks.md`, "The last shared
//! writes"). A change takes every copy's write lock, changes the first and copies it to the
//! others; versions change seldom.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use serde::Serialize;

use super::Model;
use crate::error::{Error, Result};
use crate::shards::{self, Padded};

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
    /// The version serving requests that do not ask for one.
    pub version: Option<u64>,
    /// When that version was trained.
    pub created_at: Option<String>,
    /// Every loaded version; requests may ask for any of them.
    pub versions: Vec<u64>,
    /// The version an operator pinned, if any: it serves until unpinned.
    pub pinned: Option<u64>,
    /// The latest load failure, when there was one.
    pub error: Option<String>,
    /// Versions that failed to load and will not be served, with the reason.
    pub failed_versions: Vec<FailedVersion>,
    /// Why the last look at the remote model store failed, while it keeps failing.
    pub sync_error: Option<String>,
}

/// A version that failed verification, loading or warm-up, or was rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FailedVersion {
    /// The version number.
    pub version: u64,
    /// Why it failed.
    pub error: String,
}

/// The models of a service: for each name, its loaded versions and the one serving.
#[derive(Debug)]
pub struct Models {
    /// The same entries, one copy per shard for the set a service serves, or a single copy
    /// for a set made for one request ([`Models::with_version`]).
    copies: Box<[Padded<RwLock<Entries>>]>,
}

/// Every model's entry, by name.
type Entries = BTreeMap<String, Entry>;

#[derive(Debug, Clone, Default)]
struct Entry {
    loaded: BTreeMap<u64, Arc<Model>>,
    pinned: Option<u64>,
    error: Option<String>,
    failed: BTreeMap<u64, String>,
    sync_error: Option<String>,
}

impl Entry {
    /// The pinned version when there is one, else the newest loaded.
    fn serving(&self) -> Option<&Arc<Model>> {
        match self.pinned {
            Some(version) => self.loaded.get(&version),
            None => self.loaded.values().next_back(),
        }
    }

    fn state(&self) -> ModelState {
        match (self.loaded.is_empty(), &self.error) {
            (false, _) => ModelState::Ready,
            (true, None) => ModelState::Loading,
            (true, Some(_)) => ModelState::Failed,
        }
    }
}

impl Models {
    /// A set of models, all [`ModelState::Loading`].
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let entries = names.into_iter().map(|name| (name, Entry::default())).collect();
        Self::shared(&entries)
    }

    /// A set that requests on every core read: one copy of `entries` per shard.
    fn shared(entries: &Entries) -> Self {
        Self {
            copies: (0..shards::count()).map(|_| Padded(RwLock::new(entries.clone()))).collect(),
        }
    }

    /// A set that one request reads: a single copy of `entries`.
    fn single(entries: Entries) -> Self {
        Self { copies: Box::new([Padded(RwLock::new(entries))]) }
    }

    /// The version of `name` that serves requests now: [`Error::ModelNotLoaded`] (503, retry)
    /// while a declared model has none, [`Error::UndeclaredModel`] (500) for a name the
    /// pipeline never declared, a programming error that no retry mends.
    pub fn get(&self, name: &str) -> Result<Arc<Model>> {
        let entries = self.read();
        let entry = entries.get(name).ok_or_else(|| Error::UndeclaredModel(name.to_string()))?;
        entry.serving().cloned().ok_or_else(|| Error::ModelNotLoaded(name.to_string()))
    }

    /// Loaded `version` of `name`; else `UnknownModel` or `VersionNotLoaded`.
    pub fn version(&self, name: &str, version: u64) -> Result<Arc<Model>> {
        let entries = self.read();
        check_loaded(&entries, name, version)?;
        Ok(Arc::clone(&entries[name].loaded[&version]))
    }

    /// Whether every serving version can run now (a remote model's server answers).
    pub fn all_available(&self) -> bool {
        self.read().values().filter_map(Entry::serving).all(|model| model.is_available())
    }

    /// The names of all models, loaded or not.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The loaded versions of `name`, in increasing order.
    pub fn loaded_versions(&self, name: &str) -> Vec<u64> {
        self.read()
            .get(name)
            .map(|entry| entry.loaded.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Ok when `version` of `name` is loaded; else `UnknownModel` or `VersionNotLoaded`.
    pub fn ensure_loaded(&self, name: &str, version: u64) -> Result<()> {
        check_loaded(&self.read(), name, version)
    }

    /// Whether `version` of `name` failed before and must not be tried again.
    pub fn is_failed(&self, name: &str, version: u64) -> bool {
        self.read().get(name).is_some_and(|entry| entry.failed.contains_key(&version))
    }

    /// What `GET /v1/models` reports.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.read().iter().map(|(name, entry)| status(name, entry)).collect()
    }

    /// The status of `name`, if it is one of the service's models.
    pub fn status(&self, name: &str) -> Option<ModelStatus> {
        self.read().get(name).map(|entry| status(name, entry))
    }

    /// A copy of this set in which `version` of `name` serves: how a request that asks for a
    /// version sees the models. The version must be loaded.
    pub fn with_version(&self, name: &str, version: u64) -> Result<Self> {
        let mut entries = self.read().clone();
        pin_in(&mut entries, name, version)?;
        Ok(Self::single(entries))
    }

    /// A copy of this set in which `candidate` serves its name: used to warm a candidate up
    /// through the whole pipeline before it is installed.
    pub(crate) fn with_candidate(&self, candidate: &Arc<Model>) -> Self {
        let mut entries = self.read().clone();
        let entry = entries.entry(candidate.name().to_string()).or_default();
        entry.loaded.insert(candidate.version(), Arc::clone(candidate));
        entry.pinned = Some(candidate.version());
        Self::single(entries)
    }

    /// Adds `model` to the loaded versions of its name. With `keep`, the oldest versions
    /// beyond that many are unloaded (a pinned one stays).
    pub(crate) fn install(&self, model: Arc<Model>, keep: Option<usize>) {
        self.change(|entries| {
            let entry = entries.entry(model.name().to_string()).or_default();
            entry.loaded.insert(model.version(), model);
            entry.error = None;
            if let Some(keep) = keep {
                let excess = entry.loaded.len().saturating_sub(keep.max(1));
                let pinned = entry.pinned;
                let evicted: Vec<u64> = entry
                    .loaded
                    .keys()
                    .copied()
                    .filter(|&v| Some(v) != pinned)
                    .take(excess)
                    .collect();
                for version in evicted {
                    entry.loaded.remove(&version);
                }
            }
        });
    }

    /// Makes `version` of `name` serve until [`Models::unpin`]; it must be loaded.
    pub(crate) fn pin(&self, name: &str, version: u64) -> Result<()> {
        self.change(|entries| pin_in(entries, name, version))
    }

    /// Lets the newest loaded version of `name` serve again.
    pub(crate) fn unpin(&self, name: &str) {
        self.change(|entries| {
            if let Some(entry) = entries.get_mut(name) {
                entry.pinned = None;
            }
        });
    }

    /// Unloads `version` of `name` and records why it must never serve again.
    pub(crate) fn retire(&self, name: &str, version: u64, reason: &str) {
        self.change(|entries| {
            if let Some(entry) = entries.get_mut(name) {
                entry.loaded.remove(&version);
                entry.failed.insert(version, reason.to_string());
                if entry.pinned == Some(version) {
                    entry.pinned = None;
                }
            }
        });
    }

    /// Records that `version` of `name` failed: it will not be tried again, and the versions
    /// loaded keep serving. The status shows the error without file-system details
    /// ([`Error::public`]); callers log it whole.
    pub(crate) fn fail(&self, name: &str, version: Option<u64>, error: &Error) {
        let public = error.public(name);
        self.change(|entries| {
            let entry = entries.entry(name.to_string()).or_default();
            if let Some(version) = version {
                entry.failed.insert(version, public.clone());
            }
            entry.error = Some(public);
        });
    }

    /// Records how the last look at the remote store for `name` went.
    pub(crate) fn report_sync(&self, name: &str, error: Option<&Error>) {
        let sync_error = error.map(|error| error.public(name));
        self.change(|entries| entries.entry(name.to_string()).or_default().sync_error = sync_error);
    }

    /// The calling thread's copy of the entries, read-locked.
    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        let copy = &self.copies[shards::mine() % self.copies.len()].0;
        copy.read().expect("no code panics while holding the models lock")
    }

    /// Applies `change` to the entries: write-locks every copy (always in the same order, so
    /// that two changes at once cannot deadlock), changes the first and copies it over the
    /// others. A reader sees the entries before or after the change, as with a single lock.
    fn change<T>(&self, change: impl FnOnce(&mut Entries) -> T) -> T {
        let mut copies: Vec<_> = self
            .copies
            .iter()
            .map(|copy| copy.0.write().expect("no code panics while holding the models lock"))
            .collect();
        let (first, others) = copies.split_first_mut().expect("a set has at least one copy");
        let result = change(first);
        for other in others {
            other.clone_from(first);
        }
        result
    }
}

/// Ok when `version` of `name` is loaded; else which of the two is unknown.
fn check_loaded(entries: &Entries, name: &str, version: u64) -> Result<()> {
    let entry = entries.get(name).ok_or_else(|| Error::UnknownModel(name.to_string()))?;
    if entry.loaded.contains_key(&version) {
        Ok(())
    } else {
        Err(Error::VersionNotLoaded { model: name.to_string(), version })
    }
}

/// Makes `version` of `name` serve in `entries`, provided it is loaded.
fn pin_in(entries: &mut Entries, name: &str, version: u64) -> Result<()> {
    check_loaded(entries, name, version)?;
    entries.get_mut(name).expect("check_loaded found the entry").pinned = Some(version);
    Ok(())
}

fn status(name: &str, entry: &Entry) -> ModelStatus {
    let serving = entry.serving();
    ModelStatus {
        name: name.to_string(),
        state: entry.state(),
        version: serving.map(|m| m.version()),
        created_at: serving.map(|m| m.manifest().created_at.clone()),
        versions: entry.loaded.keys().copied().collect(),
        pinned: entry.pinned,
        error: entry.error.clone(),
        failed_versions: entry
            .failed
            .iter()
            .map(|(&version, error)| FailedVersion { version, error: error.clone() })
            .collect(),
        sync_error: entry.sync_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every copy of `models` says of `name`.
    fn every_copy(models: &Models, name: &str) -> Vec<String> {
        let copies = models.copies.iter().map(|copy| copy.0.read().unwrap());
        copies.map(|entries| format!("{:?}", status(name, &entries[name]))).collect()
    }

    #[test]
    fn a_change_reaches_every_copy_and_every_thread() {
        let models = Models::new(["m".to_string()]);
        assert_eq!(models.copies.len(), shards::count());
        models.fail("m", Some(3), &Error::ModelNotLoaded("m".into()));
        models.report_sync("m", Some(&Error::Timeout(100)));
        models.report_sync("m", None);
        let copies = every_copy(&models, "m");
        assert!(copies.iter().all(|copy| *copy == copies[0]), "{copies:#?}");
        // Threads read their own copies: each sees the change.
        std::thread::scope(|scope| {
            for _ in 0..2 * shards::count() + 1 {
                scope.spawn(|| {
                    assert!(models.is_failed("m", 3));
                    let status = models.status("m").unwrap();
                    assert_eq!(status.state, ModelState::Failed);
                    assert_eq!(status.failed_versions.len(), 1);
                    assert_eq!(status.sync_error, None);
                });
            }
        });
    }
}
