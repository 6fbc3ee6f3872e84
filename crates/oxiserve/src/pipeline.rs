//! The [`Pipeline`] trait: the one thing a service author writes.
//!
//! A request flows `Input -> preprocess -> inference -> postprocess -> Output`. The pipeline
//! owns the two ends and everything between models that is business logic; the framework owns
//! transport, validation of the JSON shape, model loading, inference, limits and telemetry.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::config::Config;
use crate::context::Context;
use crate::endpoint::Endpoints;
use crate::error::{Error, Result};
use crate::model::{Model, Models, OutputSet, Padding};
use crate::tensor::{Tensor, Tensors};
use crate::timings::Laps;

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
/// * Both stages, and [`cache_key`](Pipeline::cache_key), see the request's [`Context`]: its
///   headers (REST headers or gRPC metadata alike: a tenant, a feature flag), its id, its
///   deadline and its transport. Warm-up requests come with [`Transport::Internal`](crate::Transport::Internal) and no
///   headers.
/// * [`postprocess`](Pipeline::postprocess) receives the input back together with every model's
///   [`Outputs`] and builds the response: labels, thresholds, business rules.
/// * [`padding`](Pipeline::padding) (optional) lets requests whose inputs differ in length
///   (token sequences) share a dynamic batch.
/// * [`prepare_model`](Pipeline::prepare_model) (optional) parses a version's per-version
///   data (a model card in its manifest) while the version loads, so that bad data fails the
///   load and the version serving keeps serving.
/// * [`heavy_stages`](Pipeline::heavy_stages) (optional) moves the two stages off the async
///   runtime when they take milliseconds (tokenising long texts, decoding images).
/// * [`endpoints`](Pipeline::endpoints) (optional) adds routes of the service's own, in
///   request and response shapes of its choosing, answered by the pipeline.
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
/// `Send + Sync`. By default `preprocess` and `postprocess` run on the async runtime, the
/// cheapest place for CPU work of well under a millisecond; a pipeline whose stages take
/// longer returns `true` from [`heavy_stages`](Pipeline::heavy_stages), and they run on
/// blocking threads (two per core at a time) where they do not delay other requests.
/// Inference itself always runs on dedicated threads.
///
/// # Example
///
/// ```
/// use oxiserve::{Context, Error, Inference, Models, Outputs, Pipeline, Result, Tensor};
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
///     fn preprocess(&self, input: &Input, _: &Context, models: &Models) -> Result<Inference> {
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
///     fn postprocess(&self, input: Input, _: &Context, outputs: Outputs) -> Result<Output> {
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

    /// Validates `input`, builds tensors and picks the model runs; `context` is the request's.
    fn preprocess(
        &self,
        input: &Self::Input,
        context: &Context,
        models: &Models,
    ) -> Result<Inference>;

    /// Builds the response from the input and the outputs of the runs `preprocess` asked for.
    fn postprocess(
        &self,
        input: Self::Input,
        context: &Context,
        outputs: Outputs,
    ) -> Result<Self::Output>;

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
    /// default) not to cache it. [`crate::cache::json_key`] is the usual choice. The key must
    /// hold everything the answer depends on besides the model versions (which the framework
    /// adds itself): when the stages read a header of `context`, the key includes its value.
    fn cache_key(&self, input: &Self::Input, context: &Context) -> Option<Vec<u8>> {
        let _ = (input, context);
        None
    }

    /// Prepares a model version as it loads, before its warm-up: parse its per-version data
    /// (the model card in its manifest) with [`Model::cached`] here. An error fails the
    /// version's load with this reason (shown in `GET /v1/models` and the log), and the
    /// version serving keeps serving. The default prepares nothing.
    fn prepare_model(&self, model: &Model) -> Result<()> {
        let _ = model;
        Ok(())
    }

    /// The service's own routes, served next to the framework's (see
    /// [`Endpoint`](crate::Endpoint)). The default adds none.
    fn endpoints(&self) -> Endpoints<Self::Input, Self::Output> {
        Endpoints::new()
    }

    /// Whether `preprocess` and `postprocess` take long enough (a millisecond or more:
    /// tokenising long texts, decoding images) to run on blocking threads rather than on the
    /// async runtime. The default, `false`, runs them inline, which is cheaper for light work.
    fn heavy_stages(&self) -> bool {
        false
    }

    /// Settings this service needs other than the framework's defaults, such as a larger
    /// `limits.body_bytes` for image uploads. They replace the defaults only: the
    /// configuration file and `OXISERVE_*` variables still win. The default changes nothing.
    fn defaults(&self, config: &mut Config) {
        let _ = config;
    }
}

/// The model runs one request needs, built by [`Pipeline::preprocess`]. Runs execute
/// concurrently.
#[derive(Debug, Default)]
pub struct Inference {
    pub(crate) runs: Vec<Run>,
    /// The parts of `preprocess` it timed itself, for `Server-Timing`.
    pub(crate) laps: Laps,
}

/// One model run: the exact version to use, its inputs and the outputs it produces.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) model: Arc<Model>,
    pub(crate) inputs: Tensors,
    /// The outputs asked for, or the first name asked for that the model does not have.
    pub(crate) outputs: std::result::Result<OutputSet, String>,
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
        // Inserted one by one, not collected: a map collected from an iterator is first
        // gathered in a vector and sorted, an allocation and a sort more for the one or two
        // inputs of most models. The last of two tensors with one name wins, as in `collect`.
        let mut named = Tensors::new();
        for (name, tensor) in inputs {
            named.insert(name.into(), tensor);
        }
        self.runs.push(Run {
            model: Arc::clone(model),
            inputs: named,
            outputs: Ok(OutputSet::ALL),
        });
        self
    }

    /// Adds a run of `model` on named `inputs` that produces only the outputs called `outputs`
    /// ([`ModelOutput::tensor`] finds no other): ONNX Runtime then skips the work only the
    /// others need and copies nothing else back (a classifier's `label` when the pipeline reads
    /// its `probabilities`), and a remote model's server is asked for these alone. A name the
    /// model does not have fails the request as the pipeline's fault (a 500).
    pub fn run_outputs<N: Into<String>>(
        mut self,
        model: &Arc<Model>,
        inputs: impl IntoIterator<Item = (N, Tensor)>,
        outputs: &[&str],
    ) -> Self {
        let selected = OutputSet::named(&model.manifest().outputs, outputs.iter().copied());
        self = self.run(model, inputs);
        if let Some(run) = self.runs.last_mut() {
            run.outputs = selected.map_err(str::to_string);
        }
        self
    }

    /// Reports `laps`, the parts of `preprocess` the pipeline timed (decoding, resizing), in
    /// `Server-Timing` right after `pre`.
    pub fn with_laps(mut self, laps: Laps) -> Self {
        self.laps = laps;
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
