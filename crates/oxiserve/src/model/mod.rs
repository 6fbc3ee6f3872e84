//! Models: one loaded version ([`Model`]) and the set a service serves ([`Models`]).
//!
//! A [`Model`] is a verified manifest plus a running backend. It is shared as `Arc<Model>`: a
//! request holds its `Arc` from preprocessing to postprocessing, so it sees one version
//! throughout, and a version that is replaced stays alive until its last request is done.

mod batch;
mod golden;
pub(crate) mod health;
mod onnx;
mod onnx_ml;
mod registry;
mod remote;
pub(crate) mod runtime;
pub(crate) mod selection;
pub(crate) mod worker;

use std::any::Any;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ort::environment::Environment;

pub use self::batch::Padding;
use self::batch::Ran;
use self::health::Health;
pub use self::registry::{FailedVersion, ModelState, ModelStatus, Models};
pub(crate) use self::selection::OutputSet;
use self::worker::Pool;
pub use self::worker::RunStats;
pub(crate) use self::worker::Started;
use crate::config::{ModelsConfig, OnnxMl, RunConfig, VersionPolicy, WatchConfig};
use crate::error::{Error, Result};
pub use crate::manifest::{self, Manifest, TensorSpec};
use crate::store::{LocalRepository, S3Mirror, Source};
use crate::telemetry::{VersionInfo, store as store_metrics};
use crate::tensor::Tensors;

/// What runs a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Runtime {
    /// ONNX Runtime sessions in process.
    OnnxRuntime,
    /// oxiserve's interpreter of the ONNX-ML operators of linear models and tree ensembles
    /// (`models.onnx_ml`).
    OnnxMl,
    /// A KServe v2 server (`models.remote`).
    Remote,
}

/// The workers of a model run in process: the ONNX-ML interpreter when `config` allows it,
/// the graph is one it runs and it gives an ONNX Runtime session's answers on probe rows;
/// ONNX Runtime sessions otherwise.
fn in_process(
    manifest: &Manifest,
    graph: &[u8],
    config: &RunConfig,
    padding: &Padding,
    environment: &Environment,
) -> Result<(Pool, Runtime)> {
    let label = manifest.label();
    let interpreter = match config.onnx_ml {
        OnnxMl::Rust => onnx_ml::Interpreter::compile(manifest, graph)
            .inspect_err(|reason| tracing::debug!(model = %label, %reason, "runs on ONNX Runtime"))
            .ok(),
        OnnxMl::OnnxRuntime => None,
    };
    if let Some(mut interpreter) = interpreter {
        let one = RunConfig { sessions: 1, ..config.clone() };
        let mut reference = onnx::sessions(manifest, graph, &one, padding, environment)?;
        match interpreter.agrees_with(&mut reference[0]) {
            Ok(()) => {
                let runners = vec![interpreter; config.sessions];
                return Ok((Pool::start(manifest, runners, config, padding)?, Runtime::OnnxMl));
            }
            Err(difference) => tracing::warn!(model = %label, %difference,
                "the ONNX-ML interpreter differs from ONNX Runtime on this model; it runs on \
                 ONNX Runtime"),
        }
    }
    let sessions = onnx::sessions(manifest, graph, config, padding, environment)?;
    Ok((Pool::start(manifest, sessions, config, padding)?, Runtime::OnnxRuntime))
}

/// One loaded, verified and warmed-up version of a model.
///
/// Aligned to 128 bytes, so that in an `Arc<Model>` the reference counts, which every request
/// raises and lowers on whichever core it runs, sit on cache lines apart from the fields that
/// requests only read.
#[derive(Debug)]
#[repr(align(128))]
pub struct Model {
    manifest: Manifest,
    /// The local directory of the version's files.
    dir: std::path::PathBuf,
    backend: Pool,
    /// What runs the version.
    runtime: Runtime,
    /// For a remote model, whether its server answers.
    availability: Option<remote::Availability>,
    cached: OnceLock<Box<dyn Any + Send + Sync>>,
    /// How this version does with the requests it takes part in.
    health: Health,
    /// Shows this version in `oxiserve_model_version_info` while it is loaded.
    _info: VersionInfo,
}

