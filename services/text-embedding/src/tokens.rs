//! Texts to token ids, with the tokenizer of the model version that runs them
//! (`tokenizer.json` in its manifest, read once per version): the same `tokenizers` library
//! and file Python uses, so ids match token for token. Texts longer than the model's limit
//! (`metadata.max_tokens`) are cut, keeping `[CLS]` and the closing `[SEP]`, as the Python
//! library's truncation does, or refused when the request says not to truncate.

use oxiserve::model::Manifest;
use oxiserve::{Error, Model, Result};
use tokenizers::Tokenizer;

use crate::{DIMENSION, TextInput};

/// What one model version needs to turn texts into its inputs.
#[derive(Debug)]
pub(crate) struct TextModel {
    tokenizer: Tokenizer,
    /// The most tokens one text may have, `[CLS]` and `[SEP]` included.
    max_tokens: usize,
    cls: i64,
    sep: i64,
    vocabulary: i64,
}

/// One input, tokenised.
#[derive(Debug)]
pub(crate) struct Tokens {
    /// The ids the model runs on, `[CLS]` first and `[SEP]` last.
    pub(crate) ids: Vec<i64>,
}

impl TextModel {
    /// Reads the version's tokenizer and limits; a version without usable ones never serves.
    pub(crate) fn load(model: &Model, manifest: &Manifest) -> Result<Self> {
        let invalid = |what: String| Error::pipeline(format!("{}: {what}", manifest.label()));
        let bytes = model.read_file("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| invalid(format!("tokenizer.json is not a tokenizer: {e}")))?;
        // The file pads and truncates to 128 for its training; requests are cut here, to the
        // manifest's limit, and padded by the batcher to the longest in each batch.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| invalid(e.to_string()))?;
        let number = |key: &str| {
            manifest.metadata[key]
                .as_u64()
                .filter(|&n| n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| invalid(format!("metadata.{key} is not a positive integer")))
        };
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .map(i64::from)
                .ok_or_else(|| invalid(format!("the tokenizer has no {token}")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let vocabulary = i64::try_from(tokenizer.get_vocab_size(true)).unwrap_or(i64::MAX);
        let dimension = number("dimension")?;
        if dimension != DIMENSION {
            return Err(invalid(format!(
                "metadata.dimension is {dimension}; this service serves {DIMENSION}"
            )));
        }
        let max_tokens = number("max_tokens")?;
        Ok(Self { tokenizer, max_tokens, cls, sep, vocabulary })
    }

    /// The ids of `input` (the `index`-th of the request), cut to the model's limit when
    /// `truncate`, else refused past it. Token ids come without `[CLS]` and `[SEP]`, which are
    /// added.
    pub(crate) fn encode(&self, input: &TextInput, index: usize, truncate: bool) -> Result<Tokens> {
        let field = format!("inputs[{index}]");
        let mut ids: Vec<i64> = match input {
            TextInput::Text(text) => {
                let encoding = self.tokenizer.encode(text.as_str(), true).map_err(|e| {
                    Error::invalid_field(&field, format!("cannot be tokenised: {e}"))
                })?;
                encoding.get_ids().iter().copied().map(i64::from).collect()
            }
            TextInput::Tokens(tokens) => {
                if let Some(bad) = tokens.iter().find(|&&id| !(0..self.vocabulary).contains(&id)) {
                    let below = self.vocabulary;
                    return Err(Error::invalid_field(
                        &field,
                        format!("{bad} is not a token id below {below}"),
                    ));
                }
                [self.cls].into_iter().chain(tokens.iter().copied()).chain([self.sep]).collect()
            }
        };
        if ids.len() > self.max_tokens {
            if !truncate {
                return Err(Error::invalid_field(
                    &field,
                    format!(
                        "has {} tokens, more than the model's {}; send `truncate: true` to cut it",
                        ids.len(),
                        self.max_tokens
                    ),
                ));
            }
            ids.truncate(self.max_tokens - 1);
            ids.push(self.sep);
        }
        Ok(Tokens { ids })
    }
}
