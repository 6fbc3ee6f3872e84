//! The engine: runs a [`Pipeline`] end to end, decides readiness, and swaps model versions.
//!
//! `preprocess` and `postprocess` run inline on the request's task, or on a blocking thread
//! when the pipeline declares them heavy ([`Pipeline::heavy_stages`]); the model runs an
//! [`Inference`] asks for execute concurrently on their backends.
//!
//! Versions (`versions`): [`Engine::load`] brings every model up at start-up (the versions its policy asks
//! for), [`Engine::sync`] later adopts newly published ones, and the operator calls (rollback,
//! pin, unpin, sync now) serve the admin API. A new version is verified,
//! loaded, warmed up through the whole pipeline, and only then swapped in; a version that fails
//! any step is recorded and never served, and the one serving keeps serving. Once serving, a
//! version adopted from the store is watched (`watch`) and rolled back on its own if its
//! requests fail more often or take longer than its predecessor's.

mod status;
mod versions;
mod watch;

pub(crate) use self::status::{ServiceStatus, StatusState};

use std::collections::BTreeMap;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::TryFutureExt;
use futures_util::future::{BoxFuture, Either, try_join_all};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::cache::{self, CachedAnswer, ResponseCache};
use crate::context::{Context, Transport};
use crate::endpoint::Route;
use crate::error::{Error, Result};
use crate::model::{Models, Started};
use crate::pipeline::{Inference, ModelOutput, Outputs, Pipeline, Run};
use crate::tensor::Tensors;
use crate::timings::{self, Laps, Timings};

