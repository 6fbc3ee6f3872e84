//! The service's own routes, on the same pipeline as `/v1/predict`:
//!
//! - `POST /v1/orientation`: one image, sent as it is (`Content-Type: image/jpeg`,
//!   `image/png` or `image/webp`), as the file of a multipart upload
//!   (`curl -F file=@page.jpg`), or as `{"image": "<base64>"}`; answers one [`Page`].
//! - `POST /v1/orientation/batch`: `{"images": ["<base64>", ...]}`, up to 16; answers
//!   `{"pages": [...]}` in order, like `/v1/predict`.

use oxiserve::{Context, Endpoint, Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use oxiserve::vision::IMAGE_TYPES;

use crate::{ImageFile, Input, Output, Page};

/// `/v1/orientation`: one image.
#[derive(Debug, Clone, Copy, Default)]
pub struct Orientation;

/// One image, base64, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneImage {
    /// The image file, base64.
    pub image: ImageFile,
}

impl Endpoint for Orientation {
    type Input = Input;
    type Output = Output;
    type Request = OneImage;
    type Response = Page;

    fn path(&self) -> &str {
        "/v1/orientation"
    }

    fn summary(&self) -> String {
        "How one page is turned: the image as it is, uploaded, or base64 in JSON".into()
    }

    fn media_types(&self) -> &[&'static str] {
        &IMAGE_TYPES
    }

    /// The image as sent; its format is read from its bytes, whatever it was declared as.
    fn read(&self, body: &[u8], _: &str, _: &Context) -> Result<OneImage> {
        Ok(OneImage { image: ImageFile(body.to_vec()) })
    }

    fn input(&self, request: OneImage, _: &Context) -> Result<Input> {
        Ok(Input { images: vec![request.image] })
    }

    fn output(&self, output: Output, _: &Context) -> Result<Page> {
        output.pages.into_iter().next().ok_or_else(|| Error::pipeline("no page for the image"))
    }
}

/// `/v1/orientation/batch`: several images in one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch;

impl Endpoint for Batch {
    type Input = Input;
    type Output = Output;
    type Request = Input;
    type Response = Output;

    fn path(&self) -> &str {
        "/v1/orientation/batch"
    }

    fn summary(&self) -> String {
        "How each of several pages is turned, in order".into()
    }

    fn input(&self, request: Input, _: &Context) -> Result<Input> {
        Ok(request)
    }

    fn output(&self, output: Output, _: &Context) -> Result<Output> {
        Ok(output)
    }
}