impl Model {
    /// Loads `name` at `version` from `repository`: reads the manifest, then either verifies
    /// the sha256 of `model.onnx`, creates the sessions, checks their signature against the
    /// manifest and warms each one up (a graph of linear models or tree ensembles runs on the
    /// ONNX-ML interpreter instead, once it agrees with a session; see `models.onnx_ml`), or, for a model with `config.remote`, connects to its
    /// server and checks the server's metadata against the manifest. Blocking: call from a
    /// blocking thread inside the runtime.
    pub fn load(
        repository: &LocalRepository,
        name: &str,
        version: u64,
        config: &RunConfig,
        padding: &Padding,
        environment: &Environment,
    ) -> Result<Self> {
        let dir = repository.version_dir(name, version);
        repository.check_inside(name, version, &[manifest::FILE_NAME])?;
        let manifest = Manifest::read(&dir, name, version)?;
        let files: Vec<&str> = manifest.files.keys().map(String::as_str).collect();
        repository.check_inside(name, version, &files)?;
        let invalid = |detail: String| Error::artifact(dir.join(manifest::MODEL_FILE), detail);
        let (backend, runtime, availability) = match &config.remote {
            None => {
                let graph = manifest.read_verified(&dir, manifest::MODEL_FILE)?;
                let (pool, runtime) = in_process(&manifest, &graph, config, padding, environment)
                    .map_err(|error| match error {
                    Error::Inference { detail, .. } => invalid(detail),
                    other => other,
                })?;
                (pool, runtime, None)
            }
            Some(remote) => {
                padding.check(&manifest).map_err(invalid)?;
                let connect = remote::connect(&manifest, remote, config.sessions);
                let (runners, availability) =
                    tokio::runtime::Handle::current().block_on(connect)?;
                let pool = Pool::start(&manifest, runners, config, padding)?;
                (pool, Runtime::Remote, Some(availability))
            }
        };
        tracing::info!(model = name, version, sessions = config.sessions, ?runtime, "model loaded");
        let info = VersionInfo::loaded(&manifest);
        let cached = OnceLock::new();
        let health = Health::default();
        Ok(Self { manifest, dir, backend, runtime, availability, cached, health, _info: info })
    }

    /// Whether the model can run now: always for a local model; for a remote one, whether its
    /// server answered the last call or probe.
    pub fn is_available(&self) -> bool {
        self.availability.as_ref().is_none_or(remote::Availability::is_available)
    }

    /// What runs this version.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The loaded version.
    pub fn version(&self) -> u64 {
        self.manifest.version
    }

    /// How many session runs this version made and how many rows they carried.
    pub fn stats(&self) -> &RunStats {
        self.backend.stats()
    }

    /// The manifest this version was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// One of the version's files (a tokenizer, a vocabulary, a label map), read whole and
    /// checked against the manifest's size and sha256. A file the manifest does not list is
    /// an error. Pipelines read their files once per version, in
    /// [`Pipeline::prepare_model`](crate::Pipeline::prepare_model) through
    /// [`Model::cached`].
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        self.manifest.read_verified(&self.dir, name)
    }

    /// How this version does with the requests it takes part in.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Runs the model. The inputs must match the manifest's names and datatypes; a mismatch is
    /// a pipeline bug and fails with [`Error::Inference`] before reaching the backend.
    pub(crate) async fn infer(&self, inputs: Tensors, outputs: OutputSet) -> Result<Ran> {
        self.begin(inputs, outputs).answer().await
    }

    /// Begins a run of the model, as [`Model::infer`] makes it, counted in the version's
    /// metrics: a short run on an idle version is over when it returns, with no future to
    /// poll; others wait for a batch or a worker.
    pub(crate) fn begin(&self, inputs: Tensors, outputs: OutputSet) -> Started<'_> {
        if let Err(error) = self.check_inputs(&inputs) {
            return Started::Done(Err(error));
        }
        self.backend.begin(inputs, outputs)
    }

    /// Data derived from this version's manifest, computed by `init` on first use and kept for
    /// the version's lifetime.
    ///
    /// Pipelines use it for parsed preprocessing parameters so that they are parsed once per
    /// loaded version, not once per request, and always match the version that runs. One type
    /// per model: asking for another type than the first call stored is an error.
    pub fn cached<T: Any + Send + Sync>(
        &self,
        init: impl FnOnce(&Manifest) -> Result<T>,
    ) -> Result<&T> {
        if self.cached.get().is_none() {
            let value = init(&self.manifest)?;
            // Another request may have won the race with an equal value; either is fine.
            let _ = self.cached.set(Box::new(value));
        }
        let stored = self.cached.get().expect("the slot was filled just above");
        stored.downcast_ref().ok_or_else(|| {
            Error::pipeline(format!(
                "model `{}` already caches another type than {}",
                self.name(),
                std::any::type_name::<T>()
            ))
        })
    }

    fn check_inputs(&self, inputs: &Tensors) -> Result<()> {
        let wrong = |detail: String| Error::Inference { model: self.manifest.label(), detail };
        for spec in &self.manifest.inputs {
            let tensor = inputs
                .get(&spec.name)
                .ok_or_else(|| wrong(format!("input `{}` is missing", spec.name)))?;
            let fits = tensor.shape().len() == spec.shape.len()
                && tensor.shape().iter().zip(&spec.shape).all(|(&d, &s)| s < 0 || d as i64 == s);
            if tensor.datatype() != spec.datatype || !fits {
                return Err(wrong(format!(
                    "input `{}` is {} {:?}, the model expects {} {:?}",
                    spec.name,
                    tensor.datatype(),
                    tensor.shape(),
                    spec.datatype,
                    spec.shape
                )));
            }
        }
        if let Some(extra) =
            inputs.keys().find(|k| !self.manifest.inputs.iter().any(|s| &s.name == *k))
        {
            return Err(wrong(format!("the model has no input `{extra}`")));
        }
        Ok(())
    }
}

