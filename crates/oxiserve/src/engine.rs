//! The engine: runs a [`Pipeline`] end to end, decides readiness, and swaps model versions.
//!
//! `preprocess` and `postprocess` run inline on the request's task, or on a blocking thread
//! when the pipeline declares them heavy ([`Pipeline::heavy_stages`]); the model runs an
//! [`Inference`](crate::Inference) asks for execute concurrently on their backends.
//!
//! Versions: [`Engine::load`] brings every model up at start-up (the versions its policy asks
//! for), [`Engine::sync`] later adopts newly published ones, and the operator calls (rollback,
//! pin, unpin, sync now) serve the admin API. A new version is verified,
//! loaded, warmed up through the whole pipeline, and only then swapped in; a version that fails
//! any step is recorded and never served, and the one serving keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::cache::{self, CachedAnswer, ResponseCache};
use crate::config::VersionPolicy;
use crate::context::Context;
use crate::endpoint::Route;
use crate::error::{Error, Result};
use crate::model::ModelStatus;
use crate::model::manifest::FILE_NAME as MANIFEST;
use crate::model::{FetchError, Loader, Model, Models};
use crate::pipeline::{ModelOutput, Outputs, Pipeline};
use crate::telemetry::store as sync_metrics;

/// A pipeline with its models and readiness.
#[derive(Debug)]
pub struct Engine<P> {
    pipeline: Arc<P>,
    models: Arc<Models>,
    /// For a pipeline with heavy stages, the blocking threads they may use at once: one per
    /// core, so that a burst of heavy requests queues instead of crowding the cores out.
    heavy: Option<Arc<Semaphore>>,
    ready: AtomicBool,
    draining: AtomicBool,
    cache: Option<ResponseCache>,
    stages: PipelineStages,
    /// `oxiserve_ready`: 1 from the end of [`Engine::load`] until draining starts.
    ready_gauge: metrics::Gauge,
}

/// The pipeline's own stages, as `oxiserve_pipeline_stage_seconds{pipeline, stage}`.
#[derive(Debug)]
struct PipelineStages {
    preprocess: metrics::Histogram,
    postprocess: metrics::Histogram,
}

impl PipelineStages {
    fn new(pipeline: &str) -> Self {
        let stage = |stage: &'static str| {
            metrics::histogram!("oxiserve_pipeline_stage_seconds",
                "pipeline" => pipeline.to_string(), "stage" => stage)
        };
        Self { preprocess: stage("preprocess"), postprocess: stage("postprocess") }
    }
}

/// A pipeline's output with the model versions that produced it.
#[derive(Debug)]
pub struct Answer<O> {
    /// What the pipeline returned.
    pub output: O,
    /// `(model, version)` of every model run, in run order.
    pub versions: Vec<(String, u64)>,
    /// Where the time went.
    pub timings: Timings,
}

/// How long each stage of one request took. With several model runs, `queue` and `infer` are
/// those of the slowest run (they run concurrently).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// `Pipeline::preprocess`.
    pub pre: Duration,
    /// Waiting for an inference worker.
    pub queue: Duration,
    /// The session run (of the whole batch when batched).
    pub infer: Duration,
    /// `Pipeline::postprocess`.
    pub post: Duration,
}

