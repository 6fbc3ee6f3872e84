//! The version lifecycle of an engine's models: loading at start-up, adopting newly published
//! versions (the poll loop), watching them once they serve and rolling back the ones worse
//! than their predecessor (see `watch`), and the operator's rollback, pin, unpin and sync. A
//! new version is verified, loaded, prepared by the pipeline, warmed up through the whole
//! pipeline, and only then swapped in; a version that fails any step is recorded and never
//! served, and the one serving keeps serving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};

use super::Engine;
use super::watch::{Verdict, Watch};
use crate::config::VersionPolicy;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manifest::FILE_NAME as MANIFEST;
use crate::model::{FetchError, Loader, Model, ModelStatus};
use crate::pipeline::Pipeline;
use crate::telemetry::store as sync_metrics;

/// How often a version under watch is judged.
const WATCH_TICK: Duration = Duration::from_millis(100);

impl<P: Pipeline> Engine<P> {
    /// Brings every model up with the versions its policy asks for (with S3, after fetching the
    /// newest into the cache when S3 answers; a broken version is recorded and an older one
    /// tried), runs the pipeline's example through the whole pipeline, then reports ready.
    /// Fails if a model has no loadable version, or if the per-model settings name a model
    /// the pipeline does not have.
    pub async fn load(&self, loader: &Loader) -> Result<()> {
        loader.check_model_names(&self.models.names())?;
        let loads = self.models.names().into_iter().map(|name| async move {
            self.fetch(loader, &name).await;
            self.load_initial(loader, name).await
        });
        try_join_all(loads).await?;
        if let Some(example) = self.pipeline.example() {
            self.run(example, Context::internal(), Arc::clone(&self.models))
                .await
                .map_err(|e| Error::pipeline(format!("the warm-up request failed: {e}")))?;
        }
        self.ready.store(true, Ordering::Release);
        self.ready_gauge.set(1.0);
        tracing::info!(service = self.pipeline.name(), "ready");
        Ok(())
    }

    /// Adopts the newest published version of each model that its policy wants (see
    /// `wanted`), fetching it from the remote store first. Failures are recorded per version
    /// and logged; they never disturb the versions loaded. Returns whether the remote store
    /// (if any) answered for every model.
    pub async fn sync(&self, loader: &Loader) -> bool {
        let synced = self.models.names().into_iter().map(|name| self.sync_model(loader, name));
        join_all(synced).await.into_iter().all(|reachable| reachable)
    }

    /// Runs [`Engine::sync`] every `interval`, forever; the caller aborts the task to stop it.
    /// While the remote store is unreachable the wait doubles, up to a minute (or `interval`
    /// if longer), and returns to `interval` after the first success. While a new version is
    /// under watch, its record is looked at every 100 ms in between.
    pub async fn poll(&self, loader: &Loader, interval: Duration) {
        let longest = interval.max(Duration::from_secs(60));
        let mut wait = interval;
        let mut next_sync = Instant::now() + wait;
        loop {
            let watching = !self.watches().is_empty();
            let until =
                if watching { next_sync.min(Instant::now() + WATCH_TICK) } else { next_sync };
            tokio::time::sleep_until(until.into()).await;
            if watching {
                self.check_watches(loader).await;
            }
            if Instant::now() >= next_sync {
                wait = if self.sync(loader).await { interval } else { (wait * 2).min(longest) };
                next_sync = Instant::now() + wait;
            }
        }
    }

