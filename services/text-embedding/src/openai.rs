//! `POST /v1/embeddings`, OpenAI's embeddings API: what OpenAI's own clients (and LangChain,
//! LlamaIndex, ... through them) call. `input` is a text, a list of texts, a list of token ids
//! or a list of those; `encoding_format` is `float` (default) or `base64` (little-endian
//! `f32`s, as the clients decode them); `usage` counts the tokens read. Texts longer than the
//! model's limit are cut, as OpenAI's models do not: OpenAI refuses them, but the clients that
//! call this route expect an answer for long documents, and `/embed` refuses them by default.
//! Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with 400
//! for a request the client must fix, so that the clients raise their own errors with the
//! message.

use oxiserve::{Context, Endpoint, Error, ErrorReply, Failure, Result};
use serde::{Deserialize, Serialize};

use crate::{DIMENSION, EmbedInput, EmbedOutput, Encoding, MODEL_ID, TextInput, Vector};

/// The route.
#[derive(Debug, Clone, Copy)]
pub struct Embeddings;

/// OpenAI's request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsRequest {
    /// What to embed.
    pub input: OpenAiInput,
    /// The model asked for; any name is answered by this service's model, named in the reply.
    pub model: String,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<Encoding>,
    /// The embedding length wanted: only the model's own (384) is served.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// The caller's end user, for abuse tracking: accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

/// `input` in each of the forms OpenAI accepts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OpenAiInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One text's token ids.
    Tokens(Vec<i64>),
    /// Several texts' token ids.
    TokenLists(Vec<Vec<i64>>),
}

/// OpenAI's response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input, in order.
    pub data: Vec<EmbeddingData>,
    /// The model that answered.
    pub model: String,
    /// Tokens read.
    pub usage: Usage,
}

/// One embedding.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// The input's position.
    pub index: usize,
    /// The vector, as numbers or base64.
    pub embedding: Vector,
}

/// Tokens read, `[CLS]` and `[SEP]` included.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens of the inputs.
    pub prompt_tokens: usize,
    /// The same: embeddings generate nothing.
    pub total_tokens: usize,
}

impl Endpoint for Embeddings {
    type Input = EmbedInput;
    type Output = EmbedOutput;
    type Request = EmbeddingsRequest;
    type Response = EmbeddingsResponse;

    fn path(&self) -> &str {
        "/v1/embeddings"
    }

    fn summary(&self) -> String {
        "Embeddings, as OpenAI's API answers them".into()
    }

    fn input(&self, request: EmbeddingsRequest, _: &Context) -> Result<EmbedInput> {
        if let Some(dimensions) = request.dimensions.filter(|&d| d != DIMENSION) {
            let detail =
                format!("{dimensions} is not served: the model's embeddings have {DIMENSION}");
            return Err(Error::invalid_field("dimensions", detail));
        }
        let inputs = match request.input {
            OpenAiInput::Text(text) => vec![TextInput::Text(text)],
            OpenAiInput::Texts(texts) => texts.into_iter().map(TextInput::Text).collect(),
            OpenAiInput::Tokens(ids) => vec![TextInput::Tokens(ids)],
            OpenAiInput::TokenLists(lists) => lists.into_iter().map(TextInput::Tokens).collect(),
        };
        let encoding = request.encoding_format.unwrap_or_default();
        Ok(EmbedInput { inputs, truncate: true, normalize: true, encoding })
    }

    fn output(&self, output: EmbedOutput, _: &Context) -> Result<EmbeddingsResponse> {
        let tokens: usize = output.tokens.iter().sum();
        let data = output
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(index, embedding)| EmbeddingData {
                object: "embedding".into(),
                index,
                embedding,
            })
            .collect();
        Ok(EmbeddingsResponse {
            object: "list".into(),
            data,
            model: MODEL_ID.into(),
            usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
        })
    }

    fn error(&self, failure: &Failure<'_>) -> Option<ErrorReply> {
        // The pipeline names `inputs[i]`; OpenAI's request calls it `input`.
        let param = failure.field.map(|field| field.replacen("inputs", "input", 1));
        let (status, kind) = match failure.status {
            400 | 422 => (400, "invalid_request_error"),
            429 => (429, "rate_limit_error"),
            status @ 400..=499 => (status, "invalid_request_error"),
            status => (status, "server_error"),
        };
        let message = match &param {
            Some(param) => format!("`{param}` {}", failure.detail),
            None => failure.detail.to_string(),
        };
        let body = serde_json::json!({
            "error": {"message": message, "type": kind, "param": param, "code": failure.kind},
        });
        Some(ErrorReply { status, body })
    }

    fn example(&self) -> Option<EmbeddingsRequest> {
        Some(EmbeddingsRequest {
            input: OpenAiInput::Texts(vec!["The food was delicious.".into()]),
            model: MODEL_ID.into(),
            encoding_format: None,
            dimensions: None,
            user: None,
        })
    }
}
