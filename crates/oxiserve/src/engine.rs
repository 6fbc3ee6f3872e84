//! The engine: runs a [`Pipeline`] end to end, decides readiness, and swaps model versions.
//!
//! `preprocess` and `postprocess` run inline on the request's task; the model runs an
//! [`Inference`](crate::Inference) asks for execute concurrently on their backends.
//!
//! Versions: [`Engine::load`] brings every model up at start-up (the newest version that
//! loads), [`Engine::sync`] later adopts newer published versions. A new version is verified,
//! loaded, warmed up through the whole pipeline, and only then swapped in; a version that fails
//! any step is recorded and never served, and the one serving keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};

use crate::error::{Error, Result};
use crate::model::{FetchError, Loader, Model, Models};
use crate::pipeline::{ModelOutput, Outputs, Pipeline};

/// A pipeline with its models and readiness.
#[derive(Debug)]
pub struct Engine<P> {
    pipeline: P,
    models: Models,
    ready: AtomicBool,
}

/// A pipeline's output with the model versions that produced it.
#[derive(Debug)]
pub struct Answer<O> {
    /// What the pipeline returned.
    pub output: O,
    /// `(model, version)` of every model run, in run order.
    pub versions: Vec<(String, u64)>,
}

impl<P: Pipeline> Engine<P> {
    /// An engine whose models are all still loading.
    pub fn new(pipeline: P) -> Self {
        let models = Models::new(pipeline.models());
        Self { pipeline, models, ready: AtomicBool::new(false) }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &P {
        &self.pipeline
    }

    /// The models and their states.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Whether every model is loaded and the warm-up request went through.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Serves one request; [`Error::NotReady`] until [`Engine::load`] has finished.
    pub async fn predict(&self, input: P::Input) -> Result<Answer<P::Output>> {
        if !self.is_ready() {
            return Err(Error::NotReady);
        }
        self.run(input, &self.models).await
    }

    /// Brings every model up with the newest version that loads (a broken newest version is
    /// recorded and an older one tried), runs the pipeline's example through the whole
    /// pipeline, then reports ready. Fails if a model has no loadable version.
    pub async fn load(&self, loader: &Loader) -> Result<()> {
        let loads = self.models.names().into_iter().map(|name| async move {
            self.fetch(loader, &name).await;
            self.load_first(loader, name).await
        });
        try_join_all(loads).await?;
        if let Some(example) = self.pipeline.example() {
            self.run(example, &self.models)
                .await
                .map_err(|e| Error::pipeline(format!("the warm-up request failed: {e}")))?;
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(service = self.pipeline.name(), "ready");
        Ok(())
    }

    /// Adopts the newest published version of each model that is newer than the one serving
    /// and not known to be broken, fetching it from the remote store first. Failures are
    /// recorded per version and logged; they never disturb the version serving. Returns
    /// whether the remote store (if any) answered for every model.
    pub async fn sync(&self, loader: &Loader) -> bool {
        let synced = join_all(self.models.names().into_iter().map(|name| async move {
            let reachable = self.fetch(loader, &name).await;
            self.adopt_newest(loader, name).await;
            reachable
        }));
        synced.await.into_iter().all(|reachable| reachable)
    }

    /// Runs [`Engine::sync`] every `interval`, forever; the caller aborts the task to stop it.
    /// While the remote store is unreachable the wait doubles, up to a minute (or `interval`
    /// if longer), and returns to `interval` after the first success.
    pub async fn poll(&self, loader: &Loader, interval: Duration) {
        let longest = interval.max(Duration::from_secs(60));
        let mut wait = interval;
        loop {
            tokio::time::sleep(wait).await;
            wait = if self.sync(loader).await { interval } else { (wait * 2).min(longest) };
        }
    }

    /// Brings the newest acceptable remote version of `name` into the local repository,
    /// recording every version that turns out broken on the way. Returns whether the remote
    /// store answered.
    async fn fetch(&self, loader: &Loader, name: &str) -> bool {
        loop {
            match loader.fetch(name, |v| self.models.is_candidate(name, v)).await {
                Ok(()) => {
                    self.models.report_sync(name, None);
                    return true;
                }
                Err(FetchError { version: Some(version), error }) => {
                    tracing::error!(model = name, version, %error, "version rejected");
                    self.models.fail(name, Some(version), &error);
                }
                Err(FetchError { version: None, error }) => {
                    tracing::warn!(model = name, %error, "model store unavailable; serving what is cached");
                    self.models.report_sync(name, Some(&error));
                    return false;
                }
            }
        }
    }

    async fn load_first(&self, loader: &Loader, name: String) -> Result<()> {
        let versions = loader.versions(&name).inspect_err(|e| self.models.fail(&name, None, e))?;
        let mut first_error = None;
        for &version in versions.iter().rev() {
            match loader.load(&name, version).await {
                Ok(model) => {
                    self.models.install(model);
                    return Ok(());
                }
                Err(error) => {
                    tracing::error!(model = %name, version, %error, "version failed to load");
                    self.models.fail(&name, Some(version), &error);
                    first_error.get_or_insert(error);
                }
            }
        }
        let error = first_error.unwrap_or_else(|| Error::Artifact {
            path: loader.model_dir(&name),
            detail: "holds no published version (a numbered directory with a manifest.json)".into(),
        });
        self.models.fail(&name, None, &error);
        Err(error)
    }

    async fn adopt_newest(&self, loader: &Loader, name: String) {
        let newest = match loader.versions(&name) {
            Ok(versions) => {
                versions.into_iter().rev().find(|&v| self.models.is_candidate(&name, v))
            }
            Err(error) => {
                tracing::warn!(model = %name, %error, "cannot list versions");
                return;
            }
        };
        let Some(version) = newest else { return };
        if let Err(error) = self.adopt(loader, &name, version).await {
            tracing::error!(model = %name, version, %error, "version rejected");
            self.models.fail(&name, Some(version), &error);
        }
    }

    /// Loads `version`, warms it up through the pipeline, then swaps it in.
    async fn adopt(&self, loader: &Loader, name: &str, version: u64) -> Result<()> {
        let start = Instant::now();
        let candidate = loader.load(name, version).await?;
        let loaded = start.elapsed();
        self.warm_up(&candidate).await?;
        self.models.install(candidate);
        let load_ms = loaded.as_secs_f64() * 1e3;
        let warmup_ms = (start.elapsed() - loaded).as_secs_f64() * 1e3;
        tracing::info!(model = name, version, load_ms, warmup_ms, "swapped in");
        Ok(())
    }

    /// Runs the pipeline's example with `candidate` in place of its name's serving version.
    async fn warm_up(&self, candidate: &Arc<Model>) -> Result<()> {
        let Some(example) = self.pipeline.example() else { return Ok(()) };
        let overlay = self.models.with_candidate(candidate);
        self.run(example, &overlay)
            .await
            .map(drop)
            .map_err(|e| Error::pipeline(format!("the warm-up request failed: {e}")))
    }

    async fn run(&self, input: P::Input, models: &Models) -> Result<Answer<P::Output>> {
        let inference = self.pipeline.preprocess(&input, models)?;
        let results = try_join_all(inference.runs.into_iter().map(|run| async move {
            let tensors = run.model.infer(run.inputs).await?;
            Ok::<_, Error>(ModelOutput { model: run.model, tensors })
        }))
        .await?;
        let versions =
            results.iter().map(|r| (r.model.name().to_string(), r.model.version())).collect();
        let output = self.pipeline.postprocess(input, Outputs { results })?;
        Ok(Answer { output, versions })
    }
}
