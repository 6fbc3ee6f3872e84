//! Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX): texts are tokenised in Rust with the
//! model version's own `tokenizer.json`, each text is one model run that the core batches with
//! other requests' texts (padded to the longest, its output cut back), and the per-token
//! states are mean-pooled and L2-normalised: the core's `oxiserve::text` does each step. Served as the typed `/v1/predict`, the OpenAI
//! `/v1/embeddings` ([`openai`]) and TEI's `/embed` ([`tei`]); KServe v2 serves the raw model.
//!
//! Limits: at most [`MAX_ITEMS`] inputs per request and [`MAX_CHARS`] characters per text; an
//! empty list or text, or a text past the model's token limit when truncation is off, is a
//! 422 naming the input.

pub mod openai;
pub mod tei;

use ndarray::Ix3;
use oxiserve::text::{self, Encoder};
use oxiserve::{
    Context, Endpoints, Error, Inference, Model, Models, Outputs, Padding, Pipeline, Result,
};
use serde::{Deserialize, Serialize};

/// The model's name in the repository.
pub const MODEL: &str = "minilm";
/// The model's name in responses (OpenAI's `model`).
pub const MODEL_ID: &str = "all-MiniLM-L6-v2";
/// The most inputs one request may carry.
pub const MAX_ITEMS: usize = 256;
/// The length of every embedding; a version whose manifest says otherwise does not load.
pub const DIMENSION: usize = 384;
/// The most characters one text may have: tokenising is linear in it, and the model reads
/// at most a few hundred words anyway.
pub const MAX_CHARS: usize = 20_000;

/// The pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextEmbedding;

/// What `/v1/predict` takes: texts (or token ids) to embed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedInput {
    /// The texts, or token ids of the model's vocabulary (without `[CLS]` and `[SEP]`, which
    /// are added), one embedding each.
    pub inputs: Vec<TextInput>,
    /// Cut inputs longer than the model's limit (256 tokens) instead of refusing them.
    #[serde(default = "yes")]
    pub truncate: bool,
    /// Scale each embedding to unit length (cosine similarity is then a dot product).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// How the embeddings are written: `float` (JSON numbers, the default) or `base64` (the
    /// little-endian `f32` bytes: a third of the size).
    #[serde(default)]
    pub encoding: Encoding,
}

/// How embeddings are written in an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// JSON numbers.
    #[default]
    Float,
    /// base64 of the little-endian `f32` bytes.
    Base64,
}

/// One embedding, in the encoding asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Vector {
    /// Numbers.
    Float(Vec<f32>),
    /// base64 of the little-endian `f32` bytes.
    Base64(String),
}

impl Vector {
    /// `values` written as `encoding` says.
    fn encode(values: Vec<f32>, encoding: Encoding) -> Self {
        use base64::Engine as _;
        match encoding {
            Encoding::Float => Self::Float(values),
            Encoding::Base64 => {
                let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                Self::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        }
    }
}

fn yes() -> bool {
    true
}

/// One input: a text, or the token ids of one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TextInput {
    /// A text.
    Text(String),
    /// Token ids.
    Tokens(Vec<i64>),
}

/// What `/v1/predict` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbedOutput {
    /// One embedding per input, in order.
    pub embeddings: Vec<Vector>,
    /// The tokens the model read for each input, `[CLS]` and `[SEP]` included.
    pub tokens: Vec<usize>,
}

impl Pipeline for TextEmbedding {
    type Input = EmbedInput;
    type Output = EmbedOutput;

    fn name(&self) -> &str {
        "text-embedding"
    }

    fn models(&self) -> Vec<String> {
        vec![MODEL.into()]
    }

    fn preprocess(&self, input: &EmbedInput, _: &Context, models: &Models) -> Result<Inference> {
        check_limits(&input.inputs)?;
        let model = models.get(MODEL)?;
        let encoder = Encoder::of(&model)?;
        let mut inference = Inference::new();
        for (index, item) in input.inputs.iter().enumerate() {
            let field = format!("inputs[{index}]");
            let encoded = match item {
                TextInput::Text(text) => encoder.encode(text, &field, input.truncate)?,
                TextInput::Tokens(ids) => encoder.encode_ids(ids, &field, input.truncate)?,
            };
            inference = inference.run(&model, encoded.inputs()?);
        }
        Ok(inference)
    }

    fn postprocess(&self, input: EmbedInput, _: &Context, outputs: Outputs) -> Result<EmbedOutput> {
        let mut embeddings = Vec::with_capacity(input.inputs.len());
        let mut tokens = Vec::with_capacity(input.inputs.len());
        for output in outputs.iter() {
            let states = output.tensor("last_hidden_state")?.as_f32()?;
            let states = states
                .into_dimensionality::<Ix3>()
                .map_err(|e| Error::pipeline(format!("last_hidden_state: {e}")))?;
            let states = states.index_axis(ndarray::Axis(0), 0);
            tokens.push(states.nrows());
            embeddings
                .push(Vector::encode(text::mean_pool(states, input.normalize), input.encoding));
        }
        Ok(EmbedOutput { embeddings, tokens })
    }

    /// Texts of different lengths share a run: ids, mask and types are padded with 0 to the
    /// longest, and each text's states are cut back to its own tokens.
    fn padding(&self, _: &str) -> Padding {
        text::padding("last_hidden_state")
    }

    /// The tokenizer is read and checked as each version loads, and its embeddings must have
    /// this service's length.
    fn prepare_model(&self, model: &Model) -> Result<()> {
        Encoder::of(model)?;
        let dimension = text::metadata_count(model.manifest(), "dimension")?;
        if dimension != DIMENSION {
            let label = model.manifest().label();
            let detail =
                format!("metadata.dimension is {dimension}; this service serves {DIMENSION}");
            return Err(Error::pipeline(format!("{label}: {detail}")));
        }
        Ok(())
    }

    /// Embeddings depend on the input alone (and the version): cache them.
    fn cache_key(&self, input: &EmbedInput, _: &Context) -> Option<Vec<u8>> {
        oxiserve::cache::json_key(input)
    }

    /// Tokenising a request of many long texts takes milliseconds: off the async runtime.
    fn heavy_stages(&self) -> bool {
        true
    }

    fn endpoints(&self) -> Endpoints<EmbedInput, EmbedOutput> {
        Endpoints::new().post(openai::Embeddings).post(tei::Embed)
    }

    fn example(&self) -> Option<EmbedInput> {
        Some(EmbedInput {
            inputs: vec![TextInput::Text("Embeddings turn text into vectors.".into())],
            truncate: true,
            normalize: true,
            encoding: Encoding::Float,
        })
    }
}

/// 422 for an empty request, too many inputs, an empty input or a text too long to read.
fn check_limits(inputs: &[TextInput]) -> Result<()> {
    if inputs.is_empty() {
        return Err(Error::invalid_field("inputs", "must hold at least one input"));
    }
    if inputs.len() > MAX_ITEMS {
        let detail = format!("holds {} inputs, at most {MAX_ITEMS} are accepted", inputs.len());
        return Err(Error::invalid_field("inputs", detail));
    }
    for (index, input) in inputs.iter().enumerate() {
        let problem = match input {
            TextInput::Text(text) if text.is_empty() => Some("is empty".to_string()),
            TextInput::Text(text) if text.chars().count() > MAX_CHARS => {
                Some(format!("has more than {MAX_CHARS} characters"))
            }
            TextInput::Tokens(ids) if ids.is_empty() => Some("holds no token id".to_string()),
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(Error::invalid_field(format!("inputs[{index}]"), problem));
        }
    }
    Ok(())
}
