//! Vision models (feature `vision`): what a service needs around an image classifier or
//! detector exported to ONNX, so that its pipeline holds only its own rules.
//!
//! - [`ImageFile`]: an image file's bytes in a request, written in JSON as base64.
//! - [`decode`]: a file to RGB [`Pixels`], refusing before any pixel is decoded what a service
//!   must not read (no image, another format, a header declaring a decompression bomb).
//! - [`Preprocessing`]: pixels to the model's input tensor as it was trained (resize the
//!   shorter side, crop the centre, channel order, mean and deviation), read from the version's
//!   manifest (`metadata.preprocessing`), so a new version brings its own.
//!
//! A route that takes image files as they are lists [`IMAGE_TYPES`] in
//! `Endpoint::media_types`.

mod decode;
mod preprocessing;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::decode::{DecodeLimits, Pixels, decode};
pub use self::preprocessing::{Channels, Preprocessing};

/// The media types of the image files [`decode`] reads.
pub const IMAGE_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// The bytes of an image file (JPEG, PNG or WebP), written in JSON as base64.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ImageFile(pub Vec<u8>);

impl std::fmt::Debug for ImageFile {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ImageFile({} bytes)", self.0.len())
    }
}

impl Serialize for ImageFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for ImageFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(ImageFile)
            .map_err(|e| serde::de::Error::custom(format!("is not base64: {e}")))
    }
}

impl utoipa::PartialSchema for ImageFile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
            .description(Some("An image file (JPEG, PNG or WebP), base64"))
            .into()
    }
}

impl utoipa::ToSchema for ImageFile {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_files_are_base64_in_json() {
        let file = ImageFile(vec![0, 1, 2, 250]);
        let json = serde_json::to_string(&file).unwrap();
        assert_eq!(json, r#""AAEC+g==""#);
        assert_eq!(serde_json::from_str::<ImageFile>(&json).unwrap(), file);
        let error = serde_json::from_str::<ImageFile>(r#""not base64!""#).unwrap_err();
        assert!(error.to_string().contains("is not base64"), "{error}");
    }
}