impl Timings {
    /// The `Server-Timing` header value: `pre;dur=0.031, queue;dur=0.004, ...` (milliseconds).
    pub fn server_timing(&self) -> String {
        [("pre", self.pre), ("queue", self.queue), ("infer", self.infer), ("post", self.post)]
            .iter()
            .map(|(name, duration)| format!("{name};dur={:.3}", duration.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One request's answer as every transport sends it: the output as JSON with the versions
/// and timings, and, for an answer from the response cache, the layer that had it and how long
/// the lookup took.
#[derive(Debug)]
pub struct Served {
    /// The JSON body, the model versions that produced it and the stage timings.
    pub answer: Arc<CachedAnswer>,
    /// `Some((layer, lookup))` when the response cache answered (`memory` or `redis`).
    pub cached: Option<(&'static str, Duration)>,
}

impl Served {
    /// The `Server-Timing` value: the stages of the run that computed the answer, or `cache`
    /// alone for a hit, with the layer and the lookup time.
    pub fn server_timing(&self) -> String {
        match self.cached {
            Some((layer, lookup)) => {
                format!("cache;desc={layer};dur={:.3}", lookup.as_secs_f64() * 1e3)
            }
            None => self.answer.timings.server_timing(),
        }
    }
}

impl<P: Pipeline> Engine<P> {
    /// An engine whose models are all still loading.
    pub fn new(pipeline: P) -> Self {
        let models = Arc::new(Models::new(pipeline.models()));
        let stages = PipelineStages::new(pipeline.name());
        let ready_gauge =
            metrics::gauge!("oxiserve_ready", "pipeline" => pipeline.name().to_string());
        ready_gauge.set(0.0);
        let heavy = pipeline.heavy_stages().then(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            Arc::new(Semaphore::new(cores))
        });
        Self {
            pipeline: Arc::new(pipeline),
            models,
            heavy,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            cache: None,
            stages,
            ready_gauge,
        }
    }

    /// The engine with a response cache (`None`: no cache).
    pub fn with_cache(mut self, cache: Option<ResponseCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The response cache, if there is one.
    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_ref()
    }

    /// The version of every model that answers a request (with `version`, that one for its
    /// model): what a cached answer is keyed on.
    pub fn answering_versions(&self, version: Option<(&str, u64)>) -> Result<Vec<(String, u64)>> {
        self.check_loaded()?;
        if let Some((name, version)) = version {
            self.models.ensure_loaded(name, version)?;
        }
        let answering = |name: &str| match version {
            Some((asked, version)) if asked == name => Ok(version),
            _ => self.models.get(name).map(|model| model.version()),
        };
        self.models
            .names()
            .into_iter()
            .map(|name| {
                let version = answering(&name)?;
                Ok((name, version))
            })
            .collect()
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &P {
        &self.pipeline
    }

    /// The models and their states.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// `NotReady` until [`Engine::load`] has finished; draining does not stop predictions.
    fn check_loaded(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) { Ok(()) } else { Err(Error::NotReady) }
    }

    /// Whether the service wants traffic: every model is loaded, the warm-up request went
    /// through, every remote model's server answers, and it is not shutting down. This is what
    /// `/health/ready` reports.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining() && self.models.all_available()
    }

    /// Whether [`Engine::start_draining`] was called: shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Turns readiness off for good, so that load balancers stop sending traffic, while the
    /// requests that still arrive are served.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.ready_gauge.set(0.0);
    }

    /// Serves one request end to end and serialises the output as JSON, through the response
    /// cache when the pipeline gives a key: what the HTTP and gRPC predict routes send. With
    /// `version`, that loaded version of that model answers. The error is shared when one
    /// computation answered several identical requests.
    pub async fn answer(
        &self,
        input: P::Input,
        version: Option<(&str, u64)>,
    ) -> Result<Served, Arc<Error>> {
        self.answer_through(input, version, None).await
    }

    /// [`Engine::answer`], with the response in the shape of `route` (one of the pipeline's
    /// [`endpoints`](Pipeline::endpoints)) when one is given; its answers are cached apart.
    pub(crate) async fn answer_through(
        &self,
        input: P::Input,
        version: Option<(&str, u64)>,
        route: Option<&dyn Route<P::Input, P::Output>>,
    ) -> Result<Served, Arc<Error>> {
        let context = Context::current();
        let key = self.pipeline.cache_key(&input, &context).map(|key| match route {
            Some(route) => [route.path().as_bytes(), b"\0", &key].concat(),
            None => key,
        });
        let encode = |answer: Answer<P::Output>| encode(answer, route, &context);
        let Some((cache, pipeline_key)) = self.cache().zip(key) else {
            let answer = self.predict(input, version).await.and_then(encode);
            return Ok(Served { answer: Arc::new(answer.map_err(Arc::new)?), cached: None });
        };
        let versions = self.answering_versions(version).map_err(Arc::new)?;
        let start = Instant::now();
        let key = cache::key(&pipeline_key, &versions);
        let compute = async { self.predict(input, version).await.and_then(encode) };
        let (answer, source) = cache.get_or_compute(key, compute).await;
        Ok(Served { answer: answer?, cached: source.layer().map(|layer| (layer, start.elapsed())) })
    }

    /// Serves one request in the context of the request this task serves (see
    /// [`Context`]); [`Error::NotReady`] until [`Engine::load`] has finished. With `version`,
    /// that loaded version of that model answers instead of the serving one.
    pub async fn predict(
        &self,
        input: P::Input,
        version: Option<(&str, u64)>,
    ) -> Result<Answer<P::Output>> {
        self.check_loaded()?;
        let models = match version {
            None => Arc::clone(&self.models),
            Some((name, version)) => Arc::new(self.models.with_version(name, version)?),
        };
        self.run(input, Context::current(), models).await
    }

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
        if let Err(error) = self.adopt(loader, &name, version, keep).await {
            tracing::error!(model = %name, version, %error, "version rejected");
            self.models.fail(&name, Some(version), &error);
        }
    }

    /// Operator: serves the previous good version of `name` and retires the one serving, so
    /// it is never adopted again. The previous version is the newest older version, loaded or
    /// in the local repository, that has not failed; one not loaded is loaded and warmed up
    /// first. Any pin is lifted.
    pub async fn rollback(&self, loader: &Loader, name: &str) -> Result<ModelStatus> {
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
        self.models.retire(name, current, "rolled back by an operator");
        tracing::warn!(model = name, version = current, "rolled back");
        self.status(name)
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

    /// Runs the pipeline on `input` in `context` with `models`: preprocess, the model runs it
    /// asks for (concurrently), postprocess.
    async fn run(
        &self,
        input: P::Input,
        context: Arc<Context>,
        models: Arc<Models>,
    ) -> Result<Answer<P::Output>> {
        let start = Instant::now();
        let traced = context.traced;
        let span = stage_span(traced, || tracing::debug_span!("preprocess"));
        let prepared = {
            let context = Arc::clone(&context);
            move |pipeline: &P| {
                let inference = pipeline.preprocess(&input, &context, &models);
                (input, inference)
            }
        };
        let (input, inference) = self.stage(span, prepared).await?;
        let inference = inference?;
        let pre = start.elapsed();
        let runs = try_join_all(inference.runs.into_iter().map(|run| {
            let span = stage_span(traced, || {
                let (model, version) = (run.model.name(), run.model.version());
                tracing::debug_span!("model", model, version)
            });
            async move {
                let ran = run.model.infer(run.inputs).await?;
                let output = ModelOutput { model: run.model, tensors: ran.tensors };
                Ok::<_, Error>((output, ran.queued, ran.computed))
            }
            .instrument(span)
        }))
        .await?;
        let inferred = Instant::now();
        let queue = runs.iter().map(|(_, queued, _)| *queued).max().unwrap_or_default();
        let infer = runs.iter().map(|(_, _, computed)| *computed).max().unwrap_or_default();
        let results: Vec<ModelOutput> = runs.into_iter().map(|(output, _, _)| output).collect();
        let versions =
            results.iter().map(|r| (r.model.name().to_string(), r.model.version())).collect();
        let span = stage_span(traced, || tracing::debug_span!("postprocess"));
        let finished =
            move |pipeline: &P| pipeline.postprocess(input, &context, Outputs { results });
        let output = self.stage(span, finished).await??;
        let timings = Timings { pre, queue, infer, post: inferred.elapsed() };
        self.stages.preprocess.record(timings.pre.as_secs_f64());
        self.stages.postprocess.record(timings.post.as_secs_f64());
        Ok(Answer { output, versions, timings })
    }

    /// Runs one of the pipeline's stages in `span`: inline, or, for a pipeline with heavy
    /// stages, on a blocking thread once one of the per-core permits is free, so that the
    /// runtime's threads keep serving other requests meanwhile. A heavy stage that panics
    /// fails its request with a 500; one whose request timed out still runs to its end.
    async fn stage<T: Send + 'static>(
        &self,
        span: tracing::Span,
        work: impl FnOnce(&P) -> T + Send + 'static,
    ) -> Result<T> {
        let Some(permits) = &self.heavy else {
            return Ok(span.in_scope(|| work(&self.pipeline)));
        };
        let permit = Arc::clone(permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the heavy-stage permits were closed"))?;
        let pipeline = Arc::clone(&self.pipeline);
        let running = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(|| work(&pipeline))
        });
        running.await.map_err(|e| {
            tracing::error!(error = %e, "a heavy pipeline stage panicked");
            Error::pipeline("a pipeline stage panicked")
        })
    }
}

/// `span()` for a request whose stages are traced, else no span at all: an unsampled request
/// does not pay for spans that would only be dropped.
fn stage_span(traced: bool, span: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if traced { span() } else { tracing::Span::none() }
}

/// The answer as it is sent and cached: JSON bytes (the output's, or `route`'s response to
/// it) and what the headers say. An output that does not serialise (a map with keys that are
/// not strings, a serialiser that fails) is the pipeline's fault: a 500, not a panic.
fn encode<I, O: serde::Serialize>(
    answer: Answer<O>,
    route: Option<&dyn Route<I, O>>,
    context: &Context,
) -> Result<CachedAnswer> {
    let body = match route {
        Some(route) => route.respond(answer.output, context)?,
        None => serde_json::to_vec(&answer.output).map_err(|e| {
            Error::pipeline(format!("the pipeline's output does not serialise: {e}"))
        })?,
    };
    Ok(CachedAnswer { body: body.into(), versions: answer.versions, timings: answer.timings })
}
