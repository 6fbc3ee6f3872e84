//! The [`Pipeline`] trait: the one thing a service author writes.
//!
//! A request flows `Input -> preprocess -> inference -> postprocess -> Output`. The pipeline
//! owns the two ends and everything between models that is business logic; the framework owns
//! transport, validation of the JSON shape, model loading, inference, limits and telemetry.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::model::{Model, Models, Padding};
use crate::tensor::{Tensor, Tensors};

/// A service's request logic around its models.
///
/// # What each method must do
///
/// * [`models`](Pipeline::models) names every model the pipeline may use. The framework loads
///   each before the service reports ready, and only those can be fetched from [`Models`].
/// * [`preprocess`](Pipeline::preprocess) validates the input beyond its JSON shape, turns it
///   into tensors, and says which model(s) to run with them by returning an [`Inference`]. It may
///   choose models with ordinary `if`s on the input, and may run several models in one request.
///   It reads per-version data (feature order, vocabularies) from the [`Model`] it runs, so
///   parameters and weights always come from the same version.
/// * [`postprocess`](Pipeline::postprocess) receives the input back together with every model's
///   [`Outputs`] and builds the response: labels, thresholds, business rules.
/// * [`padding`](Pipeline::padding) (optional) lets requests whose inputs differ in length
///   (token sequences) share a dynamic batch.
/// * [`example`](Pipeline::example) gives a valid input. It is run through the whole pipeline
///   before the service reports ready (warm-up) and is shown as the request example in the
///   OpenAPI document, so it is always a request that works.
///
/// # Errors
///
/// Return [`Error::invalid_field`] or [`Error::invalid_input`] for input the client must fix:
/// it becomes a 422 problem+json naming the field. Anything else, such as
/// [`Error::pipeline`], becomes a 500 whose detail stays in the log.
///
/// # Threading
///
/// One pipeline value serves all requests concurrently through `&self`, so it must be
/// `Send + Sync`. `preprocess` and `postprocess` run on the async runtime: keep them to
/// CPU work of well under a millisecond; inference itself runs on dedicated threads.
///
/// # Example
///
/// ```
/// use oxiserve::{Error, Inference, Models, Outputs, Pipeline, Result, Tensor};
/// use serde::{Deserialize, Serialize};
///
/// /// Doubles a number with a model called `doubler`, or skips the model for zero.
/// struct Doubler;
///
/// #[derive(Serialize, Deserialize, utoipa::ToSchema)]
/// struct Input { x: f32 }
///
/// #[derive(Serialize, utoipa::ToSchema)]
/// struct Output { y: f32 }
///
/// impl Pipeline for Doubler {
///     type Input = Input;
///     type Output = Output;
///
///     fn name(&self) -> &str { "doubler" }
///
///     fn models(&self) -> Vec<String> { vec!["doubler".into()] }
///
///     fn preprocess(&self, input: &Input, models: &Models) -> Result<Inference> {
///         if !input.x.is_finite() {
///             return Err(Error::invalid_field("x", "must be a finite number"));
///         }
///         if input.x == 0.0 {
///             return Ok(Inference::new()); // nothing to compute
///         }
///         let model = models.get("doubler")?;
///         let x = Tensor::from(ndarray::arr2(&[[input.x]]));
///         Ok(Inference::new().run(&model, [("x", x)]))
///     }
///
///     fn postprocess(&self, input: Input, outputs: Outputs) -> Result<Output> {
///         if input.x == 0.0 {
///             return Ok(Output { y: 0.0 });
///         }
///         let y = outputs.get("doubler")?.tensor("y")?.as_f32()?[[0, 0]];
///         Ok(Output { y })
///     }
///
///     fn example(&self) -> Option<Input> { Some(Input { x: 2.0 }) }
/// }
/// ```
pub trait Pipeline: Send + Sync + 'static {
    /// The request body. Its serde and `ToSchema` derive define the JSON accepted and the
    /// OpenAPI schema shown; a body that does not deserialise gets 400 or 422.
    type Input: DeserializeOwned + Serialize + ToSchema + Send + 'static;

    /// The response body.
    type Output: Serialize + ToSchema + Send + 'static;

    /// The service name, used in logs and as the OpenAPI title.
    fn name(&self) -> &str;

    /// The models this pipeline uses, by repository name.
    fn models(&self) -> Vec<String>;

    /// Validates `input`, builds tensors and picks the model runs.
    fn preprocess(&self, input: &Self::Input, models: &Models) -> Result<Inference>;

    /// Builds the response from the input and the outputs of the runs `preprocess` asked for.
    fn postprocess(&self, input: Self::Input, outputs: Outputs) -> Result<Self::Output>;

    /// A valid input, used for warm-up and as the OpenAPI request example.
    fn example(&self) -> Option<Self::Input> {
        None
    }

    /// How requests of different lengths share a batch of `model`: the [`Padding`] of its
    /// variable-length inputs. The default pads nothing, so such requests run one by one.
    fn padding(&self, model: &str) -> Padding {
        let _ = model;
        Padding::new()
    }

    /// Opts into the response cache: the bytes that identify `input`'s answer, or `None` (the
    /// default) not to cache it. [`crate::cache::json_key`] is the usual choice. Return a key
    /// only when the answer depends on nothing but the input and the model versions (which the
    /// framework adds to the key itself).
    fn cache_key(&self, input: &Self::Input) -> Option<Vec<u8>> {
        let _ = input;
        None
    }
}

/// The model runs one request needs, built by [`Pipeline::preprocess`]. Runs execute
/// concurrently.
#[derive(Debug, Default)]
pub struct Inference {
    pub(crate) runs: Vec<Run>,
}

/// One model run: the exact version to use and its inputs.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) model: Arc<Model>,
    pub(crate) inputs: Tensors,
}

impl Inference {
    /// No model runs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a run of `model` on named `inputs`.
    pub fn run<N: Into<String>>(
        mut self,
        model: &Arc<Model>,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
    ) -> Self {
        let inputs = inputs.into_iter().map(|(name, tensor)| (name.into(), tensor)).collect();
        self.runs.push(Run { model: Arc::clone(model), inputs });
        self
    }
}

/// The results of every run of an [`Inference`], in the order the runs were added.
#[derive(Debug)]
pub struct Outputs {
    pub(crate) results: Vec<ModelOutput>,
}

/// One model's output tensors, with the model version that produced them.
#[derive(Debug)]
pub struct ModelOutput {
    pub(crate) model: Arc<Model>,
    pub(crate) tensors: Tensors,
}

impl Outputs {
    /// The output of the first run of the model called `name`.
    pub fn get(&self, name: &str) -> Result<&ModelOutput> {
        self.results
            .iter()
            .find(|output| output.model.name() == name)
            .ok_or_else(|| Error::pipeline(format!("no run of model `{name}` in this request")))
    }

    /// Every run's output, in order.
    pub fn iter(&self) -> impl Iterator<Item = &ModelOutput> {
        self.results.iter()
    }
}

impl ModelOutput {
    /// The model version that produced these outputs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The output called `name`.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            Error::pipeline(format!("model `{}` produced no output `{name}`", self.model.name()))
        })
    }
}
