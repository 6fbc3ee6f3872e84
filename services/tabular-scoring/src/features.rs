//! Feature encoding: a request to the model's feature row, with the parameters the trainer
//! stored in the model's manifest (imputation, scaling, vocabularies, valid ranges).
//!
//! This mirrors `preprocess` in `trainer/train_penguins.py`; the parity tests hold the two
//! together. Arithmetic is done in `f64` and rounded to `f32` once, as in Python.

use ndarray::Array2;
use oxiserve::model::Manifest;
use oxiserve::{Error, Result};
use serde::Deserialize;

use crate::answers::Answers;
use crate::{PenguinInput, Sex};

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
    /// The request's field, by its name.
    #[serde(rename = "name")]
    measurement: Measurement,
    impute: f64,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Deserialize)]
struct CategoricalFeature {
    /// The request's field, by its name.
    #[serde(rename = "name")]
    category: Category,
    vocabulary: Vec<String>,
}

/// A measurement a model card may use, named as the request's field: the name is read once,
/// as the card is, not on every request.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Measurement {
    BillLengthMm,
    BillDepthMm,
    FlipperLengthMm,
    BodyMassG,
}

impl Measurement {
    /// The request's field.
    fn name(self) -> &'static str {
        match self {
            Self::BillLengthMm => "bill_length_mm",
            Self::BillDepthMm => "bill_depth_mm",
            Self::FlipperLengthMm => "flipper_length_mm",
            Self::BodyMassG => "body_mass_g",
        }
    }

    /// Its value in `input`, if given.
    fn of(self, input: &PenguinInput) -> Option<f64> {
        match self {
            Self::BillLengthMm => input.bill_length_mm,
            Self::BillDepthMm => input.bill_depth_mm,
            Self::FlipperLengthMm => input.flipper_length_mm,
            Self::BodyMassG => input.body_mass_g,
        }
    }
}

/// A categorical field a model card may use, named as the request's field.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Category {
    Island,
    Sex,
}

impl Category {
    /// The request's field.
    fn name(self) -> &'static str {
        match self {
            Self::Island => "island",
            Self::Sex => "sex",
        }
    }

    /// Its value in `input`, if given.
    fn of(self, input: &PenguinInput) -> Option<&str> {
        match self {
            Self::Island => Some(input.island.as_str()),
            Self::Sex => input.sex.map(|sex| match sex {
                Sex::Female => "female",
                Sex::Male => "male",
            }),
        }
    }
}

impl ModelCard {
    /// Reads and checks the card in `manifest.metadata`.
    pub(crate) fn from_manifest(manifest: &Manifest) -> Result<Self> {
        let mut card: ModelCard =
            serde_json::from_value(manifest.metadata.clone()).map_err(|e| {
                Error::pipeline(format!("{}: metadata is not a model card: {e}", manifest.label()))
            })?;
        let p = &card.preprocessing;
        let expected: Vec<String> =
            p.numeric
                .iter()
                .map(|n| n.measurement.name().to_string())
                .chain(p.categorical.iter().flat_map(|c| {
                    c.vocabulary.iter().map(|v| format!("{}={v}", c.category.name()))
                }))
                .collect();
        if expected != p.feature_order {
            return Err(Error::pipeline(format!(
                "{}: feature_order {:?} does not follow the numeric then one-hot layout {expected:?}",
                manifest.label(),
                p.feature_order
            )));
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
            let value = match feature.measurement.of(input) {
                None => feature.impute,
                Some(v) if v.is_finite() && (feature.min..=feature.max).contains(&v) => v,
                Some(v) => {
                    return Err(Error::invalid_field(
                        feature.measurement.name(),
                        format!("{v} is outside the valid range {}..={}", feature.min, feature.max),
                    ));
                }
            };
            row.push(((value - feature.mean) / feature.std) as f32);
        }
        for feature in &self.categorical {
            let value = feature.category.of(input);
            row.extend(
                feature
                    .vocabulary
                    .iter()
                    .map(|v| if value == Some(v.as_str()) { 1.0 } else { 0.0 }),
            );
        }
        Ok(Array2::from_shape_vec((1, row.len()), row).expect("the row has one entry per feature"))
    }

    /// How many of the measurements the model uses `input` leaves out, to be imputed.
    pub(crate) fn imputed(&self, input: &PenguinInput) -> usize {
        self.numeric.iter().filter(|f| f.measurement.of(input).is_none()).count()
    }

    /// How many measurements the model uses.
    pub(crate) fn measurement_count(&self) -> usize {
        self.numeric.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed linear model's manifest, with its card edited by `edit`.
    fn manifest(edit: impl FnOnce(&mut serde_json::Value)) -> Manifest {
        let text = include_str!("../models/penguins-linear/1/manifest.json");
        let mut manifest: Manifest = serde_json::from_str(text).unwrap();
        edit(&mut manifest.metadata);
        manifest
    }

    #[test]
    fn a_card_reads_each_field_it_names_from_the_request() {
        let card = ModelCard::from_manifest(&manifest(|_| ())).unwrap();
        let input = PenguinInput {
            island: "Dream".into(),
            sex: Some(Sex::Male),
            bill_length_mm: Some(50.0),
            flipper_length_mm: Some(200.0),
            ..PenguinInput::default()
        };
        let p = &card.preprocessing;
        let row = p.encode(&input).unwrap();
        let numeric = |index: usize, value: f64| {
            let feature = &p.numeric[index];
            ((value - feature.mean) / feature.std) as f32
        };
        // bill_depth_mm and body_mass_g are left out: imputed.
        let measured = [50.0, p.numeric[1].impute, 200.0, p.numeric[3].impute];
        for (index, value) in measured.into_iter().enumerate() {
            assert_eq!(row[[0, index]], numeric(index, value), "{}", p.feature_order[index]);
        }
        let hot: Vec<&str> = p.feature_order[4..]
            .iter()
            .zip(row.row(0).iter().skip(4))
            .filter(|(_, one)| **one == 1.0)
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(hot, ["island=Dream", "sex=male"]);
        assert_eq!(p.imputed(&input), 2);
    }

    #[test]
    fn a_card_that_names_a_field_the_request_does_not_have_is_refused() {
        let unknown = manifest(|card| {
            card["preprocessing"]["numeric"][0]["name"] = "beak_length_mm".into();
        });
        let error = ModelCard::from_manifest(&unknown).unwrap_err().to_string();
        assert!(error.contains("beak_length_mm"), "{error}");
        let unknown =
            manifest(|card| card["preprocessing"]["categorical"][0]["name"] = "colony".into());
        let error = ModelCard::from_manifest(&unknown).unwrap_err().to_string();
        assert!(error.contains("colony"), "{error}");
    }
}
