//! Image files to pixels, refusing before any decoding what the service will not read: an
//! empty file, bytes that are no image (415), a format other than JPEG, PNG and WebP (415),
//! and a header that declares more than [`MAX_PIXELS`] pixels or a shape more elongated than
//! [`MAX_ASPECT`] to 1 (a decompression bomb, or a strip no page looks like: 422). A file that
//! ends early or is corrupt is a 422 saying what the decoder found. Transparency is dropped,
//! as Pillow's `convert("RGB")` drops it; EXIF orientation is not applied: the model judges
//! the pixels as they are stored.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};
use oxiserve::{Error, Result};

/// The most pixels an image may declare: 40 megapixels (a 12-megapixel phone photo fits
/// three times). Its decoded RGBA buffer is then at most 160 MB.
pub const MAX_PIXELS: u64 = 40_000_000;
/// How much longer than wide (or wider than long) an image may be.
pub const MAX_ASPECT: u32 = 20;

/// The pixels of the image file `bytes`, the request's `field`.
pub(crate) fn decode(bytes: &[u8], field: &str) -> Result<RgbImage> {
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
    check_shape(width, height, field)?;
    let mut reader = reader();
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| Error::invalid_field(field, format!("cannot be decoded: {e}")))?;
    Ok(image.into_rgb8())
}

/// Refuses a declared `width` x `height` past [`MAX_PIXELS`] or [`MAX_ASPECT`].
fn check_shape(width: u32, height: u32, field: &str) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        let detail = format!(
            "declares {width}x{height} pixels, more than the {} megapixels this service decodes",
            MAX_PIXELS / 1_000_000
        );
        return Err(Error::invalid_field(field, detail));
    }
    let (short, long) = (width.min(height), width.max(height));
    if short == 0 || long / short >= MAX_ASPECT {
        let detail = format!(
            "is {width}x{height} pixels: no side may be {MAX_ASPECT} times the other or more"
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
        check_shape(3000, 4000, "image").unwrap();
        check_shape(1, 19, "image").unwrap();
        for (width, height) in [(10_000, 10_000), (u32::MAX, u32::MAX), (1, 20), (0, 10), (200, 5)]
        {
            assert!(check_shape(width, height, "image").is_err(), "{width}x{height}");
        }
    }
}
