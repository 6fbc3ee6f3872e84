//! `POST /embed`, the route of Hugging Face's text-embeddings-inference (TEI): `inputs` is a
//! text or a list of texts; `normalize` (default true) and `truncate` (default false, as in
//! TEI: a text past the model's limit is a 422) as TEI takes them. The answer is the bare list
//! of vectors.

use oxiserve::{Context, Endpoint, Error, Result};
use serde::{Deserialize, Serialize};

use crate::{EmbedInput, EmbedOutput, Encoding, TextInput, Vector};

/// The route.
#[derive(Debug, Clone, Copy)]
pub struct Embed;

/// TEI's request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbedRequest {
    /// One text or several.
    pub inputs: TeiInputs,
    /// Scale each embedding to unit length.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Cut texts past the model's limit instead of refusing them.
    #[serde(default)]
    pub truncate: bool,
}

fn yes() -> bool {
    true
}

/// `inputs`: one text or several.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TeiInputs {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

/// TEI's answer: one vector per text.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct EmbedResponse(pub Vec<Vec<f32>>);

impl Endpoint for Embed {
    type Input = EmbedInput;
    type Output = EmbedOutput;
    type Request = EmbedRequest;
    type Response = EmbedResponse;

    fn path(&self) -> &str {
        "/embed"
    }

    fn summary(&self) -> String {
        "Embeddings, as Hugging Face's text-embeddings-inference answers them".into()
    }

    fn input(&self, request: EmbedRequest, _: &Context) -> Result<EmbedInput> {
        let texts = match request.inputs {
            TeiInputs::One(text) => vec![text],
            TeiInputs::Many(texts) => texts,
        };
        Ok(EmbedInput {
            inputs: texts.into_iter().map(TextInput::Text).collect(),
            truncate: request.truncate,
            normalize: request.normalize,
            encoding: Encoding::Float,
        })
    }

    fn output(&self, output: EmbedOutput, _: &Context) -> Result<EmbedResponse> {
        let vectors = output.embeddings.into_iter().map(|vector| match vector {
            Vector::Float(values) => Ok(values),
            Vector::Base64(_) => Err(Error::pipeline("/embed asked for numbers and got base64")),
        });
        Ok(EmbedResponse(vectors.collect::<Result<_>>()?))
    }

    fn example(&self) -> Option<EmbedRequest> {
        Some(EmbedRequest {
            inputs: TeiInputs::Many(vec!["What is deep learning?".into()]),
            normalize: true,
            truncate: false,
        })
    }
}