/// Everything needed to bring model versions in: the local repository they load from, the
/// remote store that fills it (if any), how to run them, and the ONNX Runtime environment.
#[derive(Debug, Clone)]
pub struct Loader {
    repository: LocalRepository,
    remote: Option<S3Mirror>,
    config: ModelsConfig,
    environment: Environment,
    /// How long one look at the local repository may take (`limits.store_timeout_ms`).
    store_timeout: Duration,
    /// Models with a look at the local repository past its timeout that has not returned.
    stuck: Arc<Mutex<HashSet<String>>>,
    /// Looks at the local repository running now.
    looking: Arc<AtomicUsize>,
}

/// A failure to bring a version in from the remote store.
#[derive(Debug)]
pub struct FetchError {
    /// The version at fault, or `None` when the store itself failed (unreachable, denied).
    pub version: Option<u64>,
    /// What went wrong.
    pub error: Error,
}

impl Loader {
    /// A loader for the repository and settings of `config`, loading ONNX Runtime if needed.
    /// Connects to nothing: a remote store is first contacted by [`Loader::fetch`].
    pub async fn new(config: &crate::Config) -> Result<Self> {
        let environment = runtime::environment(&config.runtime)?;
        let (repository, remote) = match Source::parse(&config.models.uri)? {
            Source::Local(root) => {
                tracing::info!(repository = %root.display(), "models from a local directory");
                (LocalRepository::new(root), None)
            }
            #[cfg(feature = "s3")]
            Source::S3 { bucket, prefix } => {
                let cache = config.models.cache_dir.clone();
                // Credentials come from the AWS chain, never from the URI: nothing to hide.
                tracing::info!(bucket, prefix, cache = %cache.display(), "models from S3");
                let mirror = S3Mirror::new(bucket, prefix, cache, &config.models.s3).await;
                (mirror.cache().clone(), Some(mirror))
            }
            #[cfg(not(feature = "s3"))]
            Source::S3 { .. } => return Err(crate::config::missing_feature("models.uri", "s3")),
        };
        Ok(Self {
            repository,
            remote,
            config: config.models.clone(),
            environment,
            store_timeout: Duration::from_millis(config.limits.store_timeout_ms),
            stuck: Arc::default(),
            looking: Arc::default(),
        })
    }

    /// Waits until no look at the local repository runs, or `within` has passed. The process
    /// calls it before it exits: a model still loading uses ONNX Runtime, whose teardown at
    /// exit must not race it; a look that hangs on a dead mount is not waited for past
    /// `within`.
    pub async fn settle(&self, within: Duration) {
        let start = tokio::time::Instant::now();
        while self.looking.load(Ordering::Acquire) > 0 && start.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs `look` (blocking work on the local repository for model `name`: listing, reading,
    /// loading) on a thread of its own, and waits at most `limits.store_timeout_ms` for it. A
    /// hung mount or a file that never answers then fails this call only: other models go on,
    /// and shutdown does not wait for the thread, which ends when its read does. Until it has,
    /// further looks at `name` fail at once rather than pile up threads.
    async fn off_runtime<T: Send + 'static>(
        &self,
        name: &str,
        look: impl FnOnce(&Loader) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.stuck_models().contains(name) {
            return Err(Error::Remote(format!("the local model repository hangs on `{name}`")));
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // Remote models connect through the runtime from this thread.
        let runtime = tokio::runtime::Handle::current();
        let looking = Looking::start(self, name);
        let returned = Arc::clone(&looking.returned);
        std::thread::Builder::new()
            .name("oxiserve-store".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                let _ = sender.send(look(&looking.loader));
                drop(looking);
            })
            .map_err(|e| Error::io("starting a model repository thread", e))?;
        match tokio::time::timeout(self.store_timeout, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                Err(Error::internal(format!("a look at the repository for `{name}` panicked")))
            }
            Err(_) => {
                let mut stuck = self.stuck_models();
                if !returned.load(Ordering::Relaxed) {
                    stuck.insert(name.to_string());
                }
                drop(stuck);
                let ms = self.store_timeout.as_millis();
                tracing::error!(model = name, ms, "the local model repository does not answer");
                Err(Error::Remote(format!(
                    "the local model repository did not answer within {ms} ms for `{name}`"
                )))
            }
        }
    }