    /// Judges every version under watch: rolls back the ones worse than their predecessor,
    /// ends the watches whose window passed, and drops the ones whose version no longer
    /// serves (replaced, rolled back or pinned away).
    async fn check_watches(&self, loader: &Loader) {
        let now = Instant::now();
        let mut rollbacks = Vec::new();
        self.watches().retain(|name, watch| {
            let serving = self.models.get(name).ok().filter(|m| m.version() == watch.version);
            let Some(model) = serving else { return false };
            match watch.judge(&model.health().snapshot(), now) {
                Verdict::Wait => true,
                Verdict::Keep => {
                    tracing::info!(model = %name, version = watch.version, "watch ended: kept");
                    false
                }
                Verdict::RollBack(reason) => {
                    rollbacks.push((name.clone(), watch.version, reason));
                    false
                }
            }
        });
        for (name, version, reason) in rollbacks {
            let reason = format!("rolled back automatically: {reason}");
            tracing::warn!(model = %name, version, %reason, "new version worse than its predecessor");
            sync_metrics::rolled_back(&name);
            if let Err(error) = self.roll_back(loader, &name, &reason).await {
                tracing::error!(model = %name, version, %error, "automatic rollback failed");
            }
        }
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Watch>> {
        self.watches.lock().expect("no code panics while holding the watches")
    }

    /// Brings the newest acceptable remote version of `name` into the local repository,
    /// recording every version that turns out broken on the way. Returns whether the remote
    /// store answered.
    async fn fetch(&self, loader: &Loader, name: &str) -> bool {
        sync_metrics::attempted(name);
        loop {
            match loader.fetch(name, |v| self.wanted(loader, name, v)).await {
                Ok(()) => {
                    self.models.report_sync(name, None);
                    sync_metrics::succeeded(name);
                    return true;
                }
                Err(FetchError { version: Some(version), error }) => {
                    tracing::error!(model = name, version, %error, "version rejected");
                    sync_metrics::failed(name, "rejected");
                    self.models.fail(name, Some(version), &error);
                }
                Err(FetchError { version: None, error }) => {
                    tracing::warn!(model = name, %error, "model store unavailable; serving what is cached");
                    sync_metrics::failed(name, "unreachable");
                    self.models.report_sync(name, Some(&error));
                    return false;
                }
            }
        }
    }

    /// Loads the versions `name`'s policy asks for at start-up, newest first, recording the
    /// ones that fail. At least one must load.
    async fn load_initial(&self, loader: &Loader, name: String) -> Result<()> {
        let versions =
            loader.versions(&name).await.inspect_err(|e| self.models.fail(&name, None, e))?;
        let (target, listed) = match loader.policy(&name) {
            VersionPolicy::Latest(keep) => ((*keep).max(1), None),
            VersionPolicy::Pinned(list) => (list.len(), Some(list)),
        };
        let allowed = versions.iter().rev().filter(|v| listed.is_none_or(|list| list.contains(v)));
        let (mut loaded, mut first_error) = (0, None);
        for &version in allowed {
            if loaded == target {
                break;
            }
            match self.load_version(loader, &name, version).await {
                Ok(model) => {
                    self.models.install(model, None);
                    loaded += 1;
                }
                Err(error) => {
                    tracing::error!(model = %name, version, %error, "version failed to load");
                    self.models.fail(&name, Some(version), &error);
                    first_error.get_or_insert(error);
                }
            }
        }
        if loaded > 0 {
            return Ok(());
        }
        let error = first_error.unwrap_or_else(|| Error::Artifact {
            path: loader.model_dir(&name),
            detail: "holds no published version the policy allows (a numbered directory with a \
                     manifest.json)"
                .into(),
        });
        self.models.fail(&name, None, &error);
        Err(error)
    }

    /// Whether `version` of `name` should be brought in under the model's policy: not failed,
    /// not loaded, and newer than every loaded version (`latest`) or listed (`pinned`).
    fn wanted(&self, loader: &Loader, name: &str, version: u64) -> bool {
        let loaded = self.models.loaded_versions(name);
        if self.models.is_failed(name, version) || loaded.contains(&version) {
            return false;
        }
        match loader.policy(name) {
            VersionPolicy::Latest(_) => loaded.last().is_none_or(|&newest| version > newest),
            VersionPolicy::Pinned(list) => list.contains(&version),
        }
    }

    /// Fetches and adopts new versions of one model; returns whether the remote store answered.
    async fn sync_model(&self, loader: &Loader, name: String) -> bool {
        let reachable = self.fetch(loader, &name).await;
        self.adopt_newest(loader, name).await;
        reachable
    }

    async fn adopt_newest(&self, loader: &Loader, name: String) {
        let newest = match loader.versions(&name).await {
            Ok(versions) => versions.into_iter().rev().find(|&v| self.wanted(loader, &name, v)),
            Err(error) => {
                tracing::warn!(model = %name, %error, "cannot list versions");
                return;
            }
        };
        let Some(version) = newest else { return };
        let keep = match loader.policy(&name) {
            VersionPolicy::Latest(keep) => Some(*keep),
            VersionPolicy::Pinned(_) => None,
        };
        let previous = self.models.get(&name).ok();
        if let Err(error) = self.adopt(loader, &name, version, keep).await {
            tracing::error!(model = %name, version, %error, "version rejected");
            self.models.fail(&name, Some(version), &error);
            return;
        }
        let settings = loader.watch(&name);
        let serving = self.models.get(&name).ok().filter(|m| m.version() == version);
        if let (true, Some(previous), Some(new)) = (settings.enabled, previous, serving) {
            let (start, baseline) = (new.health().snapshot(), previous.health().snapshot());
            let watch = Watch::new(version, start, previous.version(), baseline, settings);
            self.watches().insert(name, watch);
        }
    }

    /// Operator: serves the previous good version of `name` and retires the one serving, so
    /// it is never adopted again. The previous version is the newest older version, loaded or
    /// in the local repository, that has not failed; one not loaded is loaded and warmed up
    /// first. Any pin is lifted.
    pub async fn rollback(&self, loader: &Loader, name: &str) -> Result<ModelStatus> {
        self.roll_back(loader, name, "rolled back by an operator").await?;
        self.status(name)
    }

    /// Serves the previous good version of `name` (see [`Engine::rollback`]) and retires the
    /// one serving for `reason`.
    async fn roll_back(&self, loader: &Loader, name: &str, reason: &str) -> Result<()> {
        let current = self.serving_version(name)?;
        let loaded = self.models.loaded_versions(name);
        let mut older: Vec<u64> =
            loader.versions(name).await?.into_iter().chain(loaded.iter().copied()).collect();
        older.retain(|&v| v < current && !self.models.is_failed(name, v));
        older.sort_unstable();
        older.dedup();
        let mut restored = false;
        for &version in older.iter().rev() {
            if loaded.contains(&version) {
                restored = true;
                break;
            }
            match self.adopt(loader, name, version, None).await {
                Ok(()) => {
                    restored = true;
                    break;
                }
                Err(error) => {
                    tracing::error!(model = name, version, %error, "rollback target rejected");
                    self.models.fail(name, Some(version), &error);
                }
            }
        }
        if !restored {
            return Err(Error::invalid_input(format!(
                "model `{name}` has no good version older than {current} to roll back to"
            )));
        }
        self.models.unpin(name);
        self.models.retire(name, current, reason);
        tracing::warn!(model = name, version = current, reason, "rolled back");
        Ok(())
    }

    /// Operator: makes `version` (default: the one serving now) of `name` serve until
    /// [`Engine::unpin`], whatever newer versions arrive.
    pub fn pin(&self, name: &str, version: Option<u64>) -> Result<ModelStatus> {
        let version = match version {
            Some(version) => version,
            None => self.serving_version(name)?,
        };
        self.models.pin(name, version)?;
        self.status(name)
    }

    /// Operator: lets the newest loaded version of `name` serve again.
    pub fn unpin(&self, name: &str) -> Result<ModelStatus> {
        self.status(name)?;
        self.models.unpin(name);
        self.status(name)
    }

    /// Operator: looks for new versions of `name` now instead of at the next poll.
    pub async fn sync_now(&self, loader: &Loader, name: &str) -> Result<ModelStatus> {
        self.status(name)?;
        self.sync_model(loader, name.to_string()).await;
        self.status(name)
    }

    fn status(&self, name: &str) -> Result<ModelStatus> {
        self.models.status(name).ok_or_else(|| Error::UnknownModel(name.to_string()))
    }

    fn serving_version(&self, name: &str) -> Result<u64> {
        self.status(name)?;
        Ok(self.models.get(name)?.version())
    }

    /// Loads `version`, warms it up through the pipeline, then installs it, keeping `keep`
    /// versions loaded (all when `None`).
    async fn adopt(
        &self,
        loader: &Loader,
        name: &str,
        version: u64,
        keep: Option<usize>,
    ) -> Result<()> {
        let start = Instant::now();
        let candidate = self.load_version(loader, name, version).await?;
        let loaded = start.elapsed();
        self.warm_up(&candidate).await?;
        self.models.install(candidate, keep);
        let load_ms = loaded.as_secs_f64() * 1e3;
        let warmup_ms = (start.elapsed() - loaded).as_secs_f64() * 1e3;
        tracing::info!(model = name, version, load_ms, warmup_ms, "swapped in");
        Ok(())
    }

    /// Loads `version` of `name` and lets the pipeline prepare it
    /// ([`Pipeline::prepare_model`]): a version whose per-version data the pipeline rejects
    /// fails to load, with the pipeline's reason, and is never served.
    async fn load_version(&self, loader: &Loader, name: &str, version: u64) -> Result<Arc<Model>> {
        let model = loader.load(name, version, self.pipeline.padding(name)).await?;
        self.pipeline.prepare_model(&model).map_err(|error| {
            let manifest = loader.model_dir(name).join(version.to_string()).join(MANIFEST);
            Error::artifact(manifest, format!("the pipeline rejects this version: {error}"))
        })?;
        Ok(model)
    }

    /// Runs the pipeline's example with `candidate` in place of its name's serving version.
    async fn warm_up(&self, candidate: &Arc<Model>) -> Result<()> {
        let Some(example) = self.pipeline.example() else { return Ok(()) };
        let overlay = Arc::new(self.models.with_candidate(candidate));
        self.run(example, Context::internal(), overlay)
            .await
            .map(drop)
            .map_err(|e| Error::pipeline(format!("the warm-up request failed: {e}")))
    }
}
