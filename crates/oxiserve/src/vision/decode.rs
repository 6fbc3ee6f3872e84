//! Image files to pixels, refusing before any decoding what a service will not read: an
//! empty file, bytes that are no image (415), a format other than JPEG, PNG and WebP (415),
//! and a header that declares more pixels than [`DecodeLimits::max_pixels`] or a shape more
//! elongated than [`DecodeLimits::max_aspect`] to 1 (a decompression bomb, or a strip: 422).
//! The decoder is limited to the declared size as a second guard. A file that ends early or
//! is corrupt is a 422 saying what the decoder found. Transparency is dropped, as Pillow's
//! `convert("RGB")` drops it; EXIF orientation is not applied: pixels are as stored.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

use crate::error::{Error, Result};

/// What [`decode`] accepts of a file's declared size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most pixels a file may declare. 40 megapixels by default (a 12-megapixel phone
    /// photo fits three times); the decoded buffer is then at most 160 MB.
    pub max_pixels: u64,
    /// How many times longer than its other side one side may be, at most (exclusive). 20 by
    /// default.
    pub max_aspect: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_pixels: 40_000_000, max_aspect: 20 }
    }
}

/// An image's pixels: rows of RGB bytes, top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// `width * height` pixels of 3 bytes (red, green, blue), row after row.
    pub rgb: Vec<u8>,
}

/// The pixels of the image file `bytes`, the request's `field`, within `limits`.
pub fn decode(bytes: &[u8], field: &str, limits: DecodeLimits) -> Result<Pixels> {
    if bytes.is_empty() {
        return Err(Error::invalid_field(field, "is empty"));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        Error::UnsupportedMediaType(format!("{field} is not a JPEG, PNG or WebP image"))
    })?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) {
        return Err(Error::UnsupportedMediaType(format!(
            "{field} is a {format:?} image; this service reads JPEG, PNG and WebP"
        )));
    }
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| Error::invalid_field(field, format!("has no readable header: {e}")))?;
    check_shape(width, height, field, limits)?;
    let mut reader = reader();
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4));
    reader.limits(decoder_limits);
    let image = reader
        .decode()
        .map_err(|e| Error::invalid_field(field, format!("cannot be decoded: {e}")))?;
    let rgb = image.into_rgb8();
    Ok(Pixels { width: rgb.width(), height: rgb.height(), rgb: rgb.into_raw() })
}

/// Refuses a declared `width` x `height` past `limits`.
fn check_shape(width: u32, height: u32, field: &str, limits: DecodeLimits) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        let detail = format!(
            "declares {width}x{height} pixels, more than the {} megapixels this service decodes",
            limits.max_pixels / 1_000_000
        );
        return Err(Error::invalid_field(field, detail));
    }
    let (short, long) = (width.min(height), width.max(height));
    if short == 0 || long / short >= limits.max_aspect {
        let detail = format!(
            "is {width}x{height} pixels: no side may be {} times the other or more",
            limits.max_aspect
        );
        return Err(Error::invalid_field(field, detail));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_past_the_limits_are_refused_before_decoding() {
        let limits = DecodeLimits::default();
        check_shape(3000, 4000, "image", limits).unwrap();
        check_shape(1, 19, "image", limits).unwrap();
        for (width, height) in [(10_000, 10_000), (u32::MAX, u32::MAX), (1, 20), (0, 10), (200, 5)]
        {
            assert!(check_shape(width, height, "image", limits).is_err(), "{width}x{height}");
        }
    }
}
