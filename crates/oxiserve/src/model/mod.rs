//! Models: one loaded version ([`Model`]) and the set a service serves ([`Models`]).
//!
//! A [`Model`] is a verified manifest plus a running backend. It is shared as `Arc<Model>`: a
//! request holds its `Arc` from preprocessing to postprocessing, so it sees one version
//! throughout, and a version that is replaced stays alive until its last request is done.

mod batch;
pub mod manifest;
mod onnx;
mod registry;
mod remote;
pub(crate) mod runtime;
pub(crate) mod worker;

use std::any::Any;
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;

pub use self::batch::Padding;
use self::batch::Ran;
pub use self::manifest::{Manifest, TensorSpec};
pub use self::registry::{FailedVersion, ModelState, ModelStatus, Models};
use self::worker::Pool;
pub use self::worker::RunStats;
use crate::config::{ModelsConfig, RunConfig, VersionPolicy};
use crate::error::{Error, Result};
use crate::store::{LocalRepository, S3Mirror, Source};
use crate::telemetry::VersionInfo;
use crate::tensor::Tensors;

/// One loaded, verified and warmed-up version of a model.
#[derive(Debug)]
pub struct Model {
    manifest: Manifest,
    backend: Pool,
    /// For a remote model, whether its server answers.
    availability: Option<remote::Availability>,
    cached: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Shows this version in `oxiserve_model_version_info` while it is loaded.
    _info: VersionInfo,
}

impl Model {
    /// Loads `name` at `version` from `repository`: reads the manifest, then either verifies
    /// the sha256 of `model.onnx`, creates the sessions, checks their signature against the
    /// manifest and warms each one up, or, for a model with `config.remote`, connects to its
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
        let manifest = Manifest::read(&dir, name, version)?;
        let invalid = |detail: String| Error::artifact(dir.join(manifest::MODEL_FILE), detail);
        let (backend, availability) = match &config.remote {
            None => {
                let graph = manifest.read_verified(&dir, manifest::MODEL_FILE)?;
                let sessions = onnx::sessions(&manifest, &graph, config, padding, environment)
                    .map_err(|error| match error {
                        Error::Inference { detail, .. } => invalid(detail),
                        other => other,
                    })?;
                (Pool::start(&manifest, sessions, config, padding)?, None)
            }
            Some(remote) => {
                padding.check(&manifest).map_err(invalid)?;
                let connect = remote::connect(&manifest, remote, config.sessions);
                let (runners, availability) =
                    tokio::runtime::Handle::current().block_on(connect)?;
                (Pool::start(&manifest, runners, config, padding)?, Some(availability))
            }
        };
        tracing::info!(model = name, version, sessions = config.sessions, "model loaded");
        let info = VersionInfo::loaded(&manifest);
        Ok(Self { manifest, backend, availability, cached: OnceLock::new(), _info: info })
    }

    /// Whether the model can run now: always for a local model; for a remote one, whether its
    /// server answered the last call or probe.
    pub fn is_available(&self) -> bool {
        self.availability.as_ref().is_none_or(remote::Availability::is_available)
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

    /// Runs the model. The inputs must match the manifest's names and datatypes; a mismatch is
    /// a pipeline bug and fails with [`Error::Inference`] before reaching the backend.
    pub(crate) async fn infer(&self, inputs: Tensors) -> Result<Ran> {
        self.check_inputs(&inputs)?;
        let ran = self.backend.infer(inputs).await;
        let metrics = self.backend.metrics();
        match &ran {
            Ok(ran) => {
                metrics.queue.record(ran.queued.as_secs_f64());
                metrics.inference.record(ran.computed.as_secs_f64());
            }
            Err(error) => metrics.failed(error),
        }
        ran
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
            Source::S3 { bucket, prefix } => {
                let cache = config.models.cache_dir.clone();
                // Credentials come from the AWS chain, never from the URI: nothing to hide.
                tracing::info!(bucket, prefix, cache = %cache.display(), "models from S3");
                let mirror = S3Mirror::new(bucket, prefix, cache, &config.models.s3).await;
                (mirror.cache().clone(), Some(mirror))
            }
        };
        Ok(Self { repository, remote, config: config.models.clone(), environment })
    }

    /// Fails if the per-model settings name a model that is not among `models`.
    pub fn check_model_names(&self, models: &[String]) -> Result<()> {
        self.config.check_model_names(models)
    }

    /// The version policy of `name`.
    pub fn policy(&self, name: &str) -> &VersionPolicy {
        self.config.policy_for(name)
    }

    /// The versions of `name` ready to load locally, in increasing order.
    pub fn versions(&self, name: &str) -> Result<Vec<u64>> {
        self.repository.versions(name)
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

    /// Loads `name` at `version` from the local repository on a blocking thread, batching
    /// variable-length inputs with `padding`.
    pub async fn load(&self, name: &str, version: u64, padding: Padding) -> Result<Arc<Model>> {
        let loader = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let run = loader.config.run_config(&name);
            let (repository, environment) = (&loader.repository, &loader.environment);
            Model::load(repository, &name, version, &run, &padding, environment).map(Arc::new)
        })
        .await
        .map_err(|e| Error::pipeline(format!("model loading task failed: {e}")))?
    }
}
