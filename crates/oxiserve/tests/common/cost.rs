//! `Cost`: a pipeline over the two test models whose cost is what matters, `identity` (a
//! model that costs nothing) and `tanh-chain` (milliseconds per row), for the tests and the
//! benchmark of where a model runs (`tests/integration/inference_threads.rs`, `benches/path.rs`).

use oxiserve::{Context, Error, Inference, Models, Outputs, Pipeline, Result, Tensor};
use serde::{Deserialize, Serialize};

/// The model that costs nothing: `x` FP32 `[batch, 4]` passed through.
pub(crate) const IDENTITY: &str = "identity";
/// The slow model: `x` FP32 `[batch, 128]` through 1000 rounds of `tanh(x @ W)`.
pub(crate) const SLOW: &str = "tanh-chain";

/// Runs the model a request names on its row `x`, and answers the model's output row.
pub(crate) struct Cost;

/// A row for one of the two models.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Row {
    /// [`IDENTITY`] or [`SLOW`].
    pub(crate) model: String,
    /// 4 numbers for [`IDENTITY`], 128 for [`SLOW`].
    pub(crate) x: Vec<f32>,
}

impl Row {
    /// A row of `model`'s width, all `value`.
    pub(crate) fn of(model: &str, value: f32) -> Self {
        let width = if model == SLOW { 128 } else { 4 };
        Row { model: model.into(), x: vec![value; width] }
    }
}

/// The model's output row.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Out {
    /// `y`, the model's output.
    pub(crate) y: Vec<f32>,
}

impl Pipeline for Cost {
    type Input = Row;
    type Output = Out;

    fn name(&self) -> &str {
        "cost"
    }

    fn models(&self) -> Vec<String> {
        vec![IDENTITY.into(), SLOW.into()]
    }

    fn preprocess(&self, input: &Row, _: &Context, models: &Models) -> Result<Inference> {
        if ![IDENTITY, SLOW].contains(&input.model.as_str()) {
            return Err(Error::invalid_field("model", "is neither identity nor tanh-chain"));
        }
        let width = Row::of(&input.model, 0.0).x.len();
        if input.x.len() != width {
            return Err(Error::invalid_field("x", format!("must hold {width} numbers")));
        }
        let row = ndarray::Array2::from_shape_vec((1, input.x.len()), input.x.clone())
            .map_err(|e| Error::pipeline(e.to_string()))?;
        Ok(Inference::new().run(&models.get(&input.model)?, [("x", Tensor::from(row))]))
    }

    fn postprocess(&self, input: Row, _: &Context, outputs: Outputs) -> Result<Out> {
        let y = outputs.get(&input.model)?.tensor("y")?.as_f32()?;
        Ok(Out { y: y.iter().copied().collect() })
    }
}
