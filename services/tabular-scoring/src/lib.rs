//! Penguin species scoring: the reference tabular service.
//!
//! A request describes one penguin (island, sex, four body measurements, any of the
//! measurements possibly missing). The pipeline imputes, scales and one-hot encodes it with the
//! parameters stored in the model's manifest, runs the linear model (`mode: fast`), the random
//! forest (`accurate`, the default) or both averaged (`ensemble`), and flags predictions that
//! need a human: low confidence, or mostly imputed measurements.
//!
//! # Layout
//! - this file: the request and response types and the [`Pipeline`] impl;
//! - `features`: the model card in the manifest, and the encoding of a request.

mod answers;
mod features;

use std::collections::BTreeMap;

use ndarray::Ix2;
use oxiserve::{Context, Error, Inference, Model, Models, Outputs, Pipeline, Result, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::features::ModelCard;

/// The linear model: fast, well calibrated on this data set.
pub const LINEAR: &str = "penguins-linear";
/// The random forest: handles interactions, the default.
pub const FOREST: &str = "penguins-forest";

/// The tabular-scoring pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct TabularScoring;

/// One penguin to classify. Measurements may be left out; they are then imputed with the
/// training median, and a prediction from mostly imputed values is flagged for review.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"island": "Biscoe", "sex": "female", "bill_length_mm": 46.1,
    "bill_depth_mm": 13.2, "flipper_length_mm": 211.0, "body_mass_g": 4500.0}))]
pub struct PenguinInput {
    /// Island where the penguin was observed. Islands the model has not seen are accepted and
    /// encoded as none of the known ones.
    pub island: String,
    /// Sex, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
    /// Bill (culmen) length in millimetres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_length_mm: Option<f64>,
    /// Bill (culmen) depth in millimetres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_depth_mm: Option<f64>,
    /// Flipper length in millimetres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flipper_length_mm: Option<f64>,
    /// Body mass in grams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_mass_g: Option<f64>,
    /// Which model(s) to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Predictions less confident than this are flagged for review. Default 0.7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_confidence: Option<f32>,
}

/// A penguin's sex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
}

/// Which model(s) score the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The linear model only.
    Fast,
    /// The random forest only.
    #[default]
    Accurate,
    /// Both models, probabilities averaged.
    Ensemble,
}

/// The species prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    /// The most probable species.
    pub species: String,
    /// Its probability.
    pub confidence: f32,
    /// Probability of every species.
    pub probabilities: BTreeMap<String, f32>,
    /// Whether a person should check this prediction.
    pub needs_review: bool,
    /// Why it needs review; empty when it does not.
    pub review_reasons: Vec<ReviewReason>,
    /// The model versions that produced it.
    pub models: Vec<ModelVersion>,
}

/// A reason to have a person check a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// The confidence is below `min_confidence`.
    LowConfidence,
    /// More than half of the measurements were imputed.
    MostlyImputed,
}

/// A model and the version of it that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelVersion {
    /// Model name.
    pub name: String,
    /// Version number.
    pub version: u64,
}

/// The confidence under which predictions are flagged when the request does not say.
const DEFAULT_MIN_CONFIDENCE: f32 = 0.7;

impl PenguinInput {
    fn models(&self) -> &'static [&'static str] {
        match self.mode.unwrap_or_default() {
            Mode::Fast => &[LINEAR],
            Mode::Accurate => &[FOREST],
            Mode::Ensemble => &[LINEAR, FOREST],
        }
    }
}

impl Pipeline for TabularScoring {
    type Input = PenguinInput;
    type Output = Prediction;

    fn name(&self) -> &str {
        "tabular-scoring"
    }

    fn models(&self) -> Vec<String> {
        vec![LINEAR.into(), FOREST.into()]
    }

