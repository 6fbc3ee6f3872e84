//! Feature encoding: a request to the model's feature row, with the parameters the trainer
//! stored in the model's manifest (imputation, scaling, vocabularies, valid ranges).
//!
//! This mirrors `preprocess` in `trainer/train_penguins.py`; the parity tests hold the two
//! together. Arithmetic is done in `f64` and rounded to `f32` once, as in Python.

use ndarray::Array2;
use oxiserve::model::Manifest;
use oxiserve::{Error, Result};
use serde::Deserialize;

use crate::PenguinInput;
use crate::answers::Answers;

/// What the trainer recorded about one model version: class names and preprocessing.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelCard {
    /// Class names, indexed by the model's integer labels.
    pub(crate) classes: Vec<String>,
    /// How to turn a request into features.
    pub(crate) preprocessing: Preprocessing,
    /// The answers this model took part in, by whether they need review.
    #[serde(skip)]
    pub(crate) answers: Answers,
}

/// Preprocessing parameters, learnt on the training split.
#[derive(Debug, Deserialize)]
pub(crate) struct Preprocessing {
    numeric: Vec<NumericFeature>,
    categorical: Vec<CategoricalFeature>,
    feature_order: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct NumericFeature {
    name: String,
    impute: f64,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Deserialize)]
struct CategoricalFeature {
    name: String,
    vocabulary: Vec<String>,
}

impl ModelCard {
    /// Reads and checks the card in `manifest.metadata`.
    pub(crate) fn from_manifest(manifest: &Manifest) -> Result<Self> {
        let mut card: ModelCard =
            serde_json::from_value(manifest.metadata.clone()).map_err(|e| {
                Error::pipeline(format!("{}: metadata is not a model card: {e}", manifest.label()))
            })?;
        let p = &card.preprocessing;
        let expected: Vec<String> = p
            .numeric
            .iter()
            .map(|n| n.name.clone())
            .chain(
                p.categorical
                    .iter()
                    .flat_map(|c| c.vocabulary.iter().map(|v| format!("{}={v}", c.name))),
            )
            .collect();
        if expected != p.feature_order {
            return Err(Error::pipeline(format!(
                "{}: feature_order {:?} does not follow the numeric then one-hot layout {expected:?}",
                manifest.label(),
                p.feature_order
            )));
        }
        for feature in &p.numeric {
            PenguinInput::measurement_by_name(&feature.name, &PenguinInput::default())?;
        }
        card.answers = Answers::of(&manifest.name);
        Ok(card)
    }
}

impl Preprocessing {
    /// Encodes one request as a `1 x features` row. Measurements outside the trained range
    /// are client errors naming the field.
    pub(crate) fn encode(&self, input: &PenguinInput) -> Result<Array2<f32>> {
        let mut row = Vec::with_capacity(self.feature_order.len());
        for feature in &self.numeric {
            let value = match PenguinInput::measurement_by_name(&feature.name, input)? {
                None => feature.impute,
                Some(v) if v.is_finite() && (feature.min..=feature.max).contains(&v) => v,
                Some(v) => {
                    return Err(Error::invalid_field(
                        &feature.name,
                        format!("{v} is outside the valid range {}..={}", feature.min, feature.max),
                    ));
                }
            };
            row.push(((value - feature.mean) / feature.std) as f32);
        }
        for feature in &self.categorical {
            let value = input.category_by_name(&feature.name)?;
            row.extend(
                feature
                    .vocabulary
                    .iter()
                    .map(|v| if value == Some(v.as_str()) { 1.0 } else { 0.0 }),
            );
        }
        Ok(Array2::from_shape_vec((1, row.len()), row).expect("the row has one entry per feature"))
    }

    /// The names of the measurements `input` leaves out, to be imputed.
    pub(crate) fn imputed<'a>(&'a self, input: &PenguinInput) -> Vec<&'a str> {
        self.numeric
            .iter()
            .filter(|f| matches!(PenguinInput::measurement_by_name(&f.name, input), Ok(None)))
            .map(|f| f.name.as_str())
            .collect()
    }

    /// How many measurements the model uses.
    pub(crate) fn measurement_count(&self) -> usize {
        self.numeric.len()
    }
}