    fn stuck_models(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.stuck.lock().expect("no code panics while holding the stuck-model set")
    }

    /// Fails if the per-model settings name a model that is not among `models`.
    pub fn check_model_names(&self, models: &[String]) -> Result<()> {
        self.config.check_model_names(models)
    }

    /// The version policy of `name`.
    pub fn policy(&self, name: &str) -> &VersionPolicy {
        self.config.policy_for(name)
    }

    /// The automatic rollback settings of `name`.
    pub fn watch(&self, name: &str) -> &WatchConfig {
        self.config.watch_for(name)
    }

    /// The versions of `name` ready to load locally, in increasing order.
    pub async fn versions(&self, name: &str) -> Result<Vec<u64>> {
        let model = name.to_string();
        self.off_runtime(name, move |loader| loader.repository.versions(&model)).await
    }

    /// Copies the newest remote version of `name` that `wanted` accepts into the local
    /// repository, unless it is there already. Does nothing for a local repository.
    pub async fn fetch(&self, name: &str, wanted: impl Fn(u64) -> bool) -> Result<(), FetchError> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let versions =
            remote.versions(name).await.map_err(|error| FetchError { version: None, error })?;
        let Some(version) = versions.into_iter().rev().find(|&v| wanted(v)) else { return Ok(()) };
        remote.mirror(name, version).await.map_err(|error| {
            // Only a bad artifact condemns the version; network and disk errors are retried.
            let version = matches!(error, Error::Artifact { .. }).then_some(version);
            FetchError { version, error }
        })
    }

    /// The directory of `name` in the local repository, for messages.
    pub fn model_dir(&self, name: &str) -> std::path::PathBuf {
        self.repository.model_dir(name)
    }

    /// Loads `name` at `version` from the local repository off the runtime (see
    /// `off_runtime`), batching variable-length inputs with `padding`, then runs the golden
    /// examples of its manifest: a version that does not reproduce them is refused (and
    /// counted in `oxiserve_model_golden_failures_total`).
    pub async fn load(&self, name: &str, version: u64, padding: Padding) -> Result<Arc<Model>> {
        let model = name.to_string();
        let model = self
            .off_runtime(name, move |loader| {
                let run = loader.config.run_config(&model);
                let (repository, environment) = (&loader.repository, &loader.environment);
                Model::load(repository, &model, version, &run, &padding, environment).map(Arc::new)
            })
            .await?;
        let manifest = self.repository.version_dir(name, version).join(manifest::FILE_NAME);
        golden::check(&model, &manifest)
            .await
            .inspect_err(|_| store_metrics::golden_failed(name))?;
        Ok(model)
    }
}

/// One look at the local repository in progress, counted in `Loader::looking` until it is
/// dropped, when the thread is done (returned or unwound): then the model is no longer stuck.
struct Looking {
    loader: Loader,
    model: String,
    /// Set, under the stuck-set lock, once the look is over; a timeout marks the model stuck
    /// only if it is not.
    returned: Arc<AtomicBool>,
}

impl Looking {
    fn start(loader: &Loader, model: &str) -> Self {
        loader.looking.fetch_add(1, Ordering::AcqRel);
        Self { loader: loader.clone(), model: model.to_string(), returned: Arc::default() }
    }
}

impl Drop for Looking {
    fn drop(&mut self) {
        let mut stuck = self.loader.stuck_models();
        self.returned.store(true, Ordering::Relaxed);
        stuck.remove(&self.model);
        drop(stuck);
        self.loader.looking.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_look_at_the_repository_that_hangs_fails_alone() {
        let mut config = crate::Config::default();
        config.limits.store_timeout_ms = 100;
        let loader = Loader::new(&config).await.expect("ONNX Runtime is provisioned");
        let (release, hang) = std::sync::mpsc::channel::<()>();
        let hung = loader.off_runtime("m", move |_| Ok(hang.recv())).await.unwrap_err();
        assert!(hung.to_string().contains("did not answer within 100 ms"), "{hung}");
        // While it hangs, looks at that model fail at once; other models are untouched.
        let again = loader.off_runtime("m", |_| Ok(())).await.unwrap_err();
        assert!(again.to_string().contains("hangs on `m`"), "{again}");
        loader.off_runtime("other", |_| Ok(())).await.expect("another model is looked at");
        // Once the stuck look returns, the model can be looked at again.
        release.send(()).unwrap();
        let start = std::time::Instant::now();
        while loader.off_runtime("m", |_| Ok(())).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(5), "the model stays stuck");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
