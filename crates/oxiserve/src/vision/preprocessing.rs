//! Pixels to a classifier's input as it was trained, the way torchvision, PaddleClas and
//! timm models are: the shorter side resized (Lanczos-3, the longer in proportion, rounded),
//! the centre square cut out, channels in the model's order, each scaled to [0, 1] and
//! standardised with a mean and deviation, laid out channels first. The parameters are a
//! model version's, from `metadata.preprocessing` in its manifest:
//!
//! ```json
//! {"resize_shorter_side": 256, "crop": 224, "channels": "BGR",
//!  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
//! ```
//!
//! The resize is `fast_image_resize`'s (SIMD convolution in fixed point, as Pillow's
//! `LANCZOS`: image-orientation's answers are within 0.0002 of a Pillow twin's; 5 to 10 times
//! faster than the `image` crate's own resize, docs/benchmarks.md).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use ndarray::Array4;
use serde::Deserialize;

use super::Pixels;
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// The order of the colour channels a model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Channels {
    /// Red, green, blue (torchvision, timm).
    #[serde(rename = "RGB")]
    Rgb,
    /// Blue, green, red (models trained on OpenCV's decoding).
    #[serde(rename = "BGR")]
    Bgr,
}

/// How a model version's input is made from pixels (see the module documentation).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// The side the shorter side is resized to.
    pub resize_shorter_side: u32,
    /// The side of the square cut from the centre: the model's input is `crop` x `crop`.
    pub crop: u32,
    /// The channel order.
    pub channels: Channels,
    /// The mean subtracted from each channel, in `channels`' order, after scaling to [0, 1].
    pub mean: [f32; 3],
    /// The deviation each channel is divided by, likewise.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// The preprocessing `manifest`'s `metadata.preprocessing` describes; an error naming the
    /// version when it is missing or makes no sense, so that such a version never serves.
    pub fn from_manifest(manifest: &Manifest) -> Result<Self> {
        let invalid = |what: String| {
            Error::pipeline(format!("{}: metadata.preprocessing {what}", manifest.label()))
        };
        let value =
            manifest.metadata.get("preprocessing").ok_or_else(|| invalid("is missing".into()))?;
        let preprocessing =
            Self::deserialize(value).map_err(|e| invalid(format!("is not valid: {e}")))?;
        if preprocessing.crop == 0 || preprocessing.crop > preprocessing.resize_shorter_side {
            return Err(invalid("needs 0 < crop <= resize_shorter_side".into()));
        }
        if !preprocessing.std.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(invalid("needs deviations above 0".into()));
        }
        Ok(preprocessing)
    }

    /// The model's input for `pixels`: `[1, 3, crop, crop]`; [`resize`](Self::resize) then
    /// [`standardise`](Self::standardise), for a pipeline that does not time them apart.
    pub fn tensor(&self, pixels: &Pixels) -> Result<Array4<f32>> {
        self.standardise(&self.resize(pixels)?)
    }

    /// `pixels` with the shorter side resized to `resize_shorter_side` (Lanczos-3) and the
    /// longer in proportion, never below `crop`.
    pub fn resize(&self, pixels: &Pixels) -> Result<Pixels> {
        let Pixels { width, height, .. } = *pixels;
        let scale = f64::from(self.resize_shorter_side) / f64::from(width.min(height));
        let size = |side: u32| (f64::from(side) * scale).round().max(f64::from(self.crop)) as u32;
        let (resized_width, resized_height) = (size(width), size(height));
        let failed = |e: &dyn std::fmt::Display| Error::pipeline(format!("resizing: {e}"));
        let source =
            ImageRef::new(width, height, &pixels.rgb, PixelType::U8x3).map_err(|e| failed(&e))?;
        let mut resized = Image::new(resized_width, resized_height, PixelType::U8x3);
        let lanczos = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        Resizer::new().resize(&source, &mut resized, &lanczos).map_err(|e| failed(&e))?;
        Ok(Pixels { width: resized_width, height: resized_height, rgb: resized.into_vec() })
    }

    /// The model's input from `resized` pixels (see [`resize`](Self::resize)): the centre
    /// `crop` x `crop` square, channels in the model's order, standardised, `[1, 3, crop,
    /// crop]`. An error when a side of `resized` is shorter than `crop`.
    pub fn standardise(&self, resized: &Pixels) -> Result<Array4<f32>> {
        let (width, height) = (resized.width as usize, resized.height as usize);
        let crop = self.crop as usize;
        if width < crop || height < crop || resized.rgb.len() != width * height * 3 {
            return Err(Error::pipeline(format!(
                "standardising: {width}x{height} pixels ({} bytes) hold no {crop}x{crop} crop",
                resized.rgb.len()
            )));
        }
        let (left, top, row) = ((width - crop) / 2, (height - crop) / 2, width * 3);
        let bytes = &resized.rgb;
        Ok(Array4::from_shape_fn((1, 3, crop, crop), |(_, channel, y, x)| {
            let byte = match self.channels {
                Channels::Rgb => channel,
                Channels::Bgr => 2 - channel,
            };
            let value = f32::from(bytes[(top + y) * row + (left + x) * 3 + byte]) / 255.0;
            (value - self.mean[channel]) / self.std[channel]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imagenet(channels: Channels) -> Preprocessing {
        Preprocessing {
            resize_shorter_side: 256,
            crop: 224,
            channels,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    #[test]
    fn a_flat_image_becomes_its_standardised_colour_in_the_models_channel_order() {
        let pixels = Pixels { width: 500, height: 300, rgb: [255, 128, 0].repeat(500 * 300) };
        for (channels, order) in
            [(Channels::Bgr, [0.0, 128.0, 255.0]), (Channels::Rgb, [255.0, 128.0, 0.0])]
        {
            let preprocessing = imagenet(channels);
            let input = preprocessing.tensor(&pixels).unwrap();
            assert_eq!(input.shape(), [1, 3, 224, 224]);
            for (channel, value) in order.into_iter().enumerate() {
                let expected =
                    (value / 255.0 - preprocessing.mean[channel]) / preprocessing.std[channel];
                let got = input[[0, channel, 100, 100]];
                assert!((got - expected).abs() < 1e-3, "{channels:?} {channel}: {got}");
            }
        }
    }

    #[test]
    fn the_shorter_side_is_resized_and_too_small_pixels_are_not_standardised() {
        let preprocessing = imagenet(Channels::Rgb);
        let pixels = Pixels { width: 1000, height: 600, rgb: vec![7; 1000 * 600 * 3] };
        let resized = preprocessing.resize(&pixels).unwrap();
        assert_eq!((resized.width, resized.height), (427, 256));
        assert_eq!(resized.rgb.len(), 427 * 256 * 3);
        assert!(preprocessing.standardise(&pixels).is_ok());
        let small = Pixels { width: 300, height: 200, rgb: vec![7; 300 * 200 * 3] };
        assert!(preprocessing.standardise(&small).is_err());
        let short = Pixels { width: 300, height: 300, rgb: vec![7; 10] };
        assert!(preprocessing.standardise(&short).is_err());
    }

    #[test]
    fn a_manifest_says_how_and_nonsense_is_refused() {
        let manifest = |preprocessing: serde_json::Value| -> Manifest {
            serde_json::from_value(serde_json::json!({
                "format_version": 1, "name": "m", "version": 1,
                "created_at": "2026-12-03T00:00:00Z", "files": {}, "inputs": [], "outputs": [],
                "metadata": {"preprocessing": preprocessing},
            }))
            .unwrap()
        };
        let good = serde_json::json!({
            "resize_shorter_side": 256, "crop": 224, "channels": "BGR",
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        });
        assert_eq!(
            Preprocessing::from_manifest(&manifest(good.clone())).unwrap(),
            imagenet(Channels::Bgr)
        );
        for (key, value) in [
            ("crop", serde_json::json!(300)),
            ("channels", serde_json::json!("GBR")),
            ("std", serde_json::json!([0.2, 0.0, 0.2])),
        ] {
            let mut bad = good.clone();
            bad[key] = value;
            assert!(Preprocessing::from_manifest(&manifest(bad)).is_err(), "{key}");
        }
    }
}