/// A pipeline with its models and readiness.
#[derive(Debug)]
pub struct Engine<P> {
    pipeline: Arc<P>,
    models: Arc<Models>,
    /// For a pipeline with heavy stages, the blocking threads they may use at once: two per
    /// core, so that a burst of heavy requests queues instead of crowding the cores out, while
    /// one slow stage never makes a cheap one wait.
    heavy: Option<Arc<Semaphore>>,
    ready: AtomicBool,
    draining: AtomicBool,
    cache: Option<ResponseCache>,
    stages: PipelineStages,
    /// `oxiserve_ready`: 1 from the end of [`Engine::load`] until draining starts.
    ready_gauge: metrics::Gauge,
    /// The versions adopted from the store that are still under watch, by model name.
    watches: Mutex<BTreeMap<String, watch::Watch>>,
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
                let mut header = format!("cache;desc={layer};dur=");
                timings::push_millis(&mut header, lookup);
                header
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
            Arc::new(Semaphore::new(2 * cores))
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
            watches: Mutex::default(),
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
        // The key is only worked out when there is a cache to look in.
        let keyed = self.cache().and_then(|cache| {
            let key = self.pipeline.cache_key(&input, &context)?;
            let key = match route {
                Some(route) => [route.path().as_bytes(), b"\0", &key].concat(),
                None => key,
            };
            Some((cache, key))
        });
        let encode = |answer: Answer<P::Output>| encode(answer, route, &context);
        // The computation is made in each branch and awaited where it is made: a future kept in
        // a variable and then awaited takes its size twice in this one's.
        let Some((cache, pipeline_key)) = keyed else {
            let answer = self.predict_in(input, version, Arc::clone(&context)).await;
            let answer = answer.and_then(encode);
            return Ok(Served { answer: Arc::new(answer.map_err(Arc::new)?), cached: None });
        };
        let compute = self.predict_in(input, version, Arc::clone(&context));
        let versions = self.answering_versions(version).map_err(Arc::new)?;
        let start = Instant::now();
        let key = cache::key(&pipeline_key, &versions);
        let compute = async { compute.await.and_then(encode) };
        // Boxed: the cache's lookup (moka's, Redis's) is a future of kilobytes, which would
        // otherwise make every request's future that large, cached or not, and be copied
        // whenever the request's future moves.
        let (answer, source) = Box::pin(cache.get_or_compute(key, compute)).await;
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
        self.predict_in(input, version, Context::current()).await
    }

    /// [`Engine::predict`] in `context`.
    async fn predict_in(
        &self,
        input: P::Input,
        version: Option<(&str, u64)>,
        context: Arc<Context>,
    ) -> Result<Answer<P::Output>> {
        self.check_loaded()?;
        let models = match version {
            None => Arc::clone(&self.models),
            Some((name, version)) => Arc::new(self.models.with_version(name, version)?),
        };
        self.run(input, context, models).await
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
        let (traced, transport) = (context.traced, context.transport());
        let span = stage_span(traced, || tracing::debug_span!("preprocess"));
        let prepared = {
            let context = Arc::clone(&context);
            move |pipeline: &P| {
                let inference = pipeline.preprocess(&input, &context, &models);
                (input, inference)
            }
        };
        let (input, inference) = self.stage(span, prepared).await?;
        let Inference { mut runs, laps } = inference?;
        let pre = start.elapsed();
        let answer = self.finish(input, &mut runs, laps, context, pre).await;
        if transport == Transport::Internal {
            return answer;
        }
        // What each version does with real requests: the automatic rollback's evidence.
        let took = start.elapsed();
        for run in &runs {
            match &answer {
                Ok(_) => run.model.health().succeeded(took),
                Err(error) if error.is_server_fault() => run.model.health().failed(),
                Err(_) => {}
            }
        }
        answer
    }

    /// The rest of [`Engine::run`] once `preprocess` (which took `pre`, with its own `pre_laps`)
    /// asked for `runs`: the model runs, then postprocess.
    ///
    /// The runs begin in order. A short run on an idle version is over as it begins, with no
    /// future made for it (most runs of a small model); the others wait for their batch or
    /// worker, all together. As with any join, the first run that fails fails the request.
    async fn finish(
        &self,
        input: P::Input,
        runs: &mut [Run],
        pre_laps: Laps,
        context: Arc<Context>,
        pre: Duration,
    ) -> Result<Answer<P::Output>> {
        let traced = context.traced;
        let mut results = Vec::with_capacity(runs.len());
        let mut waiting = Vec::new();
        let (mut queue, mut infer) = (Duration::ZERO, Duration::ZERO);
        for run in runs.iter_mut() {
            let model = &run.model;
            let outputs = *run.outputs.as_ref().map_err(|name| {
                Error::pipeline(format!("model `{}` has no output `{name}`", model.name()))
            })?;
            let span = stage_span(traced, || {
                let (model, version) = (model.name(), model.version());
                tracing::debug_span!("model", model, version)
            });
            let inputs = std::mem::take(&mut run.inputs);
            // A run that waits gets its tensors when its answer comes.
            let tensors = match span.in_scope(|| model.begin(inputs, outputs)) {
                Started::Done(ran) => {
                    let ran = ran?;
                    (queue, infer) = (queue.max(ran.queued), infer.max(ran.computed));
                    ran.tensors
                }
                Started::Waiting(answer) => {
                    let index = results.len();
                    waiting.push(answer.instrument(span).map_ok(move |ran| (index, ran)));
                    Tensors::new()
                }
            };
            results.push(ModelOutput { model: Arc::clone(model), tensors });
        }
        if !waiting.is_empty() {
            for (index, ran) in try_join_all(waiting).await? {
                (queue, infer) = (queue.max(ran.queued), infer.max(ran.computed));
                results[index].tensors = ran.tensors;
            }
        }
        let inferred = Instant::now();
        let versions =
            results.iter().map(|r| (r.model.name().to_string(), r.model.version())).collect();
        let span = stage_span(traced, || tracing::debug_span!("postprocess"));
        let finished =
            move |pipeline: &P| pipeline.postprocess(input, &context, Outputs { results });
        let output = self.stage(span, finished).await??;
        let timings = Timings { pre, pre_laps, queue, infer, post: inferred.elapsed() };
        self.stages.preprocess.record(timings.pre.as_secs_f64());
        self.stages.postprocess.record(timings.post.as_secs_f64());
        Ok(Answer { output, versions, timings })
    }

    /// Runs one of the pipeline's stages in `span`: inline, at once, or, for a pipeline with
    /// heavy stages, on a blocking thread (see [`Engine::heavy_stage`]).
    ///
    /// Not an `async fn`: a request's future would then make room for the heavy stage's wait
    /// and thread, twice (before and after the models), whether its stages are heavy or not.
    /// The heavy stage's future is boxed instead.
    fn stage<T: Send + 'static>(
        &self,
        span: tracing::Span,
        work: impl FnOnce(&P) -> T + Send + 'static,
    ) -> Either<Ready<Result<T>>, BoxFuture<'_, Result<T>>> {
        match &self.heavy {
            None => Either::Left(ready(Ok(span.in_scope(|| work(&self.pipeline))))),
            Some(permits) => Either::Right(Box::pin(self.heavy_stage(permits, span, work))),
        }
    }

    /// Runs a heavy stage on a blocking thread once one of the `permits` is free, so that the
    /// runtime's threads keep serving other requests meanwhile. A heavy stage that panics
    /// fails its request with a 500; one whose request timed out still runs to its end.
    async fn heavy_stage<T: Send + 'static>(
        &self,
        permits: &Arc<Semaphore>,
        span: tracing::Span,
        work: impl FnOnce(&P) -> T + Send + 'static,
    ) -> Result<T> {
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
        None => {
            // Room for a small model's answer from the start (`to_vec` starts at 128 bytes and
            // regrows; tabular-scoring's answers are 260).
            let mut body = Vec::with_capacity(512);
            serde_json::to_writer(&mut body, &answer.output).map_err(|e| {
                Error::pipeline(format!("the pipeline's output does not serialise: {e}"))
            })?;
            body
        }
    };
    Ok(CachedAnswer { body: body.into(), versions: answer.versions, timings: answer.timings })
}
