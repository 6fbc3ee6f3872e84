//! The engine: runs a [`Pipeline`] end to end and decides when the service is ready.
//!
//! `preprocess` and `postprocess` run inline on the request's task; the model runs an
//! [`Inference`](crate::Inference) asks for execute concurrently on their backends.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::try_join_all;
use ort::environment::Environment;

use crate::config::ModelsConfig;
use crate::error::{Error, Result};
use crate::model::{self, Models};
use crate::pipeline::{ModelOutput, Outputs, Pipeline};
use crate::store::LocalRepository;

/// A pipeline with its models and readiness.
#[derive(Debug)]
pub struct Engine<P> {
    pipeline: P,
    models: Models,
    ready: AtomicBool,
}

impl<P: Pipeline> Engine<P> {
    /// An engine whose models are all still loading.
    pub fn new(pipeline: P) -> Self {
        let models = Models::new(pipeline.models());
        Self {
            pipeline,
            models,
            ready: AtomicBool::new(false),
        }
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
    pub async fn predict(&self, input: P::Input) -> Result<P::Output> {
        if !self.is_ready() {
            return Err(Error::NotReady);
        }
        self.run(input).await
    }

    /// Loads the latest version of every model, then runs the pipeline's example through the
    /// whole pipeline, then reports ready. The first failure is returned and recorded against
    /// its model.
    pub async fn load(
        &self,
        repository: &LocalRepository,
        config: &ModelsConfig,
        environment: &Environment,
    ) -> Result<()> {
        let loads = self.models.names().into_iter().map(|name| async move {
            let loaded = model::load_latest(
                repository.clone(),
                name.clone(),
                config.clone(),
                environment.clone(),
            )
            .await;
            match loaded {
                Ok(model) => {
                    self.models.install(model);
                    Ok(())
                }
                Err(error) => {
                    self.models.fail(&name, &error);
                    Err(error)
                }
            }
        });
        try_join_all(loads).await?;
        if let Some(example) = self.pipeline.example() {
            self.run(example)
                .await
                .map_err(|e| Error::pipeline(format!("the warm-up request failed: {e}")))?;
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(service = self.pipeline.name(), "ready");
        Ok(())
    }

    async fn run(&self, input: P::Input) -> Result<P::Output> {
        let inference = self.pipeline.preprocess(&input, &self.models)?;
        let results = try_join_all(inference.runs.into_iter().map(|run| async move {
            let tensors = run.model.infer(run.inputs).await?;
            Ok::<_, Error>(ModelOutput {
                model: run.model,
                tensors,
            })
        }))
        .await?;
        self.pipeline.postprocess(input, Outputs { results })
    }
}