    fn preprocess(&self, input: &PenguinInput, _: &Context, models: &Models) -> Result<Inference> {
        if let Some(threshold) = input.min_confidence.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(Error::invalid_field(
                "min_confidence",
                format!("{threshold} is not between 0 and 1"),
            ));
        }
        input.models().iter().try_fold(Inference::new(), |inference, name| {
            let model = models.get(name)?;
            let card = model.cached(ModelCard::from_manifest)?;
            let features = Tensor::from(card.preprocessing.encode(input)?);
            // Only the probabilities are read: ONNX Runtime skips handing back the label.
            Ok(inference.run_outputs(&model, [("features", features)], &["probabilities"]))
        })
    }

    fn postprocess(
        &self,
        input: PenguinInput,
        _: &Context,
        outputs: Outputs,
    ) -> Result<Prediction> {
        let mut classes: Option<&[String]> = None;
        let mut sum: Vec<f32> = Vec::new();
        let mut models = Vec::new();
        let mut imputed_share: f32 = 0.0;
        for output in outputs.iter() {
            let model = output.model();
            let card = model.cached(ModelCard::from_manifest)?;
            if classes.is_some_and(|c| c != card.classes.as_slice()) {
                return Err(Error::pipeline("the models disagree on the class names"));
            }
            classes = Some(&card.classes);
            let probabilities = output.tensor("probabilities")?.as_f32()?;
            // Two dimensions known to the compiler: a row is then walked as a strided slice,
            // not index by index through a shape of any length.
            let probabilities = probabilities
                .into_dimensionality::<Ix2>()
                .map_err(|e| Error::pipeline(format!("probabilities: {e}")))?;
            let row = probabilities
                .rows()
                .into_iter()
                .next()
                .ok_or_else(|| Error::pipeline("empty output"))?;
            sum.resize(row.len(), 0.0);
            sum.iter_mut().zip(row).for_each(|(s, p)| *s += p);
            let missing = card.preprocessing.imputed(&input) as f32;
            imputed_share =
                imputed_share.max(missing / card.preprocessing.measurement_count() as f32);
            models.push(ModelVersion { name: model.name().into(), version: model.version() });
        }
        let classes = classes.ok_or_else(|| Error::pipeline("no model ran"))?;
        let mut probabilities = sum;
        probabilities.iter_mut().for_each(|p| *p /= models.len() as f32);
        let (best, &confidence) = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .ok_or_else(|| Error::pipeline("the model returned no probabilities"))?;
        let species =
            classes.get(best).ok_or_else(|| Error::pipeline("a class index is out of range"))?;

        let mut review_reasons = Vec::new();
        if confidence < input.min_confidence.unwrap_or(DEFAULT_MIN_CONFIDENCE) {
            review_reasons.push(ReviewReason::LowConfidence);
        }
        if imputed_share > 0.5 {
            review_reasons.push(ReviewReason::MostlyImputed);
        }
        let needs_review = !review_reasons.is_empty();
        for output in outputs.iter() {
            output.model().cached(ModelCard::from_manifest)?.answers.record(needs_review);
        }
        Ok(Prediction {
            species: species.clone(),
            confidence,
            // Inserted one by one: collected, the map would first gather its entries in a
            // vector and sort them, one allocation more on every answer.
            probabilities: classes.iter().zip(&probabilities).fold(
                BTreeMap::new(),
                |mut by_class, (class, &probability)| {
                    by_class.insert(class.clone(), probability);
                    by_class
                },
            ),
            needs_review,
            review_reasons,
            models,
        })
    }

    /// The model card is parsed as each version loads: a version without a usable one never
    /// serves.
    fn prepare_model(&self, model: &Model) -> Result<()> {
        model.cached(ModelCard::from_manifest).map(drop)
    }

    /// Answers depend only on the input and the model versions: cache them.
    fn cache_key(&self, input: &PenguinInput, _: &Context) -> Option<Vec<u8>> {
        oxiserve::cache::json_key(input)
    }

    fn example(&self) -> Option<PenguinInput> {
        Some(PenguinInput {
            island: "Biscoe".into(),
            sex: Some(Sex::Female),
            bill_length_mm: Some(46.1),
            bill_depth_mm: Some(13.2),
            flipper_length_mm: Some(211.0),
            body_mass_g: Some(4500.0),
            mode: Some(Mode::Ensemble),
            min_confidence: None,
        })
    }
}
